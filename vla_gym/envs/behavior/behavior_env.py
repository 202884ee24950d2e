"""`BehaviorEnv`: one BEHAVIOR-1K activity (OmniGibson on Isaac Sim 4.5) as a `VLAEnv`.

Needs an RTX GPU, Isaac Sim 4.5 (``$ISAAC_PATH``), the BEHAVIOR assets
(``$OMNIGIBSON_DATA_PATH``) and the ``omnigibson`` package; without them ``gym.make`` fails at
once naming what is missing. The env is built from OmniGibson's ``r1pro_behavior.yaml`` example
config with the activity, camera resolution, proprioception keys and episode limit set here.

Observation (``obs_mode="vla"``):
  * ``images``: ``head`` (ZED), ``left_wrist`` and ``right_wrist`` (RealSense), uint8,
    ``image_size`` pixels (default 224; the sensors render at that size).
  * ``state``: slices of the R1 Pro proprioception chosen by ``state_keys`` (default 39-D: base
    velocity, torso and arm joint positions, gripper fingers, both end-effector poses; see
    :mod:`vla_gym.envs.behavior.r1pro`).
  * ``instruction``: the activity's name as a sentence ("turning on radio").
Action (23-D in [-1, 1]): OmniGibson's R1 Pro order (base x/y/yaw 3, torso 4, left arm 7, left
gripper 1, right arm 7, right gripper 1), each mapped linearly onto its native range
(:data:`~vla_gym.envs.behavior.r1pro.ACTION_PARTS`).
Reward: OmniGibson's (potential-based) task reward; ``success`` is ``info["done"]["success"]``.

Speed (RLinf measured 3-5x from each): inside an action chunk only the last step asks OmniGibson
for an observation and a render (``observe_every_step=True`` turns this off), and the viewer
viewport is disabled (``gm.RENDER_VIEWER_CAMERA = False``, headless).
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vla_gym.core import arguments
from vla_gym.core.base import VLAEnv
from vla_gym.core.deps import MissingDependencyError
from vla_gym.envs.behavior.r1pro import (
    ACTION_DIM,
    CAMERA_LINKS,
    DEFAULT_STATE_KEYS,
    PROPRIO_KEYS,
    PROPRIO_SLICES,
    activity_name,
    instruction_for,
    native_action,
    select_state,
    state_dim,
)

INSTALL_HINT = (
    "BEHAVIOR-1K needs an NVIDIA RTX GPU, Isaac Sim 4.5 and the BEHAVIOR assets (> 30 GB). "
    "Install it following https://behavior.stanford.edu (BEHAVIOR-1K's setup.sh installs Isaac "
    'Sim, OmniGibson and the datasets), then pip install -e ".[behavior]" here and set ISAAC_PATH '
    "(the Isaac Sim folder) and OMNIGIBSON_DATA_PATH (the BEHAVIOR data folder)."
)


class BehaviorUnavailableError(MissingDependencyError):
    """Isaac Sim, OmniGibson or the BEHAVIOR data are not available on this machine."""


def missing_requirements() -> list[str]:
    """What this machine lacks to run BEHAVIOR-1K (empty when everything is there)."""
    missing = []
    for variable, what in (
        ("ISAAC_PATH", "the Isaac Sim 4.5 install folder"),
        ("OMNIGIBSON_DATA_PATH", "the BEHAVIOR-1K data folder"),
    ):
        value = os.environ.get(variable)
        if not value:
            missing.append(f"${variable} is not set ({what})")
        elif not Path(value).is_dir():
            missing.append(f"${variable}={value} is not a folder ({what})")
    if importlib.util.find_spec("omnigibson") is None:
        missing.append("the Python package 'omnigibson' is not installed")
    return missing


def check_requirements() -> None:
    missing = missing_requirements()
    if missing:
        raise BehaviorUnavailableError(
            "VLA/Behavior-v0 cannot start: " + "; ".join(missing) + ". " + INSTALL_HINT
        )


def build_config(
    base: Mapping[str, Any], activity: str, image_size: tuple[int, int], max_steps: int
) -> dict[str, Any]:
    """OmniGibson's env config for one activity (``base``: its ``r1pro_behavior.yaml``)."""
    config = copy.deepcopy(dict(base))
    task = config.setdefault("task", {})
    task["activity_name"] = activity
    # One step more than ours: our truncation (not OmniGibson's timeout) ends the episode.
    task.setdefault("termination_config", {})["max_steps"] = int(max_steps) + 1
    robots = config.get("robots") or [{}]
    robot = dict(robots[0])
    robot["proprio_obs"] = list(PROPRIO_KEYS)
    modalities = list(robot.get("obs_modalities") or [])
    robot["obs_modalities"] = modalities + [m for m in ("rgb", "proprio") if m not in modalities]
    sensor_config = copy.deepcopy(robot.get("sensor_config") or {})
    sensor_kwargs = sensor_config.setdefault("VisionSensor", {}).setdefault("sensor_kwargs", {})
    sensor_kwargs["image_height"], sensor_kwargs["image_width"] = image_size
    robot["sensor_config"] = sensor_config
    config["robots"] = [robot, *robots[1:]]
    return config


def make_omnigibson_env(config: dict[str, Any]):
    """Launch OmniGibson headless with the viewer viewport off and build the env."""
    import omnigibson as og
    from omnigibson.macros import gm

    gm.HEADLESS = True
    gm.RENDER_VIEWER_CAMERA = False  # an unused viewport costs a full render per step
    return og.Environment(configs=config)


def default_base_config() -> dict[str, Any]:
    import omnigibson as og
    import yaml

    with open(os.path.join(og.example_config_path, "r1pro_behavior.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}::{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor (OmniGibson's default backend)
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def rgb_uint8(image: Any) -> np.ndarray:
    """An OmniGibson RGB(A) frame (uint8, or float in [0, 1]) as HxWx3 uint8."""
    array = _to_numpy(image)
    if array.dtype != np.uint8:
        scale = 255.0 if array.size and float(array.max()) <= 1.0 + 1e-6 else 1.0
        array = np.clip(np.rint(array.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    return array[..., :3]


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return image[rows][:, cols]


def parse_observation(
    raw: Mapping[str, Any], cameras: Mapping[str, tuple[int, int]]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Camera frames (by our names) and the proprioception vector from OmniGibson's obs dict."""
    flat = _flatten(raw)
    images = {}
    for name, (height, width) in cameras.items():
        link = f"{CAMERA_LINKS[name]}:Camera:0"
        keys = [k for k in flat if link in k and k.endswith("rgb")]
        if not keys:
            raise KeyError(f"BEHAVIOR observation has no '{link}' rgb frame; keys: {sorted(flat)}")
        images[name] = resize_nearest(rgb_uint8(flat[keys[0]]), height, width)
    proprio = [k for k in flat if k == "proprio" or k.endswith("::proprio")]
    if not proprio:
        raise KeyError(f"BEHAVIOR observation has no proprioception; keys: {sorted(flat)}")
    return images, _to_numpy(flat[proprio[0]]).astype(np.float32).reshape(-1)


def _accepts_keywords(function: Callable, *names: str) -> bool:
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
        return True
    return all(name in {p.name for p in parameters} for name in names)


class BehaviorEnv(VLAEnv):
    """A BEHAVIOR-1K activity with the R1 Pro robot.

    Args:
        activity: the activity's name (``"turning_on_radio"``) or index 0-49.
        image_size: pixels of every camera, an int or ``(height, width)`` (default 224).
        cameras: which of ``head``, ``left_wrist``, ``right_wrist`` to observe.
        state_keys: proprioception parts forming ``state`` (see ``r1pro.PROPRIO_SLICES``).
        max_steps: steps per episode, enforced inside chunks (OmniGibson's default is 500;
            RLinf uses 2000-4000). ``gym.make``'s ``max_episode_steps`` would add a TimeLimit.
        observe_every_step: also observe/render inside action chunks (slower).
        omnigibson_env_factory: builds the simulator from OmniGibson's config dict; ``None`` is
            OmniGibson itself. Tests pass a double of OmniGibson's env interface here.
        base_config: OmniGibson's config to start from (default its ``r1pro_behavior.yaml``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        activity: str | int = 0,
        *,
        image_size: int | tuple[int, int] = 224,
        cameras: tuple[str, ...] | list[str] = ("head", "left_wrist", "right_wrist"),
        state_keys: tuple[str, ...] | list[str] = DEFAULT_STATE_KEYS,
        max_steps: int = 2000,
        observe_every_step: bool = False,
        obs_mode: str = "vla",
        action_chunk: int = 1,
        terminate_on_success: bool = True,
        render_mode: str | None = None,
        render_quality: str | None = "auto",
        omnigibson_env_factory: Callable[[dict[str, Any]], Any] | None = None,
        base_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.activity = activity_name(activity)
        hw = arguments.image_size("image_size", image_size)
        cameras = arguments.names("cameras", cameras, tuple(CAMERA_LINKS))
        max_steps = arguments.integer("max_steps", max_steps, 1)
        self.observe_every_step = arguments.flag("observe_every_step", observe_every_step)
        self.state_keys = tuple(arguments.names("state_keys", state_keys, tuple(PROPRIO_SLICES)))
        if omnigibson_env_factory is not None and not callable(omnigibson_env_factory):
            raise ValueError(
                f"omnigibson_env_factory must be None or a callable, got {omnigibson_env_factory!r}"
            )
        if base_config is not None and not isinstance(base_config, Mapping):
            raise ValueError(f"base_config must be None or a mapping, got {base_config!r}")
        dim = state_dim(self.state_keys)
        super().__init__(
            action_dim=ACTION_DIM,
            state_dim=dim,
            cameras={name: hw for name in cameras},
            obs_mode=obs_mode,
            action_chunk=action_chunk,
            max_episode_steps=max_steps,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
            render_quality=render_quality,
        )
        if omnigibson_env_factory is None:
            check_requirements()  # before anything slow: a clear error at gym.make
            omnigibson_env_factory = make_omnigibson_env
        self.instruction = instruction_for(self.activity)
        config = build_config(
            base_config if base_config is not None else default_base_config(),
            self.activity,
            hw,
            self.max_episode_steps,
        )
        self._og = omnigibson_env_factory(config)
        self._step_takes_flags = _accepts_keywords(self._og.step, "get_obs", "render")
        self._raw_obs: Mapping[str, Any] | None = None
        self._parsed: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        self._chunk_position = 0

    # ------------------------------------------------------------------ hooks
    def _reset_sim(self, options: dict[str, Any] | None) -> None:
        raw, _ = self._og.reset()
        self._set_observation(raw)

    def step(self, action: Any):
        self._chunk_position = 0
        return super().step(action)

    def _step_sim(self, action: np.ndarray) -> tuple[float, bool, bool]:
        self._chunk_position += 1
        observe = self.observe_every_step or self._chunk_position == self.action_chunk
        command = self._as_command(native_action(action))
        if self._step_takes_flags:
            result = self._og.step(command, get_obs=observe, render=observe)
        else:
            result = self._og.step(command)
            observe = True
        raw, reward, terminated, truncated, info = result
        self._set_observation(raw if observe else None)
        done = info.get("done", {}) if isinstance(info, Mapping) else {}
        success = bool(done.get("success", False))
        return float(reward), success, bool(terminated or truncated)

    def _get_state(self) -> np.ndarray:
        return select_state(self._observed()[1], self.state_keys)

    def _get_images(self) -> dict[str, np.ndarray]:
        return self._observed()[0]

    def _extra_info(self) -> dict[str, Any]:
        return {"activity": self.activity}

    def close(self) -> None:
        if getattr(self, "_og", None) is not None:
            self._og.close()
            self._og = None
        super().close()

    # -------------------------------------------------------------- internals
    @staticmethod
    def _as_command(action: np.ndarray):
        try:  # OmniGibson's default backend is torch
            import torch
        except ImportError:
            return action
        return torch.as_tensor(action, dtype=torch.float32)

    def _set_observation(self, raw: Mapping[str, Any] | None) -> None:
        self._raw_obs = raw
        self._parsed = None

    def _observed(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if self._raw_obs is None:  # the episode ended inside a chunk: observe now
            raw, _ = self._og.get_obs()
            self._raw_obs = raw
        if self._parsed is None:
            self._parsed = parse_observation(self._raw_obs, self.cameras)
        return self._parsed
