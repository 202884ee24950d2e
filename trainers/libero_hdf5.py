"""LIBERO's demonstration files (robomimic-layout HDF5) as a demonstration source.

LIBERO publishes one HDF5 file per task::

    data                      attrs: problem_info (JSON with "language_instruction"),
                              env_args, bddl_file_name, macros_image_convention, ...
    data/demo_N/actions       (T, 7) OSC_POSE actions, the env's action space
    data/demo_N/obs/          agentview_rgb, eye_in_hand_rgb (T, H, W, 3) uint8,
                              ee_pos (T, 3), ee_ori (T, 3) axis-angle, gripper_states (T, 2),
                              joint_states (T, 7), ...
    data/demo_N/rewards, dones (T,)

Reading maps it onto the observations of ``VLA/LIBERO-*`` envs: ``agentview_rgb`` becomes
camera ``agentview`` and ``eye_in_hand_rgb`` camera ``wrist``, turned like the env's frames
(LIBERO stores robosuite's raw frames, bottom row first under robosuite's default "opengl"
image convention; the env turns them by 180 degrees unless ``rotate_180=False``), and the state
is the env's 8-D ``ee_pos + ee_ori + gripper_states``. Converting writes a project demo
directory (``trainers.demos``) that ``python -m trainers sft --demos DIR`` trains on::

    python -m trainers convert-libero pick_up_the_black_bowl_..._demo.hdf5 --out demos/libero

:func:`write_libero_hdf5` writes the same layout (from env-oriented episodes), for tests and for
exporting the project's own rollouts to tools that read LIBERO's files.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

# LIBERO's dataset keys -> the env's camera names
CAMERA_KEYS = {"agentview_rgb": "agentview", "eye_in_hand_rgb": "wrist"}
STATE_KEYS = ("ee_pos", "ee_ori", "gripper_states")  # concatenated: the env's 8-D state
# how robosuite stored the frames (data attribute "macros_image_convention")
CONVENTIONS = ("opengl", "opencv")  # bottom row first / top row first
SUITE_IDS = {
    "libero_spatial": "VLA/LIBERO-Spatial-v0",
    "libero_object": "VLA/LIBERO-Object-v0",
    "libero_goal": "VLA/LIBERO-Goal-v0",
    "libero_10": "VLA/LIBERO-10-v0",
    "libero_90": "VLA/LIBERO-90-v0",
}
LIBERO_FPS = 20


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py comes with the libero extra
        raise ImportError(
            'reading LIBERO demonstration files needs h5py: pip install -e ".[libero]"'
        ) from None
    return h5py


def to_env_frames(frames: np.ndarray, convention: str, rotate_180: bool = True) -> np.ndarray:
    """Frames as stored by robosuite (``convention``) -> the env's orientation."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown image convention {convention!r}; expected one of {CONVENTIONS}")
    upright = frames[:, ::-1] if convention == "opengl" else frames
    # the env shows upright[:, ::-1] (turned by 180 degrees) or robosuite's own upright[::-1]
    return np.ascontiguousarray(upright[:, :, ::-1] if rotate_180 else upright[:, ::-1])


def from_env_frames(frames: np.ndarray, convention: str, rotate_180: bool = True) -> np.ndarray:
    """The inverse of :func:`to_env_frames`."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown image convention {convention!r}; expected one of {CONVENTIONS}")
    upright = frames[:, :, ::-1] if rotate_180 else frames[:, ::-1]
    return np.ascontiguousarray(upright[:, ::-1] if convention == "opengl" else upright)


def _attr(group: Any, name: str, default: Any = None) -> Any:
    value = group.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _demo_order(name: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", name)
    return (int(digits[-1]) if digits else -1, name)


def file_info(path: str | Path) -> dict[str, Any]:
    """A LIBERO file's instruction, suite env ID (when its BDDL path names one) and demos."""
    h5py = _h5py()
    with h5py.File(path, "r") as file:
        data = _data_group(file, path)
        return {
            "instruction": _instruction(data, file, path),
            "env_id": _env_id(data),
            "image_convention": _attr(data, "macros_image_convention", "opengl"),
            "demos": sorted((k for k in data if k.startswith("demo")), key=_demo_order),
        }


def _data_group(file: Any, path: str | Path) -> Any:
    if "data" not in file:
        raise ValueError(f"{path} is not a LIBERO/robomimic demonstration file (no 'data' group)")
    return file["data"]


def _instruction(data: Any, file: Any, path: str | Path) -> str:
    problem_info = _attr(data, "problem_info") or _attr(file, "problem_info")
    if problem_info is None:
        raise ValueError(f"{path}: no 'problem_info' attribute holding the language instruction")
    instruction = json.loads(problem_info).get("language_instruction")
    if not instruction:
        raise ValueError(f"{path}: 'problem_info' has no 'language_instruction'")
    return " ".join(instruction) if isinstance(instruction, list) else str(instruction)


def _env_id(data: Any) -> str | None:
    bddl = _attr(data, "bddl_file_name") or ""
    for suite, env_id in SUITE_IDS.items():
        if f"{suite}/" in bddl:
            return env_id
    return None


def read_libero_hdf5(
    path: str | Path, *, rotate_180: bool = True, cameras: Iterable[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield each demo of a LIBERO file as an episode in the env's observation layout.

    An episode is a dict: ``state`` (T, 8) float32, ``action`` (T, 7) float32, ``reward`` (T,)
    float32, ``images`` {camera: (T, H, W, 3) uint8}, ``instruction`` (str), ``success``,
    ``name`` (the demo's group). ``cameras`` picks among ``agentview``/``wrist`` (default both).
    """
    h5py = _h5py()
    wanted = list(CAMERA_KEYS.values()) if cameras is None else list(cameras)
    unknown = [c for c in wanted if c not in CAMERA_KEYS.values()]
    if unknown:
        raise ValueError(
            f"unknown camera(s) {unknown}; LIBERO files hold {list(CAMERA_KEYS.values())}"
        )
    with h5py.File(path, "r") as file:
        data = _data_group(file, path)
        instruction = _instruction(data, file, path)
        convention = _attr(data, "macros_image_convention", "opengl")
        demos = sorted((k for k in data if k.startswith("demo")), key=_demo_order)
        if not demos:
            raise ValueError(f"{path}: no demo_N groups under 'data'")
        for name in demos:
            demo = data[name]
            missing = [k for k in ("actions", "obs") if k not in demo]
            missing += [f"obs/{k}" for k in STATE_KEYS if "obs" in demo and k not in demo["obs"]]
            keys = {camera: key for key, camera in CAMERA_KEYS.items()}
            missing += [
                f"obs/{keys[c]}" for c in wanted if "obs" in demo and keys[c] not in demo["obs"]
            ]
            if missing:
                raise ValueError(f"{path}: data/{name} lacks {missing}")
            action = np.asarray(demo["actions"], np.float32)
            obs = demo["obs"]
            state = np.concatenate([np.asarray(obs[k], np.float32) for k in STATE_KEYS], axis=1)
            length = len(action)
            images = {
                c: to_env_frames(np.asarray(obs[keys[c]]), convention, rotate_180) for c in wanted
            }
            lengths = {"state": len(state), **{c: len(v) for c, v in images.items()}}
            if any(n != length for n in lengths.values()):
                raise ValueError(f"{path}: data/{name} has {length} actions but lengths {lengths}")
            reward = (
                np.asarray(demo["rewards"], np.float32)
                if "rewards" in demo
                else np.zeros(length, np.float32)
            )
            # LIBERO's files hold successful demonstrations; "dones" marks the goal step
            success = bool(np.asarray(demo["dones"]).any()) if "dones" in demo else True
            yield {
                "name": name,
                "state": state,
                "action": action,
                "reward": reward,
                "images": images,
                "instruction": instruction,
                "success": success,
            }


def write_libero_hdf5(
    path: str | Path,
    episodes: Iterable[dict[str, Any]],
    instruction: str,
    *,
    bddl_file_name: str = "",
    rotate_180: bool = True,
    convention: str = "opengl",
) -> int:
    """Write env-layout episodes (as :func:`read_libero_hdf5` yields them) in LIBERO's layout.

    Each episode needs ``state`` (T, 8), ``action`` (T, 7) and ``images`` with the env's camera
    names; ``reward`` and ``success`` are optional. Frames are stored as robosuite's
    ``convention`` orders them. Returns the number of demos written.
    """
    h5py = _h5py()
    count = 0
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs["problem_info"] = json.dumps(
            {"problem_name": "", "domain_name": "", "language_instruction": instruction}
        )
        data.attrs["bddl_file_name"] = bddl_file_name
        data.attrs["macros_image_convention"] = convention
        data.attrs["env_args"] = json.dumps({"env_name": "", "env_kwargs": {}})
        total = 0
        for count, episode in enumerate(episodes, start=1):
            state = np.asarray(episode["state"], np.float64)
            action = np.asarray(episode["action"], np.float64)
            if state.ndim != 2 or state.shape[1] != 8 or action.shape != (len(state), 7):
                raise ValueError(
                    f"episode {count - 1}: need state (T, 8) and action (T, 7), got "
                    f"{state.shape} and {action.shape}"
                )
            demo = data.create_group(f"demo_{count - 1}")
            obs = demo.create_group("obs")
            obs["ee_pos"], obs["ee_ori"], obs["gripper_states"] = (
                state[:, :3],
                state[:, 3:6],
                state[:, 6:],
            )
            obs["ee_states"] = state[:, :6]
            for key, camera in CAMERA_KEYS.items():
                if camera in episode["images"]:
                    frames = np.asarray(episode["images"][camera], np.uint8)
                    obs[key] = from_env_frames(frames, convention, rotate_180)
            demo["actions"] = action
            reward = np.asarray(episode.get("reward", np.zeros(len(action))), np.float64)
            demo["rewards"] = reward
            dones = np.zeros(len(action), np.uint8)
            dones[-1] = bool(episode.get("success", True))
            demo["dones"] = dones
            demo.attrs["num_samples"] = len(action)
            total += len(action)
        data.attrs["num_demos"] = count
        data.attrs["total"] = total
    return count


def convert(
    paths: Iterable[str | Path],
    out: str | Path,
    *,
    env_id: str | None = None,
    rotate_180: bool = True,
    cameras: Iterable[str] | None = None,
) -> Any:
    """Append every demo of the LIBERO files ``paths`` to the demo directory ``out``.

    Returns the ``DemoWriter``. ``env_id`` defaults to the suite named by the files' BDDL path.
    """
    from trainers.demos import DemoWriter, Episode

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no LIBERO files given")
    writer = None
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"LIBERO demonstration file {path} does not exist")
        file_env_id = env_id or _file_env_id(path)
        for episode in read_libero_hdf5(path, rotate_180=rotate_180, cameras=cameras):
            if writer is None:
                writer = DemoWriter(out, _meta(episode, file_env_id, rotate_180))
            writer.write(
                Episode(
                    state=episode["state"],
                    action=episode["action"],
                    reward=episode["reward"],
                    images=episode["images"],
                    instruction=episode["instruction"],
                    success=episode["success"],
                )
            )
    return writer


def _file_env_id(path: Path) -> str:
    env_id = file_info(path)["env_id"]
    if env_id is None:
        raise ValueError(
            f"{path}: its bddl_file_name names no LIBERO suite; pass env_id (--env-id)"
        )
    return env_id


def _meta(episode: dict[str, Any], env_id: str, rotate_180: bool) -> dict[str, Any]:
    return {
        "env_id": env_id,
        "env_kwargs": {"rotate_180": rotate_180},
        "obs_mode": "vla",
        "fps": LIBERO_FPS,
        "cameras": {cam: list(frames.shape[1:3]) for cam, frames in episode["images"].items()},
        "state_dim": int(episode["state"].shape[1]),
        "action_dim": int(episode["action"].shape[1]),
        "source": "libero-hdf5",
    }


# ---------------------------------------------------------------------------------- the CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="LIBERO demonstration files (.hdf5)")
    parser.add_argument("--out", required=True, help="demo directory to create or extend")
    parser.add_argument("--env-id", default=None, help="default: the suite of the BDDL path")
    parser.add_argument(
        "--no-rotate", action="store_true", help="keep robosuite's orientation (rotate_180=False)"
    )
    parser.add_argument("--cameras", default=None, help="comma-separated: agentview,wrist")


def run(args: argparse.Namespace) -> int:
    cameras = args.cameras.split(",") if args.cameras else None
    writer = convert(
        args.files, args.out, env_id=args.env_id, rotate_180=not args.no_rotate, cameras=cameras
    )
    steps = sum(r["length"] for r in writer.records)
    print(f"{writer.num_episodes} episodes ({steps} steps) in {writer.root}")
    return 0
