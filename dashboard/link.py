"""The local link between the service and its push process: length-prefixed frames on a socket pair.

A frame is a 4-byte big-endian length (of what follows), a 1-byte kind, then the body. Deltas and snapshots
carry their seq as 8 bytes then the JSON text the hub encoded (passed on as it is); the rest is JSON.

Service -> push process (upper case):       Push process -> service (lower case):
  H hello: epoch, seq, where to listen        r ready: listening (pid, port)
  D delta: seq + text (one per hub delta)     a auth: {id, token, address}, a token to check
  S snapshot: seq + text (asked for)          s snapshot: send me one
  A auth answer: {id, principal | reason}     t stats: clients, resyncs, ... (each second)
  B beat: {seq, now, age} (each second)
  R resync: {seq}: deltas were dropped on a full link; every client gets a snapshot

The socket pair is the push process's only tie to the service: when the service exits, even by SIGKILL, the
push process reads end-of-file and exits too (no orphan keeps the port).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

HELLO, DELTA, SNAPSHOT, AUTH_ANSWER, BEAT, RESYNC = b"H", b"D", b"S", b"A", b"B", b"R"
READY, AUTH, SNAPSHOT_PLEASE, STATS = b"r", b"a", b"s", b"t"

_HEADER = struct.Struct(">IB")
_SEQ = struct.Struct(">Q")
MAX_FRAME = 256 * 1024 * 1024  # a snapshot of a very large site; anything longer is a broken link

_encoder = msgspec.json.Encoder()


class LinkError(ConnectionError):
    """The other end sent something that is not a frame: the link is dropped."""


def frame(kind: bytes, body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 1, kind[0]) + body


def json_frame(kind: bytes, body: Any) -> bytes:
    return frame(kind, _encoder.encode(body))


def text_frame(kind: bytes, seq: int, text: str) -> bytes:
    """A delta or snapshot: its seq, then its text as the hub encoded it."""
    return frame(kind, _SEQ.pack(seq) + text.encode())


def split_text(body: bytes) -> tuple[int, str]:
    if len(body) < _SEQ.size:
        raise LinkError("a delta or snapshot frame without its seq")
    return _SEQ.unpack_from(body)[0], body[_SEQ.size :].decode()


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next (kind, body); asyncio.IncompleteReadError at end of file."""
    head = await reader.readexactly(_HEADER.size)
    size, kind = _HEADER.unpack(head)
    if not 1 <= size <= MAX_FRAME:
        raise LinkError(f"a frame of {size} bytes")
    body = await reader.readexactly(size - 1)
    return bytes([kind]), body
