"""PPO: truncation bootstrap, GAE, and the clipped-surrogate update (shared with GRPO).

Loss terms (``algorithms.md``): ratio clipped to ``[1 - clip_low, 1 + clip_high]`` taking the
pessimistic surrogate; Huber value loss (delta ``huber_delta``) with value clipping
``V_old + clamp(V - V_old, +-value_clip)`` taking the larger loss; entropy bonus. Log-probs come
per action element; "chunk" level sums them into one ratio per policy step, "token" level keeps
one ratio per element (the step's advantage broadcast to its elements).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainers.config import AlgorithmConfig
from trainers.policies.base import ActorCriticPolicy, Observation
from trainers.rollout import Rollout, index_obs


def bootstrap_truncated(rollout: Rollout, gamma: float) -> torch.Tensor:
    """Rewards with ``gamma * V(final obs)`` added on truncated steps (NEXT_STEP layout)."""
    next_values = torch.cat([rollout.values[1:], rollout.last_value[None]], dim=0)
    return rollout.rewards + gamma * next_values * rollout.truncated.float()


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over ``(T, N)``; returns ``(advantages, returns)``.

    ``dones[t]`` ends the episode at step ``t`` (no value or advantage flows back across it).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(steps)):
        not_done = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_advantage = delta + gamma * gae_lambda * not_done * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def normalize(advantages: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit std over the valid entries (invalid ones are left at zero)."""
    selected = advantages[valid]
    if selected.numel() < 2:
        return torch.where(valid, advantages - selected.mean() if selected.numel() else 0, 0.0)
    out = (advantages - selected.mean()) / (selected.std() + eps)
    return torch.where(valid, out, torch.zeros_like(out))


def ppo_advantages(rollout: Rollout, config: AlgorithmConfig) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = bootstrap_truncated(rollout, config.gamma)
    return compute_gae(
        rewards,
        rollout.values,
        rollout.dones,
        rollout.last_value,
        config.gamma,
        config.gae_lambda,
    )


# ---------------------------------------------------------------------------------- the loss
@dataclass
class LossTerms:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clipfrac: torch.Tensor
    value_clip_ratio: torch.Tensor


def reduce_level(x: torch.Tensor, level: str) -> torch.Tensor:
    """Per-element ``(B, *action_shape)`` -> ``(B,)`` (chunk: sum) or ``(B, E)`` (token)."""
    flat = x.reshape(x.shape[0], -1)
    return flat.sum(-1) if level == "chunk" else flat


def huber(x: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    return F.huber_loss(x, target, reduction="none", delta=delta)


def ppo_loss(
    *,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor | None,
    old_values: torch.Tensor | None,
    returns: torch.Tensor | None,
    config: AlgorithmConfig,
    train_actor: bool = True,
) -> LossTerms:
    """Loss of one micro-batch; means over its samples (and elements at token level).

    ``train_actor=False`` (critic warm-up) leaves only the value loss in ``total``."""
    level = config.logprob_level
    new, old = reduce_level(log_prob, level), reduce_level(old_log_prob, level)
    log_ratio = new - old
    ratio = log_ratio.exp()
    adv = advantages if level == "chunk" else advantages[:, None].expand_as(ratio)
    clipped_ratio = ratio.clamp(1.0 - config.clip_ratio_low, 1.0 + config.clip_ratio_high)
    loss_unclipped, loss_clipped = -adv * ratio, -adv * clipped_ratio
    policy_loss = torch.maximum(loss_unclipped, loss_clipped).mean()
    clipfrac = (loss_clipped > loss_unclipped).float().mean()
    approx_kl = ((ratio - 1.0) - log_ratio).mean()  # k3 estimator, >= 0
    entropy_mean = entropy.expand_as(log_prob).mean() if entropy.dim() else entropy
    zero = policy_loss.new_zeros(())
    value_loss, value_clip_ratio = zero, zero
    if values is not None:
        clipped_values = old_values + (values - old_values).clamp(
            -config.value_clip, config.value_clip
        )
        loss_v = huber(values, returns, config.huber_delta)
        loss_v_clipped = huber(clipped_values, returns, config.huber_delta)
        value_loss = torch.maximum(loss_v, loss_v_clipped).mean()
        value_clip_ratio = (loss_v_clipped > loss_v).float().mean()
    total = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy_mean
    if not train_actor:
        total = config.value_coef * value_loss
    return LossTerms(
        total, policy_loss, value_loss, entropy_mean, approx_kl, clipfrac, value_clip_ratio
    )


# -------------------------------------------------------------------------------- the update
@dataclass
class Batch:
    """Flat training samples (only valid, kept steps), on the CPU."""

    obs: Observation
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor | None
    values: torch.Tensor | None
    extras: dict[str, torch.Tensor]

    @property
    def size(self) -> int:
        return self.actions.shape[0]


def make_optimizer(policy: ActorCriticPolicy, config: AlgorithmConfig) -> torch.optim.Optimizer:
    """Adam with the value net (parameters named ``value*``/``critic*``) at ``value_lr``."""
    value_params, policy_params = [], []
    for name, param in policy.named_parameters():
        if not param.requires_grad:
            continue
        is_value = any(part.startswith(("value", "critic")) for part in name.split("."))
        (value_params if is_value else policy_params).append(param)
    groups = [{"params": policy_params, "lr": config.lr, "name": "actor"}]
    if value_params:
        groups.append({"params": value_params, "lr": config.value_lr, "name": "critic"})
    return torch.optim.AdamW(groups, eps=1e-5, weight_decay=config.weight_decay)


def _to(x, device):
    from trainers.rollout import obs_to_device

    return obs_to_device(x, device)


def update(
    policy: ActorCriticPolicy,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    config: AlgorithmConfig,
    device: torch.device,
    *,
    use_value: bool,
    train_actor: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """``update_epochs`` passes over the batch in shuffled global batches of micro-batches.

    With ``train_actor=False`` only the value loss is minimised (critic warm-up)."""
    sums: dict[str, float] = {}
    count = 0
    grad_norms: dict[str, list[float]] = {}
    policy.train()
    start = time.perf_counter()
    for _ in range(config.update_epochs):
        order = torch.randperm(batch.size, generator=generator)
        for g_start in range(0, batch.size, config.global_batch_size):
            global_index = order[g_start : g_start + config.global_batch_size]
            optimizer.zero_grad(set_to_none=True)
            for m_start in range(0, len(global_index), config.micro_batch_size):
                index = global_index[m_start : m_start + config.micro_batch_size]
                terms = _micro_batch_loss(
                    policy, batch, index, config, device, use_value, train_actor
                )
                (terms.total * (len(index) / len(global_index))).backward()
                for name in ("policy", "value", "entropy", "approx_kl", "clipfrac"):
                    sums[name] = sums.get(name, 0.0) + float(getattr(terms, name).detach()) * len(
                        index
                    )
                sums["value_clip_ratio"] = sums.get("value_clip_ratio", 0.0) + float(
                    terms.value_clip_ratio.detach()
                ) * len(index)
                count += len(index)
            # Each parameter group (actor, critic) is clipped on its own: with one joint norm,
            # a large value loss (the minibatches holding the rare high-return episodes) would
            # shrink exactly those minibatches' policy gradient, so the actor would learn from
            # the failures and hardly from the successes.
            for group in optimizer.param_groups:
                norm = torch.nn.utils.clip_grad_norm_(group["params"], config.max_grad_norm)
                grad_norms.setdefault(group.get("name", "actor"), []).append(float(norm))
            optimizer.step()
    metrics = {
        "actor/loss": sums["policy"] / count,
        "actor/entropy_loss": sums["entropy"] / count,
        "actor/approx_kl": sums["approx_kl"] / count,
        "actor/pg_clipfrac": sums["clipfrac"] / count,
        "actor/grad_norm": float(np.mean(grad_norms["actor"])),
        "actor/lr": optimizer.param_groups[0]["lr"],
        "time/update": time.perf_counter() - start,
    }
    if "critic" in grad_norms:
        metrics["critic/grad_norm"] = float(np.mean(grad_norms["critic"]))
    if use_value:
        metrics["actor/value_loss"] = sums["value"] / count
        metrics["actor/value_clip_ratio"] = sums["value_clip_ratio"] / count
    return metrics


def _micro_batch_loss(
    policy, batch, index, config, device, use_value, train_actor=True
) -> LossTerms:
    obs = _to(index_obs(batch.obs, index), device)
    actions = batch.actions[index].to(device)
    extras = {key: value[index].to(device) for key, value in batch.extras.items()}
    out = policy.evaluate(obs, actions, extras)
    return ppo_loss(
        log_prob=out.log_prob,
        old_log_prob=batch.log_probs[index].to(device),
        advantages=batch.advantages[index].to(device),
        entropy=out.entropy,
        values=out.value if use_value else None,
        old_values=batch.values[index].to(device) if use_value else None,
        returns=batch.returns[index].to(device) if use_value else None,
        config=config,
        train_actor=train_actor,
    )


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) (nan when the returns are constant)."""
    var_returns = returns.var()
    if values.numel() < 2 or var_returns == 0:
        return float("nan")
    return float(1.0 - (returns - values).var() / var_returns)
