"""Collect scripted-expert demonstrations through the vector layer.

    python -m trainers collect --env VLA/PandaPickCubeVision-v0 --episodes 20 --out demos/panda \
        --num-envs 4 env.kwargs.image_size=64 expert.kwargs.max_speed=0.025 [--format lerobot]

Each vector slot runs its own expert (``vla_gym.experts.make_expert``) on the per-env slice of
the batched ``info``. Envs run with ``action_chunk=1`` so every env step is recorded; training
cuts chunks from consecutive steps (``trainers/demos.py``). Re-running with the same ``--out``
continues an interrupted collection up to ``--episodes``. ``--format lerobot`` writes a
LeRobotDataset instead (``trainers/lerobot_dataset.py``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np

from trainers.demos import DemoWriter, Episode, EpisodeWriter
from trainers.tracking import ProgressBar, progress_bar_enabled
from vla_gym.cli import ENV_KWARGS, add_env_kwargs_flag, parse_kwargs, parse_mapping

FORMATS = ("native", "lerobot")
EXPERT_KWARGS = "expert.kwargs"


def env_slice(tree: Any, index: int) -> Any:
    """Env ``index``'s entries of a batched observation or vector ``info`` (``_key`` masks)."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            if key.startswith("_"):
                continue
            mask = tree.get(f"_{key}")
            if mask is not None and not bool(np.asarray(mask)[index]):
                continue
            out[key] = env_slice(value, index)
        return out
    return tree[index]


class EpisodeRecorder:
    """Per-step buffers of one vector slot."""

    def __init__(self, cameras: list[str]) -> None:
        self.cameras = cameras
        self.clear()

    def clear(self) -> None:
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.images: dict[str, list[np.ndarray]] = {cam: [] for cam in self.cameras}
        self.instructions: list[str] = []  # per step: a CALVIN chain switches at each subtask

    def add(self, obs: Any, action: np.ndarray, reward: float) -> None:
        if isinstance(obs, dict):
            self.states.append(np.asarray(obs["state"], dtype=np.float32))
            for cam in self.cameras:
                self.images[cam].append(np.asarray(obs["images"][cam], dtype=np.uint8))
            self.instructions.append(str(obs["instruction"]))
        else:
            self.states.append(np.asarray(obs, dtype=np.float32))
            self.instructions.append("")
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.rewards.append(float(reward))

    def episode(self, success: bool) -> Episode:
        return Episode(
            state=np.stack(self.states),
            action=np.stack(self.actions),
            reward=np.asarray(self.rewards, dtype=np.float32),
            images={cam: np.stack(frames) for cam, frames in self.images.items()},
            instruction=self.instructions,
            success=success,
        )


def collect(
    env_id: str,
    episodes: int,
    out: str,
    *,
    num_envs: int = 4,
    seed: int = 0,
    backend: str = "sync",
    only_success: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    expert_kwargs: dict[str, Any] | None = None,
    action_noise: float = 0.0,
    verbose: bool = True,
    format: str = "native",
    progress: str = "auto",
) -> int:
    """Write ``episodes`` expert episodes of ``env_id`` to ``out`` (continuing what is there);
    return how many episodes ``out`` holds.

    ``format`` is ``"native"`` (``trainers/demos.py``) or ``"lerobot"`` (a LeRobotDataset).
    ``progress`` (``auto``/``on``/``off``) shows a progress bar over the episodes; ``auto``:
    only on a terminal outside CI.

    ``action_noise`` > 0 perturbs the executed actions (DART): Gaussian noise of that std on
    every action dimension but the last (the gripper), clipped to the action bounds, while the
    stored label stays the expert's clean action. The closed-loop expert then demonstrates how
    to recover from the perturbed states, which spreads the corrective (e.g. x/y) signal over
    many more steps than a clean run that converges in a few.
    """
    import vla_gym

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    env_kwargs = {**(env_kwargs or {}), "action_chunk": 1}
    writer: EpisodeWriter | None = None
    bar: ProgressBar | None = None
    envs = vla_gym.make_vec(
        env_id,
        num_envs,
        backend=backend,
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
        **env_kwargs,
    )
    try:
        space = envs.single_observation_space
        vision = isinstance(space, gym.spaces.Dict)
        cameras = list(space["images"].spaces) if vision and "images" in space.spaces else []
        state_space = space["state"] if vision else space
        meta = {
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "obs_mode": "vla" if vision else "flat",
            "fps": int(envs.metadata.get("render_fps", 10)),
            "cameras": {cam: list(space["images"][cam].shape[:2]) for cam in cameras},
            "state_dim": int(np.prod(state_space.shape)),
            "action_dim": int(envs.single_action_space.shape[-1]),
        }
        writer = open_writer(format, out, meta)
        if writer.num_episodes >= episodes:
            return writer.num_episodes
        experts = [vla_gym.make_expert(env_id, **(expert_kwargs or {})) for _ in range(num_envs)]
        recorders = [EpisodeRecorder(cameras) for _ in range(num_envs)]
        # A resumed collection starts from fresh seeds so it does not repeat stored episodes.
        base_seed = seed + 1000 * writer.num_episodes
        obs, infos = envs.reset(seed=base_seed)
        episode_seeds: list[int | None] = [base_seed + i for i in range(num_envs)]
        resetting = np.zeros(num_envs, dtype=bool)
        for expert in experts:
            expert.reset()
        noise_rng = np.random.default_rng(base_seed)
        started, failed, successes, written = time.time(), 0, 0, 0
        bar = ProgressBar(
            progress_bar_enabled(progress),
            episodes,
            writer.num_episodes,
            unit="episode",
            keys=("success",),
        )
        while writer.num_episodes < episodes:
            actions = np.stack(
                [
                    experts[i].act(env_slice(obs, i), env_slice(infos, i))
                    if not resetting[i]
                    else np.zeros(envs.single_action_space.shape, np.float32)
                    for i in range(num_envs)
                ]
            )
            executed = actions
            if action_noise > 0:
                noise = noise_rng.normal(0.0, action_noise, actions.shape).astype(np.float32)
                noise[..., -1] = 0.0  # the gripper command stays the expert's
                low, high = envs.single_action_space.low, envs.single_action_space.high
                executed = np.clip(actions + noise, low, high)
            next_obs, rewards, terminated, truncated, infos = envs.step(executed)
            for i in range(num_envs):
                if resetting[i]:  # NEXT_STEP autoreset: this step reset env i
                    resetting[i] = False
                    experts[i].reset()
                    recorders[i].clear()
                    episode_seeds[i] = None
                    continue
                recorders[i].add(env_slice(obs, i), actions[i], rewards[i])
                if terminated[i] or truncated[i]:
                    resetting[i] = True
                    info = env_slice(infos, i)
                    success = bool(info.get("success_once", info.get("is_success", False)))
                    if success or not only_success:
                        if writer.num_episodes < episodes:
                            record = writer.write(recorders[i].episode(success), episode_seeds[i])
                            written, successes = written + 1, successes + success
                            bar.update({"success": successes / written})
                            if verbose and not bar.enabled:
                                print(
                                    f"episode {writer.num_episodes}/{episodes}: length "
                                    f"{record['length']}, success {success}",
                                    flush=True,
                                )
                    else:
                        failed += 1
            obs = next_obs
        bar.close()  # before the summary line (closing again in `finally` is harmless)
        if verbose:
            print(
                f"{writer.num_episodes} episodes in {out} ({written} new, success "
                f"{successes / max(written, 1):.0%}, discarded {failed} failures) in "
                f"{time.time() - started:.0f} s"
            )
        return writer.num_episodes
    finally:
        if writer is not None:
            writer.close()  # a LeRobotDataset completes its files here (also on Ctrl-C)
        if bar is not None:
            bar.close()
        envs.close()


def open_writer(format: str, out: str, meta: dict[str, Any]) -> EpisodeWriter:
    """A ``DemoWriter`` or ``LeRobotWriter`` (same interface) on ``out``."""
    if format == "lerobot":
        from trainers.lerobot_dataset import LeRobotWriter

        return LeRobotWriter(out, meta)
    return DemoWriter(out, meta)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="env ID, e.g. VLA/PandaPickCubeVision-v0")
    parser.add_argument("--episodes", type=int, required=True, help="episodes to store in total")
    parser.add_argument("--out", required=True, help="dataset directory (created or continued)")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--backend", default="sync", help="make_vec backend: sync | subproc | ray")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only-success", action="store_true", help="store successful episodes only"
    )
    parser.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        help="std of Gaussian noise on the executed (not the stored) actions (DART)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="native",
        help="native demo directory or LeRobotDataset",
    )
    parser.add_argument(
        "--progress", choices=("auto", "on", "off"), default="auto", help="progress bar (auto: TTY)"
    )
    add_env_kwargs_flag(parser)
    parser.add_argument(
        "kwargs",
        nargs="*",
        metavar="env.kwargs.KEY=VALUE",
        help="env kwargs, e.g. env.kwargs.image_size=64, and scripted-expert kwargs, e.g. "
        "expert.kwargs.max_speed=0.025 (PandaPickCube)",
    )


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise SystemExit(f"--episodes must be >= 1, got {args.episodes}")
    kwargs = parse_kwargs(args.kwargs, prefixes=(ENV_KWARGS, EXPERT_KWARGS))
    collect(
        args.env,
        args.episodes,
        args.out,
        num_envs=args.num_envs,
        seed=args.seed,
        backend=args.backend,
        only_success=args.only_success,
        env_kwargs={**parse_mapping(args.env_kwargs), **kwargs[ENV_KWARGS]},
        expert_kwargs=kwargs[EXPERT_KWARGS],
        action_noise=args.action_noise,
        format=args.format,
        progress=args.progress,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.collect", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
