"""Demonstration datasets on disk: resumable writing and a streaming loader.

Layout of a dataset directory::

    meta.json             {"format": "vla_gym-demos", "version": 2, "env_id": ...,
                           "env_kwargs": {...}, "obs_mode": "vla" | "flat", "fps": F,
                           "cameras": {name: [H, W]}, "state_dim": D, "action_dim": A}
    episodes.jsonl        one JSON line per complete episode: {"file", "length", "success",
                           "return", "instructions", "instruction_starts", "seed"}
    episode_000000.npz    numpy ``savez_compressed`` (deflate; images are lossless and compress
                           several-fold): ``state`` (T, D) float32, ``action`` (T, A) float32
                           (one env step each, chunk of one), ``reward`` (T,) float32,
                           ``image_<camera>`` (T, H, W, 3) uint8 for each camera

``state`` holds ``obs["state"]`` (``obs_mode="vla"``) or the flat observation. The instruction is
stored per step as segments: ``instructions[i]`` holds from step ``instruction_starts[i]`` up to
the next start (a CALVIN chain has one segment per subtask, so the starts are the subtask
boundaries). Version 1 directories (one ``"instruction"`` per episode) still load. ``fps`` is
the env's control rate (``metadata["render_fps"]``). An episode file is
written to a temporary name and renamed, then its line is appended and flushed to
``episodes.jsonl``: the index only ever lists complete files, so an interrupted collection resumes
from the episodes listed there (a stray file of an unfinished episode is overwritten).

Writing: :class:`DemoWriter` ``(root, meta).write(Episode(...), seed)``; an :class:`Episode`
takes one instruction or one per step. Reading: :class:`DemoDataset` (this format) and
:class:`trainers.lerobot_dataset.LeRobotDemos` share :class:`Demonstrations`, which streams
(observation, action-chunk) samples episode by episode through a bounded shuffle buffer, so
datasets larger than memory train without loading them whole;
:func:`trainers.datasets.load_demos` opens either by its files. Action chunks of ``k``
steps are cut from consecutive per-step actions; past an episode's end the last action is
repeated.
"""

from __future__ import annotations

import json
import os
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

FORMAT = "vla_gym-demos"
VERSION = 2
READABLE_VERSIONS = (1, 2)
META_FILE = "meta.json"
INDEX_FILE = "episodes.jsonl"


@dataclass
class Episode:
    """One demonstration. ``instruction`` is one sentence for every step, or one per step."""

    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, A) float32
    reward: np.ndarray  # (T,) float32
    images: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8
    instruction: str | Sequence[str]
    success: bool

    def __len__(self) -> int:
        return len(self.action)

    @property
    def instructions(self) -> list[str]:
        """The instruction of each step (length T)."""
        if isinstance(self.instruction, str):
            return [self.instruction] * len(self)
        if len(self.instruction) != len(self):
            raise ValueError(
                f"episode has {len(self)} steps but {len(self.instruction)} per-step instructions"
            )
        return [str(text) for text in self.instruction]

    def segments(self) -> tuple[list[str], list[int]]:
        """Runs of one instruction: (sentences, first step of each), e.g. one per subtask."""
        texts, starts = [], []
        for t, text in enumerate(self.instructions):
            if not texts or text != texts[-1]:
                texts.append(text)
                starts.append(t)
        return texts, starts


def expand_segments(texts: Sequence[str], starts: Sequence[int], length: int) -> list[str]:
    """Per-step instructions from segments (the inverse of :meth:`Episode.segments`)."""
    if len(texts) != len(starts) or (starts and starts[0] != 0) or list(starts) != sorted(starts):
        raise ValueError(f"bad instruction segments: starts {list(starts)} for {len(texts)} texts")
    bounds = [*starts, length]
    return [texts[i] for i in range(len(texts)) for _ in range(bounds[i + 1] - bounds[i])]


class EpisodeWriter(Protocol):
    """What ``trainers collect`` writes through: :class:`DemoWriter` or ``LeRobotWriter``."""

    @property
    def num_episodes(self) -> int: ...

    def write(self, episode: Episode, seed: int | None = None) -> dict[str, Any]: ...

    def close(self) -> None: ...


class DemoWriter:
    """Appends episodes to a dataset directory; reopening an existing one continues it."""

    def __init__(self, root: str | Path, meta: Mapping[str, Any]) -> None:
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise ValueError(f"{self.root} holds a LeRobotDataset: add to it with --format lerobot")
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": VERSION, **meta}
        meta_path = self.root / META_FILE
        if meta_path.exists():
            existing = json.loads(meta_path.read_text())
            for key in ("env_id", "obs_mode", "cameras", "state_dim", "action_dim"):
                if existing.get(key) != meta.get(key):
                    raise ValueError(
                        f"{self.root} holds demos with {key}={existing.get(key)!r}, cannot append "
                        f"episodes with {key}={meta.get(key)!r}; choose another --out directory"
                    )
        else:
            _write_atomic(meta_path, json.dumps(meta, indent=2).encode())
        self.records = read_index(self.root)

    @property
    def num_episodes(self) -> int:
        return len(self.records)

    def write(self, episode: Episode, seed: int | None = None) -> dict[str, Any]:
        name = f"episode_{self.num_episodes:06d}.npz"
        texts, starts = episode.segments()
        arrays = {
            "state": np.asarray(episode.state, dtype=np.float32),
            "action": np.asarray(episode.action, dtype=np.float32),
            "reward": np.asarray(episode.reward, dtype=np.float32),
            **{
                f"image_{cam}": np.asarray(im, dtype=np.uint8) for cam, im in episode.images.items()
            },
        }
        lengths = {key: len(value) for key, value in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"episode arrays have different lengths: {lengths}")
        tmp = self.root / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.root / name)
        record = {
            "file": name,
            "length": len(episode),
            "success": bool(episode.success),
            "return": float(np.sum(episode.reward)),
            "instructions": texts,
            "instruction_starts": starts,
            "seed": seed,
        }
        with open(self.root / INDEX_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records.append(record)
        return record

    def close(self) -> None:
        """Nothing is buffered: each episode is on disk when :meth:`write` returns."""


def record_instructions(record: Mapping[str, Any]) -> list[str]:
    """Per-step instructions of an index line (version 1: one sentence per episode)."""
    if "instructions" not in record:
        return [record.get("instruction", "")] * record["length"]
    return expand_segments(record["instructions"], record["instruction_starts"], record["length"])


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_index(root: str | Path) -> list[dict[str, Any]]:
    path = Path(root) / INDEX_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by an interruption: everything before it is complete
    return records


class Demonstrations(ABC):
    """Episodes on disk and the streamed training samples cut from them.

    A subclass (one per on-disk format) sets ``root``, ``meta`` (``obs_mode``, ``cameras``,
    ``state_dim``, ``action_dim``, ``fps``), ``records`` (one dict per kept episode, with
    ``length`` and ``success``) and implements :meth:`episode`; the rest is shared, so every
    format feeds SFT the same batches.
    """

    root: Path
    meta: dict[str, Any]
    records: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def cameras(self) -> list[str]:
        return list(self.meta.get("cameras", {}))

    @property
    def num_samples(self) -> int:
        return sum(r["length"] for r in self.records)

    @abstractmethod
    def episode(self, index: int) -> Episode: ...

    def episode_states(self, index: int) -> np.ndarray:
        """``(T, D)`` states of one episode (a format may read them without the images)."""
        return self.episode(index).state

    def episode_actions(self, index: int) -> np.ndarray:
        return self.episode(index).action

    def actions(self) -> np.ndarray:
        """Every step's action ``(steps, A)``."""
        return np.concatenate([self.episode_actions(i) for i in range(len(self))])

    def state_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the state over every step (streamed episode by episode)."""
        count, total, total_sq = 0, 0.0, 0.0
        for i in range(len(self)):
            state = self.episode_states(i).astype(np.float64)
            count += len(state)
            total = total + state.sum(0)
            total_sq = total_sq + (state**2).sum(0)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        return mean.astype(np.float32), std.astype(np.float32)

    def samples(
        self, chunk: int, *, shuffle_buffer: int = 4096, seed: int = 0, repeat: bool = True
    ) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        """(single observation, action chunk ``(chunk, A)``) pairs in shuffled order.

        Episodes are visited in a random order and their steps pass through a shuffle buffer of
        ``shuffle_buffer`` samples; with ``repeat`` the stream cycles forever (a new order per
        pass).
        """
        rng = random.Random(seed)
        buffer: list[tuple[dict[str, Any], np.ndarray]] = []
        while True:
            order = list(range(len(self)))
            rng.shuffle(order)
            for index in order:
                episode = self.episode(index)
                for sample in episode_samples(episode, chunk, self.meta):
                    if len(buffer) < shuffle_buffer:
                        buffer.append(sample)
                        continue
                    slot = rng.randrange(len(buffer))
                    yield buffer[slot]
                    buffer[slot] = sample
            if not repeat:
                break
        rng.shuffle(buffer)
        yield from buffer

    def batches(
        self,
        batch_size: int,
        chunk: int,
        *,
        shuffle_buffer: int = 4096,
        seed: int = 0,
        repeat: bool = True,
        single_action_shape: bool | None = None,
    ) -> Iterator[tuple[Any, torch.Tensor]]:
        """Batches ``(obs, actions)`` in the policy input format (see ``policies/base.py``).

        ``actions`` is ``(B, chunk, A)``, or ``(B, A)`` when ``chunk == 1`` (unless
        ``single_action_shape`` says otherwise), matching the env's action space.
        """
        squeeze = chunk == 1 if single_action_shape is None else single_action_shape
        pending: list[tuple[dict[str, Any], np.ndarray]] = []
        for sample in self.samples(chunk, shuffle_buffer=shuffle_buffer, seed=seed, repeat=repeat):
            pending.append(sample)
            if len(pending) == batch_size:
                yield collate(pending, self.meta, squeeze)
                pending = []
        if pending:
            yield collate(pending, self.meta, squeeze)


class DemoDataset(Demonstrations):
    """A native demonstration directory (``meta.json`` + ``episodes.jsonl`` + ``.npz`` files)."""

    def __init__(self, root: str | Path, *, only_success: bool = True) -> None:
        self.root = Path(root)
        meta_path = self.root / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{self.root} is not a demonstration dataset (no {META_FILE}); create one with "
                "`python -m trainers collect --env ID --episodes N --out DIR`"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path} is not a {FORMAT} dataset")
        if self.meta.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"{meta_path} has version {self.meta.get('version')!r}; this loader reads "
                f"versions {READABLE_VERSIONS}"
            )
        self.records = [r for r in read_index(self.root) if r["success"] or not only_success]
        if not self.records:
            raise ValueError(
                f"{self.root} has no {'successful ' if only_success else ''}episodes to train on"
            )

    def episode(self, index: int) -> Episode:
        record = self.records[index]
        with np.load(self.root / record["file"]) as data:
            return Episode(
                state=data["state"],
                action=data["action"],
                reward=data["reward"],
                images={cam: data[f"image_{cam}"] for cam in self.cameras},
                instruction=record_instructions(record),
                success=record["success"],
            )

    def episode_states(self, index: int) -> np.ndarray:
        with np.load(self.root / self.records[index]["file"]) as data:
            return data["state"]

    def episode_actions(self, index: int) -> np.ndarray:
        with np.load(self.root / self.records[index]["file"]) as data:
            return data["action"]


def episode_samples(
    episode: Episode, chunk: int, meta: Mapping[str, Any]
) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    length = len(episode)
    instructions = episode.instructions
    padded = np.concatenate([episode.action, np.repeat(episode.action[-1:], chunk - 1, axis=0)])
    for t in range(length):
        if meta.get("obs_mode") == "flat":
            obs: dict[str, Any] = {"state": episode.state[t]}
        else:
            obs = {
                "images": {cam: frames[t] for cam, frames in episode.images.items()},
                "state": episode.state[t],
                "instruction": instructions[t],
            }
        yield obs, padded[t : t + chunk]


def collate(
    samples: list[tuple[dict[str, Any], np.ndarray]], meta: Mapping[str, Any], squeeze: bool
) -> tuple[Any, torch.Tensor]:
    actions = torch.as_tensor(np.stack([a for _, a in samples]))
    if squeeze:
        actions = actions[:, 0]
    states = torch.as_tensor(np.stack([o["state"] for o, _ in samples]))
    if meta.get("obs_mode") == "flat":
        return states, actions
    obs = {
        "images": {
            cam: torch.as_tensor(np.stack([o["images"][cam] for o, _ in samples]))
            for cam in samples[0][0]["images"]
        },
        "state": states,
        "instruction": [o["instruction"] for o, _ in samples],
    }
    return obs, actions
