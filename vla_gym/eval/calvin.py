"""CALVIN's long-horizon evaluation protocol (``calvin_agent/evaluation/evaluate_policy.py``).

1000 chains of five tasks from :func:`get_sequences` (identical to the official generator),
each started from the symbolic initial state turned into ``(robot_obs, scene_obs)`` in scene D;
up to 360 steps per subtask, the next subtask starts from where the previous one ended, and the
first failure ends the chain. Reported: the average number of consecutive successes ("avg.
len."), the success rate of 1..5 tasks in a row, and per-task success/total::

    python -m vla_gym.eval.calvin --policy expert --num-sequences 20
    python -m vla_gym.eval.calvin --policy random --num-sequences 100 --num-envs 4
    python -m vla_gym.eval.calvin --policy runs/x/checkpoints/latest.pt

The chains run over a vector env (``VLA/CALVIN-D-v0`` in chain mode, autoreset disabled, each
env reset with its next chain through ``reset(options={"reset_mask": ..., "tasks": ...})``).
Instructions are the official evaluation sentences when a CALVIN folder is configured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from vla_gym.envs.calvin.symbolic import generate_sequences, state_to_obs
from vla_gym.eval.common import CheckpointPolicy, RandomPolicy, checkpoint_env_kwargs, env_info

ENV_ID = "VLA/CALVIN-D-v0"
EP_LEN = 360
NUM_SEQUENCES = 1000
CHAIN_LENGTH = 5
# Env kwargs the protocol fixes (a caller's or a checkpoint's settings must not override them).
_PROTOCOL_KWARGS = ("scenes", "task", "num_subtasks", "steps_per_subtask", "max_steps")


def get_sequences(num_sequences: int = NUM_SEQUENCES) -> list[tuple[dict[str, Any], list[str]]]:
    """``[(initial_state, [5 task names]), ...]`` exactly as the official ``get_sequences``."""
    return generate_sequences(num_sequences)


def get_env_state_for_initial_condition(state: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The official ``(robot_obs, scene_obs)`` of a symbolic state (hashed seed, scene D)."""
    return state_to_obs(state, "D")


class BatchPolicy(Protocol):
    """Acts for all envs at once; ``infos`` is one info dict per env (privileged state)."""

    def act(self, obs: Any, infos: list[dict[str, Any]]) -> np.ndarray: ...

    def episode_done(self, env_index: int) -> None: ...


@dataclass
class CalvinEvalResult:
    policy: str
    num_sequences: int
    avg_len: float
    success_rates: list[float]  # P(at least i tasks in a row), i = 1..5
    per_task: dict[str, dict[str, int]]  # task -> {"success": n, "total": n}
    chain_lengths: list[int]  # per chain, in get_sequences order
    seconds: float
    env_steps: int


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


# --------------------------------------------------------------------------- policies
class ExpertPolicy:
    """One scripted CALVIN expert per env, following each env's current subtask."""

    def __init__(self, num_envs: int, action_chunk: int = 1) -> None:
        from vla_gym.experts import make_expert

        self.experts = [make_expert(ENV_ID, action_chunk=action_chunk) for _ in range(num_envs)]

    def act(self, obs: Any, infos: list[dict[str, Any]]) -> np.ndarray:
        return np.stack([e.act(None, info) for e, info in zip(self.experts, infos, strict=True)])

    def episode_done(self, env_index: int) -> None:
        self.experts[env_index].reset()


def _make_policy(policy, envs, num_envs: int, seed: int, env_kwargs) -> BatchPolicy:
    if callable(policy):
        return policy(envs)
    if policy == "expert":
        return ExpertPolicy(num_envs, action_chunk=int(env_kwargs.get("action_chunk", 1)))
    if policy == "random":
        return RandomPolicy(envs.action_space, seed)
    import torch

    torch.manual_seed(seed)
    return CheckpointPolicy(policy, envs)


# --------------------------------------------------------------------------- protocol
def make_vector_env(num_envs: int, backend: str, **env_kwargs: Any) -> gym.vector.VectorEnv:
    """Chain-mode scene-D envs with autoreset disabled (each reset picks a specific chain)."""
    mode = gym.vector.AutoresetMode.DISABLED
    if importlib.util.find_spec("vla_gym.vector") is None or backend == "gymnasium":
        return gym.vector.SyncVectorEnv(
            [lambda: gym.make(ENV_ID, **env_kwargs)] * num_envs, autoreset_mode=mode
        )
    import vla_gym

    if backend == "auto":
        backend = "subproc" if num_envs > 1 else "sync"
    return vla_gym.make_vec(ENV_ID, num_envs, backend=backend, autoreset_mode=mode, **env_kwargs)


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
    policy: str | Callable[[gym.vector.VectorEnv], BatchPolicy] = "expert",
    *,
    num_sequences: int = NUM_SEQUENCES,
    num_envs: int = 1,
    backend: str = "auto",
    seed: int = 0,
    progress: bool = False,
    **env_kwargs: Any,
) -> CalvinEvalResult:
    """Run the first ``num_sequences`` official chains (see module doc).

    ``policy`` is ``"expert"``, ``"random"``, a trainer checkpoint path or a callable taking the
    vector env and returning a :class:`BatchPolicy`; ``env_kwargs`` go to every env (assets,
    image sizes, instructions, ...). ``seed`` seeds the policy only; the chains are fixed.
    """
    sequences = get_sequences(NUM_SEQUENCES)[:num_sequences]
    num_envs = max(1, min(int(num_envs), len(sequences)))
    name = policy if isinstance(policy, str) else getattr(policy, "__name__", "custom")
    if isinstance(policy, str) and policy not in ("expert", "random"):
        env_kwargs = {**checkpoint_env_kwargs(policy, _PROTOCOL_KWARGS), **env_kwargs}
    bad = sorted(set(env_kwargs) & set(_PROTOCOL_KWARGS))
    if bad:
        raise ValueError(f"CALVIN evaluation fixes {bad}; do not pass them")
    env_kwargs.setdefault("instructions", _default_instructions(env_kwargs))
    protocol = {"num_subtasks": CHAIN_LENGTH, "steps_per_subtask": EP_LEN}
    envs = make_vector_env(num_envs, backend, **protocol, **env_kwargs)
    lengths = [-1] * len(sequences)
    start, steps = time.perf_counter(), 0
    try:
        batch_policy = _make_policy(policy, envs, num_envs, seed, env_kwargs)
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
            env_infos = [env_info(infos, i) for i in range(num_envs)]
            for env_index in np.flatnonzero(terminated | truncated):
                env_index = int(env_index)
                if env_index in running:
                    lengths[running.pop(env_index)] = int(env_infos[env_index]["subtasks_solved"])
                batch_policy.episode_done(env_index)
                chain = next_chain if next_chain < len(sequences) else 0  # idle envs replay chain 0
                if next_chain < len(sequences):
                    running[env_index], next_chain = next_chain, next_chain + 1
                obs, infos = envs.reset(
                    options=_chain_options(num_envs, env_index, *sequences[chain])
                )
                env_infos[env_index] = env_info(infos, env_index)
                if progress:
                    done = sum(length >= 0 for length in lengths)
                    print(f"\r{done}/{len(sequences)} chains", end="", file=sys.stderr)
    finally:
        envs.close()
    if progress:
        print(file=sys.stderr)
    avg_len, rates, per_task = score(lengths, sequences)
    return CalvinEvalResult(
        policy=str(name),
        num_sequences=len(sequences),
        avg_len=avg_len,
        success_rates=rates,
        per_task=per_task,
        chain_lengths=lengths,
        seconds=time.perf_counter() - start,
        env_steps=steps,
    )


def _default_instructions(env_kwargs: Mapping[str, Any]) -> str:
    from vla_gym.envs.calvin.assets import find_calvin_root

    try:
        root = find_calvin_root(env_kwargs.get("calvin_root"))
    except FileNotFoundError:
        root = None
    return "official" if root is not None else "builtin"


# --------------------------------------------------------------------------- report
def format_report(result: CalvinEvalResult) -> str:
    lines = [
        f"CALVIN evaluation (scene D), policy {result.policy}: {result.num_sequences} chains, "
        f"{EP_LEN} steps per subtask, {result.seconds:.0f} s "
        f"({result.env_steps / max(result.seconds, 1e-9):.0f} env steps/s)",
        "",
        "| " + " | ".join(f"{i}/5" for i in range(1, 6)) + " | avg. len |",
        "|" + "---|" * 6,
        "| "
        + " | ".join(f"{100 * r:.1f}%" for r in result.success_rates)
        + f" | {result.avg_len:.2f} |",
        "",
        f"{'task':<26} {'success':>8} {'total':>6} {'rate':>7}",
    ]
    for task, counts in result.per_task.items():
        rate = counts["success"] / max(counts["total"], 1)
        lines.append(f"{task:<26} {counts['success']:>8} {counts['total']:>6} {100 * rate:>6.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> CalvinEvalResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="expert", help="expert | random | checkpoint path")
    parser.add_argument("--num-sequences", type=int, default=NUM_SEQUENCES)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "sync", "subproc", "ray", "gymnasium"]
    )
    parser.add_argument("--seed", type=int, default=0, help="policy seed (the chains are fixed)")
    parser.add_argument("--assets", default="auto", choices=["auto", "official", "builtin"])
    parser.add_argument("--calvin-root", default=None)
    parser.add_argument("--obs-mode", default=None, choices=["vla", "flat"])
    parser.add_argument("--render-quality", default=None, choices=["auto", "fast", "full"])
    parser.add_argument("--json", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    env_kwargs = {
        key: value
        for key, value in (
            ("assets", args.assets),
            ("calvin_root", args.calvin_root),
            ("obs_mode", args.obs_mode),
            ("render_quality", args.render_quality),
        )
        if value is not None
    }
    result = evaluate(
        args.policy,
        num_sequences=args.num_sequences,
        num_envs=args.num_envs,
        backend=args.backend,
        seed=args.seed,
        progress=sys.stderr.isatty(),
        **env_kwargs,
    )
    print(format_report(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(asdict(result), handle, indent=2)
    return result


if __name__ == "__main__":
    main()
