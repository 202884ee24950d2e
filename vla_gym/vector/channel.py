"""Framed messages over one end of a worker pipe, with one-byte messages on the fast path.

A message is a kind byte; kinds listed as carrying a payload are followed by an 8-byte length and
the payload. Reads and writes are raw ``os.read``/``os.write`` on the pipe's socket, with a read
buffer: a step costs one system call each way, where ``Connection.send_bytes``/``recv_bytes``
add a length header and a second read to every message.
"""

from __future__ import annotations

import os
import struct

_LENGTH = struct.Struct("<Q")
_READ_SIZE = 1 << 16


class Channel:
    def __init__(self, fd: int, payload_kinds: bytes) -> None:
        self.fd = fd
        self._payload_kinds = frozenset(payload_kinds)
        self._buffer = bytearray()

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        if kind[0] not in self._payload_kinds:
            if os.write(self.fd, kind) == 1:  # the fast path: a one-byte message
                return
            data = memoryview(kind)
        else:
            data = memoryview(kind + _LENGTH.pack(len(payload)) + payload)
        while data:
            data = data[os.write(self.fd, data) :]

    def has_buffered(self) -> bool:
        """A message (or its start) was already read: polling the fd would miss it."""
        return bool(self._buffer)

    def recv(self) -> tuple[bytes, bytes]:
        """The next ``(kind, payload)``; raises ``EOFError`` when the other end is gone."""
        buffer = self._buffer
        if not buffer:
            chunk = os.read(self.fd, _READ_SIZE)
            if len(chunk) == 1 and chunk[0] not in self._payload_kinds:
                return chunk, b""  # the fast path: exactly one one-byte message
            if not chunk:
                raise EOFError("the other end of the pipe is closed")
            buffer += chunk
        kind = bytes(buffer[:1])
        if buffer[0] not in self._payload_kinds:
            del buffer[:1]
            return kind, b""
        self._fill(1 + _LENGTH.size)
        (length,) = _LENGTH.unpack_from(buffer, 1)
        end = 1 + _LENGTH.size + length
        self._fill(end)
        payload = bytes(buffer[1 + _LENGTH.size : end])
        del buffer[:end]
        return kind, payload

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = os.read(self.fd, max(_READ_SIZE, size - len(self._buffer)))
            if not chunk:
                raise EOFError("the other end of the pipe is closed")
            self._buffer += chunk
