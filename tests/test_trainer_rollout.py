"""Rollout collection: per-step validity masks, episode stats, pipelining, seeds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from trainers.policies.base import ActorCriticPolicy, PolicyOutput
from trainers.rollout import (
    EpisodeStats,
    RolloutCollector,
    StepBuffer,
    _scatter,
    make_single_env,
)
from vla_gym.vector.sync import SyncVectorEnv


class CountdownEnv(gym.Env):
    """Episode of ``length`` steps (terminated on success at the end, or truncated)."""

    def __init__(self, length: int, succeed: bool) -> None:
        self.length, self.succeed = length, succeed
        self.observation_space = gym.spaces.Box(-100, 100, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (2, 1), np.float32)  # chunk of 2
        self.t = 0
        self.calls = 0  # step calls over every episode, resets included

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.seed_seen = seed
        return np.array([float(seed or 0)], np.float32), {"executed_steps": 0}

    def step(self, action):
        self.calls += 1
        self.t += 1
        end = self.t >= self.length
        info = {
            "executed_steps": 2,
            "elapsed_steps": 2 * self.t,
            "success_once": bool(end and self.succeed),
        }
        terminated = end and self.succeed
        truncated = end and not self.succeed
        return np.array([float(self.t)], np.float32), 1.0, terminated, truncated, info


class ValueIsObs(ActorCriticPolicy):
    def act(self, obs, *, deterministic=False):
        n = obs.shape[0]
        return PolicyOutput(
            actions=torch.zeros(n, 2, 1),
            log_prob=torch.zeros(n, 2, 1),
            value=obs[:, 0].float(),
            extras={"marker": obs[:, :1].float()},
        )

    def value(self, obs):
        return obs[:, 0].float()


def make_envs_factory(lengths, succeed):
    created = iter([lengths[: len(lengths) // 2], lengths[len(lengths) // 2 :]])

    def make(n):
        part = lengths if n == len(lengths) else next(created)
        return gym.vector.SyncVectorEnv(
            [lambda k=k: CountdownEnv(k, succeed) for k in part],
            autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
        )

    return make


def test_continuous_rollout_masks_reset_steps_and_records_episodes():
    collector = RolloutCollector(make_envs_factory([2, 3], True), 2, num_steps=5, episodic=False)
    rollout, stats = collector.collect(ValueIsObs(), seeds=[10, 20])
    # env 0 (length 2): steps 0,1 real, 2 reset, 3,4 real. env 1 (length 3): 0-2 real, 3 reset.
    assert rollout.valid[:, 0].tolist() == [True, True, False, True, True]
    assert rollout.valid[:, 1].tolist() == [True, True, True, False, True]
    assert rollout.terminated[:, 0].tolist() == [False, True, False, False, True]
    assert rollout.rewards.shape == (5, 2) and rollout.actions.shape == (5, 2, 2, 1)
    assert rollout.extras["marker"].shape == (5, 2, 1)
    assert rollout.values[0].tolist() == [10.0, 20.0]  # reset with the given seeds
    assert stats.returns == [2.0, 3.0, 2.0]  # env0, env1, env0 again
    assert stats.success_once == [1.0, 1.0, 1.0]
    assert stats.lengths == [4, 6, 4]
    assert stats.env_steps == 2 * int(rollout.valid.sum())  # reset steps execute nothing
    # The next rollout continues the running episodes (no reset).
    rollout2, _ = collector.collect(ValueIsObs())
    assert rollout2.values[0, 1].item() == 1.0  # env 1 is one step into its new episode
    collector.close()


def test_episodic_rollout_masks_everything_after_the_first_episode():
    collector = RolloutCollector(make_envs_factory([2, 4], False), 2, num_steps=4, episodic=True)
    rollout, stats = collector.collect(ValueIsObs(), seeds=[0, 0])
    assert rollout.valid[:, 0].tolist() == [True, True, False, False]
    assert rollout.valid[:, 1].tolist() == [True] * 4
    assert rollout.truncated[:, 0].tolist() == [False, True, False, False]
    assert stats.returns == [2.0, 4.0] and stats.success_once == [0.0, 0.0]
    # Truncation bootstrap uses V(final obs) = obs 2 of env 0, stored as values[2].
    assert rollout.values[2, 0].item() == 2.0
    collector.close()


def test_pipelined_collection_matches_unpipelined():
    lengths = [2, 3, 4, 5]
    plain = RolloutCollector(make_envs_factory(lengths, True), 4, num_steps=6, episodic=False)
    piped = RolloutCollector(
        make_envs_factory(lengths, True), 4, num_steps=6, episodic=False, pipeline_stage_num=2
    )
    seeds = [1, 2, 3, 4]
    a, stats_a = plain.collect(ValueIsObs(), seeds=seeds)
    b, stats_b = piped.collect(ValueIsObs(), seeds=seeds)
    for name in ("values", "rewards", "valid", "terminated", "truncated", "last_value"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.obs, b.obs)
    assert sorted(stats_a.returns) == sorted(stats_b.returns)
    plain.close()
    piped.close()


@pytest.mark.parametrize("stages", [1, 2])
def test_episodic_rollout_stops_stepping_once_every_episode_ended(stages):
    """Envs of episodes 2, 3, 1 and 2 policy steps long: a stage steps until its longest
    episode ended (3 times, not 20), then the rollout is padded to its 20 steps with invalid,
    reward-free steps."""
    collector = RolloutCollector(
        make_envs_factory([2, 3, 1, 2], True), 4, num_steps=20, episodic=True,
        pipeline_stage_num=stages,
    )  # fmt: skip
    rollout, stats = collector.collect(ValueIsObs(), seeds=[0, 0, 0, 0])
    assert rollout.num_steps == 20 and rollout.actions.shape == (20, 4, 2, 1)
    assert rollout.valid.sum(0).tolist() == [2, 3, 1, 2]
    assert not rollout.valid[3:].any() and not rollout.rewards[3:].any()
    assert not rollout.dones[3:].any()
    assert sorted(stats.returns) == [1.0, 2.0, 2.0, 3.0]
    # step calls per env: 3 vector steps (one stage), or 3 and 2 (two stages), less the step
    # after an episode's end, which resets that env instead
    calls = [env.calls for stage in collector.stages for env in stage.envs.envs]
    assert calls == ([2, 3, 2, 2] if stages == 1 else [2, 3, 1, 2])
    collector.close()


def test_episodic_rollout_on_vla_gym_envs_steps_only_running_episodes():
    """vla_gym's vector envs step a subset: an env whose episode ended is left alone (no
    autoreset, no wasted steps); the rollout equals the one over Gymnasium's vector env."""
    lengths = [2, 3, 1, 2]

    def make_vla_gym(n):
        return SyncVectorEnv([lambda k=k: CountdownEnv(k, True) for k in lengths])

    ours = RolloutCollector(make_vla_gym, 4, num_steps=6, episodic=True)
    plain = RolloutCollector(make_envs_factory(lengths, True), 4, num_steps=6, episodic=True)
    a, stats_a = ours.collect(ValueIsObs(), seeds=[5, 5, 5, 5])
    b, stats_b = plain.collect(ValueIsObs(), seeds=[5, 5, 5, 5])
    assert [env.calls for env in ours.stages[0].envs.envs] == lengths  # exactly its episode
    assert torch.equal(a.valid, b.valid)
    for name in ("rewards", "dones", "values"):  # (invalid steps differ: never used)
        assert torch.equal(getattr(a, name)[a.valid], getattr(b, name)[b.valid]), name
    assert stats_a.returns == stats_b.returns and stats_a.lengths == stats_b.lengths
    assert stats_a.env_steps == 2 * sum(lengths)  # executed steps only
    # the next rollout resets every env and runs whole episodes again
    a2, _ = ours.collect(ValueIsObs(), seeds=[6, 6, 6, 6])
    assert a2.valid.sum(0).tolist() == lengths and a2.values[0].tolist() == [6.0] * 4
    ours.close()
    plain.close()


def test_scatter_fills_the_rows_of_a_partial_batch():
    ids = np.array([1, 3])
    previous = {"state": np.arange(8.0).reshape(4, 2), "text": ("a", "b", "c", "d")}
    part = {"state": np.array([[10.0, 11.0], [30.0, 31.0]]), "text": ("B", "D")}
    full = _scatter(part, ids, previous, 4)
    np.testing.assert_array_equal(full["state"][:, 0], [0.0, 10.0, 4.0, 30.0])
    assert full["text"] == ("a", "B", "c", "D")
    assert previous["state"][1, 0] == 2.0  # the previous batch is not written to
    infos = {"success": np.array([True, False]), "_success": np.array([True, True])}
    filled = _scatter(infos, ids, None, 4)
    assert filled["success"].tolist() == [False, True, False, False]
    assert filled["_success"].tolist() == [False, True, False, True]
    objects = _scatter(np.array([{"k": 1}, None], dtype=object), ids, None, 4)
    assert objects.tolist() == [None, {"k": 1}, None, None]


def test_evaluation_mode_stops_when_every_episode_ended():
    collector = RolloutCollector(make_envs_factory([1, 2], True), 2, num_steps=50, episodic=True)
    rollout, stats = collector.collect(ValueIsObs(), seeds=[0, 1], record=False)
    assert rollout is None
    assert stats.returns == [1.0, 2.0]
    assert stats.env_steps == 6  # 1 + 2 policy steps of 2 env steps each
    collector.close()


def test_stage_split_needs_divisible_envs():
    with pytest.raises(ValueError, match="not divisible"):
        RolloutCollector(
            make_envs_factory([1, 2, 3], True), 3, num_steps=2, episodic=False, pipeline_stage_num=2
        )


def test_step_buffer_stacks_steps_into_a_typed_rollout():
    buffer = StepBuffer()
    for t in range(3):
        obs = {"state": torch.full((2, 4), float(t)), "instruction": ["a", "b"]}
        out = PolicyOutput(
            actions=torch.full((2, 3), float(t)),
            log_prob=torch.zeros(2, 3),
            value=torch.tensor([[t], [-t]], dtype=torch.float64),  # reshaped, cast to float32
            extras={"noise": torch.ones(2, 5)},
        )
        buffer.add_action(obs, out, np.array([True, t < 2]))
        buffer.add_outcome(np.array([1.0, 2.0]), np.array([False, t == 1]), np.zeros(2, bool))
    rollout = buffer.to_rollout(torch.tensor([7.0, 8.0], dtype=torch.float64))
    assert (rollout.num_steps, rollout.num_envs) == (3, 2)
    assert rollout.obs["state"].shape == (3, 2, 4) and rollout.obs["instruction"][2] == ["a", "b"]
    assert rollout.actions.shape == (3, 2, 3) and rollout.extras["noise"].shape == (3, 2, 5)
    assert rollout.values.dtype == torch.float32 and rollout.values[:, 1].tolist() == [0, -1, -2]
    assert rollout.rewards.dtype == torch.float32 and rollout.last_value.tolist() == [7.0, 8.0]
    assert rollout.valid[:, 1].tolist() == [True, True, False]
    assert rollout.dones[:, 1].tolist() == [False, True, False]


def test_episode_stats_merge_adds_episodes_and_counts():
    total, part = EpisodeStats(), EpisodeStats(returns=[1.0], lengths=[3], success_once=[1.0])
    part.extra["avg_len"].append(2.0)
    part.env_steps, part.reward_sum = 3, 1.0
    total.merge(part)
    total.merge(part)
    assert (total.count, total.env_steps, total.reward_sum) == (2, 6, 2.0)
    assert total.metrics("env")["env/avg_len"] == 2.0 and part.count == 1


def test_make_single_env_refuses_gyms_chunk_counting_limit():
    with pytest.raises(ValueError, match="pass the episode limit as max_steps"):
        make_single_env("VLA/PandaPickCube-v0", max_episode_steps=10)
