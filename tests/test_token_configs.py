"""Smoke runs of every ``token_*`` trainer config (two tiny PPO/GRPO iterations each).

Recipes whose simulator is not installed are skipped with the reason (BEHAVIOR needs Isaac Sim on
an RTX GPU; LIBERO needs hf-libero and the offline asset pack in ../shared/assets/libero); their
policy is still built and run on observation/action spaces of the recipe's shape.
"""

from __future__ import annotations

import importlib.util
import math

import gymnasium as gym
import pytest
import torch
from conftest import SHARED_DIR

from trainers.config import available_configs, load_config
from trainers.policies import make_policy
from trainers.policies.token import TokenPolicy
from vla_gym.core.spaces import chunked_action_space, vla_observation_space

LIBERO_ASSETS = SHARED_DIR / "assets" / "libero"
TOKEN_CONFIGS = [name for name in available_configs() if name.startswith("token_")]
# Simulator package each env ID needs, beyond what the core install brings.
SIMULATORS = {"VLA/Behavior": "omnigibson", "VLA/LIBERO": "libero"}
# Observation layout of the recipes whose simulator may be missing (cameras, state dim).
RECIPE_SPACES = {
    "VLA/Behavior-v0": (("head", "left_wrist", "right_wrist"), 32),
    "VLA/LIBERO-10-v0": (("agentview", "wrist"), 8),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def missing_simulator(env_id: str) -> str | None:
    import vla_gym

    del vla_gym
    for prefix, module in SIMULATORS.items():
        if env_id.startswith(prefix) and importlib.util.find_spec(module) is None:
            return f"{env_id} needs the {module!r} package, not installed here"
    if env_id not in gym.registry:
        return f"{env_id} is not registered in this checkout"
    return None


def test_every_recipe_is_present() -> None:
    assert {
        "token_panda_vision_ppo_cpu",
        "token_panda_vision_grpo_cpu",
        "token_behavior_ppo",
        "token_libero_10_grpo",
        "token_libero_10_grpo_cpu",
    } <= set(TOKEN_CONFIGS)
    behavior = load_config("token_behavior_ppo")
    assert behavior.env.action_chunk == 8 and behavior.algorithm.logprob_level == "token"
    assert behavior.policy["size"] == "gpu" and behavior.policy["eval_temperature"] == 0.6


@pytest.mark.parametrize("name", TOKEN_CONFIGS)
def test_smoke_run(name: str, tmp_path) -> None:
    overrides = [f"runner.log_dir={tmp_path}"]
    if load_config(name).env.id.startswith("VLA/LIBERO"):
        if not LIBERO_ASSETS.is_dir():
            pytest.skip(f"LIBERO's offline asset pack {LIBERO_ASSETS} is absent")
        overrides.append(f"env.kwargs.libero_assets={LIBERO_ASSETS}")
    config = load_config(name, overrides, smoke=True)
    reason = missing_simulator(config.env.id)
    if reason:
        pytest.skip(reason)
    from trainers.train import Trainer

    trainer = Trainer(config)
    assert isinstance(trainer.policy, TokenPolicy)
    metrics = trainer.train()
    assert trainer.iteration == 2
    assert (trainer.run_dir / "checkpoints").is_dir()
    # Both iterations updated the policy (GRPO recipes whose groups may all be filtered out in
    # two tiny iterations only need finite metrics).
    filtered = config.algorithm.name == "grpo" and config.algorithm.filter_groups
    for key in () if filtered else ("actor/loss", "actor/approx_kl", "actor/entropy"):
        assert key in metrics, (key, sorted(metrics))
    assert all(math.isfinite(value) for value in metrics.values()), metrics


@pytest.mark.parametrize("name", ["token_behavior_ppo", "token_libero_10_grpo"])
def test_recipe_policy_on_the_recipe_spaces(name: str) -> None:
    """Without the simulator: the recipe's policy acts and recomputes on spaces of its shape."""
    config = load_config(name, smoke=True)
    cameras, state_dim = RECIPE_SPACES[config.env.id]
    action_dim = 23 if "Behavior" in config.env.id else 7
    obs_space = vla_observation_space({camera: (48, 48) for camera in cameras}, state_dim)
    action_space = chunked_action_space(action_dim, config.env.action_chunk)
    torch.manual_seed(0)
    policy = make_policy(config.policy, obs_space, action_space)
    obs = {
        "images": {c: torch.randint(0, 256, (2, 48, 48, 3), dtype=torch.uint8) for c in cameras},
        "state": torch.randn(2, state_dim),
        "instruction": ["turn on the radio", "put both pots on the stove"],
    }
    out = policy.act(obs)
    assert out.actions.shape == (2, config.env.action_chunk, action_dim)
    with torch.no_grad():
        again = policy.evaluate(obs, out.actions, out.extras)
    assert (again.log_prob - out.log_prob).abs().max() <= 1e-5
