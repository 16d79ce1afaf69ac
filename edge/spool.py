"""A store-and-forward spool: messages wait on disk, in order, until the broker has them.

A vessel's link drops for minutes or hours. Each message the fleet link must
deliver is written here first, one file per message, before anything tries to
send it; it is deleted only once the broker has acknowledged it. So a broker
outage, a dropped link or a restart of edgecam (a power cut, systemd
restarting the unit) loses nothing the disk took, and the next run sends what
the last one left, oldest first::

    <spool>/0000000000000041.msg    topic, a newline, then the payload
    <spool>/0000000000000042.msg
    <spool>/.lock                   held by the one process using this spool

The spool is bounded by ``max_bytes``. When a new message would take it past
that, the oldest messages not already handed to the client are deleted first
and counted in ``dropped``: the newest events matter most to a control room
that has been out of touch.

Each file is written beside its final name, fsynced and renamed into place
(:mod:`edge.atomic`), so a kill leaves a message whole or absent, never half.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from edge.atomic import write_bytes
from edge.errors import ConfigError

__all__ = ["Spool", "SpoolEntry"]

log = logging.getLogger(__name__)

_SUFFIX = ".msg"
_DIGITS = 16


@dataclass(frozen=True)
class SpoolEntry:
    """One message waiting: its sequence number (the order of sending), topic, payload and size on disk."""

    seq: int
    topic: str
    payload: bytes
    size: int


class Spool:
    """An ordered, size-bounded message queue in a folder, safe to use from several threads.

    Args:
        folder: where the messages are kept (created). One process at a time:
            a second ``Spool`` on the same folder raises ConfigError.
        max_bytes: the most the messages may take on disk; the oldest are dropped beyond it.

    Attributes:
        found: messages already in the folder when it was opened (left by an earlier run).
        dropped: messages deleted to stay within ``max_bytes``, since opening.
        stored: messages ``put`` since opening.

    Example:
        >>> with Spool("/tmp/spool-doc", max_bytes=1_000_000) as spool:  # doctest: +SKIP
        ...     seq = spool.put("edgecam/cam1/events", b'{"kind": "start"}')
        ...     [e.seq for e in spool.pending()] == [seq]
        ...     spool.ack(seq)
        True
    """

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = 64_000_000) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
            raise ConfigError(f"Spool.max_bytes must be an int >= 1024; received {max_bytes!r}")
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ConfigError(f"the MQTT spool {self.folder} is in use by another edgecam process; expected a spool "
                              f"of its own for each run that publishes (pass another spool folder)") from None
        self._mutex = threading.Lock()
        self._sizes: dict[int, int] = {}  # seq -> bytes on disk, in insertion (= seq) order
        for stale in self.folder.glob(".*.tmp"):  # a write a kill interrupted: never renamed, never counted
            stale.unlink(missing_ok=True)
        for path in sorted(self.folder.glob("*" + _SUFFIX)):
            if path.stem.isdigit():
                self._sizes[int(path.stem)] = path.stat().st_size
        self._next = max(self._sizes, default=0) + 1
        self._total = sum(self._sizes.values())
        self.found = len(self._sizes)
        self.found_upto = self._next - 1  # the newest message an earlier run left (0: none)
        self.dropped = 0
        self.stored = 0
        if self.found:
            log.info("MQTT spool %s holds %d messages (%d bytes) from an earlier run; they are sent first",
                     self.folder, self.found, self.bytes)

    def _path(self, seq: int) -> Path:
        return self.folder / f"{seq:0{_DIGITS}d}{_SUFFIX}"

    @property
    def depth(self) -> int:
        """Messages waiting."""
        with self._mutex:
            return len(self._sizes)

    @property
    def bytes(self) -> int:
        """Bytes the waiting messages take on disk."""
        with self._mutex:
            return self._total

    def put(self, topic: str, payload: bytes, keep: Collection[int] = ()) -> int:
        """Store one message durably and return its sequence number.

        Older messages are dropped first if the spool would exceed ``max_bytes``;
        those in ``keep`` (handed to the client, awaiting their acknowledgement) are not.

        Raises:
            ConfigError: the topic holds a newline, or the message alone is larger than ``max_bytes``.
            OSError: the disk refused the write (nothing is left half-written).
        """
        if "\n" in topic:
            raise ConfigError(f"a spooled topic cannot hold a newline; received {topic!r}")
        data = topic.encode("utf-8") + b"\n" + bytes(payload)
        if len(data) > self.max_bytes:
            raise ConfigError(f"a message of {len(data)} bytes cannot fit a spool of max_bytes {self.max_bytes}")
        with self._mutex:
            seq = self._next
            self._next += 1
            over = self._total + len(data) - self.max_bytes
            for old in list(self._sizes):
                if over <= 0:
                    break
                if old in keep:
                    continue
                size = self._sizes.pop(old)
                over -= size
                self._total -= size
                self._path(old).unlink(missing_ok=True)
                self.dropped += 1
                log.warning("MQTT spool full (%d bytes): dropped its oldest message %d (%d dropped so far)",
                            self.max_bytes, old, self.dropped)
            write_bytes(self._path(seq), data)
            self._sizes[seq] = len(data)
            self._total += len(data)
            self.stored += 1
        return seq

    def pending(self, after: int = 0, limit: int | None = None) -> list[SpoolEntry]:
        """Waiting messages with a sequence number above ``after``, oldest first (at most ``limit``)."""
        with self._mutex:
            seqs = [s for s in self._sizes if s > after][:limit]
        out = []
        for seq in seqs:
            try:
                raw = self._path(seq).read_bytes()
            except FileNotFoundError:  # acknowledged or dropped meanwhile
                continue
            topic, _, payload = raw.partition(b"\n")
            out.append(SpoolEntry(seq, topic.decode("utf-8"), payload, len(raw)))
        return out

    def ack(self, seq: int) -> None:
        """The broker has the message: delete it (unknown numbers are ignored)."""
        with self._mutex:
            size = self._sizes.pop(seq, None)
            if size is not None:
                self._total -= size
                self._path(seq).unlink(missing_ok=True)

    def close(self) -> None:
        """Release the folder for the next process; the waiting messages stay. Safe to call twice."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
