"""benchmarks/learning_panda.py's launcher: at most --jobs runs at once, finished runs kept in
the results folder and restored on a machine without their logs, the result file."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import learning_panda  # noqa: E402


def test_runs_are_limited_to_jobs_kept_and_restored(tmp_path, monkeypatch):
    out, results = tmp_path / "runs", tmp_path / "results"
    launched, running, peak = [], [0], [0]
    lock = threading.Lock()

    def fake_worker(command: list[str]) -> int:
        """Stands in for a worker process: logs an evaluation at 0 and at the budget."""
        algo, seed = command[command.index("--worker") + 1].split(":")
        budget = int(next(a for a in command if a.startswith("--budget-steps=")).split("=")[1])
        with lock:
            launched.append((algo, int(seed)))
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        points = [
            {"env_steps": 0, "wall_s": 0.0, "success": 0.0},
            {"env_steps": budget, "wall_s": 2.0, "success": 0.5 + int(seed) / 4},
        ]
        (out / f"{algo}_seed{seed}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
        with lock:
            running[0] -= 1
        return 0

    monkeypatch.setattr(learning_panda, "run_worker", fake_worker)
    argv = [
        "--algos", "ours_ppo,sb3_ppo", "--seeds", "0", "1", "--budget-steps", "64",
        "--eval-every", "64", "--out", str(out), "--results-dir", str(results), "--jobs", "2",
    ]  # fmt: skip
    learning_panda.main(argv)
    runs = [(a, s) for a in ("ours_ppo", "sb3_ppo") for s in (0, 1)]
    assert sorted(launched) == runs and peak[0] == 2
    result = json.loads((results / "learning_panda.json").read_text())
    assert [result["per_seed"][s]["SB3 PPO success (%)"] for s in ("0", "1")] == [50.0, 75.0]
    assert result["mean"]["SB3 PPO success (%)"] == 62.5
    kept = json.loads((results / "raw/seeds/learning_panda_sb3_ppo/seed1.json").read_text())
    assert (
        kept["arguments"]["budget_steps"] == 64 and kept["state"]["points"][-1]["success"] == 0.75
    )

    shutil.rmtree(out)  # another machine: no logs, the kept runs are taken as they are
    (results / "learning_panda.json").unlink()
    launched.clear()
    learning_panda.main([*argv, "--report-only"])
    assert launched == []
    again = json.loads((results / "learning_panda.json").read_text())
    assert again["per_seed"] == result["per_seed"]
    learning_panda.main(argv)
    assert launched == []

    peak[0] = 0
    learning_panda.main([*argv[:-2], "--jobs", "1", "--budget-steps", "128"])  # a larger budget
    assert sorted(launched) == runs and peak[0] == 1  # every run continues, one at a time
    assert (
        json.loads((results / "learning_panda.json").read_text())["per_seed"] == result["per_seed"]
    )
