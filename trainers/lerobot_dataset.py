"""LeRobotDataset (v3.0) in and out, through the ``lerobot-dataset`` package (extra ``lerobot``).

``trainers collect --format lerobot`` writes demonstrations as a LeRobotDataset and SFT reads a
local LeRobotDataset as readily as the native format (:func:`trainers.demos.load_demos`). The key
mapping, one frame per env step:

=================================  ==============================================================
LeRobot feature                    vla_gym
=================================  ==============================================================
``observation.images.<camera>``    ``obs["images"][camera]``: ``(H, W, 3)`` uint8 (stored as
                                   lossless PNG frames; video datasets are decoded on reading)
``observation.state``              ``obs["state"]`` (the flat observation for ``obs_mode="flat"``)
``action``                         the expert's action of that step (one env step, chunk of one)
``task`` (per frame)               ``obs["instruction"]``: it switches where a CALVIN chain moves
                                   to its next subtask
``next.reward``                    the step's reward
``next.done``                      true on an episode's last frame
``next.success``                   true on the last frame of a successful episode
``episode_index``, ``fps``         episode boundaries; the env's control rate
=================================  ==============================================================

LeRobot computes the per-feature statistics (``meta/stats.json``) as episodes are saved.
Reading another dataset: ``cameras={"front": "observation.images.top"}`` maps the policy's camera
names to the dataset's keys (default: every ``observation.images.<name>`` as ``name``) and
``state_key`` names the state feature. Without ``next.success`` every episode counts as
successful (public datasets hold demonstrations).

Writing continues an existing dataset. The parquet files are completed when the writer closes
(also on Ctrl-C); unlike the native format, a killed collection leaves the last episodes
unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainers.demos import Demonstrations, Episode

INFO_FILE = "meta/info.json"
IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
REPO_ID = "local/vla_gym_demos"  # LeRobot requires one; nothing is pushed or downloaded


def _require() -> Any:
    try:
        import ledataset  # noqa: F401
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "LeRobot datasets need the lerobot-dataset package: pip install -e '.[lerobot]'"
        ) from None
    _import_torchvision()
    from datasets.utils.logging import disable_progress_bar
    from ledataset.datasets import lerobot_dataset

    disable_progress_bar()  # one bar per saved episode otherwise; collect shows its own
    return lerobot_dataset


def _import_torchvision() -> None:
    """Import torchvision, which lerobot-dataset needs for its image transforms only.

    The PyPI torchvision is built against the CUDA torch: beside a CPU-only torch its C++ ops do
    not load, and torchvision then fails at import while registering fake kernels for
    ``torchvision::nms`` and ``qnms``. Declaring those two operators (schemas only) lets the
    import finish; calling them still fails, and nothing here does.
    """
    import sys

    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms does not exist" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for op in ("nms", "qnms"):
            schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            torch.library.define(f"torchvision::{op}", schema)
        import torchvision  # noqa: F401, F811


def features_of(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """LeRobot features of demonstrations with this native ``meta`` (see the module table)."""
    features: dict[str, dict[str, Any]] = {}
    for camera, (height, width) in meta.get("cameras", {}).items():
        features[IMAGE_PREFIX + camera] = {
            "dtype": "image",
            "shape": (height, width, 3),
            "names": ["height", "width", "channel"],
        }
    features[STATE_KEY] = {"dtype": "float32", "shape": (meta["state_dim"],), "names": None}
    features[ACTION_KEY] = {"dtype": "float32", "shape": (meta["action_dim"],), "names": None}
    for key, dtype in (("next.reward", "float32"), ("next.done", "bool"), ("next.success", "bool")):
        features[key] = {"dtype": dtype, "shape": (1,), "names": None}
    return features


class LeRobotWriter:
    """Appends episodes to a local LeRobotDataset; the same interface as ``DemoWriter``."""

    def __init__(self, root: str | Path, meta: Mapping[str, Any]) -> None:
        lerobot_dataset = _require()
        self.root = Path(root)
        features = features_of(meta)
        if (self.root / INFO_FILE).exists():
            self.dataset = lerobot_dataset.LeRobotDataset(REPO_ID, root=self.root)
            existing = {k: v for k, v in self.dataset.features.items() if k in features}
            expected = {k: {**v, "shape": list(v["shape"])} for k, v in features.items()}
            existing = {k: {**v, "shape": list(v["shape"])} for k, v in existing.items()}
            if existing != expected or self.dataset.fps != meta["fps"]:
                raise ValueError(
                    f"{self.root} holds a LeRobotDataset with other features or fps "
                    f"({self.dataset.fps}); choose another --out directory"
                )
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise ValueError(f"{self.root} exists and is not a LeRobotDataset")
            if self.root.exists():
                self.root.rmdir()  # LeRobot creates the directory itself
            self.dataset = lerobot_dataset.LeRobotDataset.create(
                REPO_ID,
                fps=int(meta["fps"]),
                features=features,
                root=self.root,
                robot_type=meta.get("env_id"),
                use_videos=False,
            )
        self.cameras = list(meta.get("cameras", {}))

    @property
    def num_episodes(self) -> int:
        return self.dataset.meta.total_episodes

    def write(self, episode: Episode, seed: int | None = None) -> dict[str, Any]:
        length = len(episode)
        instructions = episode.instructions
        for t in range(length):
            last = t == length - 1
            frame = {
                STATE_KEY: np.asarray(episode.state[t], np.float32),
                ACTION_KEY: np.asarray(episode.action[t], np.float32),
                "next.reward": np.asarray([episode.reward[t]], np.float32),
                "next.done": np.asarray([last]),
                "next.success": np.asarray([last and episode.success]),
                "task": instructions[t],
                **{IMAGE_PREFIX + cam: np.asarray(episode.images[cam][t]) for cam in self.cameras},
            }
            self.dataset.add_frame(frame)
        self.dataset.save_episode()
        return {
            "episode_index": self.num_episodes - 1,
            "length": length,
            "success": bool(episode.success),
            "return": float(np.sum(episode.reward)),
            "seed": seed,  # not stored: LeRobot's episode metadata has no place for it
        }

    def close(self) -> None:
        self.dataset.finalize()


class LeRobotDemos(Demonstrations):
    """A local LeRobotDataset as SFT demonstrations (mapping in the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        *,
        only_success: bool = True,
        cameras: Mapping[str, str] | None = None,
        state_key: str = STATE_KEY,
        action_key: str = ACTION_KEY,
    ) -> None:
        lerobot_dataset = _require()
        self.root = Path(root)
        if not (self.root / INFO_FILE).exists():
            raise FileNotFoundError(f"{self.root} is not a LeRobotDataset (no {INFO_FILE})")
        self.dataset = lerobot_dataset.LeRobotDataset(REPO_ID, root=self.root)
        features = self.dataset.features
        if cameras is None:
            keys = self.dataset.meta.camera_keys
            cameras = {key.removeprefix(IMAGE_PREFIX): key for key in keys}
        for key in (*cameras.values(), state_key, action_key):
            if key not in features:
                raise ValueError(
                    f"{self.root} has no feature {key!r}; its features: {', '.join(features)}"
                )
        self.camera_keys = dict(cameras)
        self.state_key, self.action_key = state_key, action_key
        self.video_keys = set(self.dataset.meta.video_keys)
        # Plain columns, no tensor conversion: images come back as PIL images (uint8).
        self.table = self.dataset.hf_dataset.with_format(None)
        self.meta = {
            "obs_mode": "vla" if self.camera_keys else "flat",
            "cameras": {cam: _image_size(features[key]) for cam, key in self.camera_keys.items()},
            "state_dim": int(np.prod(features[state_key]["shape"])),
            "action_dim": int(np.prod(features[action_key]["shape"])),
            "fps": self.dataset.fps,
        }
        self.records = [r for r in self._episode_records() if r["success"] or not only_success]
        if not self.records:
            raise ValueError(
                f"{self.root} has no {'successful ' if only_success else ''}episodes to train on"
            )

    def _episode_records(self) -> list[dict[str, Any]]:
        episodes = self.dataset.meta.episodes
        success = "next.success" in self.dataset.features
        records = []
        flags = self.table.select_columns(["next.success"]) if success else None
        for row in episodes:
            start, end = int(row["dataset_from_index"]), int(row["dataset_to_index"])
            ok = flags is None or bool(np.any(flags[start:end]["next.success"]))
            records.append(
                {"episode_index": int(row["episode_index"]), "start": start, "end": end,
                 "length": end - start, "success": ok}
            )  # fmt: skip
        return records

    def _column(self, index: int, key: str) -> np.ndarray:
        record = self.records[index]
        # One column only: slicing whole rows would decode every image of the episode.
        values = self.table.select_columns([key])[record["start"] : record["end"]][key]
        return np.asarray(values, dtype=np.float32).reshape(record["length"], -1)

    def episode_states(self, index: int) -> np.ndarray:
        return self._column(index, self.state_key)

    def episode_actions(self, index: int) -> np.ndarray:
        return self._column(index, self.action_key)

    def episode(self, index: int) -> Episode:
        record = self.records[index]
        rows = self.table[record["start"] : record["end"]]
        tasks = self.dataset.meta.tasks.index  # task_index -> sentence
        images = {}
        for cam, key in self.camera_keys.items():
            if key in self.video_keys:
                images[cam] = self._video_frames(record, key)
            else:
                images[cam] = np.stack([np.asarray(im.convert("RGB")) for im in rows[key]])
        reward = rows.get("next.reward")
        return Episode(
            state=self._column(index, self.state_key),
            action=self._column(index, self.action_key),
            reward=np.zeros(record["length"], np.float32)
            if reward is None
            else np.asarray(reward, np.float32).reshape(-1),
            images=images,
            instruction=[str(tasks[int(i)]) for i in rows["task_index"]],
            success=record["success"],
        )

    def _video_frames(self, record: Mapping[str, Any], key: str) -> np.ndarray:
        """An episode's ``(T, H, W, 3)`` frames of a video feature, decoded with PyAV.

        LeRobot's own decoders need torchcodec or ``torchvision.io.VideoReader`` (gone from
        torchvision 0.28), neither of which loads beside a CPU-only torch.
        """
        import av

        meta = self.dataset.meta
        index = record["episode_index"]
        start = float(meta.episodes[index][f"videos/{key}/from_timestamp"])
        half_frame = 0.5 / self.dataset.fps
        frames: list[np.ndarray] = []
        with av.open(str(self.root / meta.get_video_file_path(index, key))) as container:
            stream = container.streams.video[0]
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if float(frame.pts * stream.time_base) < start - half_frame:
                    continue  # before the episode: decoded from the preceding keyframe
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == record["length"]:
                    break
        if len(frames) != record["length"]:
            raise ValueError(
                f"{self.root}: video {key} holds {len(frames)} frames of episode {index}, "
                f"expected {record['length']}"
            )
        return np.stack(frames)


def _image_size(feature: Mapping[str, Any]) -> list[int]:
    """(H, W) of an image/video feature, whatever its axis order ((H, W, C) or (C, H, W))."""
    shape = list(feature["shape"])
    names = feature.get("names") or []
    if len(names) == 3 and names[0] in ("channel", "channels"):
        return shape[1:]
    return shape[:2] if shape[-1] in (1, 3, 4) else shape[1:]
