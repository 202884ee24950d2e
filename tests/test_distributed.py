"""Data-parallel learners (``trainers/distributed.py``) on 2 CPU ranks over gloo: the update
of R ranks equals one process's, ranks stay bit-identical, a torchrun run resumes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainers import checkpoint, distributed
from trainers.algorithms import PPO, update
from trainers.algorithms.base import Batch
from trainers.algorithms.ppo import PPOConfig
from trainers.config import load_config
from trainers.schema import ConfigError
from trainers.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
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


def _update_rank(rank: int, out: Path) -> None:
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
    torch.save(
        {
            "updates": results,
            "normalized": update.normalize(values[rank::2], valid[rank::2]),
            "normalizer": normalizer.state_dict(),
        },
        out / f"rank{rank}.pt",
    )


def _normalizer():
    from trainers.policies.mlp import RunningNormalizer

    return RunningNormalizer(3, clip=10.0)


@pytest.fixture(scope="module")
def update_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("update")
    spawn(_update_rank, out)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


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
def _train_rank(rank: int, log_dir: Path, out: Path) -> None:
    config = load_config(CONFIG, [*TINY, f"runner.log_dir={log_dir}"], smoke=True)
    trainer = Trainer(config)
    seeds = []
    collect = trainer.collector.collect
    trainer.collector.collect = lambda policy, s: seeds.append(s) or collect(policy, s)
    trainer.train()
    state = {"policy": trainer.policy.state_dict(), "seeds": seeds, "env_steps": trainer.env_steps}
    torch.save(state, out / f"rank{rank}.pt")


def test_two_rank_run_stays_identical_and_resumes_with_torchrun(tmp_path):
    out = tmp_path / "ranks"
    out.mkdir()
    spawn(_train_rank, tmp_path, out)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name, value in ranks[0]["policy"].items():  # normaliser statistics included
        assert torch.equal(value, ranks[1]["policy"][name]), name
    # rank r's envs get the seeds one process gives envs 2r, 2r + 1 (of 4)
    config = load_config(CONFIG, [*TINY, f"runner.log_dir={tmp_path}"], smoke=True)
    for iteration in range(2):
        base = config.runner.seed * 1_000_003 + iteration * 4
        one_process = PPO(config.algorithm).reset_seeds(base, 4)
        assert ranks[0]["seeds"][iteration] == one_process[:2]
        assert ranks[1]["seeds"][iteration] == one_process[2:]
    latest = tmp_path / CONFIG / "checkpoints" / checkpoint.LATEST
    state = checkpoint.load(latest)
    assert state["iteration"] == 2 and state["world_size"] == 2
    assert state["env_steps"] == ranks[0]["env_steps"] == ranks[1]["env_steps"]
    assert not torch.equal(state["rank_rng"][0]["torch"], state["rank_rng"][1]["torch"])
    for name, value in ranks[0]["policy"].items():
        assert torch.equal(state["policy"][name], value), name

    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        *("-m", "trainers", "train", "--config", CONFIG, "--smoke", *TINY),
        *(f"runner.log_dir={tmp_path}", "runner.max_iterations=3", "--resume"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "from iteration 2, 2 ranks" in result.stdout
    resumed = checkpoint.load(latest)
    assert resumed["iteration"] == 3 and resumed["env_steps"] > state["env_steps"]

    # one rank cannot continue a 2-rank run
    with pytest.raises(checkpoint.CheckpointError, match="with 2 rank"):
        Trainer(config, resume=True)


# ------------------------------------------------------------------------ config checks
def as_rank(monkeypatch, rank: int, ranks: int) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: ranks)
    monkeypatch.setattr(distributed, "rank", lambda: rank)


def test_envs_split_evenly_over_the_ranks(monkeypatch):
    as_rank(monkeypatch, 1, 2)
    assert distributed.rank_envs(8) == (4, 4)
    with pytest.raises(ConfigError, match=r"env.num_envs \(5\).*number of ranks \(2\)"):
        distributed.rank_envs(5)


def test_grpo_groups_never_straddle_ranks(monkeypatch):
    as_rank(monkeypatch, 0, 2)
    grpo = ["env.num_envs=8", "rollout.pipeline_stage_num=1"]
    config = load_config("flow_panda_vision_grpo_cpu", [*grpo, "algorithm.group_size=4"])
    distributed.check_rank_setup(config, 4)
    config = load_config("flow_panda_vision_grpo_cpu", [*grpo, "algorithm.group_size=8"])
    with pytest.raises(ConfigError, match=r"each rank runs 4 of env.num_envs \(8\).*group_size"):
        distributed.check_rank_setup(config, 4)


def test_each_rank_gets_its_own_copy_of_the_gpu_layout():
    layout = {"env": "cpu", "rollout": "1", "actor": "cuda:0"}
    assert distributed.rank_placement(layout, 0, 2) == layout
    assert distributed.rank_placement(layout, 1, 2) == {"env": "cpu", "rollout": "3", "actor": "2"}
    cpu = {"env": "cpu", "rollout": "cpu", "actor": "cpu"}
    assert distributed.rank_placement(cpu, 3, 4) == cpu
    with pytest.raises(ConfigError, match="'all' is ambiguous"):
        distributed.rank_placement({"env": "all"}, 0, 2)
