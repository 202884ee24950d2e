"""CALVIN (PyBullet): scenes A-D, the 34 tasks, five-task chains (see ``env.CalvinEnv``)."""

ENTRY_POINT = "vla_gym.envs.calvin.env:CalvinEnv"

IDS = {
    "VLA/CALVIN-A-v0": (ENTRY_POINT, {"scenes": ("A",)}),
    "VLA/CALVIN-B-v0": (ENTRY_POINT, {"scenes": ("B",)}),
    "VLA/CALVIN-C-v0": (ENTRY_POINT, {"scenes": ("C",)}),
    "VLA/CALVIN-D-v0": (ENTRY_POINT, {"scenes": ("D",)}),
    "VLA/CALVIN-ABC-v0": (ENTRY_POINT, {"scenes": ("A", "B", "C")}),
    "VLA/CALVIN-ABCD-v0": (ENTRY_POINT, {"scenes": ("A", "B", "C", "D")}),
}
