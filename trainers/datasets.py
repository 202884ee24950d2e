"""Open a demonstration dataset in either format: the native one or a local LeRobotDataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.demos import META_FILE, DemoDataset, Demonstrations
from trainers.lerobot_dataset import INFO_FILE, LeRobotDemos


def load_demos(root: str | Path, *, only_success: bool = True, **lerobot: Any) -> Demonstrations:
    """The dataset at ``root``: a native directory or a local LeRobotDataset (by its files).

    ``lerobot`` options (camera and state key mapping) go to
    :class:`trainers.lerobot_dataset.LeRobotDemos`.
    """
    root = Path(root)
    if (root / META_FILE).exists():
        if lerobot:
            raise ValueError(f"{root} is a native demo directory: LeRobot options do not apply")
        return DemoDataset(root, only_success=only_success)
    if (root / INFO_FILE).exists():
        return LeRobotDemos(root, only_success=only_success, **lerobot)
    raise FileNotFoundError(
        f"{root} is neither a demonstration directory ({META_FILE}) nor a LeRobotDataset "
        f"({INFO_FILE}); create one with `python -m trainers collect --env ID --episodes N "
        "--out DIR [--format lerobot]`"
    )
