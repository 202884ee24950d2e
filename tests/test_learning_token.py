"""benchmarks/learning_token.py at tiny sizes: two seeds, their result file and resumption."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import learning_token  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "--demos", "2", "--sft-steps", "2", "--eval-episodes", "2", "--num-envs", "2",
    "--backend", "sync", "--speed-repeats", "1", "env.max_steps=10",
    "algorithm.global_batch_size=4", "algorithm.micro_batch_size=2", "runner.max_iterations=2",
]  # fmt: skip


def run(tmp_path: Path, *extra: str) -> dict[int, dict]:
    work, results = tmp_path / "work", tmp_path / "results"
    argv = ["--work", str(work), "--results-dir", str(results), "--name", "tiny", *TINY, *extra]
    return learning_token.main(argv)


def test_two_seeds_write_one_result_and_a_larger_budget_continues(tmp_path) -> None:
    states = run(tmp_path, "--seeds", "0", "1", "--rl-iterations", "1")
    assert sorted(states) == [0, 1]
    for state in states.values():
        assert state["rl_eval"]["iterations"] == 1 and state["rl_eval"]["episodes"] == 2
        assert len(state["rl_curve"]) == 1 and 0.0 <= state["sft_eval"]["success"] <= 1.0

    result = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert set(result["per_seed"]) == {"0", "1"} and result["metric"] == "gain"
    gains = [result["per_seed"][s]["gain"] for s in ("0", "1")]
    assert result["mean"]["gain"] == pytest.approx(np.mean(gains))
    assert result["std"]["gain"] == pytest.approx(np.std(gains, ddof=1))

    # again with a larger budget: SFT is kept, RL continues from its checkpoint
    sft_weights = (tmp_path / "work/seed0/sft/latest.pt").read_bytes()
    again = run(tmp_path, "--seeds", "0", "--rl-iterations", "2")
    assert again[0]["rl_eval"]["iterations"] == 2 and len(again[0]["rl_curve"]) == 2
    assert again[0]["sft_eval"] == states[0]["sft_eval"]
    assert (tmp_path / "work/seed0/sft/latest.pt").read_bytes() == sft_weights
