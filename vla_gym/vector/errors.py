"""Errors the vector layer raises; each names the env (or worker) at fault."""

from __future__ import annotations

from collections.abc import Sequence


class VectorEnvError(RuntimeError):
    """Base class of every failure reported by a vla_gym vector env."""


class EnvError(VectorEnvError):
    """A sub-environment raised; carries its index and the traceback from where it ran."""

    def __init__(self, env_index: int, summary: str, env_traceback: str) -> None:
        self.env_index = int(env_index)
        self.summary = summary
        self.env_traceback = env_traceback
        super().__init__(
            f"env {self.env_index} raised {summary}\n\n"
            f"Traceback in the process hosting env {self.env_index}:\n{env_traceback}"
        )

    def __reduce__(self):
        return type(self), (self.env_index, self.summary, self.env_traceback)


class WorkerError(VectorEnvError):
    """A worker process (or actor) stopped answering; names the envs it hosted."""

    def __init__(self, worker_index: int, env_indices: Sequence[int], reason: str) -> None:
        self.worker_index = int(worker_index)
        self.env_indices = [int(i) for i in env_indices]
        self.reason = reason
        super().__init__(f"worker {self.worker_index} (envs {self.env_indices}) {reason}")

    def __reduce__(self):
        return type(self), (self.worker_index, self.env_indices, self.reason)


class WorkerDiedError(WorkerError):
    """The worker exited (killed, segfault, ...) while it owed an answer."""


class WorkerTimeoutError(WorkerError):
    """The worker did not answer within ``step_timeout`` seconds; it has been killed."""
