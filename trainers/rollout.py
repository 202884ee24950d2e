"""Rollout collection over ``vla_gym.make_vec`` with chunked actions.

The vector envs run in Gymnasium's ``NEXT_STEP`` autoreset mode: the step that ends an episode
returns that episode's real final observation, and the following step resets the env (its action
is ignored, reward 0). So with ``values[t] = V(obs_t)``:

* ``valid[t]`` is False for such reset steps and, in episodic rollouts, for every step after an
  env's first episode ended ("masked after episode end"); invalid steps never enter the loss.
  An env whose episode has ended is not stepped again in an episodic rollout (on vla_gym's
  vector envs, which step a subset of envs), and the rollout stops once every episode has
  ended; its remaining steps are padding (invalid, zero reward): ``num_steps`` steps always.
* truncation bootstrap needs no extra forward pass: after a truncated step ``t`` the next
  observation is the final one, so ``rewards[t] += gamma * values[t + 1]`` (``last_value`` at the
  end of the rollout).

One policy step sends a whole action chunk; its reward is the chunk's summed reward (chunk
level). With ``pipeline_stage_num: 2`` the envs are split into two vector envs; while one half
steps (in its workers) the policy acts on the other half.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from trainers.policies.base import ActorCriticPolicy, Observation, PolicyOutput


# ----------------------------------------------------------------------------- env creation
def make_single_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` for a vla_gym env: its step limit is its own ``max_steps`` keyword.

    ``gym.make``'s ``max_episode_steps`` would wrap the env in a ``TimeLimit`` counting ``step``
    calls (whole chunks) instead of control steps, so it is refused.
    """
    import vla_gym  # noqa: F401  (registers the IDs, also inside worker processes)

    if "max_episode_steps" in kwargs:
        raise ValueError(
            f"{env_id}: pass the episode limit as max_steps (control steps), not "
            "max_episode_steps (gym.make's TimeLimit, which counts action chunks)"
        )
    return gym.make(env_id, **kwargs)


def make_vector_env(
    env_id: str,
    num_envs: int,
    kwargs: dict[str, Any],
    *,
    backend: str = "sync",
    devices: str | None = None,
    envs_per_worker: int = 1,
) -> gym.vector.VectorEnv:
    """The one place the trainer creates environments (NEXT_STEP autoreset, see module doc)."""
    from vla_gym.vector import make_vec

    envs = make_vec(
        functools.partial(make_single_env, env_id),
        num_envs,
        devices=devices,
        backend=backend,
        envs_per_worker=min(envs_per_worker, num_envs),
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
        **kwargs,
    )
    mode = envs.metadata.get("autoreset_mode")
    if mode is not None and gym.vector.AutoresetMode(mode) != gym.vector.AutoresetMode.NEXT_STEP:
        raise RuntimeError(f"the trainer needs NEXT_STEP autoreset, the vector env uses {mode}")
    return envs


# ------------------------------------------------------------------------ observation helpers
def obs_to_torch(obs: Any, device: torch.device) -> Observation:
    """A vector env's batched observation as the policy input (see policies/base.py)."""
    if isinstance(obs, dict):
        return {key: obs_to_torch(value, device) for key, value in obs.items()}
    if isinstance(obs, np.ndarray) and obs.dtype.kind in "biuf":
        return torch.as_tensor(obs, device=device)
    return [str(item) for item in obs]  # instructions: tuple/array of strings


def obs_to_device(obs: Observation, device: torch.device) -> Observation:
    if isinstance(obs, dict):
        return {key: obs_to_device(value, device) for key, value in obs.items()}
    if isinstance(obs, torch.Tensor):
        return obs.to(device, non_blocking=True)
    return obs


def stack_obs(steps: list[Observation]) -> Observation:
    """``T`` batched observations -> one with leading dims ``(T, N)`` (strings: nested lists)."""
    first = steps[0]
    if isinstance(first, dict):
        return {key: stack_obs([step[key] for step in steps]) for key in first}
    if isinstance(first, torch.Tensor):
        return torch.stack(steps)
    return [list(step) for step in steps]


def concat_obs(parts: list[Observation], dim: int) -> Observation:
    first = parts[0]
    if isinstance(first, dict):
        return {key: concat_obs([part[key] for part in parts], dim) for key in first}
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, dim=dim)
    if dim == 0:
        return [item for part in parts for item in part]
    return [sum((part[t] for part in parts), []) for t in range(len(first))]  # along N


def flatten_obs(obs: Observation) -> Observation:
    """``(T, N, ...)`` -> ``(T * N, ...)``."""
    if isinstance(obs, dict):
        return {key: flatten_obs(value) for key, value in obs.items()}
    if isinstance(obs, torch.Tensor):
        return obs.reshape(-1, *obs.shape[2:])
    return [item for row in obs for item in row]


def index_obs(obs: Observation, index: torch.Tensor) -> Observation:
    if isinstance(obs, dict):
        return {key: index_obs(value, index) for key, value in obs.items()}
    if isinstance(obs, torch.Tensor):
        return obs[index.to(obs.device)]
    return [obs[i] for i in index.tolist()]


# --------------------------------------------------------------------------------- the buffer
@dataclass
class Rollout:
    """One rollout, every tensor ``(T, N, ...)`` on the CPU (``last_value`` is ``(N,)``)."""

    obs: Observation
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor  # chunk-summed env rewards (bootstrap is added by the algorithm)
    terminated: torch.Tensor
    truncated: torch.Tensor
    valid: torch.Tensor  # False: reset step or after the episode's end (episodic)
    last_value: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def dones(self) -> torch.Tensor:
        return self.terminated | self.truncated

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]

    @staticmethod
    def concat_envs(parts: list[Rollout]) -> Rollout:
        """Join rollouts of disjoint env sets (pipeline stages) along the env axis."""
        if len(parts) == 1:
            return parts[0]
        cat = lambda name: torch.cat([getattr(part, name) for part in parts], dim=1)  # noqa: E731
        return Rollout(
            obs=concat_obs([part.obs for part in parts], dim=1),
            actions=cat("actions"),
            log_probs=cat("log_probs"),
            values=cat("values"),
            rewards=cat("rewards"),
            terminated=cat("terminated"),
            truncated=cat("truncated"),
            valid=cat("valid"),
            last_value=torch.cat([part.last_value for part in parts]),
            extras={
                key: torch.cat([part.extras[key] for part in parts], dim=1)
                for key in parts[0].extras
            },
        )


@dataclass
class EpisodeStats:
    """Finished episodes of one or more rollouts."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    success_once: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    env_steps: int = 0  # native env steps executed
    reward_sum: float = 0.0

    @property
    def count(self) -> int:
        return len(self.returns)

    def merge(self, other: EpisodeStats) -> None:
        """Add ``other``'s episodes and step counts to these."""
        self.returns += other.returns
        self.lengths += other.lengths
        self.success_once += other.success_once
        for name, values in other.extra.items():
            self.extra[name] += values
        self.env_steps += other.env_steps
        self.reward_sum += other.reward_sum

    def metrics(self, prefix: str = "env") -> dict[str, float]:
        out = {}
        if self.env_steps:
            out[f"{prefix}/reward"] = self.reward_sum / self.env_steps
        if self.returns:
            out[f"{prefix}/return"] = float(np.mean(self.returns))
            out[f"{prefix}/episode_len"] = float(np.mean(self.lengths))
            out[f"{prefix}/success_once"] = float(np.mean(self.success_once))
            out[f"{prefix}/num_episodes"] = float(len(self.returns))
        for name, values in self.extra.items():
            if values:
                out[f"{prefix}/{name}"] = float(np.mean(values))
        return out


@dataclass
class Timings:
    env_step: float = 0.0
    policy_inference: float = 0.0


def _info_array(infos: dict[str, Any], key: str, num_envs: int, default: float) -> np.ndarray:
    if key not in infos:
        return np.full(num_envs, default, dtype=np.float64)
    values = np.asarray(infos[key], dtype=np.float64).reshape(num_envs, -1)[:, 0]
    present = infos.get(f"_{key}")
    if present is not None:
        values = np.where(np.asarray(present, dtype=bool), values, default)
    return values


# --------------------------------------------------------------------------------- the buffer
@dataclass
class StepBuffer:
    """The steps of one rollout of one stage as they arrive, one ``(N, ...)`` entry per step."""

    obs: list[Observation] = field(default_factory=list)
    actions: list[torch.Tensor] = field(default_factory=list)
    log_probs: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    valid: list[torch.Tensor] = field(default_factory=list)
    extras: dict[str, list[torch.Tensor]] = field(default_factory=lambda: defaultdict(list))
    rewards: list[torch.Tensor] = field(default_factory=list)
    terminated: list[torch.Tensor] = field(default_factory=list)
    truncated: list[torch.Tensor] = field(default_factory=list)

    def add_action(self, obs: Observation, out: PolicyOutput, valid: np.ndarray) -> None:
        self.obs.append(obs_to_device(obs, torch.device("cpu")))
        self.actions.append(out.actions.detach().cpu())
        self.log_probs.append(out.log_prob.detach().cpu())
        self.values.append(out.value.detach().cpu().reshape(-1))
        for key, value in out.extras.items():
            self.extras[key].append(value.detach().cpu())
        self.valid.append(torch.as_tensor(valid))

    def add_outcome(
        self, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> None:
        self.rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        self.terminated.append(torch.as_tensor(terminated))
        self.truncated.append(torch.as_tensor(truncated))

    def pad(self, num_steps: int) -> None:
        """Fill up to ``num_steps`` with invalid steps (repeats of the last, zero reward)."""
        for _ in range(num_steps - len(self.rewards)):
            self.obs.append(self.obs[-1])
            for entries in (self.actions, self.log_probs, self.values, *self.extras.values()):
                entries.append(entries[-1])
            self.valid.append(torch.zeros_like(self.valid[-1]))
            self.rewards.append(torch.zeros_like(self.rewards[-1]))
            self.terminated.append(torch.zeros_like(self.terminated[-1]))
            self.truncated.append(torch.zeros_like(self.truncated[-1]))

    def to_rollout(self, last_value: torch.Tensor) -> Rollout:
        return Rollout(
            obs=stack_obs(self.obs),
            actions=torch.stack(self.actions),
            log_probs=torch.stack(self.log_probs),
            values=torch.stack(self.values).float(),
            rewards=torch.stack(self.rewards),
            terminated=torch.stack(self.terminated),
            truncated=torch.stack(self.truncated),
            valid=torch.stack(self.valid),
            last_value=last_value.float(),
            extras={key: torch.stack(values) for key, values in self.extras.items()},
        )


# ------------------------------------------------------------------------------ the collector
class _Stage:
    """One vector env (all envs, or one pipeline half), its running episodes and the rollout
    being collected from it."""

    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.obs: Any = None
        self.prev_done = np.zeros(self.num_envs, dtype=bool)
        self.episode_return = np.zeros(self.num_envs)
        self._pending: tuple | None = None
        self._num_sent = 0
        # the current rollout
        self.buffer: StepBuffer | None = None
        self.ever_done = np.zeros(self.num_envs, dtype=bool)
        self.sent_valid = np.ones(self.num_envs, dtype=bool)
        self.active = True

    def reset(self, seeds: list[int] | None) -> None:
        self.obs, _ = self.envs.reset(seed=seeds)
        self.prev_done[:] = False
        self.episode_return[:] = 0.0

    def begin_rollout(self, record: bool) -> None:
        self.buffer = StepBuffer() if record else None
        self.ever_done = np.zeros(self.num_envs, dtype=bool)
        self.active = True

    def send(self, actions: np.ndarray, env_ids: np.ndarray | None = None) -> None:
        """Start stepping ``env_ids`` (None: all; Gymnasium's vector envs step all anyway);
        with worker processes they step while this process continues."""
        self._pending = None
        self._num_sent = self.num_envs if env_ids is None else len(env_ids)
        if hasattr(self.envs, "recv"):  # vla_gym's envpool-style send/recv
            if env_ids is None:
                self.envs.send(actions)
            else:
                self.envs.send(actions[env_ids], env_ids)
        elif hasattr(self.envs, "step_async"):  # gymnasium.vector.AsyncVectorEnv
            self.envs.step_async(actions)
        else:
            self._pending = self.envs.step(actions)

    def recv(self) -> tuple:
        """``(obs, rewards, terminated, truncated, infos, stepped)`` for every env; envs not
        stepped (``stepped`` False) keep their observation, with reward 0 and no info."""
        everyone = np.ones(self.num_envs, dtype=bool)
        if self._pending is not None:
            result, self._pending = self._pending, None
            return (*result, everyone)
        if not hasattr(self.envs, "recv"):
            return (*self.envs.step_wait(), everyone)
        obs, rewards, terminated, truncated, infos = self.envs.recv(min_envs=self._num_sent)
        ids = infos.pop("env_id")
        if len(ids) == self.num_envs:
            return obs, rewards, terminated, truncated, infos, everyone
        stepped = np.zeros(self.num_envs, dtype=bool)
        stepped[ids] = True
        n = self.num_envs
        return (
            _scatter(obs, ids, self.obs, n),  # the others keep their last observation
            *(_scatter(part, ids, None, n) for part in (rewards, terminated, truncated, infos)),
            stepped,
        )


def _scatter(part: Any, ids: np.ndarray, full: Any, size: int) -> Any:
    """A batch of ``size`` envs whose rows ``ids`` are ``part`` (a batch of ``len(ids)``) and
    whose other rows are ``full``'s (when given) or empty: zeros, False, "" or None."""
    if isinstance(part, dict):
        return {
            key: _scatter(value, ids, None if full is None else full[key], size)
            for key, value in part.items()
        }
    if isinstance(part, tuple):  # text leaves: one string per env
        rows = list(full) if full is not None else [""] * size
        for row, value in zip(ids, part, strict=True):
            rows[row] = value
        return tuple(rows)
    part = np.asarray(part)
    if full is not None:
        out = np.array(full, copy=True)
    elif part.dtype == object:
        out = np.full((size, *part.shape[1:]), None, dtype=object)
    else:
        out = np.zeros((size, *part.shape[1:]), dtype=part.dtype)
    out[ids] = part
    return out


class RolloutCollector:
    """Collects fixed-length rollouts from ``pipeline_stage_num`` vector envs."""

    def __init__(
        self,
        make_envs: Callable[[int], gym.vector.VectorEnv],
        num_envs: int,
        *,
        num_steps: int,
        episodic: bool,
        pipeline_stage_num: int = 1,
        device: torch.device | str = "cpu",
        episode_metrics: dict[str, str] | None = None,
    ) -> None:
        if num_envs % pipeline_stage_num:
            raise ValueError(f"num_envs {num_envs} not divisible by {pipeline_stage_num} stages")
        self.stages = [
            _Stage(make_envs(num_envs // pipeline_stage_num)) for _ in range(pipeline_stage_num)
        ]
        self.num_envs = num_envs
        self.num_steps = num_steps
        self.episodic = episodic
        self.device = torch.device(device)
        self.episode_metrics = dict(episode_metrics or {})
        self.timings = Timings()
        self._started = False
        first = self.stages[0].envs
        self.observation_space = first.single_observation_space
        self.action_space = first.single_action_space

    def close(self) -> None:
        for stage in self.stages:
            stage.envs.close()

    def reset(self, seeds: list[int] | None) -> None:
        """Reset every env; ``seeds`` has one entry per env (GRPO groups repeat a seed)."""
        offset = 0
        for stage in self.stages:
            part = None if seeds is None else list(seeds[offset : offset + stage.num_envs])
            stage.reset(part)
            offset += stage.num_envs
        self._started = True

    @torch.no_grad()
    def collect(
        self,
        policy: ActorCriticPolicy,
        seeds: list[int] | None = None,
        *,
        deterministic: bool = False,
        record: bool = True,
    ) -> tuple[Rollout | None, EpisodeStats]:
        """One rollout of ``num_steps`` policy steps per env.

        Episodic rollouts reset every env first (with ``seeds``); continuous ones carry on from
        where the previous rollout stopped (the first call resets with ``seeds``). With
        ``record=False`` (evaluation) only the episode statistics are kept.
        """
        if self.episodic or not self._started:
            self.reset(seeds)
        stats = EpisodeStats()
        for stage in self.stages:
            stage.begin_rollout(record)
        # Pipelined schedule: act(0) send(0) act(1) send(1) | recv(0) act(0) send(0) recv(1) ...
        for stage in self.stages:
            self._act_and_send(stage, policy, deterministic)
        for step in range(self.num_steps):
            for stage in self.stages:
                if not stage.active:
                    continue
                self._receive(stage, stats)
                # an episodic rollout has nothing left to collect once all episodes are over
                over = self.episodic and bool(stage.ever_done.all())
                stage.active = step + 1 < self.num_steps and not over
                if stage.active:
                    self._act_and_send(stage, policy, deterministic)
        if not record:
            return None, stats
        return Rollout.concat_envs([self._finish(stage, policy) for stage in self.stages]), stats

    def _act_and_send(self, stage: _Stage, policy: ActorCriticPolicy, deterministic: bool) -> None:
        start = time.perf_counter()
        obs = obs_to_torch(stage.obs, self.device)
        out = policy.act(obs, deterministic=deterministic)
        actions = out.actions.detach().cpu()
        self.timings.policy_inference += time.perf_counter() - start
        # reset steps, and in episodic rollouts everything after an env's first episode
        valid = ~stage.prev_done
        if self.episodic:
            valid &= ~stage.ever_done
        if stage.buffer is not None:
            stage.buffer.add_action(obs, out, valid)
        # an env whose episode has ended has nothing more to give to an episodic rollout
        running = None
        if self.episodic and stage.ever_done.any():
            running = np.flatnonzero(~stage.ever_done)
        start = time.perf_counter()
        stage.send(actions.numpy(), running)
        self.timings.env_step += time.perf_counter() - start
        stage.sent_valid = valid

    def _receive(self, stage: _Stage, stats: EpisodeStats) -> None:
        start = time.perf_counter()
        next_obs, reward, terminated, truncated, infos, stepped = stage.recv()
        self.timings.env_step += time.perf_counter() - start
        valid = stage.sent_valid
        reward = np.asarray(reward, dtype=np.float64)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        done = terminated | truncated
        executed = _info_array(infos, "executed_steps", stage.num_envs, 1.0)
        executed = np.where(stage.prev_done | ~stepped, 0.0, executed)  # resets execute nothing
        stats.env_steps += int(executed.sum())
        stats.reward_sum += float(reward[~stage.prev_done].sum())
        stage.episode_return += np.where(stage.prev_done, 0.0, reward)
        finished = done & valid
        if finished.any():
            self._record_episodes(stage, np.flatnonzero(finished), infos, stats)
        stage.episode_return[done] = 0.0
        if stage.buffer is not None:
            stage.buffer.add_outcome(reward, terminated & valid, truncated & valid)
        stage.ever_done |= finished
        stage.prev_done = np.where(stepped, done, stage.prev_done)
        stage.obs = next_obs

    def _record_episodes(
        self, stage: _Stage, envs: np.ndarray, infos: dict[str, Any], stats: EpisodeStats
    ) -> None:
        """Statistics of the episodes that ended in ``envs`` at this step."""
        success = _info_array(infos, "success_once", stage.num_envs, 0.0)
        length = _info_array(infos, "elapsed_steps", stage.num_envs, np.nan)
        extras = {
            name: _info_array(infos, key, stage.num_envs, np.nan)
            for name, key in self.episode_metrics.items()
        }
        for i in envs:
            stats.returns.append(float(stage.episode_return[i]))
            stats.lengths.append(int(length[i]) if np.isfinite(length[i]) else 0)
            stats.success_once.append(float(success[i]))
            for name, values in extras.items():
                if np.isfinite(values[i]):
                    stats.extra[name].append(float(values[i]))

    def _finish(self, stage: _Stage, policy: ActorCriticPolicy) -> Rollout:
        """The stage's rollout, bootstrapped with the value of its last observation."""
        start = time.perf_counter()
        last_value = policy.value(obs_to_torch(stage.obs, self.device)).detach().cpu()
        self.timings.policy_inference += time.perf_counter() - start
        stage.buffer.pad(self.num_steps)
        return stage.buffer.to_rollout(last_value.reshape(-1))
