"""Franka Panda pick-cube on MuJoCo (SERL franka_sim layout, gym-hil's assets and controller)."""

IDS = {
    "VLA/PandaPickCube-v0": ("vla_gym.envs.panda.pick_cube:PandaPickCubeEnv", {"vision": False}),
    "VLA/PandaPickCubeVision-v0": (
        "vla_gym.envs.panda.pick_cube:PandaPickCubeEnv",
        {"vision": True},
    ),
}
