"""Data-parallel learners over ``torch.distributed``: one process (rank) per learner.

``torchrun --nproc-per-node R -m trainers train --config NAME`` starts ``R`` ranks (multi-node:
torchrun's rendezvous, ``docs/distributed.md``). Every rank holds the whole policy and collects
its own share of ``env.num_envs``; the update sums the gradients over the ranks before clipping
and the optimiser step, so all ranks keep bit-identical weights. Rank 0 alone evaluates, logs
and writes checkpoints.

Every helper here is a no-op (or the plain single-process computation) without a process group,
so the single-process trainer runs the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

import torch
import torch.distributed as dist

from trainers.placement import parse_devices
from trainers.schema import ConfigError

# The torch/NumPy/Python RNGs of rank r start from runner.seed + r * RANK_SEED_STRIDE: ranks draw
# different action noise (rank 0 draws what a single process would).
RANK_SEED_STRIDE = 1_000_000


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_ranks() -> int:
    """The number of ranks torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This rank's index on its node (torchrun's ``LOCAL_RANK``)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(device: torch.device) -> None:
    """Join torchrun's process group (from its environment variables) when it started several
    ranks: gloo for CPU tensors, NCCL for GPU tensors when ``device`` (the actor's) is a GPU."""
    if dist.is_initialized() or launched_ranks() <= 1:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------- placement, envs
def rank_placement(placement: Mapping[str, str], local: int, ranks: int) -> dict[str, str]:
    """The ``cluster.component_placement`` of local rank ``local``: each rank on a node gets its
    own copy of the config's GPU layout, shifted by ``local`` x the layout's GPU count (a config
    with every component on GPU 0 puts local rank ``l`` on GPU ``l``)."""
    if ranks > 1 and any(str(spec).strip().lower() == "all" for spec in placement.values()):
        raise ConfigError(
            "cluster.component_placement: 'all' is ambiguous with several ranks; give the GPU "
            "indices of one rank's layout (each rank gets its own copy)"
        )
    parsed = {name: parse_devices(spec) for name, spec in placement.items()}
    indices = [int(d.split(":")[1]) for ds in parsed.values() for d in ds if d != "cpu"]
    if local == 0 or not indices:
        return dict(placement)
    shift = local * (max(indices) + 1)
    return {
        name: "cpu" if ds == ["cpu"] else ",".join(str(int(d.split(":")[1]) + shift) for d in ds)
        for name, ds in parsed.items()
    }


def rank_envs(num_envs: int) -> tuple[int, int]:
    """``(first env, env count)`` of this rank's even share of ``env.num_envs`` (checked by
    ``config.validate_ranks``)."""
    share = num_envs // world_size()
    return rank() * share, share


def rank_seed(seed: int) -> int:
    return seed + rank() * RANK_SEED_STRIDE


# ---------------------------------------------------------------------------- collectives
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over the ranks (a new tensor; ``tensor`` itself
    without a process group)."""
    if world_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum the gradients over the ranks. A parameter no rank has a gradient for keeps ``None``
    (the optimiser skips it, as in one process); a rank without one (no samples of its own in
    the minibatch) contributes zeros."""
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    has_grad = all_reduce_sum(has_grad)
    works = []
    for param, anywhere in zip(params, has_grad.tolist(), strict=True):
        if not anywhere:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        works.append(dist.all_reduce(param.grad, async_op=True))
    for work in works:
        work.wait()


def total(count: int) -> int:
    """The sum of an integer over the ranks."""
    return int(all_reduce_sum(torch.tensor([count], dtype=torch.int64)).item())


def mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean, sample std and count of the entries of ``x`` on all ranks (std is 0 below two
    entries, mean is 0 without any). Two passes in float64 over the ranks' partial sums."""
    if world_size() == 1:
        count = x.numel()
        mean = x.mean() if count else x.new_zeros(())
        return mean, x.std() if count >= 2 else x.new_zeros(()), count
    x64 = x.detach().double().reshape(-1)
    sums = all_reduce_sum(torch.stack([x64.sum(), x64.new_tensor(x64.numel())]))
    count = int(sums[1].item())
    mean = sums[0] / max(count, 1)
    squares = all_reduce_sum((x64 - mean).square().sum())
    std = (squares / (count - 1)).sqrt() if count >= 2 else x64.new_zeros(())
    return mean.to(x.dtype), std.to(x.dtype), count


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean, population variance (over dim 0) and row count of ``x`` on all ranks."""
    if world_size() == 1:
        return x.mean(0), x.var(0, unbiased=False), x.shape[0]
    n = x.new_full((1, *x.shape[1:]), float(x.shape[0]))
    sums = all_reduce_sum(torch.cat([x.sum(0, keepdim=True), n]))
    count = int(sums[1].reshape(-1)[0].item())
    mean = sums[0] / count
    var = all_reduce_sum((x - mean).square().sum(0)) / count
    return mean, var, count


# ------------------------------------------------------------------ what rank 0 logs
SUMMED_METRICS = ("rollout/num_samples", "rollout/num_groups")


class Mergeable(Protocol):
    def merge(self, other: Any) -> None: ...


M = TypeVar("M", bound=Mergeable)


def gather_stats(stats: M) -> M:
    """Every rank's ``stats`` (e.g. ``EpisodeStats``: episodes, env steps) merged, on every
    rank."""
    merged = type(stats)()
    for part in all_gather_object(stats):
        merged.merge(part)
    return merged


def reduce_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Per-rank rollout metrics combined: counts summed, ``*_max``/``*_min`` extremes, the
    mean over the ranks otherwise."""
    if world_size() == 1:
        return metrics
    parts = all_gather_object(metrics)
    combined = {}
    for key in metrics:
        values = [part[key] for part in parts]
        if key in SUMMED_METRICS:
            combined[key] = float(sum(values))
        elif key.endswith("_max"):
            combined[key] = max(values)
        elif key.endswith("_min"):
            combined[key] = min(values)
        else:
            combined[key] = sum(values) / len(values)
    return combined
