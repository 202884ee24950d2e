"""Small envs for the vector-layer tests (no simulator): images + state + instruction, and envs
that raise, hang or crash on purpose. Workers import this module to rebuild them."""

from __future__ import annotations

import os
import signal
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vla_gym.core.spaces import instruction_space

INSTRUCTIONS = ("pick up the red cube", "Open the drawer, then close it.", "push the button!")


class ImageEnv(gym.Env):
    """Two cameras, a state and an instruction; everything depends on seed, step and action.

    The episode ends by termination when ``state[0]`` (a seeded random walk driven by the
    actions) leaves [-1, 1], and by truncation after ``max_steps``; the instruction changes at
    every reset, so instruction transport is exercised.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 16, max_steps: int = 5, render_mode: str | None = None):
        self.size = size
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {
                "images": spaces.Dict(
                    {
                        "front": spaces.Box(0, 255, (size, size, 3), np.uint8),
                        "wrist": spaces.Box(0, 255, (size, size, 3), np.uint8),
                    }
                ),
                "state": spaces.Box(-np.inf, np.inf, (3,), np.float32),
                "instruction": instruction_space(),
            }
        )
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.label = "default"

    def _obs(self):
        value = int(self._state[0] * 100) % 256
        return {
            "images": {
                "front": np.full((self.size, self.size, 3), value, np.uint8),
                "wrist": np.full((self.size, self.size, 3), (value + self._t) % 256, np.uint8),
            },
            "state": self._state.copy(),
            "instruction": self._instruction,
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._state = self.np_random.uniform(-0.5, 0.5, 3).astype(np.float32)
        self._instruction = INSTRUCTIONS[int(self.np_random.integers(len(INSTRUCTIONS)))]
        return self._obs(), {"seed_draw": float(self._state[1]), "phase": "reset"}

    def step(self, action):
        self._t += 1
        self._state[:2] += 0.4 * np.asarray(action, np.float32)
        self._state[2] = self._t
        terminated = bool(abs(self._state[0]) > 1.0)
        truncated = self._t >= self.max_steps and not terminated
        info = {"t": self._t, "vec": self._state[:2].copy()}
        if self._t % 2 == 0:
            info["even"] = True  # only some envs carry this key: exercises the _key masks
        return self._obs(), float(self._state.sum()), terminated, truncated, info

    def render(self):
        return np.full((8, 8, 3), self._t, np.uint8)

    def scaled_state(self, factor: float):
        return self._state * factor


class NullImageEnv(gym.Env):
    """Two 224x224x3 images that never change: pure transport cost."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 224, instruction: str = "pick up the cube"):
        image = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = spaces.Dict(
            {
                "images": spaces.Dict({"front": image, "wrist": image}),
                "state": spaces.Box(-np.inf, np.inf, (8,), np.float32),
                "instruction": instruction_space(),
            }
        )
        self.action_space = spaces.Box(-1, 1, (7,), np.float32)
        self._obs = {
            "images": {
                "front": np.zeros(image.shape, np.uint8),
                "wrist": np.ones(image.shape, np.uint8),
            },
            "state": np.zeros(8, np.float32),
            "instruction": instruction,
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs, {}

    def step(self, action):
        return self._obs, 0.0, False, False, {}


class FaultyEnv(ImageEnv):
    """Misbehaves at step ``fail_at`` of its first episode: ``raise``, ``hang``, ``segfault`` or
    ``slow`` (answers after one second)."""

    def __init__(self, fault: str = "raise", fail_at: int = 2, faulty_seed: int | None = None):
        super().__init__(max_steps=50)
        self.fault = fault
        self.fail_at = fail_at
        self.faulty_seed = faulty_seed  # only the env reset with this seed misbehaves
        self._seed = None

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._seed = seed
        return super().reset(seed=seed, options=options)

    def step(self, action):
        result = super().step(action)
        if self._t == self.fail_at and (self.faulty_seed in (None, self._seed)):
            if self.fault == "raise":
                raise ValueError(f"boom at step {self._t}")
            if self.fault == "hang":
                time.sleep(3600)
            if self.fault == "slow":
                time.sleep(1.0)
            if self.fault == "segfault":
                os.kill(os.getpid(), signal.SIGSEGV)
        return result


class BrokenConstructorEnv(ImageEnv):
    def __init__(self):
        raise RuntimeError("cannot build this env")
