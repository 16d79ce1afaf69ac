"""FrameRecord: the typed record sinks receive, written as the same JSON line as before."""

from __future__ import annotations

import pytest

from edge.errors import ConfigError
from edge.records import FrameRecord, as_record


def test_fields_are_typed_and_the_line_keeps_its_order():
    data = {"schema_version": 1, "run": "0001", "frame": 4, "t": 0.5, "scores": {"ship": 0.9}, "boxes": [],
            "smoothed": 0.7, "time": "2027-01-15T08:00:00.250Z", "event": {"kind": "start", "id": 1}}
    r = FrameRecord(data)
    assert list(r.to_dict()) == list(data) and r.to_dict() == data
    assert (r.frame, r.t, r.run, r.smoothed, r.time, r.media_ms) == (4, 0.5, "0001", 0.7, data["time"], None)
    assert r.scores == {"ship": 0.9} and r.boxes == [] and r.event["kind"] == "start"


@pytest.mark.parametrize("data", [{}, {"frame": 0}, {"run": 9, "frame": 2, "t": 0.1, "score": 1.5},
                                  {"frame": 3, "time": "x", "event": {"kind": "end", "id": 1}}])
def test_a_mapping_round_trips(data):
    assert as_record(data).to_dict() == data and list(as_record(data)) == list(data)


def test_a_record_is_passed_through_read_only_and_bad_input_is_refused():
    r = FrameRecord(frame=1)
    assert as_record(r) is r and r.get("frame") == 1
    with pytest.raises(AttributeError):
        r.frame = 2
    with pytest.raises(ConfigError, match="mapping"):
        as_record([("frame", 1)])
    with pytest.raises(ConfigError, match="event must be a mapping"):
        FrameRecord(event="start")
