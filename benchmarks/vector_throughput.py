"""Vector-env throughput: vla_gym's subprocess workers vs Gymnasium's AsyncVectorEnv vs SB3's
SubprocVecEnv vs a plain in-process loop, measured side by side in one run.

(a) a null env whose observation is two 224x224x3 images (pure transport cost), plus the cost of
    an instruction string in the observation; (b) ``VLA/PandaPickCubeVision-v0`` (fast rendering)
    against the ideal ``min(envs, cores) x single-env rate``.

For every configuration it reports env-steps/s (wall clock), the parent process's CPU time per
vector step, and env-steps per CPU-second summed over the parent and all its worker processes
(robust to other load on a shared machine). Configurations of one size are built together and
timed in interleaved rounds; the median round is reported.

    python benchmarks/vector_throughput.py            # both parts, 2/4/8 envs
    python benchmarks/vector_throughput.py --quick    # a short smoke run

Part (a) also goes to ``benchmarks/results/vector_throughput.json``, part (b) to
``vector_throughput_panda.json`` (``benchmarks/_results.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import psutil
from gymnasium import spaces

import vla_gym
from vla_gym.core.spaces import instruction_space
from vla_gym.vector.base import BatchedVectorEnv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_result  # noqa: E402

PANDA_ID = "VLA/PandaPickCubeVision-v0"


class NullImageEnv(gym.Env):
    """Two 224x224x3 images (and optionally an instruction) that never change; no work at all."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 224, instruction: bool = False):
        image = spaces.Box(0, 255, (size, size, 3), np.uint8)
        obs_spaces = {"front": image, "wrist": image}
        self._obs = {
            "front": np.zeros(image.shape, np.uint8),
            "wrist": np.ones(image.shape, np.uint8),
        }
        if instruction:
            obs_spaces["instruction"] = instruction_space()
            self._obs["instruction"] = "pick up the red cube and put it in the bowl"
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1, 1, (7,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs, {}

    def step(self, action):
        return self._obs, 0.0, False, False, {}


def null_env() -> gym.Env:
    return NullImageEnv()


def null_env_with_instruction() -> gym.Env:
    return NullImageEnv(instruction=True)


def panda_env() -> gym.Env:
    return gym.make(PANDA_ID, render_quality="fast")


# ----------------------------------------------------------------------------- runners
class PlainLoop:
    """The in-process baseline: a Python loop over the envs, no vectorisation at all."""

    def __init__(self, env_fn: Callable[[], gym.Env], n: int):
        self.envs = [env_fn() for _ in range(n)]
        self.action_space = gym.vector.utils.batch_space(self.envs[0].action_space, n)
        for i, env in enumerate(self.envs):
            env.reset(seed=i)

    def step(self, actions):
        out = []
        for env, action in zip(self.envs, actions, strict=True):
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                obs, info = env.reset()
            out.append(obs)
        return out

    def close(self):
        for env in self.envs:
            env.close()


class Sb3Runner:
    def __init__(self, env_fn: Callable[[], gym.Env], n: int):
        from stable_baselines3.common.vec_env import SubprocVecEnv

        self.venv = SubprocVecEnv([env_fn] * n, start_method="forkserver")
        self.action_space = gym.vector.utils.batch_space(self.venv.action_space, n)
        self.venv.reset()

    def step(self, actions):
        return self.venv.step(actions)

    def close(self):
        self.venv.close()


class GymVectorRunner:
    """A Gymnasium-API vector env (ours or Gymnasium's AsyncVectorEnv)."""

    def __init__(self, envs: gym.vector.VectorEnv):
        self.envs = envs
        self.action_space = envs.action_space
        envs.reset(seed=0)

    def step(self, actions):
        return self.envs.step(actions)

    def close(self):
        self.envs.close()


def build(kind: str, env_fn: Callable[[], gym.Env], n: int):
    if kind == "plain loop":
        return PlainLoop(env_fn, n)
    if kind == "vla_gym":
        return GymVectorRunner(vla_gym.make_vec(env_fn, n, backend="subproc"))
    if kind == "vla_gym pinned":  # cpu_affinity="auto": worker i on core i % cores
        return GymVectorRunner(vla_gym.make_vec(env_fn, n, backend="subproc", cpu_affinity="auto"))
    if kind == "vla_gym worker/core":  # envs_per_worker so that there is one worker per core
        per_worker = -(-n // len(os.sched_getaffinity(0)))
        return GymVectorRunner(
            vla_gym.make_vec(env_fn, n, backend="subproc", envs_per_worker=per_worker)
        )
    if kind == "vla_gym general step":  # step() through the async API's bookkeeping, the path
        # it took before its lean one (an instance attribute shadows the subclass method)
        envs = vla_gym.make_vec(env_fn, n, backend="subproc")
        envs._step_all = types.MethodType(BatchedVectorEnv._step_all, envs)
        return GymVectorRunner(envs)
    if kind == "vla_gym no spin":  # workers always sleep between commands (spin_us=0)
        return GymVectorRunner(vla_gym.make_vec(env_fn, n, backend="subproc", spin_us=0))
    if kind == "vla_gym copy=False":
        return GymVectorRunner(vla_gym.make_vec(env_fn, n, backend="subproc", copy=False))
    if kind == "gymnasium async":
        # forkserver, not Gymnasium's default fork: forking a process that already rendered
        # (the plain loop runs here) deadlocks the children on Mesa's locks
        envs = gym.vector.AsyncVectorEnv([env_fn] * n, shared_memory=True, context="forkserver")
        return GymVectorRunner(envs)
    if kind == "sb3 subproc":
        return Sb3Runner(env_fn, n)
    raise ValueError(kind)


# ----------------------------------------------------------------------------- timing
def process_tree_cpu() -> float:
    """CPU seconds used so far by this process and its live descendants."""
    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


@dataclass
class Sample:
    env_steps_per_s: float
    parent_cpu_ms_per_step: float
    env_steps_per_cpu_s: float


@dataclass
class Row:
    part: str
    n: int
    kind: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)


def time_runner(runner, n: int, seconds: float, min_steps: int) -> Sample:
    runner.action_space.seed(0)
    actions = [runner.action_space.sample() for _ in range(8)]
    runner.step(actions[0])  # warm
    steps = 0
    cpu0, parent0, t0 = process_tree_cpu(), time.process_time(), time.perf_counter()
    while True:
        runner.step(actions[steps % len(actions)])
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and steps >= min_steps:
            break
    parent = time.process_time() - parent0
    cpu = process_tree_cpu() - cpu0
    return Sample(steps * n / elapsed, 1000 * parent / steps, steps * n / max(cpu, 1e-9))


Config = tuple[str, str, Callable[[], gym.Env]]  # (row label, runner kind, env factory)


def run_interleaved(part: str, n: int, configs: list[Config], rounds: int, seconds: float):
    """Build every config, then time them in turns, ``rounds`` times (drifting load is shared)."""
    rows, runners = [], []
    try:
        for label, kind, env_fn in configs:
            runners.append(build(kind, env_fn, n))
            rows.append(Row(part, n, label))
        for r in range(rounds):  # a different order each round: no runner always goes first
            order = list(range(len(rows)))
            order = order[r % len(order) :] + order[: r % len(order)]
            for k in order:
                rows[k].samples.append(time_runner(runners[k], n, seconds, min_steps=20))
    finally:
        for runner in runners:
            runner.close()
    return rows


def run_one_at_a_time(part: str, n: int, configs: list[Config], rounds: int, seconds: float):
    """Build, time and close each config in turn (for envs too big to hold all at once)."""
    rows = []
    for label, kind, env_fn in configs:
        runner = build(kind, env_fn, n)
        try:
            row = Row(part, n, label)
            for _ in range(rounds):
                row.samples.append(time_runner(runner, n, seconds, min_steps=3))
            rows.append(row)
        finally:
            runner.close()
    return rows


# ----------------------------------------------------------------------------- report
def print_table(title: str, rows: list[Row], reference: dict[int, Row], ideal=None) -> None:
    print(f"\n{title}")
    header = (
        f"{'envs':>4}  {'runner':<22} {'env-steps/s':>11} {'vs ref':>7} "
        f"{'parent CPU ms/step':>18} {'vs ref':>7} {'steps/CPU-s':>11} {'vs ref':>7}"
    )
    if ideal is not None:
        header += f" {'of ideal':>8} {'CPU eff.':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        ref = reference[row.n]
        rate, parent, per_cpu = (row.median(a) for a in Sample.__dataclass_fields__)
        ref_rate, ref_parent, ref_cpu = (ref.median(a) for a in Sample.__dataclass_fields__)
        line = (
            f"{row.n:>4}  {row.kind:<22} {rate:>11.1f} {rate / ref_rate:>6.2f}x "
            f"{parent:>18.3f} {parent / ref_parent:>6.2f}x "
            f"{per_cpu:>11.1f} {per_cpu / ref_cpu:>6.2f}x"
        )
        if ideal is not None:
            single_rate, single_cpu = ideal
            cores = len(os.sched_getaffinity(0))
            line += (
                f" {rate / (min(row.n, cores) * single_rate):>8.2f} {per_cpu / single_cpu:>8.2f}"
            )
        print(line)


def result_rows(rows: list[Row], references: dict[str, dict[int, Row]], ideal=None) -> list[dict]:
    """The JSON table: medians of each row and its wall-clock ratio to each reference."""
    out = []
    for row in rows:
        rate = row.median("env_steps_per_s")
        entry = {"envs": row.n, "runner": row.kind, "env-steps/s": rate}
        for name, by_n in references.items():
            entry[f"vs {name}"] = rate / by_n[row.n].median("env_steps_per_s")
        entry["parent CPU ms/step"] = row.median("parent_cpu_ms_per_step")
        entry["steps/CPU-s"] = row.median("env_steps_per_cpu_s")
        if ideal is not None:
            cores = len(os.sched_getaffinity(0))
            entry["of ideal"] = rate / (min(row.n, cores) * ideal[0])
            entry["CPU eff."] = entry["steps/CPU-s"] / ideal[1]
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="2,4,8", help="comma-separated numbers of envs")
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per timed round, (a)")
    parser.add_argument("--panda-seconds", type=float, default=5.0, help="per timed round, (b)")
    parser.add_argument(
        "--panda-runners",
        default="vla_gym,gymnasium async,sb3 subproc,plain loop",
        help="comma-separated runners for (b)",
    )
    parser.add_argument("--quick", action="store_true", help="1 short round, 2 envs")
    parser.add_argument(
        "--runners", default="", help="(a): only these of our runners, comma-separated"
    )
    args = parser.parse_args()
    if args.quick:
        args.envs, args.rounds, args.seconds, args.panda_seconds = "2", 1, 0.5, 2.0
    # One rasteriser thread per process: with several workers per core, llvmpipe's own threads
    # only oversubscribe the CPUs (and every runner here, the plain loop too, gets the same).
    os.environ.setdefault("LP_NUM_THREADS", "1")
    sizes = [int(x) for x in args.envs.split(",")]
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(
        f"cores={cores} load(1 min)={load:.1f} LP_NUM_THREADS={os.environ['LP_NUM_THREADS']} "
        f"python={sys.version.split()[0]} gymnasium={gym.__version__}"
    )
    if load > cores:
        print(
            f"NOTE: load {load:.1f} > {cores} cores: other processes share the CPUs, so "
            "wall-clock rates are noisy; steps/CPU-s is the load-independent cost measure."
        )

    if args.part in ("a", "all"):
        ours = [
            "vla_gym",
            "vla_gym no spin",
            "vla_gym general step",
            "vla_gym copy=False",
            "vla_gym pinned",
            "vla_gym worker/core",
        ]
        if args.runners:  # a subset; the references are always timed
            ours = [kind for kind in ours if kind in args.runners.split(",")]
        kinds = [*ours, "gymnasium async", "sb3 subproc"]
        configs = [(kind, kind, null_env) for kind in kinds]
        if "vla_gym" in ours:
            configs.append(("vla_gym + instruction", "vla_gym", null_env_with_instruction))
        rows = []
        for n in sizes:
            rows += run_interleaved("a", n, configs, args.rounds, args.seconds)
        print_table(
            "(a) null env, two 224x224x3 images; ratios vs Gymnasium AsyncVectorEnv "
            "(shared_memory=True, its defaults)",
            [r for r in rows if r.kind != "vla_gym + instruction"],
            {r.n: r for r in rows if r.kind == "gymnasium async"},
        )
        sb3 = {r.n: r for r in rows if r.kind == "sb3 subproc"}
        print_table("(a) ratios vs SB3 SubprocVecEnv", [r for r in rows if r.kind in ours], sb3)
        print_table(
            "(a) an instruction string in the observation (ratios vs the same env without it)",
            [r for r in rows if r.kind == "vla_gym + instruction"],
            {r.n: r for r in rows if r.kind == "vla_gym"},
        )
        gymnasium = {r.n: r for r in rows if r.kind == "gymnasium async"}
        table = result_rows(rows, {"gymnasium async": gymnasium, "sb3 subproc": sb3})
        default = {r["envs"]: r["vs gymnasium async"] for r in table if r["runner"] == ours[0]}
        write_result(
            "vector_throughput",
            title="Vector layer throughput (null env, two 224x224x3 images)",
            claim=(
                f"`{ours[0]}` steps a null env with two 224x224x3 images at "
                + ", ".join(f"{ratio:.2f}x" for ratio in default.values())
                + " the wall-clock rate of Gymnasium's AsyncVectorEnv at "
                + "/".join(str(n) for n in default)
                + " envs (medians of "
                f"{args.rounds} interleaved rounds of {args.seconds} s; the lowest is claimed)."
            ),
            metric="vs Gymnasium AsyncVectorEnv (lowest)",
            unit="x",
            per_seed={"run": min(default.values())},
            rows=table,
        )

    if args.part in ("b", "all"):
        one = [("plain loop", "plain loop", panda_env), ("vla_gym", "vla_gym", panda_env)]
        rows = run_one_at_a_time("b", 1, one, args.rounds, args.panda_seconds)
        plain = rows[0]
        ideal = (plain.median("env_steps_per_s"), plain.median("env_steps_per_cpu_s"))
        kinds = args.panda_runners.split(",")
        for n in sizes:
            configs = [(kind, kind, panda_env) for kind in kinds]
            rows += run_one_at_a_time("b", n, configs, args.rounds, args.panda_seconds)
        print_table(
            f"(b) {PANDA_ID}, fast rendering; ratios vs the plain loop over the same envs; "
            "'of ideal' = rate / (min(envs, cores) x single-env plain-loop rate); "
            "'CPU eff.' = steps/CPU-s / single-env plain-loop steps/CPU-s",
            rows,
            {r.n: r for r in rows if r.kind == "plain loop"},
            ideal=ideal,
        )
        loops = {r.n: r for r in rows if r.kind == "plain loop"}
        table = result_rows(rows, {"plain loop": loops}, ideal=ideal)
        ours_b = [r for r in table if r["runner"] == "vla_gym" and r["envs"] > 1]
        lowest = min((r["of ideal"] for r in ours_b), default=float("nan"))
        write_result(
            "vector_throughput_panda",
            title=f"Vector layer throughput on {PANDA_ID} (fast rendering)",
            claim=(
                f"vla_gym's subprocess workers step {PANDA_ID} at no less than {lowest:.2f} of "
                "the ideal rate, min(envs, cores) x the single-env plain loop, at "
                + "/".join(str(r["envs"]) for r in ours_b)
                + " envs."
            ),
            metric="lowest, at more than 1 env",
            unit="of ideal",
            per_seed={"run": lowest},
            rows=table,
        )


if __name__ == "__main__":
    main()
