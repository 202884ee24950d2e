"""Meta-World v3 (MuJoCo): MT50, ML45 train/test and single-task IDs (see ``env.py``)."""

_ENTRY = "vla_gym.envs.metaworld.env:MetaWorldEnv"

IDS = {
    "VLA/MetaWorld-MT50-v0": (_ENTRY, {"suite": "MT50"}),
    "VLA/MetaWorld-ML45-Train-v0": (_ENTRY, {"suite": "ML45-train"}),
    "VLA/MetaWorld-ML45-Test-v0": (_ENTRY, {"suite": "ML45-test"}),
    # One of the 50 tasks: gym.make("VLA/MetaWorld-v0", task="pick-place").
    "VLA/MetaWorld-v0": (_ENTRY, {}),
}
