"""One benchmark result as a JSON file under ``benchmarks/results/``.

Every benchmark script ends with :func:`write_result`; ``benchmarks/render_results.py`` turns the
folder into ``benchmarks/RESULTS.md``. A result file holds:

``name``, ``title``
    file stem and section heading.
``claim``
    one sentence: what the numbers show.
``metric``, ``unit``
    what is measured. When the per-seed values are dicts, ``metric`` is the key of the claimed
    entry; every other entry is reported alongside it.
``seeds``, ``per_seed``
    the training seeds and each seed's value (a number or a dict of numbers). A speed benchmark
    measures its configurations side by side in one run: its only "seed" is ``"run"``.
``mean``, ``std``
    over the seeds, same shape as a per-seed value; ``std`` is the sample standard deviation
    (ddof=1), ``None`` with one seed.
``rows``, ``plot``
    optional: the section's table (a list of dicts) and a PNG path relative to ``benchmarks/``.
``starts_from``
    optional: the SFT checkpoint(s) a learning claim starts from (how they were made).
``env_steps``, ``wall_seconds``, ``command``, ``commit``, ``date``, ``machine``
    provenance: what it cost, how to reproduce it, and where and when it ran.
"""

from __future__ import annotations

import datetime
import json
import math
import shlex
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _machine import describe_machine  # benchmarks/ is on sys.path in every script

BENCHMARKS = Path(__file__).resolve().parent
RESULTS_DIR = BENCHMARKS / "results"

Value = float | dict[str, float]


def summarize(values: Sequence[Value]) -> tuple[Value, Value | None]:
    """Mean and sample standard deviation (``None`` for one value), entry-wise for dicts."""
    if isinstance(values[0], Mapping):
        keys = [k for k in values[0] if all(_is_number(v.get(k)) for v in values)]
        pairs = {k: summarize([v[k] for v in values]) for k in keys}
        mean = {k: m for k, (m, _) in pairs.items()}
        std = None if len(values) < 2 else {k: s for k, (_, s) in pairs.items()}
        return mean, std
    numbers = [float(v) for v in values]
    std = statistics.stdev(numbers) if len(numbers) >= 2 else None
    return statistics.fmean(numbers), std


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def git_commit() -> str:
    """The checked-out commit, with ``-dirty`` when tracked files have uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=BENCHMARKS, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    """This process's command as run from the repository root, without ``--report-only`` (the
    command that reproduces a result is the one that trains it)."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(BENCHMARKS.parent):
        script = script.relative_to(BENCHMARKS.parent)
    arguments = [a for a in sys.argv[1:] if a != "--report-only"]
    return shlex.join(["python", str(script), *arguments])


def write_result(
    name: str,
    *,
    title: str,
    claim: str,
    metric: str,
    unit: str,
    per_seed: Mapping[int | str, Value],
    rows: list[dict[str, Any]] | None = None,
    plot: str | Path | None = None,
    starts_from: str | None = None,
    env_steps: int | None = None,
    wall_seconds: float | None = None,
    command: str | None = None,
    directory: Path = RESULTS_DIR,
) -> Path:
    """Write ``<directory>/<name>.json`` (replacing an earlier one) and return its path."""
    if not per_seed:
        raise ValueError(f"{name}: no per-seed values to report")
    seeds = list(per_seed)
    mean, std = summarize([per_seed[s] for s in seeds])
    if plot is not None:  # relative to benchmarks/, where RESULTS.md is
        plot = Path(plot).resolve()
        plot = str(plot.relative_to(BENCHMARKS)) if plot.is_relative_to(BENCHMARKS) else str(plot)
    result = {
        "name": name,
        "title": title,
        "claim": claim,
        "metric": metric,
        "unit": unit,
        "seeds": seeds,
        "per_seed": {str(s): per_seed[s] for s in seeds},
        "mean": mean,
        "std": std,
        "rows": rows,
        "plot": plot,
        "starts_from": starts_from,
        "env_steps": env_steps,
        "wall_seconds": wall_seconds,
        "command": command or command_line(),
        "commit": git_commit(),
        "date": utc_now(),
        "machine": describe_machine(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    print(f"result: {path}")
    return path
