"""Data-parallel learners (``trainers/distributed.py``) on 2 CPU ranks over gloo: the update
of R ranks equals one process's, ranks stay bit-identical, a torchrun run resumes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainers import checkpoint, distributed
from trainers.algorithms import PPO, update
from trainers.algorithms.base import Batch
from trainers.algorithms.ppo import PPOConfig
from trainers.config import load_config, validate_ranks
from trainers.schema import ConfigError
from trainers.train import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = "panda_pick_cube_ppo_mlp_cpu"
TINY = [
    "env.num_envs=4",
    "env.backend=sync",
    "runner.torch_threads=1",
    "policy.hidden_sizes=[16]",
    "policy.value_hidden_sizes=[16]",
]
# an update of several minibatches of several micro-batches, over two epochs
UPDATE = PPOConfig(update_epochs=2, global_batch_size=8, micro_batch_size=2)
SPLITS = [(8, 8), (13, 3), (16, 0)]  # per-rank samples of one 16-sample global batch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(fn, *args) -> None:
    """``fn(rank, *args)`` on 2 ranks of a gloo process group."""
    mp.spawn(_run_rank, args=(2, free_port(), fn, args), nprocs=2)


def _run_rank(rank: int, ranks: int, port: int, fn, args) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(ranks),
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------ the update function
def tiny_policy_and_batch(size: int):
    """A tiny MLP (torch seed 0) and a fixed synthetic PPO batch of ``size`` samples."""
    import gymnasium as gym
    import numpy as np

    from trainers.policies.mlp import MLPConfig, MLPPolicy

    torch.manual_seed(0)
    box = lambda n: gym.spaces.Box(-1, 1, (n,), np.float32)  # noqa: E731
    config = MLPConfig(hidden_sizes=[16], value_hidden_sizes=[16], normalize_obs=False)
    policy = MLPPolicy(config, box(3), box(2))
    obs = torch.randn(size, 3)
    with torch.no_grad():
        out = policy.act(obs)
    batch = Batch(
        obs=obs,
        actions=out.actions,
        log_probs=out.log_prob,
        advantages=torch.randn(size),
        returns=out.value + torch.randn(size),
        values=out.value,
        extras=out.extras,
    )
    return policy, batch


def run_update(policy, batch) -> dict[str, float]:
    optimizer = update.make_optimizer(policy, UPDATE)
    generator = torch.Generator().manual_seed(7)  # shared by the ranks
    return update.update(
        PPO(UPDATE), policy, optimizer, batch, torch.device("cpu"), generator=generator
    )


def shard(batch: Batch, start: int, size: int) -> Batch:
    return batch.select(torch.arange(start, start + size), torch.device("cpu"))


def _rank_work(rank: int, out: Path) -> None:
    """Everything the tests check on 2 ranks, in one launch (starting ranks is the slow part)."""
    results = []
    for sizes in SPLITS:
        policy, batch = tiny_policy_and_batch(sum(sizes))
        metrics = run_update(policy, shard(batch, sum(sizes[:rank]), sizes[rank]))
        results.append({"weights": policy.state_dict(), "metrics": metrics})
    # global advantage normalisation and observation statistics of this rank's part
    values = torch.randn(20, generator=torch.Generator().manual_seed(3))
    valid = torch.arange(20) % 3 != 0
    normalizer = _normalizer()
    normalizer.update(torch.randn(20, 3, generator=torch.Generator().manual_seed(4))[rank::2])
    # a 2-iteration smoke run, then resumed for a third iteration
    runs = []
    for overrides, resume in (([], False), (["runner.max_iterations=3"], True)):
        config = load_config(CONFIG, [*TINY, f"runner.log_dir={out}", *overrides], smoke=True)
        trainer = Trainer(config, resume=resume)
        seeds: list[list[int]] = []
        trainer.collector.collect = record_seeds(trainer.collector.collect, seeds)
        start = trainer.iteration
        trainer.train()
        state = trainer.state_dict()
        runs.append({"start": start, "seeds": seeds, **state})
    torch.save(
        {
            "updates": results,
            "normalized": update.normalize(values[rank::2], valid[rank::2]),
            "normalizer": normalizer.state_dict(),
            "runs": runs,
        },
        out / f"rank{rank}.pt",
    )


def record_seeds(collect, seeds: list[list[int]]):
    """``collect`` that appends the reset seeds of every rollout to ``seeds``."""

    def recording(policy, rollout_seeds):
        seeds.append(rollout_seeds)
        return collect(policy, rollout_seeds)

    return recording


def _normalizer():
    from trainers.policies.mlp import RunningNormalizer

    return RunningNormalizer(3, clip=10.0)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    spawn(_rank_work, out)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture
def update_ranks(two_ranks):
    return two_ranks[1]


def test_ranks_hold_bit_identical_weights_after_an_update(update_ranks):
    for split, (first, second) in enumerate(
        zip(*[r["updates"] for r in update_ranks], strict=True)
    ):
        for name, weight in first["weights"].items():
            assert torch.equal(weight, second["weights"][name]), (SPLITS[split], name)
        assert first["metrics"]["actor/grad_norm"] == second["metrics"]["actor/grad_norm"]


@pytest.mark.parametrize("split", range(len(SPLITS)))
def test_two_ranks_with_part_of_the_batch_each_equal_one_rank_with_the_whole(update_ranks, split):
    policy, batch = tiny_policy_and_batch(sum(SPLITS[split]))
    initial = {name: value.clone() for name, value in policy.state_dict().items()}
    metrics = run_update(policy, batch)
    ranked = update_ranks[0]["updates"][split]
    for name, weight in policy.state_dict().items():
        assert not torch.equal(weight, initial[name]), name  # the update moved every weight
        torch.testing.assert_close(ranked["weights"][name], weight, rtol=1e-5, atol=1e-6)
    for key in ("actor/loss", "actor/value_loss", "actor/approx_kl", "actor/grad_norm"):
        assert ranked["metrics"][key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-7), key


def test_advantage_normalisation_and_observation_statistics_are_global(update_ranks):
    values = torch.randn(20, generator=torch.Generator().manual_seed(3))
    valid = torch.arange(20) % 3 != 0
    whole = update.normalize(values, valid)
    torch.testing.assert_close(update_ranks[0]["normalized"], whole[0::2])
    torch.testing.assert_close(update_ranks[1]["normalized"], whole[1::2])
    normalizer = _normalizer()
    obs = torch.randn(20, 3, generator=torch.Generator().manual_seed(4))
    normalizer.update(torch.cat([obs[0::2], obs[1::2]]))
    for rank in update_ranks:
        for name, value in normalizer.state_dict().items():
            torch.testing.assert_close(rank["normalizer"][name], value)


# ------------------------------------------------------------------------------ the trainer
def test_a_two_rank_run_keeps_the_ranks_identical_and_splits_the_env_seeds(two_ranks):
    log_dir, ranks = two_ranks
    config = load_config(CONFIG, [*TINY, f"runner.log_dir={log_dir}"], smoke=True)
    for first, second in zip(ranks[0]["runs"], ranks[1]["runs"], strict=True):
        for name, value in first["policy"].items():  # normaliser statistics included
            assert torch.equal(value, second["policy"][name]), name
        assert first["env_steps"] == second["env_steps"] > 0  # the global count
        assert not torch.equal(first["rng"]["torch"], second["rng"]["torch"])
        # rank r's envs get the seeds one process gives envs 2r, 2r + 1 (of 4)
        for iteration, (seeds0, seeds1) in enumerate(
            zip(first["seeds"], second["seeds"], strict=True), start=first["start"]
        ):
            base = config.runner.seed * 1_000_003 + iteration * 4
            one_process = PPO(config.algorithm).reset_seeds(base, 4)
            assert (seeds0, seeds1) == (one_process[:2], one_process[2:])


def test_a_two_rank_run_resumes_on_two_ranks_only(two_ranks):
    log_dir, ranks = two_ranks
    fresh, resumed = ranks[1]["runs"]
    assert (fresh["iteration"], resumed["start"], resumed["iteration"]) == (2, 2, 3)
    state = checkpoint.load(log_dir / CONFIG / "checkpoints" / checkpoint.LATEST)
    assert state["iteration"] == 3 and state["world_size"] == 2
    assert state["env_steps"] == resumed["env_steps"] > fresh["env_steps"]
    for name, value in resumed["policy"].items():  # rank 0 wrote what rank 1 holds
        assert torch.equal(state["policy"][name], value), name
    iteration_2 = checkpoint.load(log_dir / CONFIG / "checkpoints" / checkpoint.numbered_name(2))
    for rank, rank_rng in enumerate(iteration_2["rank_rng"]):  # each rank's own streams
        assert torch.equal(rank_rng["torch"], ranks[rank]["runs"][0]["rng"]["torch"])
    # one process cannot continue a 2-rank run
    config = load_config(CONFIG, [*TINY, f"runner.log_dir={log_dir}"], smoke=True)
    with pytest.raises(checkpoint.CheckpointError, match="with 2 rank"):
        Trainer(config, resume=True)


# ------------------------------------------------------------------------ config checks
def test_envs_split_evenly_over_the_ranks(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.rank_envs(8) == (4, 4)
    config = load_config(CONFIG, ["env.num_envs=6"])
    validate_ranks(config, 2)
    with pytest.raises(ConfigError, match=r"env.num_envs \(6\).*number of ranks \(4\)"):
        validate_ranks(config, 4)


def test_grpo_groups_never_straddle_ranks():
    grpo = ["env.num_envs=8", "rollout.pipeline_stage_num=1"]
    config = load_config("flow_panda_vision_grpo_cpu", [*grpo, "algorithm.group_size=4"])
    validate_ranks(config, 2)
    config = load_config("flow_panda_vision_grpo_cpu", [*grpo, "algorithm.group_size=8"])
    with pytest.raises(ConfigError, match=r"each rank runs 4 of env.num_envs \(8\).*group_size"):
        validate_ranks(config, 2)


def test_each_rank_gets_its_own_copy_of_the_gpu_layout():
    layout = {"env": "cpu", "rollout": "1", "actor": "cuda:0"}
    assert distributed.rank_placement(layout, 0, 2) == layout
    assert distributed.rank_placement(layout, 1, 2) == {"env": "cpu", "rollout": "3", "actor": "2"}
    cpu = {"env": "cpu", "rollout": "cpu", "actor": "cpu"}
    assert distributed.rank_placement(cpu, 3, 4) == cpu
    with pytest.raises(ConfigError, match="'all' is ambiguous"):
        distributed.rank_placement({"env": "all"}, 0, 2)
