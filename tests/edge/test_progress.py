"""Long work is not silent (issue 15, item 17): a refreshed status line on a terminal, a periodic one in a log,
read from the run's own counters, with the share done when the source's length is known."""

from __future__ import annotations

import io
import re
import time

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.events import HysteresisOptions
from edge.pipeline import RunOptions, run
from edge.progress import Progress, known_length, status_line
from edge.sources import ImageFolderSource, SyntheticSource, VideoFileSource

from test_pipeline import FakeDetector, ShipClip


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_stalled_camera_shows_in_the_line():
    line = status_line({"frames": 5000, "fps": 0.0, "events": 1, "dropped": 4, "corrupt": 2, "reconnects": 3,
                        "last_frame_age_s": 31.4}, 3600 + 62)
    assert line == ("edgecam run: 5,000 frames | 0.0 fps | events 1 | dropped 4 | corrupt 2 | reconnects 3 | "
                    "NO FRAME for 31 s | 1:01:02")


def test_on_a_terminal_one_line_is_rewritten_in_place():
    stream, counts = Tty(), {"frames": 0}

    def vitals():
        counts["frames"] += 10
        return dict(counts, fps=15.0)

    with Progress(vitals, total=100, stream=stream, interval_s=0.02) as progress:
        deadline = time.monotonic() + 5
        while progress.lines < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    text = stream.getvalue()
    assert progress.tty and text.count("\n") == 1 and text.endswith("\n") and text.count("\r") >= 3
    assert "edgecam run: 10 frames (10%) | 15.0 fps" in text and "edgecam run: 30 frames (30%)" in text


def test_in_a_log_each_status_is_a_line_of_its_own():
    stream = io.StringIO()
    with Progress(lambda: {"frames": 7, "fps": 2.0}, stream=stream, interval_s=0.02) as progress:
        deadline = time.monotonic() + 5
        while progress.lines < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert not progress.tty and "\r" not in stream.getvalue() and len(lines) >= 2
    assert all(line.startswith("edgecam run: 7 frames | 2.0 fps") for line in lines)


def test_a_run_reports_its_own_counters(tmp_path):
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=False, interval_s=0.05, total=40)
    opts = RunOptions(out_dir=tmp_path / "run", mode="all", hysteresis=HysteresisOptions(0.6, 0.4, 3),
                      smoother_alpha=1.0, event_label="ship", write_video=False)
    summary = run(FakeDetector(delay_s=0.02), ShipClip(n=40), opts, on_frame=progress)
    progress.write()  # the end state, as the run left it
    progress.close()
    frames = [int(m.group(1)) for m in re.finditer(r"edgecam run: (\d+) frames \(\d+%\)", stream.getvalue())]
    assert len(frames) >= 3 and frames == sorted(frames) and frames[-1] == summary["frames"] == 40
    assert stream.getvalue().splitlines()[-1].startswith("edgecam run: 40 frames (100%)")
    assert "events 1" in stream.getvalue().splitlines()[-1]


def test_known_lengths(tmp_path):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    assert known_length(ImageFolderSource(tmp_path)) == 5
    assert known_length(SyntheticSource(n_frames=300), stride=2) == 150
    assert known_length(SyntheticSource(n_frames=300), max_frames=100) == 100
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 24))
    for i in range(12):
        writer.write(np.full((24, 32, 3), 10 * i, np.uint8))
    writer.release()
    assert known_length(VideoFileSource(clip)) == 12
    assert known_length(ShipClip()) is None  # a source that cannot say


def test_bad_progress_options():
    with pytest.raises(ConfigError, match="interval_s"):
        Progress(interval_s=-1)
    with pytest.raises(ConfigError, match="total"):
        Progress(total=0)
