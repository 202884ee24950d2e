"""Metric logging (TensorBoard by default, W&B when asked), progress bars, episode videos.

Metric names follow ``docs/algorithms.md`` (``env/success_once``, ``actor/approx_kl``,
``time/*``...). The x-axis is the number of native env steps, so curves of resumed runs line up:
on resume the TensorBoard writer purges events written after the checkpoint by the killed run.
A W&B run's id is stored in the run directory (``wandb_id``) on its first start and reused by
every later start, so a resumed run continues the same W&B run.
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def progress_bar_enabled(setting: str) -> bool:
    if setting in ("on", "off"):
        return setting == "on"
    return sys.stderr.isatty() and not os.environ.get("CI")


WANDB_ID_FILE = "wandb_id"
WANDB_STEP = "global_step"  # the x-axis of every W&B chart: env steps (SFT: optimiser steps)


class MetricLogger:
    """Scalars and videos to TensorBoard (``<log_dir>/tensorboard``) and/or W&B."""

    def __init__(
        self,
        log_dir: Path,
        *,
        loggers: list[str],
        purge_step: int | None = None,
        config: dict[str, Any] | None = None,
        run_name: str = "",
        wandb_project: str = "vla_gym",
    ) -> None:
        self.log_dir = Path(log_dir)
        self.writer = None
        self.wandb = None
        if "tensorboard" in loggers:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir / "tensorboard"), purge_step=purge_step)
        if "wandb" in loggers:
            try:
                import wandb
            except ModuleNotFoundError:
                raise ModuleNotFoundError(
                    "runner.loggers includes 'wandb' but wandb is not installed (pip install wandb)"
                ) from None
            self.wandb = wandb.init(
                project=wandb_project,
                name=run_name or None,
                config=config,
                dir=str(self.log_dir),
                id=self._wandb_id(),
                resume="allow",
            )
            # Plots use our step as x-axis: W&B drops a log whose own step is not above the
            # last one, which is every step a resumed run logs again after its checkpoint.
            self.wandb.define_metric(WANDB_STEP)
            self.wandb.define_metric("*", step_metric=WANDB_STEP)

    def _wandb_id(self) -> str:
        """The run directory's W&B id, created (and stored) on the first start."""
        path = self.log_dir / WANDB_ID_FILE
        if path.exists():
            return path.read_text().strip()
        run_id = uuid.uuid4().hex[:8]  # W&B's own id format: 8 lowercase letters/digits
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
        if self.writer is not None:
            for key, value in finite.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log({**finite, WANDB_STEP: step})

    def log_video(self, tag: str, path: Path, step: int) -> None:
        """An mp4 (e.g. from :func:`write_video`) as a TensorBoard video and a W&B video."""
        if self.writer is not None:
            import imageio.v2 as imageio
            from tensorboard.compat.proto.summary_pb2 import Summary

            with imageio.get_reader(path) as reader:
                fps = float(reader.get_meta_data().get("fps", 10))
                frames = [frame[..., :3] for frame in reader]
            # What SummaryWriter.add_video writes (an animated GIF image summary), encoded with
            # PIL: add_video needs moviepy.editor, which moviepy 2 removed, and then silently
            # writes nothing.
            image = Summary.Image(
                height=frames[0].shape[0],
                width=frames[0].shape[1],
                colorspace=3,
                encoded_image_string=_gif(frames, fps),
            )
            summary = Summary(value=[Summary.Value(tag=tag, image=image)])
            self.writer.file_writer.add_summary(summary, step)
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: wandb.Video(str(path), format="mp4"), WANDB_STEP: step})

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def _gif(frames: list[np.ndarray], fps: float) -> bytes:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    duration = round(1000 / max(fps, 1e-3))  # milliseconds per frame
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
    )
    return buffer.getvalue()


class ProgressBar:
    """tqdm over ``total`` units when enabled; a no-op otherwise.

    ``update`` shows the last value of each of ``keys`` found in its metrics (short names).
    """

    def __init__(
        self,
        enabled: bool,
        total: int,
        initial: int = 0,
        *,
        unit: str = "it",
        keys: tuple[str, ...] = ("env/success_once", "env/return", "actor/approx_kl"),
    ) -> None:
        self.bar = None
        self.keys = keys
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True)

    @property
    def enabled(self) -> bool:
        return self.bar is not None

    def update(self, metrics: dict[str, float] | None = None, n: int = 1) -> None:
        if self.bar is None:
            return
        metrics = metrics or {}
        shown = {key.split("/")[-1]: f"{metrics[key]:.3g}" for key in self.keys if key in metrics}
        if shown:
            self.bar.set_postfix(shown, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------- videos
def annotate_frame(frame: np.ndarray, instruction: str, success: bool, step: int) -> np.ndarray:
    """Draw the instruction on top and the success flag at the bottom of a frame."""
    from PIL import Image, ImageDraw

    height, width = frame.shape[:2]
    band = 14
    canvas = np.zeros((height + 2 * band, width, 3), dtype=np.uint8)
    canvas[band : band + height] = frame[..., :3]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    draw.text((2, 1), instruction[: max(8, width // 6)], fill=(255, 255, 255))
    colour = (40, 220, 40) if success else (230, 60, 60)
    draw.rectangle([0, height + band, width, height + 2 * band], fill=colour)
    draw.text((2, height + band + 1), f"success: {success}  step {step}", fill=(0, 0, 0))
    return np.asarray(image)


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    height = max(frame.shape[0] for frame in frames)
    width = max(frame.shape[1] for frame in frames)
    # libx264 wants even sizes; pad every frame to one even size.
    height, width = height + height % 2, width + width % 2
    padded = [
        np.pad(f, ((0, height - f.shape[0]), (0, width - f.shape[1]), (0, 0))) for f in frames
    ]
    imageio.mimwrite(path, padded, fps=fps, macro_block_size=1)
    return path
