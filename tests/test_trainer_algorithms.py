"""PPO/GRPO maths against hand-computed values: GAE, masks, truncation bootstrap, groups, loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainers.algorithms import ALGORITHMS, GRPO, PPO, algorithm_class, grpo, ppo, update
from trainers.algorithms.base import Batch, bootstrap_truncated
from trainers.algorithms.grpo import GRPOConfig
from trainers.algorithms.ppo import PPOConfig
from trainers.policies.base import EvaluateOutput
from trainers.rollout import Rollout
from trainers.schema import ConfigError


def make_rollout(rewards, values, last_value, terminated=None, truncated=None, valid=None):
    rewards = torch.tensor(rewards, dtype=torch.float32)
    shape = rewards.shape
    zeros = torch.zeros(shape, dtype=torch.bool)
    as_bool = lambda x: zeros.clone() if x is None else torch.tensor(x, dtype=torch.bool)  # noqa: E731
    return Rollout(
        obs=torch.zeros(*shape, 1),
        actions=torch.zeros(*shape, 1),
        log_probs=torch.zeros(*shape, 1),
        values=torch.tensor(values, dtype=torch.float32),
        rewards=rewards,
        terminated=as_bool(terminated),
        truncated=as_bool(truncated),
        valid=torch.ones(shape, dtype=torch.bool) if valid is None else as_bool(valid),
        last_value=torch.tensor(last_value, dtype=torch.float32),
    )


def test_gae_matches_hand_computation_across_an_episode_end():
    # One env, gamma 0.9, lambda 0.8; the episode terminates at t = 1.
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[False], [True], [False]])
    adv, ret = ppo.compute_gae(rewards, values, dones, torch.tensor([2.0]), 0.9, 0.8)
    # t=2: 2 + 0.9*2.0 - 1.5 = 2.3; t=1 (done): 0 - 1.0 = -1.0; t=0: 1 + 0.9*1.0 - 0.5 = 1.4,
    # plus 0.9*0.8*(-1.0) -> 0.68.
    assert adv[:, 0].tolist() == pytest.approx([0.68, -1.0, 2.3])
    assert ret[:, 0].tolist() == pytest.approx([1.18, 0.0, 3.8])


def test_truncation_bootstraps_with_the_value_of_the_final_observation():
    # NEXT_STEP layout: truncated at t=1, so values[2] is V(final obs) and step 2 is the
    # (invalid) reset step.
    rollout = make_rollout(
        rewards=[[0.0], [1.0], [0.0]],
        values=[[1.0], [2.0], [3.0]],
        last_value=[4.0],
        truncated=[[False], [True], [False]],
        valid=[[True], [True], [False]],
    )
    rewards = bootstrap_truncated(rollout, gamma=0.9)
    assert rewards[:, 0].tolist() == pytest.approx([0.0, 1.0 + 0.9 * 3.0, 0.0])
    adv = PPO(PPOConfig(gamma=0.9, gae_lambda=0.8)).advantages(rollout).advantages
    a1 = 3.7 - 2.0  # done: no further bootstrap
    a0 = 0.0 + 0.9 * 2.0 - 1.0 + 0.9 * 0.8 * a1
    assert adv[0, 0].item() == pytest.approx(a0)
    assert adv[1, 0].item() == pytest.approx(a1)


def test_truncation_at_the_rollout_end_uses_last_value():
    rollout = make_rollout([[1.0]], [[0.5]], [2.0], truncated=[[True]])
    assert bootstrap_truncated(rollout, 0.99)[0, 0].item() == pytest.approx(1.0 + 0.99 * 2.0)


def test_advantage_normalisation_ignores_masked_entries():
    adv = torch.tensor([1.0, 2.0, 3.0, 100.0])
    valid = torch.tensor([True, True, True, False])
    out = update.normalize(adv, valid)
    assert out[:3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)
    assert out[3].item() == 0.0


def test_group_advantages_and_dr_grpo():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    adv = grpo.group_advantages(scores, 4)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased std of [1, 0, 0, 1]
    expected = [0.5 / (std + 1e-6), -0.5 / (std + 1e-6)] * 2
    assert adv[:4].tolist() == pytest.approx([expected[0], expected[1], expected[1], expected[0]])
    assert adv[4:].tolist() == pytest.approx([0.0] * 4)  # degenerate group: all the same
    assert grpo.group_advantages(scores, 4, dr_grpo=True)[:4].tolist() == pytest.approx(
        [0.5, -0.5, -0.5, 0.5]
    )


def test_degenerate_groups_are_filtered_by_mean_score_bounds():
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])  # all-success, all-fail, mixed
    keep = grpo.kept_groups(scores, 2, lower=0.1, upper=0.9)
    assert keep.tolist() == [False, False, False, False, True, True]


def test_grpo_scores_count_only_valid_steps_and_broadcast_to_them():
    # 2 policy steps x 4 envs (2 groups of 2). Env 1 ends at t=0 so its t=1 step is masked.
    rollout = make_rollout(
        rewards=[[0.0, 1.0, 0.0, 0.0], [1.0, 5.0, 0.0, 0.0]],
        values=[[0.0] * 4, [0.0] * 4],
        last_value=[0.0] * 4,
        terminated=[[False, True, False, False], [True, False, False, False]],
        valid=[[True, True, True, True], [True, False, True, True]],
    )
    config = GRPOConfig(group_size=2, group_reward_lower=0.1)
    result = GRPO(config).advantages(rollout)
    mask, metrics = result.mask, result.metrics
    # scores: env0 1, env1 1 (the masked 5 is ignored) -> degenerate; env2 0, env3 0 -> dropped.
    assert grpo.episode_scores(rollout.rewards, rollout.valid).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert not mask.any()
    assert metrics["rollout/kept_groups_frac"] == 0.0
    config.filter_groups = False
    result = GRPO(config).advantages(rollout)
    assert result.mask.tolist() == rollout.valid.tolist()
    assert result.returns is None  # no critic
    assert result.advantages[1, 1].item() == 0.0  # masked step carries no advantage


def test_group_seeds_are_shared_within_groups():
    assert grpo.group_seeds(100, 6, 3) == [100, 100, 100, 101, 101, 101]
    assert GRPO(GRPOConfig(group_size=3)).reset_seeds(100, 6) == [100, 100, 100, 101, 101, 101]
    assert PPO(PPOConfig()).reset_seeds(100, 3) == [100, 101, 102]


def test_ppo_loss_terms_match_a_direct_computation():
    torch.manual_seed(0)
    config = PPOConfig(
        clip_ratio_low=0.2,
        clip_ratio_high=0.28,
        value_clip=0.5,
        huber_delta=1.0,
        value_coef=0.7,
        entropy_coef=0.01,
    )
    batch, chunk, dim = 6, 2, 3
    new = torch.randn(batch, chunk, dim) * 0.3
    old = new + torch.randn(batch, chunk, dim) * 0.1
    adv = torch.randn(batch)
    entropy = torch.rand(batch, chunk, dim)
    values, old_values, returns = torch.randn(batch), torch.randn(batch), torch.randn(batch) * 3
    terms = PPO(config).loss(
        EvaluateOutput(log_prob=new, entropy=entropy, value=values),
        loss_batch(old, adv, old_values, returns),
        train_actor=True,
    )
    ratio = torch.exp(new.sum((1, 2)) - old.sum((1, 2)))
    expected_pg = []
    clipped = 0
    for r, a in zip(ratio.tolist(), adv.tolist(), strict=True):
        unclipped, clip = -a * r, -a * min(max(r, 0.8), 1.28)
        expected_pg.append(max(unclipped, clip))
        clipped += clip > unclipped
    assert terms.policy.item() == pytest.approx(sum(expected_pg) / batch, rel=1e-5)
    assert terms.clipfrac.item() == pytest.approx(clipped / batch)
    log_ratio = new.sum((1, 2)) - old.sum((1, 2))
    assert terms.approx_kl.item() == pytest.approx(
        ((ratio - 1) - log_ratio).mean().item(), rel=1e-5
    )
    v_clip = old_values + (values - old_values).clamp(-0.5, 0.5)
    lv = F.huber_loss(values, returns, reduction="none", delta=1.0)
    lc = F.huber_loss(v_clip, returns, reduction="none", delta=1.0)
    assert terms.value.item() == pytest.approx(torch.maximum(lv, lc).mean().item(), rel=1e-5)
    assert terms.value_clip_ratio.item() == pytest.approx((lc > lv).float().mean().item())
    assert terms.entropy.item() == pytest.approx(entropy.mean().item(), rel=1e-5)
    total = terms.policy + 0.7 * terms.value - 0.01 * terms.entropy
    assert terms.total.item() == pytest.approx(total.item(), rel=1e-5)


def test_token_level_keeps_one_ratio_per_element():
    config = GRPOConfig(logprob_level="token", clip_ratio_low=0.2, clip_ratio_high=0.2)
    new = torch.log(torch.tensor([[1.5, 1.0]]))  # ratios 1.5 (clipped at 1.2) and 1.0
    old = torch.zeros(1, 2)
    terms = GRPO(config).loss(
        EvaluateOutput(log_prob=new, entropy=torch.zeros(1, 2), value=torch.zeros(1)),
        loss_batch(old, torch.tensor([2.0])),
        train_actor=True,
    )
    # per element: -min(2*1.5, 2*1.2) = -2.4 and -2.0 -> mean -2.2; half the elements clipped.
    assert terms.policy.item() == pytest.approx(-2.2)
    assert terms.clipfrac.item() == pytest.approx(0.5)
    assert terms.value.item() == 0.0


def loss_batch(old_log_prob, advantages, values=None, returns=None) -> Batch:
    """A micro-batch holding what a loss reads (the stored log-probs, advantages, values)."""
    num = advantages.shape[0]
    return Batch(
        obs=torch.zeros(num, 1),
        actions=torch.zeros_like(old_log_prob),
        log_probs=old_log_prob,
        advantages=advantages,
        returns=returns,
        values=values,
        extras={},
    )


def tiny_mlp_batch(num, *, obs=None, advantages=None, returns=None):
    """A tiny MLP policy (torch seed 0) and a PPO batch of its own actions: ``obs`` and
    ``advantages`` random unless given, ``returns(values)`` random unless given."""
    import gymnasium as gym
    import numpy as np

    from trainers.policies.mlp import MLPConfig, MLPPolicy

    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    policy = MLPPolicy(MLPConfig(hidden_sizes=[16], value_hidden_sizes=[16]), obs_space, act_space)
    obs = torch.randn(num, 3) if obs is None else obs
    with torch.no_grad():
        out = policy.act(obs)
    batch = Batch(
        obs=obs,
        actions=out.actions,
        log_probs=out.log_prob,
        advantages=torch.randn(num) if advantages is None else advantages,
        returns=torch.randn(num) if returns is None else returns(out.value),
        values=out.value,
        extras=out.extras,
    )
    return policy, batch


def test_update_reduces_the_loss_and_reports_metric_names():
    policy, batch = tiny_mlp_batch(64)
    config = PPOConfig(update_epochs=3, micro_batch_size=16, global_batch_size=32)
    optimizer = update.make_optimizer(policy, config)
    assert [g["name"] for g in optimizer.param_groups] == ["actor", "critic"]
    metrics = update.update(PPO(config), policy, optimizer, batch, torch.device("cpu"))
    for key in (
        "actor/loss",
        "actor/value_loss",
        "actor/grad_norm",
        "actor/approx_kl",
        "actor/pg_clipfrac",
        "actor/value_clip_ratio",
        "actor/entropy",
        "actor/lr",
    ):
        assert math.isfinite(metrics[key]), key
    assert metrics["actor/approx_kl"] > 0  # the policy moved


def test_explained_variance():
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert update.explained_variance(returns, returns) == pytest.approx(1.0)
    assert update.explained_variance(torch.zeros(4), returns) == pytest.approx(0.0)


def test_critic_warmup_updates_only_the_value_net():
    # returns far from the value: clipping must not freeze the critic
    policy, batch = tiny_mlp_batch(32, returns=lambda values: values + 5.0)
    config = PPOConfig(update_epochs=2, micro_batch_size=16, global_batch_size=32)
    optimizer = update.make_optimizer(policy, config)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    metrics = update.update(
        PPO(config), policy, optimizer, batch, torch.device("cpu"), train_actor=False
    )
    changed = {name for name, p in policy.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("value") for name in changed), changed
    assert metrics["actor/approx_kl"] == pytest.approx(0.0, abs=1e-6)  # the actor did not move


def test_value_loss_scale_does_not_change_the_actor_step():
    """With one gradient norm clipped over actor + critic, a minibatch with a large value error
    (the rare high-return episodes) would shrink its own policy gradient."""
    obs = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    advantages = torch.randn(32, generator=torch.Generator().manual_seed(2))
    actor_after = []
    for value_error in (1.0, 1000.0):
        policy, batch = tiny_mlp_batch(
            32, obs=obs, advantages=advantages, returns=lambda values, e=value_error: values + e
        )
        config = PPOConfig(
            update_epochs=1, micro_batch_size=32, global_batch_size=32, value_clip=1e6
        )
        optimizer = update.make_optimizer(policy, config)
        metrics = update.update(PPO(config), policy, optimizer, batch, torch.device("cpu"))
        assert metrics["actor/grad_norm"] > 0
        actor_after.append(
            [p.detach().clone() for n, p in policy.named_parameters() if not n.startswith("value")]
        )
    for same_seed, huge_value_error in zip(*actor_after, strict=True):
        torch.testing.assert_close(same_seed, huge_value_error)


def test_registry_names_the_algorithms_and_rejects_unknown_ones():
    assert algorithm_class("ppo") is PPO and algorithm_class("grpo") is GRPO
    assert {name: cls.config_class for name, cls in ALGORITHMS.items()} == {
        "ppo": PPOConfig,
        "grpo": GRPOConfig,
    }
    with pytest.raises(ConfigError, match=r"algorithm.name 'a2c' is unknown \(known: grpo, ppo\)"):
        algorithm_class("a2c")


def test_an_algorithm_refuses_another_algorithms_config():
    with pytest.raises(TypeError, match="PPO needs a PPOConfig, got GRPOConfig"):
        PPO(GRPOConfig())


def test_algorithm_configs_check_their_own_settings():
    with pytest.raises(ConfigError, match="algorithm.group_size must be >= 2"):
        GRPOConfig(group_size=1)
    with pytest.raises(ConfigError, match="algorithm.critic_warmup_iterations must be >= 0"):
        PPOConfig(critic_warmup_iterations=-1)
    with pytest.raises(ConfigError, match="logprob_level must be chunk or token"):
        GRPOConfig(logprob_level="word")


def test_critic_warmup_is_the_only_time_ppo_leaves_the_actor_alone():
    ppo_algorithm = PPO(PPOConfig(critic_warmup_iterations=2))
    assert [ppo_algorithm.trains_actor(i) for i in range(4)] == [False, False, True, True]
    assert GRPO(GRPOConfig()).trains_actor(0)
    assert PPO.uses_value and not GRPO.uses_value


def test_a_new_algorithm_is_one_class_and_a_registry_entry(monkeypatch):
    """A critic-free REINFORCE: its config key loads from YAML/CLI, and its advantages feed the
    shared batch."""
    from dataclasses import dataclass

    from trainers import algorithms
    from trainers.algorithms.base import Advantages, Algorithm, AlgorithmConfig
    from trainers.algorithms.update import make_batch, surrogate_loss
    from trainers.config import load_config

    @dataclass
    class ReinforceConfig(AlgorithmConfig):
        name: str = "reinforce"
        baseline: float = 0.0

    class Reinforce(Algorithm):
        name = "reinforce"
        config_class = ReinforceConfig
        uses_value = False

        def advantages(self, rollout):
            returns = rollout.rewards.flip(0).cumsum(0).flip(0) - self.config.baseline
            return Advantages(returns * rollout.valid.float(), mask=rollout.valid)

        def loss(self, evaluated, batch, *, train_actor):
            return surrogate_loss(
                log_prob=evaluated.log_prob,
                old_log_prob=batch.log_probs,
                advantages=batch.advantages,
                entropy=evaluated.entropy,
                config=self.config,
            )

    monkeypatch.setitem(algorithms.ALGORITHMS, "reinforce", Reinforce)
    config = load_config(
        "panda_pick_cube_ppo_mlp_cpu", ["algorithm.name=reinforce", "algorithm.baseline=0.5"]
    )
    assert type(config.algorithm) is ReinforceConfig and config.algorithm.baseline == 0.5
    config.algorithm.normalize_advantages = False
    rollout = make_rollout([[1.0, 0.0], [2.0, 1.0]], [[0.0] * 2] * 2, [0.0] * 2)
    batch, _ = make_batch([rollout], algorithms.make_algorithm(config.algorithm))
    assert batch.advantages.tolist() == [2.5, 0.5, 1.5, 0.5]
    assert batch.returns is None and batch.values is None


def clonable(policy):
    """The tiny MLP policy with an SFT loss: the demo actions' negative log-likelihood."""
    policy.sft_loss = lambda obs, actions: -policy.evaluate(obs, actions, {}).log_prob.mean()
    return policy


def counted(batches):
    """An endless iterator over ``batches`` that counts what was drawn."""
    drawn = []

    def generate():
        while True:
            for batch in batches:
                drawn.append(batch)
                yield batch

    return generate(), drawn


def test_sft_term_pulls_the_actor_towards_the_demonstrations():
    # zero advantages: without the term the actor would not move at all
    policy, batch = tiny_mlp_batch(32, advantages=torch.zeros(32))
    policy = clonable(policy)
    demo_obs = torch.randn(16, 3, generator=torch.Generator().manual_seed(3))
    demo_actions = torch.full((16, 2), 0.8)
    with torch.no_grad():
        before = float(policy.sft_loss(demo_obs, demo_actions))
    config = GRPOConfig(
        update_epochs=2,
        micro_batch_size=8,
        global_batch_size=16,
        lr=1e-2,
        sft_coef=1.0,
        sft_demos="unused-here",
    )
    demos, drawn = counted([(demo_obs, demo_actions)])
    optimizer = update.make_optimizer(policy, config)
    metrics = update.update(
        GRPO(config), policy, optimizer, batch, torch.device("cpu"), demos=demos
    )
    assert len(drawn) == 2 * 2  # one demo batch per optimiser step: 2 epochs x 2 global batches
    assert metrics["actor/sft_loss"] < before  # the mean over the steps, the first at `before`
    with torch.no_grad():
        assert float(policy.sft_loss(demo_obs, demo_actions)) < before - 0.1


def test_sft_term_is_off_at_zero_and_during_critic_warmup():
    demo = (torch.zeros(4, 3), torch.zeros(4, 2))
    for config, train_actor in (
        (PPOConfig(update_epochs=1, micro_batch_size=16, global_batch_size=16), True),
        (
            PPOConfig(
                update_epochs=1,
                micro_batch_size=16,
                global_batch_size=16,
                sft_coef=1.0,
                sft_demos="d",
            ),
            False,
        ),
    ):
        policy, batch = tiny_mlp_batch(16)
        demos, drawn = counted([demo])
        optimizer = update.make_optimizer(policy, config)
        metrics = update.update(
            PPO(config),
            policy,
            optimizer,
            batch,
            torch.device("cpu"),
            train_actor=train_actor,
            demos=demos,
        )
        assert drawn == [] and "actor/sft_loss" not in metrics


def test_sft_term_needs_its_demonstrations():
    with pytest.raises(ConfigError, match="algorithm.sft_coef must be >= 0"):
        GRPOConfig(sft_coef=-1.0, sft_demos="d")
    with pytest.raises(ConfigError, match="algorithm.sft_batch_size must be >= 1"):
        PPOConfig(sft_batch_size=0)
    policy, batch = tiny_mlp_batch(16)
    config = GRPOConfig(micro_batch_size=16, global_batch_size=16, sft_coef=1.0, sft_demos="d")
    optimizer = update.make_optimizer(policy, config)
    with pytest.raises(ValueError, match="needs demonstration batches"):
        update.update(GRPO(config), policy, optimizer, batch, torch.device("cpu"))
