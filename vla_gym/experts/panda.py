"""Scripted expert for PandaPickCube: approach above the cube, descend, close, lift.

Closed-loop on the privileged ``info`` entries ``block_pos``, ``tcp_pos`` and ``tcp_target`` the
env reports, so it works on a single env and on one env's slice of a vector env.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_gym.experts import repeat_to_chunk

_ACTION_SCALE = 0.1  # metres per action unit (the env's)
_HOVER = 0.08  # height above the cube while aligning in xy
_LIFT_TARGET = 0.3  # metres above the cube's start height


class PandaPickCubeExpert:
    def __init__(
        self,
        action_chunk: int = 1,
        gain: float = 0.5,
        close_steps: int = 6,
        max_speed: float | None = None,
    ) -> None:
        """``max_speed`` (metres per step) caps the length of each move. The default expert
        halves its distance to the goal every step, so nearly all of its x/y motion happens in
        the first few steps of an episode; a capped speed spreads it over many steps, which
        gives behaviour cloning far more frames whose label depends on where the cube is."""
        if max_speed is not None and max_speed <= 0:
            raise ValueError(f"max_speed must be positive (metres per step), got {max_speed}")
        self.action_chunk = action_chunk
        self.gain = gain
        self.close_steps = close_steps
        self.max_speed = max_speed
        self.reset()

    def reset(self) -> None:
        self._phase = "approach"
        self._closing = 0
        self._start_z: float | None = None

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        block = np.asarray(info["block_pos"], dtype=np.float64)
        tcp = np.asarray(info["tcp_pos"], dtype=np.float64)
        commanded = np.asarray(info["tcp_target"], dtype=np.float64)
        if self._start_z is None or int(info.get("elapsed_steps", 1)) == 0:
            self.reset()
            self._start_z = float(block[2])
        grasp = -1.0
        if self._phase == "approach":
            xy_error = np.linalg.norm(block[:2] - tcp[:2])
            target = block + [0.0, 0.0, _HOVER if xy_error > 0.015 else 0.0]
            if xy_error < 0.01 and abs(block[2] - tcp[2]) < 0.01:
                self._phase = "close"
        if self._phase == "close":
            target, grasp = block, 1.0
            self._closing += 1
            if self._closing >= self.close_steps:
                self._phase = "lift"
        if self._phase == "lift":
            target, grasp = np.array([*block[:2], self._start_z + _LIFT_TARGET]), 1.0
        # Steer the controller's target (not the lagging TCP) so the target never winds up.
        step = self.gain * (target - commanded)
        if self.max_speed is not None:
            length = float(np.linalg.norm(step))
            if length > self.max_speed:
                step *= self.max_speed / length
        move = np.clip(step / _ACTION_SCALE, -1.0, 1.0)
        return repeat_to_chunk(np.array([*move, grasp], dtype=np.float32), self.action_chunk)


def make_expert(env_id: str, action_chunk: int = 1, **kwargs: Any) -> PandaPickCubeExpert:
    return PandaPickCubeExpert(action_chunk=action_chunk, **kwargs)
