"""CALVIN's long-horizon evaluation protocol (``calvin_agent/evaluation/evaluate_policy.py``).

1000 chains of five tasks from :func:`get_sequences` (identical to the official generator),
each started from the symbolic initial state turned into ``(robot_obs, scene_obs)`` in scene D;
up to 360 steps per subtask, the next subtask starts from where the previous one ended, and the
first failure ends the chain. Reported: the average number of consecutive successes ("avg.
len."), the success rate of 1..5 tasks in a row, and per-task success/total::

    python -m vla_gym.eval.calvin --policy expert --num-sequences 20
    python -m vla_gym.eval.calvin --policy random --num-sequences 100 --num-envs 4
    python -m vla_gym.eval.calvin --num-sequences 20 env.kwargs.calvin_root=~/calvin
    python -m trainers eval --checkpoint runs/x/checkpoints/latest.pt   # a trained policy

The chains run over a vector env (``VLA/CALVIN-D-v0`` in chain mode, autoreset disabled, each
env reset with its next chain through ``reset(options={"reset_mask": ..., "tasks": ...})``).
Instructions are the official evaluation sentences when a CALVIN folder is configured. Env
kwargs: ``env.kwargs.KEY=VALUE`` or ``--env-kwargs '{KEY: VALUE}'`` (see :mod:`vla_gym.cli`);
``--assets``, ``--calvin-root``, ``--obs-mode`` and ``--render-quality`` are short for the env
kwargs of the same names.
``progress`` and ``results_path`` (one JSON line per finished chain): see
:mod:`vla_gym.eval.progress`.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from vla_gym.envs.calvin.symbolic import generate_sequences, state_to_obs
from vla_gym.eval.envs import check_protocol_kwargs, make_vector_env
from vla_gym.eval.policy import (
    POLICY_HELP,
    PolicySpec,
    build_policy,
    check_policy_spec,
    env_info,
    policy_name,
    split_infos,
)
from vla_gym.eval.progress import (
    EvalProgress,
    parse_command,
    report_result,
)
from vla_gym.eval.result import EvalResult

ENV_ID = "VLA/CALVIN-D-v0"
SCENE = "D"
EP_LEN = 360
NUM_SEQUENCES = 1000
CHAIN_LENGTH = 5
# Env kwargs the protocol sets itself (a caller must not override them).
FIXED_KWARGS = ("scenes", "task", "num_subtasks", "steps_per_subtask", "max_steps")
# The command line's own flags for some env kwargs: flag -> env kwarg.
SHORTHANDS = {
    "--assets": "assets",
    "--calvin-root": "calvin_root",
    "--obs-mode": "obs_mode",
    "--render-quality": "render_quality",
}


def get_sequences(num_sequences: int = NUM_SEQUENCES) -> list[tuple[dict[str, Any], list[str]]]:
    """``[(initial_state, [5 task names]), ...]`` exactly as the official ``get_sequences``."""
    return generate_sequences(num_sequences)


def get_env_state_for_initial_condition(state: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The official ``(robot_obs, scene_obs)`` of a symbolic state (hashed seed, scene D)."""
    return state_to_obs(state, "D")


def score(
    results: list[int], sequences: list[tuple[Any, list[str]]]
) -> tuple[float, list[float], dict]:
    """Average length, 1..5 success rates and per-task counts (official ``print_and_save``)."""
    lengths = np.asarray(results)
    rates = [float(np.mean(lengths >= i)) for i in range(1, CHAIN_LENGTH + 1)]
    success, fail = Counter(), Counter()
    for result, (_, chain) in zip(results, sequences, strict=True):
        success.update(chain[:result])
        if result < len(chain):
            fail[chain[result]] += 1
    total = success + fail
    per_task = {t: {"success": success[t], "total": total[t]} for t in sorted(total)}
    return float(lengths.mean()), rates, per_task


# --------------------------------------------------------------------------- protocol
def _chain_options(num_envs: int, env_index: int, state, chain: list[str]) -> dict[str, Any]:
    """Reset options putting env ``env_index`` (only) at the start of one chain."""
    mask = np.zeros(num_envs, dtype=bool)
    mask[env_index] = True
    robot_obs, scene_obs = get_env_state_for_initial_condition(state)
    return {
        "reset_mask": mask,
        "robot_obs": robot_obs,
        "scene_obs": scene_obs,
        "tasks": list(chain),
    }


def evaluate(
    policy: PolicySpec = "expert",
    *,
    episodes: int | None = None,
    num_envs: int = 1,
    backend: str = "auto",
    seed: int = 0,
    step_timeout: float | None = None,
    progress: bool | None = None,
    results_path: str | Path | None = None,
    **env_kwargs: Any,
) -> EvalResult:
    """Run the first ``episodes`` official chains (all 1000 by default; see module doc).

    ``policy``: a :class:`~vla_gym.eval.Policy`, a factory (vector env -> Policy), ``"expert"``
    or ``"random"``. ``env_kwargs`` go to every env (assets, image sizes, instructions, ...).
    ``seed`` seeds the policy and the env resets; the chains are fixed.
    """
    check_policy_spec(policy)
    check_protocol_kwargs("CALVIN", env_kwargs, FIXED_KWARGS)
    sequences = get_sequences(NUM_SEQUENCES)[: min(episodes or NUM_SEQUENCES, NUM_SEQUENCES)]
    if not sequences:
        raise ValueError(f"episodes must be >= 1, got {episodes!r}")
    num_envs = max(1, min(int(num_envs), len(sequences)))
    env_kwargs.setdefault("instructions", _default_instructions(env_kwargs))
    envs = make_vector_env(
        ENV_ID,
        num_envs,
        backend=backend,
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,  # each reset picks a chain
        step_timeout=step_timeout,
        num_subtasks=CHAIN_LENGTH,
        steps_per_subtask=EP_LEN,
        **env_kwargs,
    )
    lengths = [-1] * len(sequences)
    start, steps = time.perf_counter(), 0
    tracker = EvalProgress(
        len(sequences),
        "chain",
        progress=progress,
        results_path=results_path,
        protocol=f"calvin/{SCENE}",
        env_id=ENV_ID,
    )
    finished: list[int] = []  # lengths of the chains finished so far
    try:
        batch_policy = build_policy(policy, envs, env_id=ENV_ID, seed=seed)
        running: dict[int, int] = {}  # env index -> chain index
        env_infos: list[dict[str, Any]] = [{} for _ in range(num_envs)]
        obs, next_chain = None, 0
        for env_index in range(num_envs):
            obs, infos = envs.reset(
                seed=seed + env_index,
                options=_chain_options(num_envs, env_index, *sequences[next_chain]),
            )
            env_infos[env_index] = env_info(infos, env_index)
            running[env_index], next_chain = next_chain, next_chain + 1
        while running:
            active = np.array([i in running for i in range(num_envs)])
            obs, _, terminated, truncated, infos = envs.step(batch_policy.act(obs, env_infos))
            steps += int(active.sum())
            env_infos = split_infos(infos, num_envs)
            for env_index in np.flatnonzero(terminated | truncated):
                env_index = int(env_index)
                if env_index in running:
                    index = running.pop(env_index)
                    lengths[index] = int(env_infos[env_index]["subtasks_solved"])
                    tracker.write(chain=index, tasks=sequences[index][1], solved=lengths[index])
                    finished.append(lengths[index])
                    tracker.update(
                        avg_len=float(np.mean(finished)),
                        success=float(np.mean(np.array(finished) == CHAIN_LENGTH)),
                    )
                batch_policy.episode_done(env_index)
                chain = next_chain if next_chain < len(sequences) else 0  # idle envs replay chain 0
                if next_chain < len(sequences):
                    running[env_index], next_chain = next_chain, next_chain + 1
                obs, infos = envs.reset(
                    options=_chain_options(num_envs, env_index, *sequences[chain])
                )
                env_infos[env_index] = env_info(infos, env_index)
    finally:
        tracker.close()
        envs.close()
    avg_len, rates, task_counts = score(lengths, sequences)
    metrics = {"avg_len": avg_len}
    for length, rate in enumerate(rates, start=1):
        metrics[f"chain_success_{length}"] = rate  # P(at least `length` tasks in a row)
    result = EvalResult(
        protocol=f"calvin/{SCENE}",
        env_id=ENV_ID,
        policy=policy_name(policy),
        headline="avg_len",
        metrics=metrics,
        per_task={t: c["success"] / max(c["total"], 1) for t, c in task_counts.items()},
        episodes=len(sequences),
        env_steps=steps,
        seconds=time.perf_counter() - start,
        details={"chain_lengths": lengths, "task_counts": task_counts},
    )
    result.report = format_report(result)
    return result


def _default_instructions(env_kwargs: Mapping[str, Any]) -> str:
    from vla_gym.envs.calvin.assets import find_calvin_root

    try:
        root = find_calvin_root(env_kwargs.get("calvin_root"))
    except FileNotFoundError:
        root = None
    return "official" if root is not None else "builtin"


# --------------------------------------------------------------------------- report
def format_report(result: EvalResult) -> str:
    rates = [result.metrics[f"chain_success_{i}"] for i in range(1, CHAIN_LENGTH + 1)]
    lines = [
        f"CALVIN evaluation (scene {SCENE}), policy {result.policy}: {result.episodes} chains, "
        f"{EP_LEN} steps per subtask, {result.seconds:.0f} s "
        f"({result.env_steps / max(result.seconds, 1e-9):.0f} env steps/s)",
        "",
        "| " + " | ".join(f"{i}/5" for i in range(1, 6)) + " | avg. len |",
        "|" + "---|" * 6,
        "| " + " | ".join(f"{100 * r:.1f}%" for r in rates) + f" | {result.score:.2f} |",
        "",
        f"{'task':<26} {'success':>8} {'total':>6} {'rate':>7}",
    ]
    for task, counts in result.details["task_counts"].items():
        rate = counts["success"] / max(counts["total"], 1)
        lines.append(f"{task:<26} {counts['success']:>8} {counts['total']:>6} {100 * rate:>6.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> EvalResult:
    parser = argparse.ArgumentParser(
        prog="python -m vla_gym.eval.calvin", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--policy", default="expert", help=POLICY_HELP.format("expert | random"))
    parser.add_argument("--num-sequences", type=int, default=NUM_SEQUENCES)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--backend", default="auto", choices=["auto", "sync", "subproc", "ray"])
    parser.add_argument("--seed", type=int, default=0, help="policy seed (the chains are fixed)")
    parser.add_argument(
        "--assets", choices=["auto", "official", "builtin"], help="short for env.kwargs.assets"
    )
    parser.add_argument("--calvin-root", help="short for env.kwargs.calvin_root")
    parser.add_argument("--obs-mode", choices=["vla", "flat"], help="short for env.kwargs.obs_mode")
    parser.add_argument(
        "--render-quality",
        choices=["auto", "fast", "full"],
        help="short for env.kwargs.render_quality",
    )
    args, kwargs = parse_command(parser, argv, evaluate, SHORTHANDS, FIXED_KWARGS)
    result = evaluate(
        args.policy,
        episodes=args.num_sequences,
        num_envs=args.num_envs,
        backend=args.backend,
        seed=args.seed,
        **kwargs,
    )
    report_result(result, args)
    return result


if __name__ == "__main__":
    main()
