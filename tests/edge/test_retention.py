"""--retain: the oldest closed video segments of every run under --out go first, under a size and/or age limit."""

from __future__ import annotations

import os

import pytest

from edge.errors import ConfigError
from edge.events import HysteresisOptions
from edge.pipeline import RunOptions, run
from edge.recording import RecordingOptions
from edge.retention import RetainPolicy, Retention

from test_pipeline import FakeDetector, ShipClip


def _segment(folder, number, size, mtime):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number:06d}.mp4"
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


def test_the_oldest_segments_of_every_run_go_first_until_the_rest_fit(tmp_path):
    old = [_segment(tmp_path / "0001-20260101T000000Z" / "video", n, 100, 1000 + n) for n in (1, 2, 3)]
    new = [_segment(tmp_path / "0002-20260102T000000Z" / "video", n, 100, 2000 + n) for n in (1, 2)]
    (tmp_path / "0002-20260102T000000Z" / "video" / ".writing").mkdir()
    open_one = _segment(tmp_path / "0002-20260102T000000Z" / "video" / ".writing", 3, 10_000, 1)
    retention = Retention(tmp_path, RetainPolicy(max_bytes=250))
    assert retention.apply() == 3
    assert [p.exists() for p in old + new] == [False, False, False, True, True] and open_one.exists()
    assert (retention.deleted, retention.deleted_bytes) == (3, 300)
    assert retention.apply() == 0  # within the limit now


def test_age_limit_and_the_newest_segment_always_stays(tmp_path):
    segs = [_segment(tmp_path / "video", n, 10, 100.0 * n) for n in (1, 2, 3)]
    retention = Retention(tmp_path, RetainPolicy(max_age_s=150), clock=lambda: 400.0)
    assert retention.apply() == 2  # 300 s and 200 s old go; 100 s old stays
    assert [p.exists() for p in segs] == [False, False, True]
    everything = Retention(tmp_path, RetainPolicy(max_bytes=1), clock=lambda: 1e9)
    assert everything.apply() == 0 and segs[2].exists()  # the newest closed segment is never deleted


@pytest.mark.parametrize(("spec", "expected"), [("8GB", (8_000_000_000, None)), ("7d", (None, 604800.0)),
                                                ("500mb, 12h", (500_000_000, 43200.0)), ("1.5GB", (1_500_000_000, None))])
def test_retain_specs(spec, expected):
    p = RetainPolicy.parse(spec)
    assert (p.max_bytes, p.max_age_s) == expected


@pytest.mark.parametrize("spec", ["", "8", "8XB", "7d,8d", "0GB", "-1d", "8GB,7d,1h"])
def test_bad_retain_specs_say_what_is_expected(spec):
    with pytest.raises(ConfigError, match="--retain"):
        RetainPolicy.parse(spec)


def test_retain_needs_segments():
    with pytest.raises(ConfigError, match="needs segment_s"):
        RecordingOptions(retain="1GB")


def test_a_run_keeps_its_video_within_the_limit(tmp_path):
    earlier = _segment(tmp_path / "0001-20260101T000000Z" / "video", 1, 50_000, 1000)
    opts = RunOptions(out_dir=tmp_path / "0002-20260102T000000Z", mode="all", hysteresis=HysteresisOptions(0.6, 0.4, 3),
                      smoother_alpha=1.0, event_label="ship", video_fps=10.0,
                      recording=RecordingOptions(run_id="0002-20260102T000000Z", segment_s=0.5, retain="40KB"))
    summary = run(FakeDetector(), ShipClip(n=60), opts)
    video = summary["recording"]["video"]
    kept = sorted((tmp_path / "0002-20260102T000000Z" / "video").glob("*.mp4"))
    assert not earlier.exists()  # the other run's older segment went first
    assert video["segments"] == 12 and video["retain"]["deleted_segments"] == 12 - len(kept) + 1
    assert sum(p.stat().st_size for p in kept) <= 40_000 or len(kept) == 1
    assert kept[-1].name == "000012.mp4"  # the newest are the ones kept
    assert summary["exit_code"] == 0


def test_on_a_low_disk_old_segments_go_before_the_video_stops(tmp_path, monkeypatch):
    from edge import recording

    older = [_segment(tmp_path / "0001-20260101T000000Z" / "video", n, 1_000_000, 1000 + n) for n in (1, 2, 3)]
    deleted = []
    # free space: 10 MB plus what --retain has deleted; the floor is 11.5 MB, so two old segments must go
    monkeypatch.setattr(recording, "free_bytes", lambda folder: 10_000_000 + 1_000_000 * sum(not p.exists() for p in older))
    monkeypatch.setattr(recording, "_SPACE_CHECK_S", 0.0)
    opts = RunOptions(out_dir=tmp_path / "0002-20260102T000000Z", mode="all", hysteresis=HysteresisOptions(0.6, 0.4, 3),
                      smoother_alpha=1.0, event_label="ship", video_fps=10.0,
                      recording=RecordingOptions(run_id="0002-20260102T000000Z", segment_s=0.5, retain="1TB",
                                                 min_free_mb=11.5))
    summary = run(FakeDetector(), ShipClip(n=20), opts, on_frame=lambda *a: deleted.append(sum(not p.exists() for p in older)))
    video = summary["recording"]["video"]
    assert [p.exists() for p in older] == [False, False, True] and max(deleted) == 2
    assert video["stopped"] is None and video["segments"] == 4 and summary["exit_code"] == 0
    assert video["retain"]["deleted_segments"] == 2 and video["retain"]["deleted_bytes"] == 2_000_000


def test_with_nothing_left_to_delete_the_video_stops_as_before(tmp_path, monkeypatch):
    from edge import recording

    monkeypatch.setattr(recording, "free_bytes", lambda folder: 1_000_000)
    monkeypatch.setattr(recording, "_SPACE_CHECK_S", 0.0)
    opts = RunOptions(out_dir=tmp_path / "run", mode="all", video_fps=10.0,
                      recording=RecordingOptions(segment_s=0.5, retain="1TB", min_free_mb=5))
    summary = run(FakeDetector(), ShipClip(n=10), opts)
    assert summary["recording"]["video"]["stopped"].startswith("low disk space") and summary["exit_code"] == 1
