"""Smoothing and hysteresis: a flickering score gives one event, with exact frames."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ConfigError, FrameError
from edge.events import EventKind, EventTracker, HysteresisOptions, ScoreSmoother


def test_smoother_first_value_passes_then_ema():
    s = ScoreSmoother(0.25)
    out = [s.update(x) for x in (0.8, 0.0, 1.0, 1.0)]
    np.testing.assert_allclose(out, [0.8, 0.6, 0.7, 0.775])
    s.reset()
    assert s.update(0.1) == pytest.approx(0.1)


def test_smoother_alpha_one_is_identity():
    s = ScoreSmoother(1.0)
    assert [s.update(x) for x in (0.3, 0.9, 0.1)] == [0.3, 0.9, 0.1]


@pytest.mark.parametrize("alpha", [0.0, -0.5, 1.01, True, "0.5"])
def test_smoother_rejects_bad_alpha(alpha):
    with pytest.raises(ConfigError):
        ScoreSmoother(alpha)


@pytest.mark.parametrize(
    "kwargs, ok",
    [
        ({}, True),
        ({"enter": 0.9, "leave": 0.1, "min_frames": 1}, True),
        ({"enter": 0.5, "leave": 0.5}, False),
        ({"enter": 0.4, "leave": 0.6}, False),
        ({"enter": 1.2}, False),
        ({"leave": -0.1}, False),
        ({"min_frames": 0}, False),
        ({"min_frames": 2.0}, False),
    ],
)
def test_hysteresis_options_validation(kwargs, ok):
    if ok:
        HysteresisOptions(**kwargs)
    else:
        with pytest.raises(ConfigError):
            HysteresisOptions(**kwargs)


def test_hysteresis_from_dict_rejects_unknown_keys():
    assert HysteresisOptions.from_dict({"enter": 0.7}).enter == 0.7
    with pytest.raises(ConfigError, match="unknown \\['enterr'\\]"):
        HysteresisOptions.from_dict({"enterr": 0.7})


def _feed(tracker, scores):
    updates = []
    for i, s in enumerate(scores):
        u = tracker.update(i, i / 10.0, s)
        if u is not None:
            updates.append(u)
    return updates


def _naive_events(scores, threshold):
    """Events a single threshold without smoothing would give (rising edges)."""
    above = np.asarray(scores) >= threshold
    return int(np.sum(above[1:] & ~above[:-1]) + above[0])


def test_flicker_around_enter_gives_one_event():
    rng = np.random.default_rng(0)
    # 10 quiet frames, 40 frames flickering across 0.6, 10 quiet frames
    flicker = np.where(np.arange(40) % 2 == 0, 0.9, 0.5) + rng.uniform(-0.03, 0.03, 40)
    scores = [0.1] * 10 + list(flicker) + [0.05] * 10
    assert _naive_events(scores, 0.6) == 20, "the data really flickers across the threshold"

    tracker = EventTracker(HysteresisOptions(enter=0.6, leave=0.4, min_frames=3), smoother_alpha=0.5)
    updates = _feed(tracker, scores)
    assert [u.kind for u in updates] == [EventKind.START, EventKind.END]
    start, end = updates[0].event, updates[1].event
    assert start.id == end.id == 1
    assert tracker.close() is None


def test_flicker_around_leave_does_not_end_the_event():
    # raw flips across leave=0.4 every frame; its mean (0.44) stays above it
    scores = [0.9] * 5 + [0.5, 0.38] * 20 + [0.1] * 5
    assert _naive_events(scores, 0.4) == 20
    updates = _feed(EventTracker(HysteresisOptions(0.6, 0.4, 3), smoother_alpha=0.5), scores)
    assert [u.kind.value for u in updates] == ["start", "end"]


def test_event_fields_exact_without_smoothing():
    tracker = EventTracker(HysteresisOptions(enter=0.6, leave=0.4, min_frames=3), smoother_alpha=1.0, label="ship")
    scores = [0.1, 0.7, 0.2, 0.65, 0.8, 0.95, 0.5, 0.45, 0.3, 0.2]
    updates = _feed(tracker, scores)
    start, end = (u.event for u in updates)
    # the run of 3 starts at frame 3 (frame 1 alone was too short); reported at frame 5
    assert (start.start_frame, start.start_t, start.end_frame) == (3, 0.3, None)
    assert start.peak_score == pytest.approx(0.95)
    assert (end.start_frame, end.end_frame, end.end_t, end.label) == (3, 8, 0.8, "ship")
    assert end.peak_score == pytest.approx(0.95)
    assert updates[0].to_record() == {
        "kind": "start", "id": 1, "label": "ship", "start_frame": 3, "start_t": 0.3,
        "end_frame": None, "end_t": None, "peak_score": pytest.approx(0.95),
    }


def test_short_spike_below_min_frames_is_ignored():
    tracker = EventTracker(HysteresisOptions(0.6, 0.4, 3), smoother_alpha=1.0)
    assert _feed(tracker, [0.1, 0.9, 0.9, 0.1, 0.9, 0.1]) == []


def test_second_event_gets_next_id_and_close_ends_open_event():
    tracker = EventTracker(HysteresisOptions(0.6, 0.4, 2), smoother_alpha=1.0)
    updates = _feed(tracker, [0.9, 0.9, 0.1, 0.8, 0.8, 0.7])
    assert [(u.kind.value, u.event.id) for u in updates] == [("start", 1), ("end", 1), ("start", 2)]
    assert tracker.active is not None and tracker.active.id == 2
    final = tracker.close()
    assert final.kind is EventKind.END
    assert (final.event.id, final.event.start_frame, final.event.end_frame, final.event.end_t) == (2, 3, 5, 0.5)
    assert tracker.close() is None


def test_label_given_with_the_starting_run():
    tracker = EventTracker(HysteresisOptions(0.6, 0.4, 1), smoother_alpha=1.0)
    assert tracker.update(0, 0.0, 0.9, label="tanker").event.label == "tanker"


def test_nan_score_is_rejected():
    with pytest.raises(FrameError, match="finite"):
        EventTracker().update(0, 0.0, float("nan"))
