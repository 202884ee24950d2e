"""Progress bars, per-task result lines and command-line flags, shared by every evaluation
protocol.

``progress``: a tqdm bar on stderr over the protocol's episodes (CALVIN: chains) with the
running success rate in its postfix (CALVIN: the running avg. len and the rate of fully solved
chains). ``None`` (auto) shows it when stderr is a terminal and the ``CI`` env var is unset.

``results_path``: a JSON-lines file that gets one object per finished task, appended and
flushed as it finishes, so an interrupted evaluation leaves its finished part on disk. Every
line has ``protocol`` and ``env_id``, plus:

- CALVIN, per chain: ``chain`` (index among the official chains), ``tasks`` (its five
  subtasks), ``solved`` (consecutive subtasks solved, the chain's length in ``avg_len``);
- Meta-World, per task once all its trials ended: ``task``, ``trials``, ``successes``,
  ``success`` (the task's rate in ``EvalResult.per_task``);
- LIBERO, per task once all its trials ended: ``task_id``, ``task`` (its instruction, the key
  in ``EvalResult.per_task``), ``trials``, ``successes``, ``success``;
- generic, per scored episode: ``episode`` (index), then the episode's record as in
  ``EvalResult.details["episodes"]`` (``seed``, ``success_once``, ``return``, ``episode_len``,
  any ``episode_metrics``; ``null`` where the episode did not report one).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from vla_gym.cli import ENV_KWARGS, add_env_kwargs_arguments, env_kwargs_from_args
from vla_gym.eval.policy import check_policy_spec

PROGRESS_CHOICES = ("auto", "on", "off")


def progress_enabled(progress: bool | None) -> bool:
    """``progress``, or when ``None``: stderr is a terminal and not under CI."""
    if progress is None:
        return sys.stderr.isatty() and not os.environ.get("CI")
    return bool(progress)


def progress_setting(choice: str) -> bool | None:
    """A ``--progress auto|on|off`` choice as an ``evaluate(progress=...)`` value."""
    return {"auto": None, "on": True, "off": False}[choice]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--progress``, ``--results-jsonl``, ``--json`` and the env kwargs (``--env-kwargs`` and
    ``env.kwargs.KEY=VALUE``, see :mod:`vla_gym.cli`), the evaluation command lines' shared
    flags (:func:`report_result` honours ``--json``, :func:`evaluate_kwargs` reads the env
    kwargs)."""
    parser.add_argument(
        "--progress",
        default="auto",
        choices=PROGRESS_CHOICES,
        help="progress bar on stderr (auto: on a terminal outside CI)",
    )
    parser.add_argument(
        "--results-jsonl",
        default=None,
        metavar="PATH",
        help="append one JSON line per finished task here as the evaluation runs",
    )
    parser.add_argument("--json", default=None, help="also write the result as JSON here")
    add_env_kwargs_arguments(parser)


def parse_command_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
    """``argv`` parsed by ``parser`` (its own flags plus :func:`add_arguments`'), with a bad
    ``--policy`` spec reported as a usage error before anything is built."""
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_policy_spec(args.policy)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def evaluate_kwargs(
    args: argparse.Namespace,
    evaluate: Callable[..., Any],
    shorthands: Mapping[str, str] | None = None,
    fixed_kwargs: Collection[str] = (),
) -> dict[str, Any]:
    """The ``evaluate`` kwargs that every evaluation command line passes the same way:
    ``progress``, ``results_path`` and the env kwargs (``shorthands``: the command's own flags
    for some, see :func:`vla_gym.cli.env_kwargs_from_args`). Refused before any env is built:
    an env kwarg named like one of ``evaluate``'s own parameters (passed on, it would set that
    parameter instead of reaching the env) and one of the ``fixed_kwargs`` the protocol sets
    itself."""
    env_kwargs = env_kwargs_from_args(args, shorthands)
    parameters = inspect.signature(evaluate).parameters
    for name in env_kwargs:
        parameter = parameters.get(name)
        if parameter is not None and parameter.kind is not inspect.Parameter.VAR_KEYWORD:
            raise SystemExit(
                f"{ENV_KWARGS}.{name}: {name!r} is an option of the evaluation, not an env "
                "kwarg (see --help)"
            )
        if name in fixed_kwargs:
            raise SystemExit(f"{ENV_KWARGS}.{name}: the evaluation protocol sets {name!r} itself")
    return {
        "progress": progress_setting(args.progress),
        "results_path": args.results_jsonl,
        **env_kwargs,
    }


def parse_command(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    evaluate: Callable[..., Any],
    shorthands: Mapping[str, str] | None = None,
    fixed_kwargs: Collection[str] = (),
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """An evaluation command line's parsed ``args`` and the shared ``evaluate`` kwargs
    (:func:`parse_command_args`, then :func:`evaluate_kwargs`); the caller passes its own
    flags to ``evaluate`` beside them."""
    args = parse_command_args(parser, argv)
    return args, evaluate_kwargs(args, evaluate, shorthands, fixed_kwargs)


def report_result(result: Any, args: argparse.Namespace) -> None:
    """Print an :class:`~vla_gym.eval.EvalResult`'s report; write it as JSON with ``--json``."""
    print(result.report)
    if args.json:
        Path(args.json).write_text(result.to_json())


class EvalProgress:
    """One evaluation's progress bar (when enabled) and results file (when given).

    ``fields`` start every results line (the protocol and env ID).
    """

    def __init__(
        self,
        total: int,
        unit: str,
        *,
        progress: bool | None,
        results_path: str | Path | None,
        **fields: Any,
    ) -> None:
        self.fields = fields
        self.bar = None
        if progress_enabled(progress):
            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr)
        self.handle: IO[str] | None = None
        if results_path is not None:
            Path(results_path).parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(results_path, "a")  # noqa: SIM115 - closed by close()

    def update(self, n: int = 1, **postfix: float) -> None:
        """``n`` more episodes done; ``postfix``: the running metrics to show."""
        if self.bar is None:
            return
        if postfix:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)
        self.bar.update(n)

    def write(self, **record: Any) -> None:
        """Append one finished task's line and flush it (it survives an interrupted run)."""
        if self.handle is None:
            return
        line = json.dumps({**self.fields, **record}, default=_plain, allow_nan=False)
        self.handle.write(line + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.handle is not None:
            self.handle.close()

    def __enter__(self) -> EvalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(value: Any) -> Any:
    """numpy scalars as JSON values."""
    return value.item() if hasattr(value, "item") else str(value)


def finite(value: float) -> float | None:
    """``value``, or ``None`` (JSON ``null``) for NaN: a metric the episode did not report."""
    return value if math.isfinite(value) else None
