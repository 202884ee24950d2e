"""benchmarks/learning_libero.py end to end at tiny sizes: the result's structure and resuming."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DIR

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import learning_libero  # noqa: E402

ASSETS = SHARED_DIR / "assets" / "libero"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("libero") is None or not ASSETS.is_dir(),
    reason=f"hf-libero or the offline LIBERO asset pack ({ASSETS}) is missing",
)


def tiny_args(tmp_path: Path) -> list[str]:
    return [
        *("--work", str(tmp_path / "work"), "--results-dir", str(tmp_path / "results")),
        *("--libero-assets", str(ASSETS), "--seeds", "0", "--name", "learning_libero_tiny"),
        *("--demos", "3", "--demo-max-steps", "130", "--sft-steps", "2"),
        *("--sft-batch-size", "4", "--rl-iterations", "1", "--eval-episodes", "3"),
        # one GRPO group of 2 envs, 2 chunks per episode
        "env.num_envs=2",
        "env.max_steps=20",
        "algorithm.group_size=2",
        "algorithm.filter_groups=false",
        "algorithm.global_batch_size=4",
        "algorithm.micro_batch_size=4",
    ]


def test_pipeline_writes_the_result_and_a_second_run_skips_finished_stages(tmp_path, capsys):
    learning_libero.main(tiny_args(tmp_path))
    seed = tmp_path / "work" / "seed0"
    state = json.loads((seed / "state.json").read_text())
    assert state["demos"]["episodes"] == 3 and 0 < state["demos"]["expert_success"] <= 1
    assert state["sft"]["steps"] == 2 and state["sft"]["episodes"] >= 1
    for key in ("sft_eval", "rl_eval"):
        # the 3 held-out trials: one per task
        assert state[key]["episodes"] == 3
        assert set(state[key]["per_task"]) == {"0", "1", "2"}
    assert state["rl_eval"]["iterations"] == 1 and len(state["rl_curve"]) == 1
    result = json.loads((tmp_path / "results" / "learning_libero_tiny.json").read_text())
    assert result["seeds"] == [0] and result["metric"] == "gain"
    values = result["per_seed"]["0"]
    assert values["gain"] == pytest.approx(values["RL success (%)"] - values["SFT success (%)"])
    for task in "012":
        assert {f"task {task} SFT (%)", f"task {task} RL (%)"} <= set(values)
    assert values["RL env s/iteration"] > 0 and values["SFT s/step"] > 0

    outputs = [seed / "demos" / "episodes.jsonl", seed / "sft" / "latest.pt"]
    outputs.append(seed / "rl" / "checkpoints" / "latest.pt")
    stamps = [path.stat().st_mtime_ns for path in outputs]
    capsys.readouterr()
    learning_libero.main(tiny_args(tmp_path))
    printed = capsys.readouterr().out
    assert "sft step" not in printed and "rl iter" not in printed
    assert [path.stat().st_mtime_ns for path in outputs] == stamps
    again = json.loads((seed / "state.json").read_text())
    assert {k: again[k] for k in ("demos", "sft", "sft_eval", "rl_eval", "rl_curve")} == {
        k: state[k] for k in ("demos", "sft", "sft_eval", "rl_eval", "rl_curve")
    }
