"""What a sink receives for each frame: a :class:`FrameRecord`, one ``frames.jsonl`` line with typed fields.

The pipeline builds each frame's record (docs/schemas/frame-record.schema.json);
:meth:`FrameRecord.to_dict` is exactly the JSON object written to
``frames.jsonl``, keys in the order they were given, and sinks read the fields
they need as attributes (``record.event``, ``record.frame``, ``record.scores``)
instead of looking keys up. It is also a read-only mapping, so code written
for the plain dict keeps working.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from edge.errors import ConfigError

__all__ = ["FrameRecord", "as_record"]


class FrameRecord(Mapping[str, Any]):
    """One frame's record, read-only.

    Args:
        fields: the record's keys and values, in the order they are written;
            keyword arguments are added after them.

    Example:
        >>> r = FrameRecord(frame=3, t=0.2, scores={"ship": 0.9}, smoothed=0.8)
        >>> r.frame, r.scores, r.event
        (3, {'ship': 0.9}, None)
        >>> r.to_dict()
        {'frame': 3, 't': 0.2, 'scores': {'ship': 0.9}, 'smoothed': 0.8}
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any] | None = None, **more: Any) -> None:
        if fields is not None and not isinstance(fields, Mapping):
            raise ConfigError(f"expected a FrameRecord or a mapping; received {type(fields).__name__}")
        data = {**(fields or {}), **more}
        event = data.get("event")
        if event is not None and not isinstance(event, Mapping):
            raise ConfigError(f"FrameRecord.event must be a mapping or absent; received {type(event).__name__}")
        object.__setattr__(self, "_fields", data)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrameRecord is read-only")

    # ---- the mapping
    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"FrameRecord({self._fields!r})"

    # ---- typed fields (None when the record has none)
    @property
    def frame(self) -> int | None:
        """The frame's index in the source."""
        return self._fields.get("frame")

    @property
    def t(self) -> float | None:
        """Seconds since the run started, when the frame was captured."""
        return self._fields.get("t")

    @property
    def time(self) -> str | None:
        """The wall-clock capture time, ISO 8601 UTC."""
        return self._fields.get("time")

    @property
    def media_ms(self) -> float | None:
        """Where the frame sits in a file source."""
        return self._fields.get("media_ms")

    @property
    def run(self) -> str | None:
        return self._fields.get("run")

    @property
    def smoothed(self) -> float | None:
        """The event score after smoothing."""
        return self._fields.get("smoothed")

    @property
    def event(self) -> Mapping[str, Any] | None:
        """The event this frame opened or closed (:meth:`edge.events.EventUpdate.to_record`)."""
        return self._fields.get("event")

    @property
    def scores(self) -> dict[str, float]:
        """Score per label ({} when none)."""
        return dict(self._fields.get("scores") or {})

    @property
    def boxes(self) -> list[Any]:
        """The boxes as written to JSON ([] when none)."""
        return list(self._fields.get("boxes") or [])

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``frames.jsonl``, keys in their order."""
        return dict(self._fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrameRecord":
        return cls(data)


def as_record(record: FrameRecord | Mapping[str, Any]) -> FrameRecord:
    """``record`` as a :class:`FrameRecord`; a mapping (as callers wrote before it existed) is wrapped."""
    return record if isinstance(record, FrameRecord) else FrameRecord(record)
