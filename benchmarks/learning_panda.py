"""Learning benchmark on VLA/PandaPickCube-v0 (state): SB3 SAC, SB3 PPO and our PPO MLP.

Same env settings (``obs_mode="flat"``, 100-step episodes), same seeds, same env-step budget.
Each (algorithm, seed) run is its own process with one torch thread, at most ``--jobs`` of them
at once (default: one per CPU, so that each run has a core and training wall times compare),
trains in slices of ``--eval-every`` env steps, and after each slice:
  * evaluates the deterministic policy with one shared evaluator (``--eval-episodes`` episodes
    from fixed seeds, success = ``success_once`` at the episode's end),
  * saves a checkpoint and appends the point to ``<out>/<algo>_seed<k>.jsonl``.
``--seeds 0 1 2`` runs every algorithm once per seed (``runner.seed`` / SB3's ``seed``: network
initialisation, env seeds and sampling; the evaluation episodes are the same for all), each with
its own log and checkpoint folder (``<out>/<algo>_seed<N>.jsonl``, ``<out>/ours_ppo_seed<N>/``,
``<out>/sb3_<algo>_seed<N>/``). Re-running the same command resumes every run from its last
checkpoint. A run that has finished (its budget or ``--max-minutes`` reached) is kept in
``benchmarks/results/raw/seeds/<name>_<algo>/seed<N>.json`` with its arguments; a later launch
on a machine without its log takes it from there when the arguments match, so the runs of one
result may be made in separate launches. Wall time counts training only (evaluation excluded).
At the end it prints a markdown table, writes a PNG plot (success vs env steps and vs wall time)
and, once every run has finished,
``benchmarks/results/<name>.json`` with each seed's success at the common env-step count and the
env steps it took to reach 90 % (``benchmarks/_results.py``). ``--speed-check`` writes
``<name>_speed.json``.

    nice -n 10 python benchmarks/learning_panda.py --seeds 0 1 2 --budget-steps 300000
    nice -n 10 python benchmarks/learning_panda.py --algos sb3_sac --seeds 2 --budget-steps 300000
    python benchmarks/learning_panda.py --report-only --seeds 0 1 2   # table, plot and result
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _learning_stages as stages  # noqa: E402  (benchmarks/ is on sys.path now)
from _results import RESULTS_DIR  # noqa: E402

ENV_ID = "VLA/PandaPickCube-v0"
# The episode runs on after the lift: with termination at success, a policy that hovers by the
# cube (0.3/step for 100 steps) out-earns one that lifts it and ends the episode (~1 once).
ENV_KWARGS = {"max_steps": 100, "terminate_on_success": False}
ALGOS = ("ours_ppo", "sb3_ppo", "sb3_sac")
LABELS = {"ours_ppo": "trainers PPO (MLP)", "sb3_ppo": "SB3 PPO", "sb3_sac": "SB3 SAC"}


# ----------------------------------------------------------------------- shared evaluation
def evaluate(predict, episodes: int, seed: int, num_envs: int = 8) -> float:
    """Success rate of ``predict(obs_batch) -> actions`` over ``episodes`` first episodes."""
    import gymnasium as gym

    import vla_gym  # noqa: F401

    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(ENV_ID, obs_mode="flat", **ENV_KWARGS) for _ in range(num_envs)]
    )
    successes: list[float] = []
    round_index = 0
    try:
        while len(successes) < episodes:
            obs, _ = envs.reset(seed=[seed + round_index * num_envs + i for i in range(num_envs)])
            finished = np.zeros(num_envs, dtype=bool)
            result = np.zeros(num_envs)
            while not finished.all():
                obs, _, terminated, truncated, info = envs.step(predict(obs))
                done = (terminated | truncated) & ~finished
                result[done] = np.asarray(info["success_once"], dtype=float)[done]
                finished |= done
            successes += result.tolist()
            round_index += 1
    finally:
        envs.close()
    return float(np.mean(successes[:episodes]))


# --------------------------------------------------------------------------- the learners
class OursPPO:
    def __init__(self, out: Path, seed: int) -> None:
        from trainers.config import load_config
        from trainers.train import Trainer

        config = load_config(
            "panda_pick_cube_ppo_mlp_cpu",
            [
                f"runner.log_dir={out}",
                f"runner.run_name=ours_ppo_seed{seed}",
                f"runner.seed={seed}",
                "runner.max_iterations=1000000",
                f"env.max_steps={ENV_KWARGS['max_steps']}",
                "env.kwargs={terminate_on_success: false}",
            ],
        )
        self.trainer = Trainer(config, resume_if_present=True)

    @property
    def env_steps(self) -> int:
        return self.trainer.env_steps

    def learn(self, until_steps: int) -> None:
        while self.trainer.env_steps < until_steps:
            metrics = self.trainer.train_iteration()
            self.trainer.logger.log(metrics, step=self.trainer.env_steps)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        import torch

        self.trainer.policy.eval()
        with torch.no_grad():
            out = self.trainer.policy.act(torch.as_tensor(obs), deterministic=True)
        self.trainer.policy.train()
        return out.actions.numpy()

    def save(self) -> None:
        self.trainer.save()
        self.trainer.logger.flush()


class SB3Learner:
    """An SB3 model (``trainers.sb3.make_model``) checkpointed in ``<out>/sb3_<algo>_seed<k>``.

    With ``normalize_obs`` the training env is SB3's ``VecNormalize`` (observations only): its
    running statistics are saved and reloaded with the model, and ``predict`` normalises the raw
    observations of the shared evaluator with them (without updating them).
    """

    def __init__(
        self,
        algo: str,
        out: Path,
        seed: int,
        hyperparameters: dict | None = None,
        *,
        num_envs: int | None = None,
        normalize_obs: bool = True,
    ) -> None:
        from stable_baselines3 import PPO, SAC
        from stable_baselines3.common.vec_env import VecNormalize

        from trainers.sb3 import make_model

        self.algo = algo
        self.path = out / f"sb3_{algo}_seed{seed}" / "model.zip"
        self.buffer_path = self.path.with_name("replay_buffer.pkl")
        self.stats_path = self.path.with_name("vecnormalize.pkl")
        self.model = make_model(
            algo,
            ENV_ID,
            num_envs=num_envs or (16 if algo == "ppo" else 1),
            seed=seed,
            log_dir=str(self.path.parent / "tensorboard"),
            env_kwargs=ENV_KWARGS,
            hyperparameters=hyperparameters,
            normalize_obs=normalize_obs,
        )
        if self.path.is_file():
            if normalize_obs != self.stats_path.is_file():
                raise ValueError(
                    f"{self.path} was trained with normalize_obs={not normalize_obs}; "
                    "resume it with the same setting"
                )
            cls = PPO if algo == "ppo" else SAC
            env = self.model.get_env()
            if isinstance(env, VecNormalize):
                env = VecNormalize.load(str(self.stats_path), env.venv)
            self.model = cls.load(str(self.path), env=env, device="cpu")
            if algo == "sac" and self.buffer_path.is_file():
                self.model.load_replay_buffer(str(self.buffer_path))

    @property
    def env_steps(self) -> int:
        return int(self.model.num_timesteps)

    def learn(self, until_steps: int) -> None:
        remaining = until_steps - self.env_steps
        if remaining > 0:
            self.model.learn(
                total_timesteps=remaining,
                reset_num_timesteps=False,
                tb_log_name=self.algo,
                progress_bar=False,
            )

    def predict(self, obs: np.ndarray) -> np.ndarray:
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is not None:  # normalize_obs reads the statistics, never updates them
            obs = vec_normalize.normalize_obs(obs)
        return self.model.predict(obs, deterministic=True)[0]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is not None:  # before the model: a model is never newer than its stats
            tmp_stats = self.stats_path.with_name("vecnormalize_tmp.pkl")
            vec_normalize.save(str(tmp_stats))
            os.replace(tmp_stats, self.stats_path)
        tmp = self.path.with_name("model_tmp.zip")
        self.model.save(str(tmp))
        os.replace(tmp, self.path)
        if self.algo == "sac":
            tmp_buffer = self.buffer_path.with_name("replay_buffer_tmp.pkl")
            self.model.save_replay_buffer(str(tmp_buffer))
            os.replace(tmp_buffer, self.buffer_path)


def run_one(
    algo: str,
    seed: int,
    out: Path,
    budget: int,
    every: int,
    episodes: int,
    minutes: float,
    hyperparameters: dict | None = None,
    *,
    sac_envs: int = 1,
    normalize_obs: bool = True,
) -> None:
    """Train one algorithm (resuming), appending ``{steps, wall, success}`` after each slice."""
    import torch

    torch.set_num_threads(1)
    log, points = log_path(out, algo, seed), load_points(out, algo, seed)
    learner = (
        OursPPO(out, seed)
        if algo == "ours_ppo"
        else SB3Learner(
            algo.split("_")[1],
            out,
            seed,
            hyperparameters,
            num_envs=sac_envs if algo == "sb3_sac" else 16,
            normalize_obs=normalize_obs,
        )
    )
    wall = points[-1]["wall_s"] if points else 0.0
    logged = points[-1]["env_steps"] if points else 0
    if learner.env_steps < logged:  # e.g. a kept run's log restored without its checkpoint
        raise SystemExit(
            f"{algo} seed {seed}: {log} reaches {logged} env steps but the checkpoint has "
            f"{learner.env_steps}; remove the log to train this run again"
        )
    if not points:
        points.append(
            {"env_steps": 0, "wall_s": 0.0, "success": evaluate(learner.predict, episodes, 777)}
        )
        log.write_text(json.dumps(points[0]) + "\n")
    while learner.env_steps < budget and wall < minutes * 60:
        start = time.perf_counter()
        learner.learn(min(budget, (learner.env_steps // every + 1) * every))
        wall += time.perf_counter() - start
        learner.save()
        point = {
            "env_steps": learner.env_steps,
            "wall_s": round(wall, 1),
            "success": evaluate(learner.predict, episodes, 777),
        }
        with log.open("a") as handle:
            handle.write(json.dumps(point) + "\n")
        print(f"{algo} seed {seed}: {point}", flush=True)


def speed_check(
    out: Path, rounds: int, steps_per_round: int, normalize_obs: bool, result_name: str
) -> str:
    """Env steps/s of our PPO vs SB3 PPO measured interleaved in one process.

    Both learners train alternately for ``steps_per_round`` env steps, ``rounds`` times, so they
    see the same share of a busy machine; wall time of each slice is summed per learner.
    """
    import torch

    torch.set_num_threads(1)
    ours = OursPPO(out / "speed", 0)
    theirs = SB3Learner("ppo", out / "speed", 0, normalize_obs=normalize_obs)
    totals = {"ours_ppo": [0, 0.0], "sb3_ppo": [0, 0.0]}
    slices: dict[str, list[float]] = {"ours_ppo": [], "sb3_ppo": []}
    for _ in range(rounds):
        for name, learner in (("ours_ppo", ours), ("sb3_ppo", theirs)):
            start_steps, start = learner.env_steps, time.perf_counter()
            learner.learn(learner.env_steps + steps_per_round)
            steps, wall = learner.env_steps - start_steps, time.perf_counter() - start
            totals[name][0] += steps
            totals[name][1] += wall
            slices[name].append(steps / wall)
    rates = {name: steps / wall for name, (steps, wall) in totals.items()}
    medians = {name: float(np.median(values)) for name, values in slices.items()}
    lines = [
        "| learner | env steps | wall (s) | env steps/s | median slice steps/s | slices |",
        "|---|---|---|---|---|---|",
    ]
    for name, (steps, wall) in totals.items():
        shown = ", ".join(f"{rate:.0f}" for rate in slices[name])
        lines.append(
            f"| {LABELS[name]} | {steps:,} | {wall:.1f} | {rates[name]:.1f} | "
            f"{medians[name]:.1f} | {shown} |"
        )
    lines.append(
        f"\ntrainers PPO / SB3 PPO steps/s: {rates['ours_ppo'] / rates['sb3_ppo']:.2f}x overall, "
        f"{medians['ours_ppo'] / medians['sb3_ppo']:.2f}x median slice"
    )
    from _results import write_result

    write_result(
        f"{result_name}_speed",
        title=f"PPO training speed on {ENV_ID} (state): trainers vs SB3",
        claim=(
            "The trainers PPO (MLP recipe `panda_pick_cube_ppo_mlp_cpu`) trains at "
            f"{rates['ours_ppo'] / rates['sb3_ppo']:.2f}x the env steps per second of SB3 PPO, "
            f"the two measured in alternating slices of {steps_per_round:,} env steps in one "
            "process."
        ),
        metric="trainers PPO / SB3 PPO",
        unit="x",
        per_seed={"run": rates["ours_ppo"] / rates["sb3_ppo"]},
        rows=[
            {
                "learner": LABELS[name],
                "env steps": steps,
                "wall (s)": wall,
                "env steps/s": rates[name],
                "median slice steps/s": medians[name],
            }
            for name, (steps, wall) in totals.items()
        ],
        env_steps=sum(steps for steps, _ in totals.values()),
        wall_seconds=sum(wall for _, wall in totals.values()),
    )
    return "\n".join(lines)


# ------------------------------------------------------------------ launching and keeping
# The options that define what a run computes: passed to its worker and kept with its record.
RUN_OPTIONS = (
    "budget_steps",
    "max_minutes",
    "eval_every",
    "eval_episodes",
    "sb3_hyperparameters",
    "sac_envs",
    "sb3_normalize_obs",
)


def worker_command(args: argparse.Namespace, algo: str, seed: int) -> list[str]:
    def flag(name: str) -> str:
        option, value = name.replace("_", "-"), getattr(args, name)
        if isinstance(value, bool):  # a BooleanOptionalAction
            return f"--{option}" if value else f"--no-{option}"
        return f"--{option}={value}"

    run = [sys.executable, __file__, "--worker", f"{algo}:{seed}", f"--out={args.out}"]
    return [*run, *map(flag, RUN_OPTIONS)]


def run_worker(command: list[str]) -> int:
    """One run's worker process, to its end: its exit code."""
    return subprocess.run(command).returncode


def kept_run(args: argparse.Namespace, algo: str, seed: int) -> argparse.Namespace:
    """One run's arguments as ``_learning_stages`` keeps finished seeds: the record is
    ``<results-dir>/raw/seeds/<name>_<algo>/seed<N>.json``."""
    options = {name: getattr(args, name) for name in RUN_OPTIONS}
    options["sb3_hyperparameters"] = json.loads(args.sb3_hyperparameters)
    return argparse.Namespace(
        work=str(Path(args.out) / f"{args.name}_{algo}"),
        results_dir=args.results_dir,
        seed=seed,
        algo=algo,
        **options,
    )


def is_finished(points: list[dict], args: argparse.Namespace) -> bool:
    last = points[-1] if points else {"env_steps": 0, "wall_s": 0.0}
    return last["env_steps"] >= args.budget_steps or last["wall_s"] >= args.max_minutes * 60


def restore_kept(args: argparse.Namespace, algos: list[str], seeds: list[int]) -> None:
    """Write the log of every run that has none here but was kept from the same arguments."""
    for algo in algos:
        for seed in seeds:
            log = log_path(Path(args.out), algo, seed)
            kept = None if log.exists() else stages.load_archived(kept_run(args, algo, seed))
            if kept is not None:
                print(f"{algo} seed {seed}: finished earlier, from the kept record", flush=True)
                log.write_text("".join(json.dumps(p) + "\n" for p in kept["points"]))


def train_all(args: argparse.Namespace, algos: list[str], seeds: list[int]) -> None:
    """Run every (algorithm, seed) not finished yet, ``--jobs`` at once, then keep the
    finished ones."""
    out = Path(args.out)
    todo = [
        (algo, seed)
        for algo in algos
        for seed in seeds
        if not is_finished(load_points(out, algo, seed), args)
    ]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        commands = [worker_command(args, algo, seed) for algo, seed in todo]
        codes = list(pool.map(run_worker, commands))
    if any(codes):
        print(f"worker exit codes: {dict(zip(todo, codes, strict=True))}", file=sys.stderr)
    for algo in algos:
        for seed in seeds:
            points = load_points(out, algo, seed)
            if is_finished(points, args):
                stages.archive_seed(kept_run(args, algo, seed), {"points": points})


# ---------------------------------------------------------------------------- the report
def log_path(out: Path, algo: str, seed: int) -> Path:
    return out / f"{algo}_seed{seed}.jsonl"


def load_points(out: Path, algo: str, seed: int) -> list[dict]:
    log = log_path(out, algo, seed)
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def success_at(points: list[dict], steps: int) -> float | None:
    """Success of the last evaluation at or before ``steps`` env steps."""
    before = [p for p in points if p["env_steps"] <= steps]
    return before[-1]["success"] if before else None


def training_returns(out: Path, algo: str, seed: int) -> list[tuple[int, float]]:
    """(env steps, mean return of training episodes) from the run's TensorBoard logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if algo == "ours_ppo":
        folder, tag = out / f"ours_ppo_seed{seed}" / "tensorboard", "env/return"
    else:
        folder, tag = out / f"{algo}_seed{seed}" / "tensorboard", "rollout/ep_rew_mean"
    points: dict[int, float] = {}
    for events_dir in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(events_dir))
        events.Reload()
        if tag in events.Tags()["scalars"]:
            points.update({e.step: e.value for e in events.Scalars(tag)})
    return sorted(points.items())


def report(out: Path, seeds: list[int], plot_path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {algo: [load_points(out, algo, s) for s in seeds] for algo in ALGOS}
    runs = {algo: [p for p in pts if p] for algo, pts in runs.items() if any(pts)}
    trained = [pts for pts in runs.values() if max(p["env_steps"] for p in pts[0]) > 0]
    common = min(max(p["env_steps"] for p in pts[0]) for pts in trained) if trained else 0
    lines = [
        f"| algorithm | env steps | train wall (min) | env steps/s | success at {common:,} steps "
        "| best success | first eval >= 90% (steps / min) |",
        "|---|---|---|---|---|---|---|",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for algo, per_seed in runs.items():
        for seed_index, pts in enumerate(per_seed):
            steps = [p["env_steps"] for p in pts]
            walls = [p["wall_s"] / 60 for p in pts]
            success = [p["success"] for p in pts]
            label = LABELS[algo] if seed_index == 0 else None
            axes[0].plot(steps, success, marker=".", label=label)
            axes[1].plot(walls, success, marker=".", label=label)
        last = [pts[-1] for pts in per_seed]
        reached = [next((p for p in pts if p["success"] >= 0.9), None) for pts in per_seed]
        at_common = [success_at(pts, common) for pts in per_seed]
        steps_total = np.mean([p["env_steps"] for p in last])
        wall_total = np.mean([p["wall_s"] for p in last])
        first = (
            " / ".join(f"{r['env_steps']:,} / {r['wall_s'] / 60:.1f}" for r in reached if r)
            or "not reached"
        )
        lines.append(
            f"| {LABELS[algo]} | {steps_total:,.0f} | {wall_total / 60:.1f} | "
            f"{steps_total / max(wall_total, 1e-9):.0f} | "
            f"{np.mean([s for s in at_common if s is not None]):.2f} | "
            f"{np.mean([max(p['success'] for p in pts) for pts in per_seed]):.2f} | {first} |"
        )
    lines.append("")
    lines.append("Evaluations (env steps: success rate), first seed:")
    for algo, per_seed in runs.items():
        points = ", ".join(f"{p['env_steps']:,}: {p['success']:.2f}" for p in per_seed[0])
        lines.append(f"- {LABELS[algo]}: {points}")
    lines.append("")
    lines.append("Mean training-episode return (TensorBoard) near the same env steps, first seed:")
    for algo in runs:
        curve = training_returns(out, algo, seeds[0])
        marks = [16_384, 32_768, 49_152, 65_536, 81_920]
        shown = []
        for mark in marks:
            near = [v for step, v in curve if abs(step - mark) <= 2_048]
            if near:
                shown.append(f"{mark:,}: {near[-1]:.1f}")
        lines.append(f"- {LABELS[algo]}: {', '.join(shown) or 'n/a'}")
    for axis, xlabel in zip(axes, ("env steps", "training wall time (min)"), strict=True):
        axis.set_xlabel(xlabel)
        axis.set_ylabel("success rate (deterministic eval)")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"{ENV_ID} (state), seeds {seeds}")
    fig.tight_layout()
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot_path, dpi=100)
    return "\n".join(lines)


def write_json(args: argparse.Namespace, algos: list[str], seeds: list[int], plot: Path) -> None:
    """The result file, once every (algorithm, seed) run has finished."""
    from _results import write_result

    out, name = Path(args.out), args.name
    runs = {algo: {seed: load_points(out, algo, seed) for seed in seeds} for algo in algos}
    if not all(
        is_finished(points, args) for by_seed in runs.values() for points in by_seed.values()
    ):
        print("no result file yet: some runs have not finished")
        return
    # every run is compared at the env steps all of them reached
    finals = [points[-1] for by_seed in runs.values() for points in by_seed.values()]
    common = min(final["env_steps"] for final in finals)
    per_seed = {}
    for seed in seeds:
        per_seed[seed] = {}
        for algo in algos:
            points = runs[algo][seed]
            # the first evaluation at >= 90 %, or None (not reached: in any seed, this keeps the
            # column out of the mean and std)
            reached = next((p for p in points if p["success"] >= 0.9), None)
            label = LABELS[algo]
            per_seed[seed][f"{label} success (%)"] = 100 * success_at(points, common)
            per_seed[seed][f"{label} env steps to 90 %"] = reached and reached["env_steps"]
            per_seed[seed][f"{label} training minutes to 90 %"] = reached and reached["wall_s"] / 60
    lead = "ours_ppo" if "ours_ppo" in algos else algos[0]
    means = {
        algo: np.mean([v[f"{LABELS[algo]} success (%)"] for v in per_seed.values()])
        for algo in algos
    }
    others = "; ".join(f"{LABELS[a]} {means[a]:.1f} %" for a in algos if a != lead)
    write_result(
        name,
        title=f"MLP baselines on {ENV_ID} (state): trainers PPO vs SB3",
        claim=(
            f"After {common:,} env steps, {LABELS[lead]} reaches {means[lead]:.1f} % held-out "
            f"success (mean over {len(seeds)} seeds{'; ' + others if others else ''}), "
            "deterministic policy, same evaluation episodes for all."
        ),
        metric=f"{LABELS[lead]} success (%)",
        unit="%",
        per_seed=per_seed,
        plot=plot,
        env_steps=sum(final["env_steps"] for final in finals),
        wall_seconds=sum(final["wall_s"] for final in finals),
        directory=Path(args.results_dir),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--name", default="learning_panda", help="result file stem")
    parser.add_argument("--budget-steps", type=int, default=300_000)
    parser.add_argument("--max-minutes", type=float, default=60.0, help="training wall per run")
    parser.add_argument("--eval-every", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "runs" / "learning_panda"))
    parser.add_argument("--plot", default="", help="default: benchmarks/results/<name>.png")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--speed-check",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only measure our PPO vs SB3 PPO steps/s, interleaved in one process",
    )
    parser.add_argument("--speed-steps", type=int, default=4096, help="env steps per slice")
    parser.add_argument(
        "--sb3-hyperparameters",
        default="{}",
        help="JSON overriding the SB3 defaults of trainers.sb3, e.g. '{\"target_entropy\": 0}'",
    )
    parser.add_argument(
        "--sb3-normalize-obs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SB3 PPO and SAC observe through VecNormalize (observations only; default: on)",
    )
    parser.add_argument("--sac-envs", type=int, default=1, help="SB3 SAC's number of envs")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="runs at once (default: CPUs)"
    )
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds
    plot = Path(args.plot or Path(args.results_dir) / f"{args.name}.png")
    if args.speed_check:
        print(
            speed_check(out, args.speed_check, args.speed_steps, args.sb3_normalize_obs, args.name)
        )
        return 0
    if args.worker:
        algo, seed = args.worker.split(":")
        run_one(
            algo,
            int(seed),
            out,
            args.budget_steps,
            args.eval_every,
            args.eval_episodes,
            args.max_minutes,
            json.loads(args.sb3_hyperparameters),
            sac_envs=args.sac_envs,
            normalize_obs=args.sb3_normalize_obs,
        )
        return 0
    algos = args.algos.split(",")
    restore_kept(args, algos, seeds)
    if not args.report_only:
        train_all(args, algos, seeds)
    print(report(out, seeds, plot))
    print(f"plot: {plot}")
    write_json(args, algos, seeds, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
