"""Logging that holds across resumes, videos in TensorBoard, progress bars only on a terminal."""

from __future__ import annotations

import io

import numpy as np
import pytest

from trainers.tracking import (
    WANDB_ID_FILE,
    MetricLogger,
    ProgressBar,
    progress_bar_enabled,
    write_video,
)


def test_a_resumed_run_logs_to_the_same_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    ids = []
    # A first start logs up to step 20; the resume restarts from a checkpoint at step 10.
    for value, step in ((1.0, 20), (2.0, 10)):
        logger = MetricLogger(tmp_path, loggers=["wandb"], run_name="demo_run")
        ids.append(logger.wandb.id)
        assert logger.wandb.name == "demo_run"
        logger.log({"env/return": value}, step)
        # Logged against our step, so the resumed run's earlier step is kept, not dropped.
        assert logger.wandb.summary["env/return"] == value
        assert logger.wandb.summary["global_step"] == step
        logger.close()
    assert ids[0] == ids[1] == (tmp_path / WANDB_ID_FILE).read_text().strip()
    other = MetricLogger(tmp_path / "other", loggers=["wandb"], run_name="demo_run")
    assert other.wandb.id != ids[0]  # a new run directory is a new W&B run
    other.close()


def test_video_lands_in_the_tensorboard_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    frames = [np.full((16, 24, 3), 20 * t, np.uint8) for t in range(6)]
    path = write_video(tmp_path / "videos" / "iter_000001.mp4", frames, fps=5)
    logger = MetricLogger(tmp_path, loggers=["tensorboard"])
    logger.log_video("eval/video", path, step=7)
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["eval/video"]  # TensorBoard stores videos as GIF images
    (image,) = events.Images("eval/video")
    assert image.step == 7 and (image.width, image.height) == (24, 16)
    assert image.encoded_image_string.startswith(b"GIF")
    from PIL import Image

    gif = Image.open(io.BytesIO(image.encoded_image_string))
    assert gif.n_frames == 6 and gif.info["duration"] == 200  # 5 fps


def test_progress_bars_are_off_without_a_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a TTY
    assert not progress_bar_enabled("auto")
    assert progress_bar_enabled("on") and not progress_bar_enabled("off")
    bar = ProgressBar(progress_bar_enabled("auto"), total=3)
    bar.update({"env/return": 1.0})
    bar.close()
    assert not bar.enabled


def test_progress_bars_are_off_under_ci_even_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    monkeypatch.setenv("CI", "true")
    assert not progress_bar_enabled("auto")
    monkeypatch.delenv("CI")
    assert progress_bar_enabled("auto")


def test_progress_bar_counts_and_shows_metrics(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    bar = ProgressBar(True, total=4, unit="episode", keys=("success",))
    bar.update({"success": 0.5})
    bar.update({"success": 0.75}, n=2)
    assert bar.bar.n == 3
    bar.close()
    assert "success=0.75" in stream.getvalue() and "episode" in stream.getvalue()
