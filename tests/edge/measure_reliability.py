"""Figures for the README's reliability table (issue 15, items 7, 13 and 15); not a test (it takes about 40 s).

    python tests/edge/measure_reliability.py

1. A lost camera: a live source at 15 fps that gives no frame for 31.7 s while a ship event is open, run through
   ``edge.pipeline.run`` with the live view on and the defaults (outage 5 s, event timeout 10 s); stats.json is
   read 20 s into the outage.
2. Video timing: 175 s of capture times of a 15 fps camera with two outages, into segments at a claimed 25 fps.
3. The live server: 300 idle sockets against the default limits; threads counted.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]  # this checkout's edge/ (not an installed one), then test_pipeline

from edge.events import HysteresisOptions  # noqa: E402
from edge.live import LiveServer  # noqa: E402
from edge.pipeline import RunOptions, run  # noqa: E402
from edge.segments import SegmentedVideoSink  # noqa: E402
from edge.sources import FrameSource  # noqa: E402
from test_pipeline import FakeDetector  # noqa: E402

OUTAGE_S, FPS = 31.7, 15.0


class LostCamera(FrameSource):
    """15 fps; a ship in frames 30-99; no frame for OUTAGE_S after frame 59; 150 frames in all."""

    is_live = True

    def _open(self):
        self.i, self.fps = 0, FPS

    def _read(self):
        i, self.i = self.i, self.i + 1
        time.sleep(OUTAGE_S if i == 60 else 1 / FPS)
        frame = np.full((72, 96, 3), 40, np.uint8)
        if 30 <= i < 100:
            frame[20:40, 30:50] = (255, 0, 0)
        return frame


def lost_camera(out: Path) -> dict:
    seen = {}

    def poll(port):
        time.sleep(60 / FPS + 20.0)  # 20 s into the outage
        seen["stats"] = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=5).read())

    opts = RunOptions(out_dir=out, mode="all", smoother_alpha=1.0, event_label="ship", max_frames=150, live="127.0.0.1:0",
                      hysteresis=HysteresisOptions(0.6, 0.4, 3), write_video=False)
    started = {}

    def on_frame(item, result, record):
        if not started:
            live = next(t for t in threading.enumerate() if t.name.startswith("live:"))
            started["port"] = int(live.name.split(":")[1])
            threading.Thread(target=poll, args=(started["port"],), daemon=True).start()

    summary = run(FakeDetector(), LostCamera(), opts, on_frame=on_frame)
    lines = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
    events = [json.loads(x) for x in (out / "events" / "events.jsonl").read_text().splitlines()]
    s = seen.get("stats", {})
    return {"stats_json_20s_in": {k: s.get(k) for k in ("fps", "age_s", "stale", "no_frame")},
            "outage_records": [x for x in lines if x.get("kind") == "outage"],
            "events": [(e["kind"], e["id"], e.get("start_frame"), e.get("end_frame"), e.get("no_frame_s")) for e in events],
            "summary_fps": summary["fps"], "frames": summary["frames"]}


def video_timing(out: Path) -> dict:
    rng = np.random.default_rng(1)
    times, t = [], 0.0
    while t < 175.0:
        times.append(t)
        t += rng.uniform(0.04, 0.093)  # 15 fps on average
        if len(times) in (600, 1500):
            t += 12.0  # two outages of 12 s
    sink = SegmentedVideoSink(out, fps=25.0, segment_s=10.0, timing="capture")
    frame = np.zeros((48, 64, 3), np.uint8)
    for i, t in enumerate(times):
        frame[0, 0, 0] = i % 256
        sink.write(frame, None, {"frame": i, "t": t})
    sink.close()
    segs = [json.loads(x) for x in (out / "segments.jsonl").read_text().splitlines()]
    covered = sum(s["t_last"] - s["t_first"] + 1 / 25 for s in segs)
    return {"capture_span_s": round(times[-1] - times[0], 2), "frames": len(times), "segments": len(segs),
            "video_s": round(sum(s["duration_s"] for s in segs), 2), "wall_covered_by_segments_s": round(covered, 2),
            "worst_segment_error_s": round(max(abs(s["duration_s"] - (s["t_last"] - s["t_first"] + 1 / 25)) for s in segs), 3),
            "gaps_s": [s["gap_before_s"] for s in segs if s["gap_before_s"]],
            "at_claimed_fps_before_s": round(len(times) / 25.0, 1)}


def idle_sockets() -> dict:
    before = threading.active_count()
    with LiveServer(port=0) as live:
        socks = [socket.create_connection(("127.0.0.1", live.port), timeout=5) for _ in range(300)]
        deadline = time.monotonic() + 10
        while live.clients + live.refused < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        during = threading.active_count() - before
        served, refused = live.clients, live.refused
        time.sleep(live.idle_s + 1.0)
        after = threading.active_count() - before
        for s in socks:
            s.close()
    return {"sockets": 300, "served": served, "refused": refused, "threads_added_while_open": during,
            "threads_added_after_idle_timeout": after, "max_clients": 16, "idle_s": 30.0}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps({"video_timing": video_timing(Path(tmp) / "video"), "idle_sockets": idle_sockets(),
                          "lost_camera": lost_camera(Path(tmp) / "run")}, indent=1))
