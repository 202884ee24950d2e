"""`BatchedVectorEnv`: the Gymnasium ``VectorEnv`` front end shared by every backend.

It owns the batch (observation/action buffers, instructions, done flags), the async
``send``/``recv`` bookkeeping, timeouts and failure handling. A backend supplies
:class:`WorkerHandle` objects (each hosts a contiguous slice of envs in an :class:`EnvGroup`) and
a way to wait for whichever of them is ready first.
"""

from __future__ import annotations

import atexit
import contextlib
import time
import warnings
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from vla_gym.vector.buffers import StepBuffers, slot_is_free
from vla_gym.vector.env_group import GroupResult
from vla_gym.vector.errors import VectorEnvError, WorkerError, WorkerTimeoutError
from vla_gym.vector.infos import add_info
from vla_gym.vector.layout import SpaceLayout


class WorkerHandle(ABC):
    """One worker as the front end sees it: envs ``first_index .. first_index + num_envs - 1``.

    Requests are answered in the order they were submitted; ``fetch`` returns the oldest answer
    and raises :class:`EnvError` or :class:`WorkerError` when that request failed.
    """

    def __init__(self, index: int, first_index: int, num_envs: int) -> None:
        self.index = index
        self.first_index = first_index
        self.num_envs = num_envs

    @property
    def env_ids(self) -> list[int]:
        return list(range(self.first_index, self.first_index + self.num_envs))

    @abstractmethod
    def submit_step(self, local_ids: list[int], slot: int) -> None:
        """Step ``local_ids`` with the actions already written in the action buffer; their
        observations go to observation slot ``slot``."""

    @abstractmethod
    def submit_reset(
        self, local_ids: list[int], seeds: list[int | None], options: Any, slot: int
    ) -> None:
        """Reset ``local_ids`` (observations into slot ``slot``)."""

    @abstractmethod
    def answer_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the oldest request's answer (or the worker's death)."""

    @abstractmethod
    def fetch(self) -> GroupResult:
        """The answer to the oldest outstanding request (call once the worker is ready)."""

    @abstractmethod
    def request(self, method: str, *args: Any) -> Any:
        """Run ``EnvGroup.<method>(*args)`` and return its result (``call``/``get_attr``/...)."""

    @abstractmethod
    def restart(self, slot: int) -> GroupResult:
        """Replace the worker; its envs are rebuilt, reset (observations into ``slot``) and
        marked as restarted."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the worker at once (it hangs or misbehaves)."""

    @abstractmethod
    def close(self) -> None:
        """Close the envs and stop the worker; never raises."""

    def describe(self) -> dict[str, Any]:
        """What the worker was given (pid, devices, env vars, CPU cores)."""
        return {"worker": self.index, "env_ids": self.env_ids}


HANDED_OUT_SLOTS = 3  # enough for `obs`, `next_obs` and the step being made to coexist


def common_spec(workers: Sequence[WorkerHandle], specs: Sequence[Mapping[str, Any]]) -> dict:
    """The spec all workers share; every worker's envs must have the same spaces."""
    for worker, spec in zip(workers, specs, strict=True):
        for name in ("observation_space", "action_space"):
            if spec[name] != specs[0][name]:
                raise ValueError(
                    f"env {worker.first_index} has {name} {spec[name]}, but env 0 has "
                    f"{specs[0][name]}; a vector env needs the same spaces in every env"
                )
    return dict(specs[0])


def observation_slots(copy: bool) -> int:
    """Observation slots to allocate: those handed to the caller, plus a scratch slot (async
    results, and the fallback when the caller still holds every handed-out slot)."""
    return (HANDED_OUT_SLOTS if copy else 1) + 1


@dataclass(slots=True)
class _Request:
    kind: str  # "step" | "reset"
    local_ids: list[int]
    deadline: float


_LIVE_ENVS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_live_envs() -> None:  # interpreter exit, including after Ctrl-C
    for env in list(_LIVE_ENVS):
        with contextlib.suppress(Exception):
            env.close()


class BatchedVectorEnv(VectorEnv):
    """A ``gymnasium.vector.VectorEnv`` over worker handles, with an envpool-style async API.

    ``step``/``reset`` behave like Gymnasium's vector envs. ``send(actions, env_ids)`` starts a
    step of some envs and ``recv()`` returns the first finished ones, with ``infos["env_id"]``.
    """

    backend = "base"

    def _setup(
        self,
        *,
        workers: Sequence[WorkerHandle],
        spec: Mapping[str, Any],
        buffers: StepBuffers,
        autoreset_mode: AutoresetMode,
        copy: bool,
        step_timeout: float,
        restart_on_failure: bool,
    ) -> None:
        """Finish building; ``spec`` is what the envs reported (``EnvGroup.describe``)."""
        self.workers = list(workers)
        self.num_envs = sum(w.num_envs for w in self.workers)
        self.single_observation_space = spec["observation_space"]
        self.single_action_space = spec["action_space"]
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.obs_layout = SpaceLayout(self.single_observation_space, "observation")
        self.act_layout = SpaceLayout(self.single_action_space, "action")
        self.buffers = buffers
        self.autoreset_mode = autoreset_mode
        self.metadata = dict(spec["metadata"])
        self.metadata["autoreset_mode"] = autoreset_mode
        self.render_mode = spec["render_mode"]
        self.copy = copy
        self._scratch_slot = len(buffers.obs_slots) - 1
        self._slot = self._scratch_slot  # where the request being made writes observations
        self._row_slot = np.full(self.num_envs, self._scratch_slot)  # each env's latest obs
        self.step_timeout = float(step_timeout)
        self.restart_on_failure = restart_on_failure
        self._pending: list[deque[_Request]] = [deque() for _ in self.workers]
        self._in_flight = np.zeros(self.num_envs, dtype=bool)
        self._done = np.zeros(self.num_envs, dtype=bool)
        empty = tuple("" for _ in self.obs_layout.text_paths)
        self._texts: list[tuple[str, ...]] = [empty] * self.num_envs
        # answers of workers restarted while submitting, handed out by the next _collect
        self._restarted: dict[int, list[GroupResult]] = {}
        self._all_targets = [(w, list(range(w.num_envs))) for w in self.workers]
        self._all_rows = [slice(w.first_index, w.first_index + w.num_envs) for w in self.workers]
        self._all_ids = np.arange(self.num_envs)
        self._worker_of = np.concatenate([[w.index] * w.num_envs for w in self.workers])
        _LIVE_ENVS.add(self)

    # ------------------------------------------------------------------ backend hooks
    @abstractmethod
    def _wait(self, workers: list[WorkerHandle], timeout: float) -> list[WorkerHandle]:
        """The workers among ``workers`` with an answer ready (or dead), within ``timeout`` s."""

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[Any, dict[str, Any]]:
        env_ids, seeds, options = self._reset_targets(seed, options)
        self._require_idle("reset")
        self._claim_slot(env_ids)
        submit_error = self._submit_reset(env_ids, seeds, options)
        infos = self._merge(self._collect_all())
        if submit_error is not None:
            raise submit_error
        return self._observations(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        self._require_idle("step")
        self._claim_slot(None)
        results, submit_error = self._step_all(actions)
        infos = self._merge(results)
        if submit_error is not None:
            raise submit_error
        b = self.buffers
        obs = self._observations()
        return obs, b.rewards.copy(), b.terminations.copy(), b.truncations.copy(), infos

    def _claim_slot(self, env_ids: np.ndarray | None) -> None:
        """Pick the slot the next step/reset writes into, one the caller holds nothing of, so
        observations handed out earlier stay intact without being copied; envs outside
        ``env_ids`` (default: all envs) get their latest rows carried over into it."""
        slots = self.buffers.obs_slots
        self._slot = self._scratch_slot
        if not self.copy:
            self._slot = 0  # views, overwritten by the next step: the caller asked for that
        else:  # the lowest free slot: in a loop that drops old batches two slots alternate,
            # which keeps less memory in play (the copies into it are memory-bound)
            for candidate in range(HANDED_OUT_SLOTS):
                if slot_is_free(slots[candidate]):
                    self._slot = candidate
                    break
        if env_ids is not None:  # e.g. reset(options={"reset_mask": ...})
            stale = self._row_slot != self._slot
            stale[env_ids] = False
            for source in np.unique(self._row_slot[stale]):
                rows = np.flatnonzero(stale & (self._row_slot == source))
                for target, origin in zip(slots[self._slot], slots[source], strict=True):
                    target[rows] = origin[rows]
        self._row_slot[:] = self._slot

    def _observations(self) -> Any:
        """The batch in the claimed slot: its own arrays, or copies of the scratch slot."""
        arrays = self.buffers.obs_slots[self._slot]
        if self._slot == self._scratch_slot:  # the caller still holds every handed-out slot
            arrays = [array.copy() for array in arrays]
        return self.obs_layout.batch(arrays, self._texts)

    def render(self) -> tuple[Any, ...]:
        return self.call("render")

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        self._require_idle("call")
        return tuple(r for w in self.workers for r in self._request(w, "call", name, args, kwargs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        self._require_idle("get_attr")
        return tuple(r for w in self.workers for r in self._request(w, "get_attr", name))

    def set_attr(self, name: str, values: Any) -> None:
        self._require_idle("set_attr")
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(
                f"set_attr needs one value per env ({self.num_envs}), got {len(values)} values"
            )
        for w in self.workers:
            own = list(values[w.first_index : w.first_index + w.num_envs])
            self._request(w, "set_attr", name, own)

    def worker_info(self) -> list[dict[str, Any]]:
        """Per worker: the envs it hosts and what it was given (pid, devices, env vars, cores)."""
        return [w.describe() for w in self.workers]

    def close_extras(self, **kwargs: Any) -> None:
        _LIVE_ENVS.discard(self)
        for w in getattr(self, "workers", []):
            w.close()
        self._release_memory()

    def _release_memory(self) -> None:
        """Backends holding shared memory free it here."""

    def __del__(self) -> None:
        if not getattr(self, "closed", True) and hasattr(self, "workers"):
            self.close()

    def __repr__(self) -> str:
        name = f"{self.spec.id}, " if self.spec is not None else ""
        return f"{type(self).__name__}({name}num_envs={self.num_envs})"

    # ------------------------------------------------------------------ async API
    def send(self, actions: Any, env_ids: Sequence[int] | np.ndarray | None = None) -> None:
        """Start stepping ``env_ids`` (default: all) with ``actions`` (one row per env id)."""
        self._slot = self._scratch_slot  # recv() hands out copies of its rows
        error = self._send(actions, env_ids)
        if error is not None:
            raise error

    def _send(self, actions: Any, env_ids: Any = None) -> Exception | None:
        """Submit to every concerned worker; a dead one's error is returned, not raised, so
        the others' answers can still be collected."""
        ids = self._write_actions(actions, env_ids)
        targets = self._all_targets if env_ids is None else self._by_worker(ids)
        deadline = time.monotonic() + self.step_timeout
        errors = [self._submit(worker, "step", local, deadline) for worker, local in targets]
        return next((e for e in errors if e is not None), None)

    def _write_actions(self, actions: Any, env_ids: Any) -> np.ndarray:
        """Check that ``env_ids`` (None: all) can be stepped; write their actions; their ids."""
        ids = self._all_ids if env_ids is None else self._env_ids(env_ids)
        rows = slice(None) if env_ids is None else ids  # all envs: contiguous rows
        if self._in_flight[rows].any():
            busy = ids[self._in_flight[rows]].tolist()
            raise ValueError(f"envs {busy} still have a step in flight; recv() it first")
        if self.autoreset_mode == AutoresetMode.DISABLED and self._done[rows].any():
            done = ids[self._done[rows]].tolist()
            raise RuntimeError(
                f"envs {done} are done and autoreset_mode is DISABLED: reset them with "
                "reset(options={'reset_mask': mask}) before stepping them again"
            )
        self.act_layout.write_rows(self.buffers.actions, rows, actions, ids)
        return ids

    def _step_all(self, actions: Any) -> tuple[list[tuple[int, GroupResult]], Exception | None]:
        """Step every env: the answers, and an error met while submitting (raised by the
        caller once every answer is in). A backend may override this with a leaner path."""
        submit_error = self._send(actions)
        return self._collect_all(), submit_error

    def async_reset(self, seed: int | Sequence[int | None] | None = None) -> None:
        """Start resetting every env; ``recv()`` returns them as they finish."""
        self._require_idle("async_reset")
        env_ids, seeds, options = self._reset_targets(seed, None)
        self._slot = self._scratch_slot
        error = self._submit_reset(env_ids, seeds, options)
        if error is not None:
            raise error

    def recv(self, min_envs: int = 1) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Results of the envs that finished first (at least ``min_envs``, whole workers).

        Returns ``(obs, rewards, terminations, truncations, infos)`` for those envs only, in
        ascending env order; ``infos["env_id"]`` holds their indices.
        """
        if not self._in_flight.any():
            raise RuntimeError("recv() with nothing in flight: send() actions first")
        results = self._collect(min_envs=min(min_envs, int(self._in_flight.sum())))
        ids = np.array(
            sorted(self.workers[w].first_index + i for w, r in results for i in r.local_ids)
        )
        position = {int(env): k for k, env in enumerate(ids)}
        infos: dict[str, Any] = {}
        self._absorb(results, lambda env, info: add_info(infos, info, position[env], len(ids)))
        infos["env_id"] = ids
        b = self.buffers
        self._row_slot[ids] = self._scratch_slot
        obs = self.obs_layout.batch(b.obs_slots[self._scratch_slot], self._texts, rows=ids)
        return obs, b.rewards[ids], b.terminations[ids], b.truncations[ids], infos

    # ------------------------------------------------------------------ internals
    def _env_ids(self, env_ids: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if env_ids is None:
            return np.arange(self.num_envs)
        ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0 or ids.min() < 0 or ids.max() >= self.num_envs:
            raise ValueError(f"env_ids must be in [0, {self.num_envs}), got {ids.tolist()}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"env_ids must not repeat, got {ids.tolist()}")
        return ids

    def _by_worker(self, ids: np.ndarray) -> list[tuple[WorkerHandle, list[int]]]:
        groups: dict[int, list[int]] = {}
        for env in ids.tolist():
            worker = int(self._worker_of[env])
            groups.setdefault(worker, []).append(env - self.workers[worker].first_index)
        return [(self.workers[w], local) for w, local in sorted(groups.items())]

    def _reset_targets(self, seed: Any, options: dict | None):
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"reset(seed=...) as a list needs one seed per env ({self.num_envs}), "
                    f"got {len(seeds)}"
                )
        options = dict(options) if options is not None else None
        env_ids = np.arange(self.num_envs)
        if options is not None and "reset_mask" in options:
            mask = options.pop("reset_mask")
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
                raise TypeError(f"options['reset_mask'] must be a numpy bool array, got {mask!r}")
            if mask.shape != (self.num_envs,):
                raise ValueError(
                    f"options['reset_mask'] must have shape ({self.num_envs},), got {mask.shape}"
                )
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
            env_ids = np.flatnonzero(mask)
        return env_ids, seeds, options

    def _submit_reset(
        self, env_ids: np.ndarray, seeds: list, options: dict | None
    ) -> Exception | None:
        errors = []
        deadline = time.monotonic() + self.step_timeout
        for worker, local_ids in self._by_worker(env_ids):
            worker_seeds = [seeds[worker.first_index + i] for i in local_ids]
            errors.append(self._submit(worker, "reset", local_ids, deadline, worker_seeds, options))
        return next((e for e in errors if e is not None), None)

    def _submit(
        self, worker: WorkerHandle, kind: str, local_ids: list[int], deadline: float, *args: Any
    ) -> Exception | None:
        """Submit one request; a worker found dead is restarted (if asked) or its error returned."""
        if self.closed:
            raise VectorEnvError("the vector env is closed")
        try:
            if kind == "step":
                worker.submit_step(local_ids, self._slot)
            else:
                worker.submit_reset(local_ids, *args, self._slot)
        except WorkerError as error:  # died since its last answer
            return self._submit_failed(worker, error)
        self._track(worker, kind, local_ids, deadline)
        return None

    def _track(
        self, worker: WorkerHandle, kind: str, local_ids: list[int], deadline: float
    ) -> None:
        """Record a request submitted to ``worker``: its answer is owed."""
        self._pending[worker.index].append(_Request(kind, local_ids, deadline))
        self._in_flight[self._rows(worker.index, local_ids)] = True

    def _submit_failed(self, worker: WorkerHandle, error: WorkerError) -> Exception | None:
        """``worker`` was found dead while submitting: restart it (its fresh envs' results are
        handed out with the others') or return the error to raise once all answers are in."""
        if not self.restart_on_failure:
            return error
        self._pending[worker.index].clear()
        self._restart_later(worker, error)
        return None

    def _restart_later(self, worker: WorkerHandle, error: Exception) -> None:
        """Restart now and queue the restart's result as the worker's next answer."""
        result = self._restart(worker, error)
        self._restarted.setdefault(worker.index, []).append(result)
        self._in_flight[worker.env_ids] = True

    def _restart(self, worker: WorkerHandle, error: Exception) -> GroupResult:
        warnings.warn(
            f"{error}\nrestarting worker {worker.index}; envs {worker.env_ids} are reset "
            "(reported as truncated with infos['worker_restarted'])",
            RuntimeWarning,
            stacklevel=4,
        )
        return worker.restart(self._slot)

    def _require_idle(self, what: str) -> None:
        if self.closed:
            raise VectorEnvError(f"{what}() on a closed vector env")
        if self._in_flight.any():
            busy = np.flatnonzero(self._in_flight).tolist()
            raise RuntimeError(f"{what}() while envs {busy} have results in flight; recv() them")

    def _request(self, worker: WorkerHandle, method: str, *args: Any) -> Any:
        if self.closed:
            raise VectorEnvError(f"{method}() on a closed vector env")
        return worker.request(method, *args)

    def _take_restarted(self) -> list[tuple[int, GroupResult]]:
        """Answers of workers restarted while submitting (their old requests are gone)."""
        results: list[tuple[int, GroupResult]] = []
        for index, queued in self._restarted.items():
            results.extend((index, r) for r in queued)
            self._pending[index].clear()
        self._restarted.clear()
        return results

    def _collect_all(self) -> list[tuple[int, GroupResult]]:
        """Every answer in flight, as ``(worker index, result)``.

        All are needed, so the workers are awaited one after the other, no polling of the whole
        set, last submitted first: workers finish roughly in the order they were started, so by
        the time the last one answers the others usually have too, and the caller sleeps once
        per batch rather than once per worker. A failure is handled (restart or error) once
        the other workers' answers are in, so nothing stays in flight.
        """
        results = self._take_restarted()
        errors: list[Exception] = []
        for worker in reversed(self.workers):
            pending = self._pending[worker.index]
            while pending:
                timeout = max(0.0, pending[0].deadline - time.monotonic())
                if not worker.answer_ready(timeout):
                    self._fail(worker, self._timeout_error(worker), results, errors)
                    break
                try:
                    result = worker.fetch()
                except VectorEnvError as error:  # EnvError, WorkerError, worker failure
                    self._fail(worker, error, results, errors)
                    break
                pending.popleft()
                results.append((worker.index, result))
        self._in_flight[:] = False
        if errors:
            raise errors[0]
        return results

    def _timeout_error(self, worker: WorkerHandle) -> WorkerTimeoutError:
        worker.kill()
        reason = (
            f"did not answer within step_timeout={self.step_timeout:g} s "
            f"({self._pending[worker.index][0].kind}); it was killed"
        )
        return WorkerTimeoutError(worker.index, worker.env_ids, reason)

    def _collect(self, min_envs: int = 1) -> list[tuple[int, GroupResult]]:
        """Answers of the workers that finish first, covering at least ``min_envs`` envs."""
        results = self._take_restarted()
        errors: list[Exception] = []
        got = sum(len(r.local_ids) for _, r in results)
        while not errors and not (got >= min_envs and results):
            busy = [w for w in self.workers if self._pending[w.index]]
            if not busy:
                break
            deadline = min(self._pending[w.index][0].deadline for w in busy)
            ready = self._wait(busy, max(0.0, deadline - time.monotonic()))
            if not ready:
                now = time.monotonic()
                for w in busy:
                    if self._pending[w.index][0].deadline <= now:
                        self._fail(w, self._timeout_error(w), results, errors)
                continue
            for w in ready:
                try:
                    result = w.fetch()
                except VectorEnvError as error:
                    self._fail(w, error, results, errors)
                    continue
                self._pending[w.index].popleft()
                results.append((w.index, result))
                got += len(result.local_ids)
        for index, result in results:
            self._in_flight[self._rows(index, result.local_ids)] = False
        if errors:
            raise errors[0]
        return results

    def _fail(self, worker: WorkerHandle, error: Exception, results: list, errors: list) -> None:
        """A request failed: restart the worker (if asked to) or record the error to raise."""
        lost = self._pending[worker.index]
        lost_ids = [worker.first_index + i for r in lost for i in r.local_ids]
        lost.clear()
        self._in_flight[lost_ids] = False
        if self.restart_on_failure:
            try:
                results.append((worker.index, self._restart(worker, error)))
                return
            except Exception as restart_error:  # could not even restart: report both
                error = restart_error
        errors.append(error)

    def _rows(self, worker_index: int, local_ids: list[int]) -> slice | list[int]:
        """Buffer rows of some of a worker's envs (a slice when it is all of them)."""
        worker = self.workers[worker_index]
        if len(local_ids) == worker.num_envs:
            return self._all_rows[worker_index]
        return [worker.first_index + i for i in local_ids]

    def _absorb(self, results: list[tuple[int, GroupResult]], put_info) -> None:
        """Update instructions and done flags from results; hand each info to ``put_info``."""
        b = self.buffers
        entries = []
        whole_batch = sum(len(result.local_ids) for _, result in results) == self.num_envs
        if whole_batch:  # every env answered (a step or reset of all): one vectorised update
            np.logical_or(b.terminations, b.truncations, out=self._done)
        for index, result in results:
            if not whole_batch:
                rows = self._rows(index, result.local_ids)
                self._done[rows] = b.terminations[rows] | b.truncations[rows]
            if result.is_plain:  # the common case: nothing beyond the buffers
                continue
            first = self.workers[index].first_index
            for local, texts in result.texts.items():
                self._texts[first + local] = texts
            for local, info in zip(result.local_ids, result.infos, strict=True):
                entries.append((first + local, info))
            for local in result.restarted:
                entries.append((first + local, {"worker_restarted": True}))
        for env, info in sorted(entries, key=lambda e: e[0]):
            if info:
                put_info(env, info)

    def _merge(self, results: list[tuple[int, GroupResult]]) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        self._absorb(results, lambda env, info: add_info(infos, info, env, self.num_envs))
        return infos
