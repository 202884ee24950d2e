"""Checkpoints: safe to load, self-describing, written atomically.

A checkpoint is a dict of tensors and plain data (numbers, strings, lists, dicts) marked with
``format``/``format_version``. It holds the policy weights (``policy``), the run's config
(``config``: ``python -m trainers eval --checkpoint PATH`` rebuilds the policy and the env from
it) and, for resuming, the optimiser state, the counters, the elapsed time and the RNG states.
Loading uses ``torch.load(weights_only=True)``: a file that needs anything else (arbitrary
pickled objects, which could run code while loading) is refused, as are corrupt and foreign
files, with a :class:`CheckpointError` saying why. A checkpoint from an older version is turned
into this format by :func:`convert` (``python -m trainers convert-checkpoint OLD NEW --trust``),
only for files one trusts.

A run writes ``checkpoints/latest.pt``, ``checkpoints/iter_NNNNNN.pt`` every
``runner.save_interval`` iterations, and ``checkpoints/best.pt`` whenever its validation
evaluation improves ``runner.best_metric``.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "vla_gym.trainer"
FORMAT_VERSION = 1
LATEST = "latest.pt"
BEST = "best.pt"


class CheckpointError(ValueError):
    """A file that is not a loadable trainer checkpoint, and why."""


def numbered_name(iteration: int) -> str:
    return f"iter_{iteration:06d}.pt"


# ------------------------------------------------------------------------------------ save
def save_atomic(state: Mapping[str, Any], path: Path) -> Path:
    """Write ``state`` (tensors and plain data) to ``path``: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def link_atomic(source: Path, path: Path) -> Path:
    """Make ``path`` the same file as ``source`` (a hard link, a copy where links fail),
    replacing ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        import shutil

        shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------ load
def load(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A trainer checkpoint, loaded without running code; :class:`CheckpointError` for an
    unsafe, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = _load_plain(path, device)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a vla_gym trainer checkpoint (no format={FORMAT!r} entry); "
            f"a file from an older version converts with `python -m trainers convert-checkpoint "
            f"{path} NEW --trust`"
        )
    if int(state.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {state['format_version']}; this "
            f"version of vla_gym reads up to {FORMAT_VERSION}"
        )
    if not isinstance(state.get("policy"), Mapping):
        raise CheckpointError(f"{str(path)!r} holds no policy weights ('policy' entry)")
    return state


def _load_plain(path: Path, device: torch.device | str) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        # the safe unpickler names the global (class or function) it refused to import
        if "global" not in str(exc).lower():
            raise CheckpointError(
                f"{str(path)!r} is not a readable checkpoint (corrupt or not a torch file)"
            ) from None
        raise CheckpointError(
            f"{str(path)!r} holds objects other than tensors and plain data, and loading them "
            "could run arbitrary code; it was not loaded. If the file is yours (a checkpoint of "
            "an older version), convert it once with `python -m trainers convert-checkpoint "
            f"{path} NEW --trust`"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable checkpoint (truncated, corrupt or not a torch "
            f"file): {exc}"
        ) from None


def policy_state(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The policy weights of a loaded checkpoint."""
    return dict(checkpoint["policy"])


def run_config(checkpoint: Mapping[str, Any], path: str | Path = "") -> dict[str, Any]:
    """The config a checkpoint was trained with (``TrainConfig.to_dict()``)."""
    config = checkpoint.get("config")
    if not isinstance(config, Mapping) or not config:
        raise CheckpointError(
            f"checkpoint {str(path)!r} carries no config; give one with --config NAME"
        )
    return dict(config)


# ------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain data."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            **numpy_state,
            "state": {
                "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                "pos": int(numpy_state["state"]["pos"]),
            },
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    numpy_state = dict(state["numpy"])
    key = np.asarray(numpy_state["state"]["key"], dtype=np.int64).astype(np.uint32)
    numpy_state["state"] = {"key": key, "pos": int(numpy_state["state"]["pos"])}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """``random.setstate`` wants the nested tuples ``random.getstate`` gave."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


# ------------------------------------------------------------------------------ conversion
def convert(
    source: str | Path,
    target: str | Path,
    *,
    trust: bool,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Rewrite an older (pickled) checkpoint, or a bare policy ``state_dict``, in the safe
    format. Loading ``source`` unpickles it, which can run code: ``trust=True`` says the file
    comes from a trusted source. ``config`` (``TrainConfig.to_dict()``) is stored when the
    file has none."""
    if not trust:
        raise CheckpointError(
            f"converting {str(source)!r} unpickles it, which runs any code it contains; "
            "convert only files you trust, and say so with --trust"
        )
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {str(source)!r} does not exist")
    old = torch.load(source, map_location="cpu", weights_only=False)  # trusted by the caller
    if not isinstance(old, Mapping):
        raise CheckpointError(f"{str(source)!r} holds a {type(old).__name__}, not a checkpoint")
    is_state_dict = all(isinstance(v, torch.Tensor) for v in old.values())
    state = {"policy": dict(old)} if is_state_dict else dict(old)
    state.pop("format", None)
    state.pop("format_version", None)
    if config is not None:
        state["config"] = dict(config)
    if "rng" in state:
        state["rng"] = _plain_rng(state["rng"])
    if not isinstance(state.get("policy"), Mapping):
        raise CheckpointError(f"{str(source)!r} holds no policy weights ('policy' entry)")
    save_atomic(state, target)
    load(target)  # what was written loads safely
    return target


def _plain_rng(rng: Mapping[str, Any]) -> dict[str, Any]:
    """An older checkpoint's RNG states (NumPy's as a legacy tuple) in the current layout."""
    rng = dict(rng)
    numpy_state = rng.get("numpy")
    if isinstance(numpy_state, tuple):  # ("MT19937", key, pos, has_gauss, cached_gaussian)
        name, key, pos, has_gauss, gauss = numpy_state
        rng["numpy"] = {
            "bit_generator": str(name),
            "state": {"key": torch.from_numpy(np.asarray(key).astype(np.int64)), "pos": int(pos)},
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        }
    return rng


# ---------------------------------------------------------- python -m trainers convert-checkpoint
def add_arguments(parser) -> None:
    parser.add_argument("source", help="checkpoint of an older version (or a bare state_dict)")
    parser.add_argument("target", help="where to write the converted checkpoint")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="required: the source is unpickled, which runs any code it contains",
    )
    parser.add_argument(
        "--config", default="", help="config name or YAML path to store (files without one)"
    )


def run(args) -> int:
    config = None
    if args.config:
        from trainers.config import load_config

        config = load_config(args.config).to_dict()
    target = convert(args.source, args.target, trust=args.trust, config=config)
    print(f"converted {args.source} -> {target}")
    return 0
