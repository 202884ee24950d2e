"""benchmarks/learning_flow.py and learning_token.py at tiny sizes: two training seeds, their
result file (per-seed values, mean, sample std) and resumption with a larger budget."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _learning_stages as stages  # noqa: E402
import learning_flow  # noqa: E402
import learning_token  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "--demos", "2", "--sft-steps", "2", "--eval-episodes", "2", "--num-envs", "2",
    "--backend", "sync",
]  # fmt: skip
TINY_OVERRIDES = [
    "env.max_steps=10", "algorithm.global_batch_size=4", "algorithm.micro_batch_size=2",
    "runner.max_iterations=2",
]  # fmt: skip
SCRIPTS = {  # module, its own flags, its own config overrides
    "flow": (
        learning_flow,
        ["--config", "flow_panda_state_ppo_cpu", "--overhead-repeats", "1"],
        ["algorithm.critic_warmup_iterations=0"],
    ),
    "token": (learning_token, ["--speed-repeats", "1"], []),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_two_seeds_write_one_result_and_a_larger_budget_continues(tmp_path, script) -> None:
    module, flags, overrides = SCRIPTS[script]

    def run(*extra: str) -> dict[int, dict]:
        work, results = tmp_path / "work", tmp_path / "results"
        paths = ["--work", str(work), "--results-dir", str(results), "--name", "tiny"]
        return module.main([*paths, *TINY, *flags, *extra, *TINY_OVERRIDES, *overrides])

    states = run("--seeds", "0", "1", "--rl-iterations", "1")
    assert sorted(states) == [0, 1]
    for state in states.values():
        assert state["rl_eval"]["iterations"] == 1 and state["rl_eval"]["episodes"] == 2
        assert 0.0 <= state["sft_eval"]["success"] <= 1.0
    # the seeds differ in training: their demos come from different env seeds
    demos = [np.load(next((tmp_path / f"work/seed{s}/demos").glob("*.npz"))) for s in (0, 1)]
    assert not np.array_equal(demos[0]["state"], demos[1]["state"])

    result = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert set(result["per_seed"]) == {"0", "1"} and result["metric"] == "gain"
    gains = [result["per_seed"][s]["gain"] for s in ("0", "1")]
    assert result["mean"]["gain"] == pytest.approx(np.mean(gains))
    assert result["std"]["gain"] == pytest.approx(np.std(gains, ddof=1))

    # again with a larger budget: the finished demos and SFT are kept, RL continues from its
    # checkpoint for one more iteration
    sft_weights = (tmp_path / "work/seed0/sft/latest.pt").read_bytes()
    again = run("--seeds", "0", "--rl-iterations", "2")
    assert again[0]["rl_eval"]["iterations"] == 2
    assert again[0]["sft_eval"] == states[0]["sft_eval"]
    assert (tmp_path / "work/seed0/sft/latest.pt").read_bytes() == sft_weights


def test_a_finished_seed_is_kept_and_reused_without_its_work_folder(tmp_path) -> None:
    """A seed finished in another launch (its work folder gone, e.g. on another machine) is
    taken from the results folder when the arguments match, and run again when they differ."""
    runs = []

    def run_seed(args: argparse.Namespace) -> dict:
        runs.append(args.seed)
        work, state_path, state = stages.open_seed(args)
        state["rl_eval"] = {"success": args.seed / 10, "iterations": args.rl_iterations}
        stages.save_state(state_path, state)
        return state

    def launch(seeds: list[int], iterations: int = 3) -> dict[int, dict]:
        args = argparse.Namespace(
            work=str(tmp_path / "runs" / "job"), results_dir=str(tmp_path / "results"),
            seeds=seeds, report_only=False, rl_iterations=iterations, overrides=["a=1"],
        )  # fmt: skip
        return stages.run_seeds(args, run_seed)

    first = launch([0, 1])
    kept = json.loads((tmp_path / "results/raw/seeds/job/seed1.json").read_text())
    assert kept["state"] == first[1] and kept["arguments"]["rl_iterations"] == 3
    assert len(kept["commit"]) >= 7

    for seed in (0, 1):
        (tmp_path / f"runs/job/seed{seed}/state.json").unlink()
    again = launch([0, 1, 2])
    assert again[0] == first[0] and again[1] == first[1]
    assert runs == [0, 1, 2]  # only the new seed ran

    other = launch([0], iterations=4)  # another budget: not the kept run
    assert runs == [0, 1, 2, 0] and other[0]["rl_eval"]["iterations"] == 4
