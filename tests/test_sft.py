"""Supervised fine-tuning on demonstrations: generic over policies, checkpoints, resume, eval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from trainers import checkpoint
from trainers.demos import DemoDataset, DemoWriter, Episode
from trainers.policies.base import ActorCriticPolicy
from trainers.policies.flow import FlowConfig, FlowPolicy
from trainers.sft import SFTConfig, learning_rate, train_sft

META = {
    "env_id": "VLA/Test-v0",
    "env_kwargs": {},
    "obs_mode": "vla",
    "cameras": {"front": [16, 16]},
    "state_dim": 3,
    "action_dim": 2,
}
OBS_SPACE = spaces.Dict(
    {
        "images": spaces.Dict({"front": spaces.Box(0, 255, (16, 16, 3), np.uint8)}),
        "state": spaces.Box(-np.inf, np.inf, (3,), np.float32),
        "instruction": spaces.Text(64),
    }
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def demos(tmp_path):
    """Episodes whose action is a fixed function of the state (learnable)."""
    writer = DemoWriter(tmp_path, META)
    rng = np.random.default_rng(0)
    for _ in range(3):
        state = rng.normal(size=(20, 3)).astype(np.float32) * 2 + 5
        action = np.tanh(state[:, :2] - 5).astype(np.float32)
        writer.write(
            Episode(
                state=state,
                action=action,
                reward=np.zeros(20, np.float32),
                images={"front": rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)},
                instruction="do the thing",
                success=True,
            )
        )
    return DemoDataset(tmp_path)


def flow_policy(chunk: int = 2) -> FlowPolicy:
    torch.manual_seed(0)
    config = FlowConfig.from_preset("nano", image_size=16, image_patch=2, language="hash")
    return FlowPolicy(config, OBS_SPACE, spaces.Box(-1, 1, (chunk, 2), np.float32))


class LinearPolicy(ActorCriticPolicy):
    """A non-flow policy: SFT only needs ``sft_loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def sft_loss(self, obs, actions):
        return ((self.linear(obs["state"]) - actions) ** 2).mean()


def test_learning_rate_warms_up_then_decays():
    config = SFTConfig(lr=1e-3, steps=100, warmup_steps=10)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 10) == pytest.approx(1e-3)
    assert learning_rate(config, 100) == pytest.approx(1e-4)
    values = [learning_rate(config, s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_sft_is_generic_over_policies(demos):
    policy = LinearPolicy()
    config = SFTConfig(steps=300, batch_size=16, lr=3e-2, warmup_steps=1, log_interval=50)
    history = train_sft(policy, demos, config, spaces.Box(-1, 1, (2,), np.float32))
    losses = [h["sft/loss"] for h in history if "sft/loss" in h]
    assert losses[-1] < 0.5 * losses[0]


def test_flow_sft_loss_decreases_and_sets_state_statistics(demos):
    policy = flow_policy()
    config = SFTConfig(steps=60, batch_size=16, lr=2e-3, warmup_steps=5, log_interval=20)
    history = train_sft(policy, demos, config, spaces.Box(-1, 1, (2, 2), np.float32))
    losses = [h["sft/loss"] for h in history if "sft/loss" in h]
    assert len(losses) == 3 and losses[-1] < losses[0]
    mean, _ = demos.state_statistics()
    assert torch.allclose(policy.encoder.state.mean, torch.as_tensor(mean))


def test_checkpoints_resume_and_evaluation_runs(demos, tmp_path):
    path = tmp_path / "sft" / "latest.pt"
    calls = []

    def evaluate(policy):
        calls.append(policy.training)
        return {"eval/success_once": 0.5}

    space = spaces.Box(-1, 1, (2, 2), np.float32)
    config = SFTConfig(steps=4, batch_size=8, save_interval=2, eval_interval=2, log_interval=2)
    policy = flow_policy()
    history = train_sft(policy, demos, config, space, evaluate=evaluate, checkpoint_path=path)
    assert len(calls) == 2  # steps 2 and 4
    assert [h["step"] for h in history if "eval/success_once" in h] == [2, 4]
    state = checkpoint.load(path)
    assert state["step"] == 4
    # Trainer format: the RL trainer's init_checkpoint_path loads these weights.
    fresh = flow_policy()
    fresh.load_state_dict(checkpoint.policy_state(state))
    for a, b in zip(fresh.state_dict().values(), policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # Resume to 6 steps: continues from step 4 with the history kept.
    resumed = flow_policy()
    more = SFTConfig(**{**config.__dict__, "steps": 6})
    history = train_sft(resumed, demos, more, space, checkpoint_path=path, resume=True)
    assert checkpoint.load(path)["step"] == 6
    assert [h["step"] for h in history if "sft/loss" in h] == [2, 4, 6]


def test_rejects_demos_of_another_action_dim(demos):
    with pytest.raises(ValueError, match="4-D|action space"):
        train_sft(LinearPolicy(), demos, SFTConfig(steps=1), spaces.Box(-1, 1, (4,), np.float32))


def test_random_shift_translates_with_edge_replication():
    from trainers.sft import random_shift

    images = torch.arange(2 * 8 * 8 * 3, dtype=torch.int32).reshape(2, 8, 8, 3).to(torch.uint8)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    for b in range(2):  # every output row/column is an input one (shifted, clamped at the edges)
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                rows = (torch.arange(8) + dy).clamp(0, 7)
                cols = (torch.arange(8) + dx).clamp(0, 7)
                if torch.equal(images[b][rows][:, cols], shifted[b]):
                    found = True
        assert found
    assert torch.equal(random_shift(images, 0, torch.Generator()), images)
