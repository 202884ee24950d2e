"""A named POSIX shared-memory segment: created (and unlinked) by the parent, mapped by workers.

Both sides map the segment with ``mmap`` directly rather than through
:class:`multiprocessing.shared_memory.SharedMemory`:

* ``SharedMemory.close()`` unmaps the segment even while numpy arrays still point into it
  (numpy keeps a reference to the mmap, not a buffer export that would block the unmap), so an
  observation held past ``close()`` would crash the process. Here ``close()`` only unlinks the
  name and drops the block's own reference: the mapping goes away with the last array using it.
* The parent registers the name with Python's resource tracker, which unlinks it even if the
  parent is killed. Workers do not: attaching through ``SharedMemory`` would register it again
  (Python < 3.13), and a worker's exit could then unlink the parent's segment.
"""

from __future__ import annotations

import _posixshmem
import contextlib
import mmap
import os
import secrets
from multiprocessing import resource_tracker


class SharedBlock:
    """Owner side: ``SharedBlock.create(nbytes)``; ``close()`` unlinks the name."""

    def __init__(self, name: str, mapping: mmap.mmap, nbytes: int) -> None:
        self.name = name
        self.nbytes = nbytes
        self._mmap: mmap.mmap | None = mapping

    @classmethod
    def create(cls, nbytes: int) -> SharedBlock:
        name = f"vla_gym_{os.getpid()}_{secrets.token_hex(4)}"
        fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        try:
            resource_tracker.register("/" + name, "shared_memory")
            os.ftruncate(fd, max(nbytes, 1))
            mapping = mmap.mmap(fd, max(nbytes, 1))
        except BaseException:
            _unlink(name)
            raise
        finally:
            os.close(fd)
        return cls(name, mapping, nbytes)

    @property
    def buf(self) -> memoryview:
        assert self._mmap is not None, "shared block already closed"
        return memoryview(self._mmap)

    def close(self) -> None:
        """Unlink the segment (its name disappears from /dev/shm now). The memory is unmapped
        once nothing uses it: arrays still held by the caller stay valid until dropped."""
        if self._mmap is None:
            return
        self._mmap = None
        _unlink(self.name)


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _posixshmem.shm_unlink("/" + name)
    resource_tracker.unregister("/" + name, "shared_memory")


def attach(name: str, nbytes: int) -> mmap.mmap:
    """Worker side: map the parent's segment without registering it with a resource tracker."""
    fd = _posixshmem.shm_open("/" + name.lstrip("/"), os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, max(nbytes, 1))
    finally:
        os.close(fd)
