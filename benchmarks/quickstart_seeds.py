"""The README's main job over training seeds: ``python -m trainers.quickstart --seed N``.

Runs the quickstart with its default sizes once per seed (each in ``<work>/seed<N>``, skipped
when that seed's ``result.json`` already exists, so an interrupted run resumes at the next
seed), then writes ``benchmarks/results/quickstart.json``: per seed the held-out success after
SFT and after PPO (the checkpoint best on validation, and the last one), the gain in points and
the wall time of the whole run.

    nice -n 10 python benchmarks/quickstart_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import write_result  # noqa: E402


def run_seed(seed: int, work: Path, extra: list[str]) -> dict:
    out = work / f"seed{seed}"
    result_path = out / "result.json"
    if not result_path.exists():
        command = [sys.executable, "-m", "trainers.quickstart", "--seed", str(seed)]
        command += ["--out", str(out), "--progress", "off", *extra]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
    return json.loads(result_path.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "quickstart_seeds")
    parser.add_argument("--name", default="quickstart", help="result file name")
    parser.add_argument("extra", nargs="*", help="arguments passed on to the quickstart")
    args = parser.parse_args(argv)

    runs = {seed: run_seed(seed, args.work, args.extra) for seed in args.seeds}
    per_seed = {
        seed: {
            "gain": run["gain_points"],
            "sft_success": 100 * run["stages"]["SFT"]["success"],
            "rl_success": 100 * run["stages"]["SFT + PPO (flow_sde)"]["success"],
            "last_iteration_success": 100 * run["last_iteration"]["success"],
            "selected_iteration": run["selected_iteration"],
            "wall_minutes": run["wall_minutes"],
        }
        for seed, run in runs.items()
    }
    first = next(iter(runs.values()))
    sft = sum(v["sft_success"] for v in per_seed.values()) / len(per_seed)
    rl = sum(v["rl_success"] for v in per_seed.values()) / len(per_seed)
    worst = min(v["gain"] for v in per_seed.values())
    longest = max(v["wall_minutes"] for v in per_seed.values())
    command = "python benchmarks/quickstart_seeds.py --seeds " + " ".join(map(str, args.seeds))
    write_result(
        args.name,
        title="Main job: `python -m trainers.quickstart` (flow VLA, SFT then PPO)",
        claim=(
            f"On VLA/PandaPickCube-v0, PPO with flow_sde takes the flow VLA's held-out success "
            f"from {sft:.1f} % after SFT to {rl:.1f} % with the PPO checkpoint best on "
            f"{first['validation_episodes']} validation episodes (mean over {len(runs)} seeds, "
            f"{first['eval_episodes']} held-out episodes each; smallest gain {worst:+.0f} points, "
            f"longest run {longest:.1f} min)."
        ),
        metric="gain",
        unit="points",
        per_seed=per_seed,
        starts_from=(
            f"one SFT checkpoint per seed N: {first['demos']} demos of the speed-capped expert "
            f"with DART noise on env seeds N*10000.., {first['sft_steps']} SFT steps with seed N"
        ),
        env_steps=sum(run["rl_env_steps"] for run in runs.values()),
        wall_seconds=60 * sum(v["wall_minutes"] for v in per_seed.values()),
        command=command,
    )


if __name__ == "__main__":
    main()
