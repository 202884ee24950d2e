"""Recorded CALVIN start states: where every subtask of a chain begins.

The official evaluation scores subtask k of a chain from wherever subtask k-1 left the arm and
the blocks, but a reset from the evaluation's symbolic start states only ever shows a first
subtask with the arm at its neutral pose. ``record_chain_starts`` runs the scripted expert
through chains drawn like the evaluation and keeps, for every subtask the expert reaches, the
scene, ``robot_obs``, ``scene_obs`` and the rest of its chain; ``CalvinEnv(start_states=PATH)``
then resets to one of them (drawn with the env's ``np_random``, so equal seeds give equal
starts), e.g. for RL on single subtasks spread over the chain positions like the evaluation's::

    states = record_chain_starts("VLA/CALVIN-D-v0", chains=300, seed=0)
    save_start_states("starts.npz", states)
    env = gym.make("VLA/CALVIN-D-v0", num_subtasks=1, start_states="starts.npz")

Rows are drawn in proportion to an optional ``weight`` (uniformly without one);
``weighted_by_task`` sets it per starting subtask, e.g. to spend RL episodes where a policy
succeeds sometimes::

    save_start_states("weighted.npz", states.weighted_by_task({"open_drawer": 0.1, ...}))

A file is a NumPy ``.npz`` archive of the arrays of ``StartStates`` (``FIELDS`` and
``weight``; a file without ``weight`` loads with equal weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vla_gym.envs.calvin.layout import SCENES
from vla_gym.envs.calvin.tasks import ORACLES

CHAIN_LENGTH = 5
ROBOT_OBS_DIM, SCENE_OBS_DIM = 15, 24
FIELDS = ("scene", "robot_obs", "scene_obs", "chain", "position")


@dataclass(frozen=True)
class StartStates:
    """``N`` recorded states; row ``i`` starts subtask ``chain[i, position[i]]``."""

    scene: np.ndarray  # (N,) scene names
    robot_obs: np.ndarray  # (N, 15)
    scene_obs: np.ndarray  # (N, 24)
    chain: np.ndarray  # (N, 5) task names: the whole chain the state was recorded in
    position: np.ndarray  # (N,) index into ``chain`` of the subtask that starts here
    # (N,) relative frequency of each row in ``CalvinEnv``'s resets; None: all equal
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.scene)
        weight = np.ones(n) if self.weight is None else np.asarray(self.weight, dtype=np.float64)
        object.__setattr__(self, "weight", weight)  # frozen: set once, as a float array
        if weight.shape != (n,):
            raise ValueError(
                f"CALVIN start states: weight must have shape {(n,)}, got {weight.shape}"
            )
        if not np.all(np.isfinite(weight)) or np.any(weight < 0) or (n and weight.sum() <= 0):
            raise ValueError("CALVIN start states: weights must be finite, >= 0 and not all 0")
        shapes = {
            "scene": (n,),
            "robot_obs": (n, ROBOT_OBS_DIM),
            "scene_obs": (n, SCENE_OBS_DIM),
            "chain": (n, CHAIN_LENGTH),
            "position": (n,),
        }
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(
                    f"CALVIN start states: {name} must have shape {shape}, "
                    f"got {np.shape(getattr(self, name))}"
                )
        bad_scenes = sorted(set(self.scene.tolist()) - set(SCENES))
        if bad_scenes:
            raise ValueError(f"CALVIN start states: unknown scenes {bad_scenes}")
        bad_tasks = sorted(set(self.chain.ravel().tolist()) - set(ORACLES))
        if bad_tasks:
            raise ValueError(f"CALVIN start states: unknown tasks {bad_tasks}")
        if n and (self.position.min() < 0 or self.position.max() >= CHAIN_LENGTH):
            raise ValueError(
                f"CALVIN start states: position must be in [0, {CHAIN_LENGTH - 1}], got "
                f"{self.position.min()}..{self.position.max()}"
            )
        for name in ("robot_obs", "scene_obs"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"CALVIN start states: {name} has non-finite values")

    def __len__(self) -> int:
        return len(self.scene)

    def tasks(self, index: int, count: int) -> list[str]:
        """Up to ``count`` subtasks of row ``index``'s chain, from the one that starts there."""
        start = int(self.position[index])
        return [str(t) for t in self.chain[index, start : start + count]]

    def starting_tasks(self) -> np.ndarray:
        """(N,) the subtask each row starts."""
        return self.chain[np.arange(len(self)), self.position]

    def of_scenes(self, scenes: tuple[str, ...]) -> StartStates:
        """The rows recorded in ``scenes``."""
        keep = np.isin(self.scene, list(scenes))
        return StartStates(**{name: getattr(self, name)[keep] for name in (*FIELDS, "weight")})

    def weighted_by_task(self, task_weights: Mapping[str, float]) -> StartStates:
        """The same rows, each drawn in proportion to the weight of the subtask it starts
        (e.g. to spend RL episodes on the tasks a policy sometimes solves); every task a row
        starts must have a weight."""
        tasks = self.starting_tasks()
        missing = sorted(set(tasks.tolist()) - set(task_weights))
        if missing:
            raise ValueError(f"CALVIN start states: no weight for the tasks {missing}")
        weight = np.array([task_weights[str(t)] for t in tasks], dtype=np.float64)
        return replace(self, weight=weight)

    def draw(self, rng: np.random.Generator) -> int:
        """A row index drawn by ``weight`` (uniform weights: ``rng.integers``, the same draws
        as a file without weights)."""
        if np.all(self.weight == self.weight[0]):
            return int(rng.integers(len(self)))
        return int(rng.choice(len(self), p=self.weight / self.weight.sum()))


def save_start_states(path: str | Path, states: StartStates) -> Path:
    """Write ``states`` to ``path`` (an ``.npz`` archive); returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:  # np.savez would append ".npz" to another suffix
        np.savez(
            file,
            scene=states.scene.astype(str),
            robot_obs=states.robot_obs.astype(np.float64),
            scene_obs=states.scene_obs.astype(np.float64),
            chain=states.chain.astype(str),
            position=states.position.astype(np.int64),
            weight=states.weight,
        )
    return path


def load_start_states(path: str | Path) -> StartStates:
    """Read a file written by ``save_start_states``; a missing file or array is an error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CALVIN start states: no file {path}")
    with np.load(path, allow_pickle=False) as archive:
        missing = [name for name in FIELDS if name not in archive.files]
        if missing:
            raise ValueError(f"CALVIN start states: {path} lacks the arrays {missing}")
        weight = archive["weight"] if "weight" in archive.files else None  # optional
        return StartStates(**{name: archive[name] for name in FIELDS}, weight=weight)


def record_chain_starts(
    env_id: str = "VLA/CALVIN-D-v0", chains: int = 100, seed: int = 0, **env_kwargs
) -> StartStates:
    """Run the scripted expert through ``chains`` chains of ``env_id`` (reset seeds ``seed``,
    ``seed + 1``, ...; no rendering) and keep the state at the start of every subtask it
    reaches: the chain's start, then the state in which each solved subtask ended.
    """
    import gymnasium as gym

    import vla_gym  # registers the IDs; the expert

    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    env = gym.make(env_id, obs_mode="flat", num_subtasks=CHAIN_LENGTH, **env_kwargs)
    expert = vla_gym.make_expert(env_id)
    rows: dict[str, list] = {name: [] for name in FIELDS}

    def keep(info: dict, position: int) -> None:
        rows["scene"].append(info["scene"])
        rows["robot_obs"].append(np.asarray(info["robot_obs"], np.float64))
        rows["scene_obs"].append(np.asarray(info["scene_obs"], np.float64))
        rows["chain"].append(list(info["tasks"]))
        rows["position"].append(position)

    try:
        for i in range(chains):
            obs, info = env.reset(seed=seed + i)
            expert.reset()
            keep(info, 0)
            done = False
            while not done:
                solved = info["subtasks_solved"]
                obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
                done = terminated or truncated
                if info["subtasks_solved"] > solved and not done:
                    keep(info, info["subtasks_solved"])
    finally:
        env.close()
    return StartStates(
        scene=np.array(rows["scene"], dtype=str),
        robot_obs=np.array(rows["robot_obs"]).reshape(-1, ROBOT_OBS_DIM),
        scene_obs=np.array(rows["scene_obs"]).reshape(-1, SCENE_OBS_DIM),
        chain=np.array(rows["chain"], dtype=str).reshape(-1, CHAIN_LENGTH),
        position=np.array(rows["position"], dtype=np.int64),
    )
