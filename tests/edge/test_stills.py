"""A folder of stills of mixed sizes (issue 15, item 11): one record per file with its name, an annotated copy of
each still (or of each flagged one), and a video only where the sizes agree, with no error per still."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from edge.events import HysteresisOptions
from edge.pipeline import RunOptions, run
from edge.recording import RecordingOptions
from edge.sources import ImageFolderSource

from test_pipeline import FakeDetector


def _stills(folder):
    """Five stills, three sizes; a red 'ship' in b and d."""
    folder.mkdir()
    for name, (h, w), ship in [("a.png", (72, 96), False), ("b.jpg", (72, 96), True), ("c.png", (120, 160), False),
                               ("d.png", (48, 64), True), ("e.png", (72, 96), False)]:
        image = np.full((h, w, 3), 40, np.uint8)
        if ship:
            image[10:30, 10:30] = (0, 0, 255)  # BGR red
        cv2.imwrite(str(folder / name), image)
    return folder


def _options(tmp_path, **recording):
    return RunOptions(out_dir=tmp_path / "run", mode="all", smoother_alpha=1.0, event_label="ship",
                      hysteresis=HysteresisOptions(0.6, 0.4, 1), recording=RecordingOptions(**recording))


@pytest.mark.parametrize("segment_s", [None, 10.0], ids=["video.mp4", "segments"])
def test_mixed_stills_give_a_record_and_an_annotated_copy_each_and_no_sink_errors(tmp_path, caplog, segment_s):
    folder = _stills(tmp_path / "stills_in")
    with caplog.at_level(logging.WARNING):
        summary = run(FakeDetector(), ImageFolderSource(folder), _options(tmp_path, segment_s=segment_s))
    out = tmp_path / "run"
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [(r["frame"], r["file"]) for r in records] == [(0, "a.png"), (1, "b.jpg"), (2, "c.png"), (3, "d.png"), (4, "e.png")]
    assert sorted(p.name for p in (out / "stills").iterdir()) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert cv2.imread(str(out / "stills" / "c.jpg")).shape == (120, 160, 3)  # each at its own size
    assert summary["sink_errors"] == 0 and summary["exit_code"] == 0 and not [r for r in caplog.records if r.exc_info]
    assert summary["recording"]["stills"]["written"] == 5
    video = summary["recording"]["video"]
    if segment_s is None:  # one file, one size: the first; the others are counted and said once
        assert video["frames"] == 3 and video["stills_of_other_sizes"] == 2
        assert len([r for r in caplog.records if "left out of video.mp4" in r.getMessage()]) == 1
    else:  # segments: a new one at each size
        sizes = [(s["width"], s["height"]) for s in map(json.loads, (out / "video" / "segments.jsonl").read_text().splitlines())]
        assert sizes == [(96, 72), (160, 120), (64, 48), (96, 72)]


def test_only_flagged_stills_are_copied_when_asked(tmp_path):
    folder = _stills(tmp_path / "stills_in")
    summary = run(FakeDetector(labels=("ship",)), ImageFolderSource(folder), _options(tmp_path, stills="flagged"))
    assert sorted(p.name for p in (tmp_path / "run" / "stills").iterdir()) == ["b.jpg", "d.jpg"]
    assert summary["recording"]["stills"] == {"written": 2, "which": "flagged", "folder": "stills"}
