"""The flow policy models actions normalised by demonstration quantiles (q01..q99 -> [-1, 1])."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from trainers.policies.flow import FlowConfig, FlowPolicy

CHUNK, ACTION_DIM, STATE_DIM = 3, 4, 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_policy(chunk: int = CHUNK) -> FlowPolicy:
    torch.manual_seed(0)
    shape = (ACTION_DIM,) if chunk == 1 else (chunk, ACTION_DIM)
    return FlowPolicy(
        FlowConfig.from_preset("nano"),
        spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
        spaces.Box(-1, 1, shape, np.float32),
    )


def demo_actions(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Small x/y moves, a larger z, a binary gripper: the scales of a pick-and-place expert."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.normal(0.02, 0.03, n),
            rng.normal(-0.01, 0.03, n),
            rng.uniform(-0.25, 0.25, n),
            rng.choice([-1.0, 1.0], n),
        ],
        axis=1,
    ).astype(np.float32)


def test_fit_maps_the_1st_and_99th_percentiles_to_minus_one_and_one():
    policy = make_policy()
    actions = demo_actions()
    policy.fit_action_statistics(actions)
    low, high = np.quantile(actions.astype(np.float64), [0.01, 0.99], axis=0)
    edges = torch.as_tensor(np.stack([low, high]), dtype=torch.float32)[:, None, :]
    edges = edges.expand(2, CHUNK, ACTION_DIM)
    normalised = policy.normalize_actions(edges)
    np.testing.assert_allclose(normalised[0, 0].numpy(), -1.0, atol=1e-5)
    np.testing.assert_allclose(normalised[1, 0].numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(policy.denormalize_actions(normalised).numpy(), edges, atol=1e-6)
    with pytest.raises(ValueError, match="no actions"):
        policy.fit_action_statistics(np.zeros((0, ACTION_DIM)))


def test_a_dimension_the_demos_never_move_stays_finite():
    policy = make_policy()
    actions = demo_actions()
    actions[:, 3] = -1.0  # the gripper never closes
    policy.fit_action_statistics(actions)
    assert torch.isfinite(policy.normalize_actions(torch.zeros(1, CHUNK, ACTION_DIM))).all()
    assert policy.action_scale[3] > 0


@pytest.mark.parametrize("chunk", [1, CHUNK])
def test_act_returns_the_denormalised_end_of_the_chain_clipped_to_the_space(chunk):
    policy = make_policy(chunk).eval()
    policy.fit_action_statistics(demo_actions())
    obs = torch.randn(6, STATE_DIM)
    for deterministic in (True, False):
        out = policy.act(obs, deterministic=deterministic)
        end = out.extras["chain"][:, -1]  # (B, k, A), in the normalised space
        expected = (policy.action_center + policy.action_scale * end).clamp(-1.0, 1.0)
        torch.testing.assert_close(out.actions.reshape(6, chunk, ACTION_DIM), expected)


def test_sft_learns_small_actions_precisely_in_the_normalised_space():
    """A 2 cm move under flow matching's unit noise: reproduced to a few millimetres."""
    policy = make_policy(chunk=1).train()
    policy.fit_action_statistics(demo_actions())
    obs = torch.randn(16, STATE_DIM)
    target = torch.tensor([0.03, -0.02, 0.2, -1.0]).expand(16, ACTION_DIM)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        policy.sft_loss(obs, target).backward()
        optimizer.step()
    actions = policy.eval().act(obs, deterministic=True).actions
    assert (actions[:, :2] - target[:, :2]).abs().max() < 0.01


def test_a_checkpoint_from_before_normalisation_loads_as_the_identity():
    old = make_policy().state_dict()
    del old["action_center"], old["action_scale"]
    policy = make_policy()
    policy.fit_action_statistics(demo_actions())
    policy.load_state_dict(old)
    torch.testing.assert_close(policy.action_center, torch.zeros(ACTION_DIM))
    torch.testing.assert_close(policy.action_scale, torch.ones(ACTION_DIM))
