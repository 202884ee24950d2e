"""`VLAEnv`: the base every benchmark adapter builds on.

It owns what is the same for every benchmark: the observation schema (``obs_mode="vla"`` or
``"flat"``), chunked and normalised actions with their validation, the chunk execution loop
(stop at the first termination or truncation), the step limit, ``success``/``success_once`` and
the info keys. An adapter implements only the simulator-facing hooks below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from vla_gym.core import arguments
from vla_gym.core.rendering import resolve_render_quality
from vla_gym.core.spaces import chunked_action_space, flat_observation_space, vla_observation_space

OBS_MODES = ("vla", "flat")
MAX_ACTION_CHUNK = 1024  # control steps per policy step; beyond is a typo, not a chunk


class VLAEnv(gym.Env):
    """Unified observation schema + chunked actions over one native control step.

    Hooks for subclasses:
      * ``_reset_sim(options)``: reset the simulator (draw randomness from ``self.np_random``).
      * ``_step_sim(action) -> (reward, success, terminated)``: one native control step with an
        action already validated and clipped to [-1, 1]; ``terminated`` is a benchmark-specific
        end (e.g. the object fell off); success termination is handled here.
      * ``_get_state()``, ``_get_images()`` (only called in ``obs_mode="vla"``),
        ``_get_flat()`` (defaults to the state), ``instruction`` (a str attribute or property).
      * ``_extra_info()``: benchmark-specific info entries (same keys on reset and step).
      * ``_render_frame()``: the frame ``render()`` returns (defaults to the cameras side by side).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}
    instruction: str = ""

    def __init__(
        self,
        *,
        action_dim: int,
        state_dim: int,
        cameras: Mapping[str, tuple[int, int]],
        flat_dim: int | None = None,
        obs_mode: str = "vla",
        action_chunk: int = 1,
        max_episode_steps: int = 100,
        terminate_on_success: bool = True,
        render_mode: str | None = None,
        render_quality: str | None = "auto",
    ) -> None:
        self.obs_mode = arguments.choice("obs_mode", obs_mode, OBS_MODES)
        self.action_dim = int(action_dim)
        self.action_chunk = arguments.integer("action_chunk", action_chunk, 1, MAX_ACTION_CHUNK)
        # named as every env's own keyword for it
        self.max_episode_steps = arguments.integer("max_steps", max_episode_steps, 1)
        self.terminate_on_success = arguments.flag("terminate_on_success", terminate_on_success)
        self.render_mode = arguments.render_mode(render_mode, self.metadata["render_modes"])
        self.render_quality = resolve_render_quality(render_quality)
        self.cameras = dict(cameras)
        self.action_space = chunked_action_space(self.action_dim, self.action_chunk)
        if obs_mode == "vla":
            self.observation_space = vla_observation_space(self.cameras, state_dim)
        else:
            self.observation_space = flat_observation_space(flat_dim or state_dim)
        self._elapsed_steps = 0
        self._success = False
        self._success_once = False
        self._needs_reset = True

    # ----------------------------------------------------------------- hooks
    def _reset_sim(self, options: dict[str, Any] | None) -> None:
        raise NotImplementedError

    def _step_sim(self, action: np.ndarray) -> tuple[float, bool, bool]:
        raise NotImplementedError

    def _get_state(self) -> np.ndarray:
        raise NotImplementedError

    def _get_images(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _get_flat(self) -> np.ndarray:
        return self._get_state()

    def _extra_info(self) -> dict[str, Any]:
        return {}

    def _render_frame(self) -> np.ndarray:
        return side_by_side(list(self._get_images().values()))

    # ------------------------------------------------------------ public API
    @property
    def env_name(self) -> str:
        return self.spec.id if self.spec is not None else type(self).__name__

    @property
    def elapsed_steps(self) -> int:
        return self._elapsed_steps

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._reset_sim(options)
        self._elapsed_steps = 0
        self._success = False
        self._success_once = False
        self._needs_reset = False
        info = self._info(np.zeros(self.action_chunk, np.float32), 0)
        info["render_quality"] = self.render_quality
        return self._observation(), info

    def step(self, action: Any):
        if self._needs_reset:
            raise gym.error.ResetNeeded(f"{self.env_name}: call reset() before step()")
        chunk = self.validate_action(action)
        rewards = np.zeros(self.action_chunk, np.float32)
        terminated = truncated = False
        executed = 0
        for executed, native in enumerate(chunk, start=1):
            reward, success, terminated = self._step_sim(native)
            rewards[executed - 1] = reward
            self._elapsed_steps += 1
            self._success = bool(success)
            self._success_once |= self._success
            terminated = bool(terminated or (self.terminate_on_success and self._success))
            truncated = not terminated and self._elapsed_steps >= self.max_episode_steps
            if terminated or truncated:
                break
        self._needs_reset = terminated or truncated
        info = self._info(rewards, executed)
        return self._observation(), float(rewards.sum()), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_frame()

    def validate_action(self, action: Any) -> np.ndarray:
        """Check an action and return it as ``(chunk, action_dim)`` float32 clipped to [-1, 1].

        Raises ``ValueError`` naming the env and the problem; the env state is untouched.
        """
        try:
            array = np.asarray(action)
        except Exception as exc:  # e.g. ragged nested lists
            raise ValueError(f"{self.env_name}: action is not array-like ({exc})") from None
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"{self.env_name}: action must be numeric, got dtype {array.dtype} ({action!r:.80})"
            )
        expected = self.action_space.shape
        if array.shape != expected:
            raise ValueError(
                f"{self.env_name}: action has shape {array.shape}, expected {expected} "
                f"(action_chunk={self.action_chunk}, action_dim={self.action_dim})"
            )
        finite = np.isfinite(array)  # before the float32 cast, which makes 1e39 inf
        if not finite.all():
            where = np.argwhere(~finite)[:4].tolist()
            raise ValueError(
                f"{self.env_name}: action contains NaN or inf at index {where}; "
                "actions must be finite values in [-1, 1]"
            )
        clipped = np.clip(array, -1.0, 1.0).astype(np.float32)
        return clipped.reshape(self.action_chunk, self.action_dim)

    # -------------------------------------------------------------- internals
    def _observation(self):
        if self.obs_mode == "flat":
            return np.asarray(self._get_flat(), dtype=np.float32)
        return {
            "images": self._get_images(),
            "state": np.asarray(self._get_state(), dtype=np.float32),
            "instruction": self.instruction,
        }

    def _info(self, step_rewards: np.ndarray, executed: int) -> dict[str, Any]:
        return {
            "success": self._success,
            "success_once": self._success_once,
            "is_success": self._success,  # Stable-Baselines3's Monitor/EvalCallback key
            "step_rewards": step_rewards,
            "executed_steps": executed,
            "elapsed_steps": self._elapsed_steps,
            **self._extra_info(),
        }


def side_by_side(frames: list[np.ndarray]) -> np.ndarray:
    """Concatenate HxWx3 frames horizontally, padding shorter ones at the bottom."""
    if not frames:
        raise ValueError("no frames to show")
    height = max(f.shape[0] for f in frames)
    padded = [np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0))) for f in frames]
    return np.concatenate(padded, axis=1)
