"""FrameRecord: the typed record sinks receive, written as the same JSON line as before."""

from __future__ import annotations

import pytest

from edge.errors import ConfigError
from edge.records import FrameRecord, as_record


def test_to_dict_keeps_the_order_of_a_frames_jsonl_line():
    fields = {"scores": {"ship": 0.9}, "positive": ["ship"], "boxes": [], "peak": None, "timings_ms": {"infer": 1.0}}
    r = FrameRecord(frame=4, t=0.5, result_fields=fields, smoothed=0.7, time="2027-01-15T08:00:00.250Z",
                    media_ms=12.5, run="0001", event={"kind": "start", "id": 1})
    assert list(r.to_dict()) == ["run", "frame", "t", "scores", "positive", "boxes", "peak", "timings_ms",
                                 "smoothed", "time", "media_ms", "event"]
    assert r.scores == {"ship": 0.9} and r.boxes == []


@pytest.mark.parametrize("data", [{}, {"frame": 0}, {"run": 9, "frame": 2, "t": 0.1, "score": 1.5},
                                  {"frame": 3, "time": "x", "event": {"kind": "end", "id": 1}}])
def test_a_mapping_round_trips(data):
    assert as_record(data).to_dict() == data


def test_a_record_is_passed_through_and_bad_fields_are_refused():
    r = FrameRecord(frame=1)
    assert as_record(r) is r
    with pytest.raises(ConfigError, match="must not hold"):
        FrameRecord(result_fields={"frame": 2})
    with pytest.raises(ConfigError, match="mapping"):
        as_record([("frame", 1)])
