"""The part every algorithm shares: the flat training batch and the clipped-surrogate update.

Loss terms: ratio clipped to ``[1 - clip_low, 1 + clip_high]`` taking the pessimistic surrogate;
entropy bonus; an algorithm with a critic adds its value loss (:meth:`Algorithm.loss`). Log-probs
come per action element; "chunk" level sums them into one ratio per policy step, "token" level
keeps one ratio per element (the step's advantage broadcast to its elements).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from trainers import distributed
from trainers.algorithms.base import (
    Algorithm,
    AlgorithmConfig,
    Batch,
    LossTerms,
    bootstrap_truncated,
)
from trainers.policies.base import ActorCriticPolicy, Observation
from trainers.rollout import Rollout, concat_obs, flatten_obs, index_obs, obs_to_device


def _flat(parts: list[torch.Tensor]) -> torch.Tensor:
    """``(T, N, ...)`` tensors of several rollouts -> one ``(sum T * N, ...)`` tensor."""
    return torch.cat([part.reshape(-1, *part.shape[2:]) for part in parts])


def make_batch(rollouts: list[Rollout], algorithm: Algorithm) -> tuple[Batch, dict[str, float]]:
    """The algorithm's advantages over ``rollouts``, flattened to the masked steps."""
    config = algorithm.config
    results = [algorithm.advantages(rollout) for rollout in rollouts]
    metrics: dict[str, float] = {}
    for result in results:
        metrics.update(result.metrics)
    advantages = torch.cat([r.advantages.reshape(-1) for r in results])
    mask = torch.cat([r.mask.reshape(-1) for r in results])
    returns = torch.cat([r.returns.reshape(-1) for r in results]) if algorithm.uses_value else None
    values = torch.cat([r.values.reshape(-1) for r in rollouts])
    valid = torch.cat([r.valid.reshape(-1) for r in rollouts])
    rewards = torch.cat([bootstrap_truncated(r, config.gamma).reshape(-1) for r in rollouts])
    if config.normalize_advantages:
        advantages = normalize(advantages, mask)
    index = torch.nonzero(mask).squeeze(-1)
    obs = concat_obs([flatten_obs(r.obs) for r in rollouts], dim=0)
    extras = {key: _flat([r.extras[key] for r in rollouts]) for key in rollouts[0].extras}
    batch = Batch(
        obs=index_obs(obs, index),
        actions=_flat([r.actions for r in rollouts])[index],
        log_probs=_flat([r.log_probs for r in rollouts])[index],
        advantages=advantages[index],
        returns=returns[index] if returns is not None else None,
        values=values[index] if algorithm.uses_value else None,
        extras={key: value[index] for key, value in extras.items()},
    )
    selected = advantages[mask]
    metrics.update(
        {
            "rollout/rewards": float(rewards[valid].mean()) if valid.any() else float("nan"),
            "rollout/advantages_mean": float(selected.mean()) if selected.numel() else 0.0,
            "rollout/advantages_max": float(selected.max()) if selected.numel() else 0.0,
            "rollout/advantages_min": float(selected.min()) if selected.numel() else 0.0,
            "rollout/num_samples": float(index.numel()),
        }
    )
    if returns is not None:
        metrics["rollout/returns_mean"] = float(returns[valid].mean())
        metrics["critic/explained_variance"] = explained_variance(values[valid], returns[valid])
    return batch, metrics


def normalize(advantages: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit std over the valid entries of every rank (invalid ones are left at
    zero): R ranks normalise like one process holding all their samples."""
    mean, std, count = distributed.mean_std(advantages[valid])
    if count < 2:
        return torch.where(valid, advantages - mean, 0.0)
    out = (advantages - mean) / (std + eps)
    return torch.where(valid, out, torch.zeros_like(out))


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) (nan when the returns are constant)."""
    var_returns = returns.var()
    if values.numel() < 2 or var_returns == 0:
        return float("nan")
    return float(1.0 - (returns - values).var() / var_returns)


# ---------------------------------------------------------------------------------- the loss
def reduce_level(x: torch.Tensor, level: str) -> torch.Tensor:
    """Per-element ``(B, *action_shape)`` -> ``(B,)`` (chunk: sum) or ``(B, E)`` (token)."""
    flat = x.reshape(x.shape[0], -1)
    return flat.sum(-1) if level == "chunk" else flat


def surrogate_loss(
    *,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    config: AlgorithmConfig,
) -> LossTerms:
    """Clipped surrogate and entropy bonus of one micro-batch; means over its samples (and
    elements at token level). ``value`` and ``value_clip_ratio`` are zero."""
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
    total = policy_loss - config.entropy_coef * entropy_mean
    return LossTerms(total, policy_loss, zero, entropy_mean, approx_kl, clipfrac, zero)


# -------------------------------------------------------------------------------- the update
def make_optimizer(policy: ActorCriticPolicy, config: AlgorithmConfig) -> torch.optim.Optimizer:
    """AdamW with the value net (parameters named ``value*``/``critic*``) at ``value_lr``."""
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


LOGGED_TERMS = ("policy", "value", "entropy", "approx_kl", "clipfrac", "value_clip_ratio")


def update(
    algorithm: Algorithm,
    policy: ActorCriticPolicy,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    device: torch.device,
    *,
    train_actor: bool = True,
    generator: torch.Generator | None = None,
    demos: Iterator[tuple[Observation, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """``update_epochs`` passes over the batch in shuffled global batches of micro-batches.

    With ``train_actor=False`` only the value loss is minimised (critic warm-up). With
    ``config.sft_coef > 0`` every optimiser step that trains the actor also takes one
    ``(obs, actions)`` batch from ``demos`` and adds ``sft_coef`` times the policy's SFT loss.

    Over several ranks ``batch`` is this rank's part of the global batch (the ranks' parts in
    rank order). Every rank draws the same permutation of the global batch from ``generator``
    and takes its own samples of each global minibatch; their losses are weighted by the
    global minibatch size and the gradients summed over the ranks, so R ranks take exactly the
    steps of one process holding the whole batch (up to float rounding).
    """
    config = algorithm.config
    sums = dict.fromkeys(LOGGED_TERMS, 0.0)
    count = 0
    grad_norms: dict[str, list[float]] = {}
    sft_losses: list[float] = []
    clone = train_actor and config.sft_coef > 0
    if clone and demos is None:
        raise ValueError("algorithm.sft_coef > 0 needs demonstration batches (demos)")
    sizes = distributed.all_gather_object(batch.size)
    offset, global_size = sum(sizes[: distributed.rank()]), sum(sizes)
    policy.train()
    start = time.perf_counter()
    for _ in range(config.update_epochs):
        order = torch.randperm(global_size, generator=generator)
        for g_start in range(0, global_size, config.global_batch_size):
            global_index = order[g_start : g_start + config.global_batch_size]
            mine = (global_index >= offset) & (global_index < offset + batch.size)
            local_index = global_index[mine] - offset
            optimizer.zero_grad(set_to_none=True)
            for m_start in range(0, len(local_index), config.micro_batch_size):
                index = local_index[m_start : m_start + config.micro_batch_size]
                micro = batch.select(index, device)
                evaluated = policy.evaluate(micro.obs, micro.actions, micro.extras)
                terms = algorithm.loss(evaluated, micro, train_actor=train_actor)
                (terms.total * (len(index) / len(global_index))).backward()
                for name in LOGGED_TERMS:
                    sums[name] += float(getattr(terms, name).detach()) * len(index)
                count += len(index)
            if clone:
                obs, actions = next(demos)
                sft_loss = policy.sft_loss(obs_to_device(obs, device), actions.to(device))
                # every rank clones its own batch; the summed gradients weigh them as one
                (config.sft_coef * sft_loss / distributed.world_size()).backward()
                sft_losses.append(float(sft_loss.detach()))
            distributed.all_reduce_gradients(policy.parameters())
            # Each parameter group (actor, critic) is clipped on its own: with one joint norm,
            # a large value loss (the minibatches holding the rare high-return episodes) would
            # shrink exactly those minibatches' policy gradient, so the actor would learn from
            # the failures and hardly from the successes.
            for group in optimizer.param_groups:
                norm = torch.nn.utils.clip_grad_norm_(group["params"], config.max_grad_norm)
                grad_norms.setdefault(group.get("name", "actor"), []).append(float(norm))
            optimizer.step()
    # the logged terms: means over every rank's samples
    reduced = distributed.all_reduce_sum(torch.tensor([*sums.values(), count], dtype=torch.float64))
    sums = dict(zip(sums, reduced[:-1].tolist(), strict=True))
    count = reduced[-1].item()
    metrics = {
        "actor/loss": sums["policy"] / count,
        "actor/entropy": sums["entropy"] / count,
        "actor/approx_kl": sums["approx_kl"] / count,
        "actor/pg_clipfrac": sums["clipfrac"] / count,
        "actor/grad_norm": float(np.mean(grad_norms["actor"])),
        "actor/lr": optimizer.param_groups[0]["lr"],
        "time/update": time.perf_counter() - start,
    }
    if sft_losses:
        metrics["actor/sft_loss"] = float(np.mean(sft_losses))
    if "critic" in grad_norms:
        metrics["critic/grad_norm"] = float(np.mean(grad_norms["critic"]))
    if algorithm.uses_value:
        metrics["actor/value_loss"] = sums["value"] / count
        metrics["actor/value_clip_ratio"] = sums["value_clip_ratio"] / count
    return metrics
