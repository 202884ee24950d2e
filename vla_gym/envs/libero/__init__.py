"""LIBERO (robosuite/MuJoCo) over ``hf-libero``: the spatial, object, goal, 10 and 90 suites.

Light on purpose: nothing here imports LIBERO or robosuite (``gym.make`` does).
"""

from vla_gym.envs.libero.suites import SUITES

IDS = {
    suite.env_id: ("vla_gym.envs.libero.libero_env:LiberoEnv", {"suite": name})
    for name, suite in SUITES.items()
}
