"""The registry: which evaluation protocol scores a policy on which env ID."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from vla_gym.eval.policy import PolicySpec
from vla_gym.eval.result import EvalResult


@dataclass(frozen=True)
class Protocol:
    """One benchmark's evaluation protocol, bound to its suite.

    ``run(policy, episodes=..., num_envs=..., backend=..., seed=..., **env_kwargs)`` evaluates
    ``policy`` (see :class:`~vla_gym.eval.Policy`) on ``env_id`` and returns an
    :class:`~vla_gym.eval.EvalResult`. ``episodes`` is a budget (CALVIN: chains; Meta-World and
    LIBERO: spread over the suite's tasks, at least one trial each), capped at the protocol's
    full size, which is also the default (the generic protocol: 10 episodes). ``progress``
    (``None``: auto) shows a bar with the running success rate and ``results_path`` gets one
    JSON line per finished task (see :mod:`vla_gym.eval.progress`). ``fixed_kwargs`` are env
    kwargs the protocol sets itself and refuses from callers.
    """

    name: str  # e.g. "calvin/D", "metaworld/MT50", "libero/goal", "generic"
    env_id: str  # the env the protocol evaluates on
    module: str = field(repr=False)  # vla_gym.eval.<module>.evaluate runs it
    fixed_kwargs: tuple[str, ...] = ()
    bound: tuple[tuple[str, Any], ...] = ()  # arguments of evaluate() the suite fixes

    @property
    def benchmark(self) -> str:
        return self.name.split("/")[0]

    @property
    def evaluate(self) -> Callable[..., EvalResult]:
        """The ``evaluate`` function that runs the protocol (:meth:`run` binds the suite)."""
        return importlib.import_module(f"vla_gym.eval.{self.module}").evaluate

    def usable_kwargs(self, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``env_kwargs`` less the ones this protocol sets itself."""
        return {key: value for key, value in env_kwargs.items() if key not in self.fixed_kwargs}

    def run(
        self,
        policy: PolicySpec,
        *,
        episodes: int | None = None,
        num_envs: int | None = None,
        progress: bool | None = None,
        results_path: str | Path | None = None,
        **kwargs: Any,
    ) -> EvalResult:
        if num_envs is not None:
            kwargs["num_envs"] = num_envs
        return self.evaluate(
            policy=policy,
            episodes=episodes,
            progress=progress,
            results_path=results_path,
            **dict(self.bound),
            **kwargs,
        )


def protocols() -> dict[str, Protocol]:
    """Env ID -> its benchmark's protocol (IDs without one use the generic protocol)."""
    return dict(_table())


@functools.cache
def _table() -> dict[str, Protocol]:
    from vla_gym.envs.calvin import IDS as CALVIN_IDS
    from vla_gym.envs.libero.suites import SUITES as LIBERO_SUITES
    from vla_gym.eval import calvin, libero, metaworld

    # CALVIN's protocol always runs in scene D (ABC->D policies train elsewhere).
    chains = Protocol(f"calvin/{calvin.SCENE}", calvin.ENV_ID, "calvin", calvin.FIXED_KWARGS)
    table = dict.fromkeys(CALVIN_IDS, chains)
    for suite, env_id in metaworld.SUITE_IDS.items():
        bound = (("suite", suite),)
        table[env_id] = Protocol(
            f"metaworld/{suite}", env_id, "metaworld", metaworld.FIXED_KWARGS, bound
        )
    for suite, spec in LIBERO_SUITES.items():
        bound = (("suite", suite),)
        table[spec.env_id] = Protocol(
            f"libero/{suite}", spec.env_id, "libero", libero.FIXED_KWARGS, bound
        )
    return table


def protocol_for(env_id: str) -> Protocol:
    """The protocol that scores policies on ``env_id``: its benchmark's, else the generic one
    (``episodes`` seeded episodes, success rate at episode end)."""
    if env_id in _table():
        return _table()[env_id]
    return generic_protocol(env_id)


def generic_protocol(env_id: str) -> Protocol:
    """``episodes`` seeded episodes of ``env_id`` (see :mod:`vla_gym.eval.generic`)."""
    if env_id not in gym.registry:
        raise ValueError(f"unknown env ID {env_id!r}; vla_gym registers {_registered()}")
    return Protocol("generic", env_id, "generic", bound=(("env_id", env_id),))


def run(policy: PolicySpec, env_id: str, **kwargs: Any) -> EvalResult:
    """Evaluate ``policy`` with ``env_id``'s protocol (see :class:`Protocol`)."""
    return protocol_for(env_id).run(policy, **kwargs)


def _registered() -> str:
    from vla_gym.registration import registered_ids

    return ", ".join(registered_ids())
