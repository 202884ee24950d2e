"""BEHAVIOR-1K (OmniGibson on Isaac Sim): R1 Pro household activities.

Light on purpose: nothing here imports OmniGibson (``gym.make`` checks for it and fails with a
message naming what is missing).
"""

IDS = {"VLA/Behavior-v0": ("vla_gym.envs.behavior.behavior_env:BehaviorEnv", {})}
