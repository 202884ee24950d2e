"""benchmarks/RESULTS.md is rendered from benchmarks/results/*.json, and stays so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import render_results  # noqa: E402
from _results import summarize, write_result  # noqa: E402


def test_committed_report_is_what_the_results_render_to() -> None:
    rendered = render_results.render(BENCHMARKS / "results")
    assert (BENCHMARKS / "RESULTS.md").read_text() == rendered, (
        "benchmarks/RESULTS.md is out of date: run python benchmarks/render_results.py"
    )


def test_summarize_uses_the_sample_standard_deviation() -> None:
    assert summarize([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert summarize([5.0]) == (5.0, None)
    mean, std = summarize([{"a": 1.0, "b": None}, {"a": 3.0, "b": 2.0}])
    assert mean == {"a": 2.0} and std == pytest.approx({"a": 2**0.5})


def write_learning_result(directory: Path) -> Path:
    per_seed = {
        seed: {"SFT success": sft, "RL success": rl, "gain": rl - sft}
        for seed, sft, rl in ((0, 30.0, 70.0), (1, 40.0, 70.0), (2, 35.0, 80.0))
    }
    return write_result(
        "learning_demo",
        title="Demo learning benchmark",
        claim="RL raises held-out success.",
        metric="gain",
        unit="points",
        per_seed=per_seed,
        rows=[{"stage": "SFT", "success": 35.0}, {"stage": "RL", "success": 73.3}],
        starts_from="one SFT checkpoint per seed",
        env_steps=1000,
        wall_seconds=120.0,
        command="python benchmarks/demo.py --seeds 0 1 2",
        directory=directory,
    )


def test_writer_records_per_seed_values_mean_std_and_provenance(tmp_path: Path) -> None:
    result = json.loads(write_learning_result(tmp_path).read_text())
    assert result["seeds"] == [0, 1, 2]
    assert result["per_seed"]["1"] == {"SFT success": 40.0, "RL success": 70.0, "gain": 30.0}
    assert result["mean"]["gain"] == pytest.approx(38.333, abs=1e-3)
    assert result["std"]["gain"] == pytest.approx(7.638, abs=1e-3)  # ddof=1
    assert result["command"] == "python benchmarks/demo.py --seeds 0 1 2"
    for key in ("commit", "date", "machine"):
        assert result[key]


def test_report_shows_claims_sections_and_missing_benchmarks(tmp_path: Path) -> None:
    write_learning_result(tmp_path)
    write_result(
        "speed_demo",
        title="Demo speed benchmark",
        claim="Fast is faster.",
        metric="fast / full",
        unit="x",
        per_seed={"run": 10.72},
        rows=[
            {"setting": "fast", "fps": 16.04},
            {"setting": "full", "fps": 1.496},
            {"size": 128, "fast / full": 10.72},
        ],
        directory=tmp_path,
    )
    text = render_results.render(tmp_path)
    assert text == render_results.render(tmp_path)  # deterministic
    claims = text.split("## Claims")[1].split("\n## ")[0]
    assert "| Demo learning benchmark | +38.3 ± 7.6 points | 0, 1, 2 |" in claims
    assert "| Demo speed benchmark | 10.72x | 1 run |" in claims
    assert claims.index("Demo learning") < claims.index("Demo speed")  # sorted by name
    assert "| mean ± std | 35.0 ± 5.0 | 73.3 ± 5.8 | +38.3 ± 7.6 points |" in text
    assert "| fast | 16.0 |" in text and "| full | 1.50 |" in text
    assert "| 128 | 10.72x |" in text  # a ratio column
    assert "Starts from: one SFT checkpoint per seed" in text
    # every expected benchmark without a result is listed with its command
    missing = text.split("## Benchmarks without a current result")[1]
    for name, command in render_results.EXPECTED.items():
        assert f"| {name} | `{command.replace('|', chr(92) + '|')}` |" in missing


def test_report_renders_without_any_results(tmp_path: Path) -> None:
    text = render_results.render(tmp_path / "missing")
    assert "No result files yet." in text
    assert all(name in text for name in render_results.EXPECTED)


def test_check_fails_on_a_stale_report(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "RESULTS.md"
    args = ["render_results.py", "--results", str(tmp_path), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*args, "--check"])
    assert render_results.main() == 1
    monkeypatch.setattr(sys, "argv", args)
    assert render_results.main() == 0
    monkeypatch.setattr(sys, "argv", [*args, "--check"])
    assert render_results.main() == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert render_results.main() == 1


def test_recorded_command_is_the_one_that_trains(monkeypatch) -> None:
    from _results import command_line

    script = str(BENCHMARKS / "learning_flow.py")
    monkeypatch.setattr(sys, "argv", [script, "--seeds", "0", "1", "--report-only", "a=b c"])
    assert command_line() == "python benchmarks/learning_flow.py --seeds 0 1 'a=b c'"
