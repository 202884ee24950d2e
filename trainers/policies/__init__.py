"""Trainer policies by name: MLP, flow-matching VLA, action-token VLA.

Each policy has a typed config dataclass (``MLPConfig``, ``FlowConfig``, ``TokenConfig``) and an
:class:`ActorCriticPolicy` class (``MLPPolicy``, ``FlowPolicy``, ``TokenPolicy``) built as
``FlowPolicy(config, observation_space, action_space)``. A config's ``policy:`` section holds
``name`` plus that config's fields; :func:`parse_policy_config` is its one parser. Modules are
imported lazily, so a VLA policy's network code loads only when a config asks for it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from trainers.policies.base import ActorCriticPolicy, EvaluateOutput, PolicyOutput
from trainers.schema import ConfigError, build


@dataclass(frozen=True)
class PolicyEntry:
    """Where a registered policy's config and network classes live (``module:Class``)."""

    config: str
    policy: str


POLICIES: dict[str, PolicyEntry] = {
    "mlp": PolicyEntry("trainers.policies.mlp:MLPConfig", "trainers.policies.mlp:MLPPolicy"),
    "flow": PolicyEntry(
        "trainers.policies.flow.config:FlowConfig", "trainers.policies.flow.modeling:FlowPolicy"
    ),
    "token": PolicyEntry(
        "trainers.policies.token.config:TokenConfig", "trainers.policies.token.policy:TokenPolicy"
    ),
}


def _entry(name: str) -> PolicyEntry:
    if name not in POLICIES:
        raise ConfigError(f"policy.name {name!r} is unknown (known: {', '.join(POLICIES)})")
    return POLICIES[name]


def _load(target: str) -> type:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def policy_config_class(name: str) -> type:
    return _load(_entry(name).config)


def policy_class(name: str) -> type[ActorCriticPolicy]:
    return _load(_entry(name).policy)


def parse_policy_config(settings: dict[str, Any]) -> Any:
    """The typed config of ``policy:`` settings (``name`` plus that policy's fields)."""
    if not isinstance(settings, dict):
        raise ConfigError(f"policy must be a mapping, got {settings!r}")
    name = settings.get("name")
    if not name:
        raise ConfigError(f"policy.name is required ({', '.join(POLICIES)})")
    fields = {key: value for key, value in settings.items() if key != "name"}
    return build(policy_config_class(name), fields, prefix="policy.")


def make_policy(
    settings: dict[str, Any], observation_space: gym.Space, action_space: gym.Space
) -> ActorCriticPolicy:
    config = parse_policy_config(settings)
    return policy_class(settings["name"])(config, observation_space, action_space)


__all__ = [
    "POLICIES",
    "ActorCriticPolicy",
    "EvaluateOutput",
    "PolicyOutput",
    "make_policy",
    "parse_policy_config",
    "policy_class",
    "policy_config_class",
]
