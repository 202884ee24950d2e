"""A named POSIX shared-memory segment: created (and unlinked) by the parent, mapped by workers.

The parent uses :class:`multiprocessing.shared_memory.SharedMemory`, so Python's resource tracker
removes the segment even if the parent is killed. Workers map it by name with ``mmap`` directly:
attaching through ``SharedMemory`` would register it with the tracker again (Python < 3.13) and
a worker's exit could then unlink the parent's segment.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
from multiprocessing import shared_memory


class SharedBlock:
    """Owner side: ``SharedBlock.create(nbytes)``; ``close()`` unmaps and unlinks."""

    def __init__(self, shm: shared_memory.SharedMemory, nbytes: int) -> None:
        self._shm: shared_memory.SharedMemory | None = shm
        self.name = shm.name
        self.nbytes = nbytes

    @classmethod
    def create(cls, nbytes: int) -> SharedBlock:
        name = f"vla_gym_{os.getpid()}_{secrets.token_hex(4)}"
        return cls(shared_memory.SharedMemory(name=name, create=True, size=max(nbytes, 1)), nbytes)

    @property
    def buf(self) -> memoryview:
        assert self._shm is not None, "shared block already closed"
        return self._shm.buf

    def close(self) -> None:
        """Unlink the segment (the name disappears from /dev/shm now) and unmap it."""
        shm, self._shm = self._shm, None
        if shm is None:
            return
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()
        with contextlib.suppress(BufferError):  # a caller still holds a view: unmapped with it
            shm.close()


def attach(name: str, nbytes: int) -> mmap.mmap:
    """Worker side: map the parent's segment without registering it with a resource tracker."""
    import _posixshmem

    fd = _posixshmem.shm_open("/" + name.lstrip("/"), os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, max(nbytes, 1))
    finally:
        os.close(fd)
