"""What a sink receives for each frame: a :class:`FrameRecord`, the typed form of one ``frames.jsonl`` line.

The pipeline builds one per frame; :meth:`FrameRecord.to_dict` is the JSON
object written to ``frames.jsonl`` (its keys in the order they always had),
and sinks read the fields they need (``record.event``, ``record.frame``)
instead of looking keys up in a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from edge.errors import ConfigError

__all__ = ["FrameRecord", "as_record"]

# keys with a field of their own; anything else in a mapping is kept in ``result_fields``
_OWN = ("run", "frame", "t", "smoothed", "time", "media_ms", "event")


@dataclass(frozen=True)
class FrameRecord:
    """One frame's record.

    Attributes:
        frame: the frame's index in the source (None only in records built by hand).
        t: seconds since the run started, when the frame was captured.
        result_fields: the JSON part of the result (:meth:`edge.results.FrameResult.to_record`:
            scores, positive, boxes, peak, timings_ms), in its order.
        smoothed: the event score after smoothing.
        time: the wall-clock capture time, ISO 8601 UTC (:func:`edge.sinks.utc_iso`), or None.
        media_ms: where the frame sits in a file source, or None.
        run: the run id, or None.
        event: the event this frame opened or closed (:meth:`edge.events.EventUpdate.to_record`), or None.

    Example:
        >>> r = FrameRecord(frame=3, t=0.2, result_fields={"scores": {"ship": 0.9}}, smoothed=0.8)
        >>> r.to_dict()
        {'frame': 3, 't': 0.2, 'scores': {'ship': 0.9}, 'smoothed': 0.8}
        >>> r.scores
        {'ship': 0.9}
    """

    frame: int | None = None
    t: float | None = None
    result_fields: Mapping[str, Any] = field(default_factory=dict)
    smoothed: float | None = None
    time: str | None = None
    media_ms: float | None = None
    run: str | None = None
    event: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.result_fields, Mapping):
            raise ConfigError(f"FrameRecord.result_fields must be a mapping; received {type(self.result_fields).__name__}")
        clash = sorted(set(self.result_fields) & set(_OWN))
        if clash:
            raise ConfigError(f"FrameRecord.result_fields must not hold {clash}: they are fields of their own")
        if self.event is not None and not isinstance(self.event, Mapping):
            raise ConfigError(f"FrameRecord.event must be a mapping or None; received {type(self.event).__name__}")

    @property
    def scores(self) -> dict[str, float]:
        """Score per label ({} when the record has none)."""
        return dict(self.result_fields.get("scores") or {})

    @property
    def boxes(self) -> list[Any]:
        """The boxes as written to JSON ([] when none)."""
        return list(self.result_fields.get("boxes") or [])

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``frames.jsonl``: fields that are None are left out, except ``frame`` and ``t``
        when set, in the order run, frame, t, the result's fields, smoothed, time, media_ms, event."""
        out: dict[str, Any] = {}
        if self.run is not None:
            out["run"] = self.run
        for key in ("frame", "t"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out.update(self.result_fields)
        for key in ("smoothed", "time", "media_ms"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.event is not None:
            out["event"] = dict(self.event)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrameRecord":
        """The record a plain mapping describes (keys without a field of their own go to ``result_fields``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a FrameRecord or a mapping; received {type(data).__name__}")
        own = {k: data[k] for k in _OWN if k in data}
        return cls(result_fields={k: v for k, v in data.items() if k not in _OWN}, **own)


def as_record(record: FrameRecord | Mapping[str, Any]) -> FrameRecord:
    """``record`` as a :class:`FrameRecord`; a mapping (as callers wrote before it existed) is converted."""
    return record if isinstance(record, FrameRecord) else FrameRecord.from_dict(record)
