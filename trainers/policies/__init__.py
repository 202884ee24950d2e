"""Trainer policies: MLP, flow-matching VLA, action-token VLA.

Each policy lives in a module exposing ``Config`` (a dataclass of its settings) and
``Policy(config, observation_space, action_space)`` (an :class:`ActorCriticPolicy`). Modules are
imported lazily, so a VLA policy's heavy dependencies load only when a config asks for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import gymnasium as gym

from trainers.policies.base import ActorCriticPolicy, EvaluateOutput, PolicyOutput

POLICY_MODULES = {
    "mlp": "trainers.policies.mlp",
    "flow": "trainers.policies.flow",
    "token": "trainers.policies.token",
}


def policy_module(name: str) -> ModuleType:
    if name not in POLICY_MODULES:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICY_MODULES)})")
    module_name = POLICY_MODULES[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ModuleNotFoundError(
                f"policy {name!r} is not available: module {module_name} is not installed",
                name=module_name,
            ) from None
        raise


def build_policy_config(settings: dict[str, Any]) -> Any:
    """The policy's own ``Config`` from ``policy:`` settings (``name`` plus its fields)."""
    from trainers.config import ConfigError, _build

    fields = {key: value for key, value in settings.items() if key != "name"}
    config_cls = policy_module(settings["name"]).Config
    if hasattr(config_cls, "from_dict"):  # the policy parses its own settings (e.g. presets)
        try:
            return config_cls.from_dict(fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"policy ({settings['name']}): {exc}") from None
    return _build(config_cls, fields, prefix="policy.")


def make_policy(
    settings: dict[str, Any], observation_space: gym.Space, action_space: gym.Space
) -> ActorCriticPolicy:
    module = policy_module(settings["name"])
    return module.Policy(build_policy_config(settings), observation_space, action_space)


__all__ = [
    "POLICY_MODULES",
    "ActorCriticPolicy",
    "EvaluateOutput",
    "PolicyOutput",
    "build_policy_config",
    "make_policy",
    "policy_module",
]
