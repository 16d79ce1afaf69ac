"""The state of one run on the output thread: events, records, sinks, the live view and the summary.

:func:`edge.pipeline.run` builds one :class:`RunState` and gives its
:meth:`RunState.process` to :class:`edge.loop.FrameLoop` as the output stage's ``handle``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from edge.annotate import Annotator
from edge.capture import CapturedFrame, ThreadedCapture
from edge.events import EventKind, EventTracker
from edge.live import LiveServer
from edge.loop import FrameDetector, FrameDone
from edge.recording import Recorder, json_safe, outcome
from edge.results import RECORD_SCHEMA_VERSION, FrameResult
from edge.run_options import RunOptions
from edge.sinks import Sink, utc_iso
from edge.stats import LatencyStats, RateWindow

__all__ = ["OnFrame", "RunState", "tracked_score"]

log = logging.getLogger("edge.pipeline")

OnFrame = Callable[[CapturedFrame, FrameResult, dict], None]


def tracked_score(result: FrameResult, event_label: str | None) -> tuple[float, str | None]:
    if event_label is not None:
        return float(result.scores[result.labels.index(event_label)]), event_label
    positive = np.flatnonzero(result.positive)
    if len(positive) == 0:
        return 0.0, None
    best = int(positive[np.argmax(result.scores[positive])])
    return float(result.scores[best]), result.labels[best]


class RunState:
    """State of one run; ``run`` below is the public entry point."""

    def __init__(self, detector: FrameDetector, options: RunOptions, on_frame: OnFrame | None,
                 annotator: Annotator) -> None:
        self.detector, self.options, self.on_frame = detector, options, on_frame
        self.tracker = EventTracker(options.hysteresis, options.smoother_alpha, label=options.event_label or "positive")
        self.latency = LatencyStats()
        self.annotator = annotator
        self.recorder: Recorder | None = None  # set by run() before the first frame
        self.live: LiveServer | None = None
        self.metrics = None  # edge.fleet_metrics.RunMetrics while /metrics is served
        self.source_id = options.source_id  # run() sets the source's description when this is None
        self.extra: list[Sink] = []  # sinks given to run() (the MQTT link)
        self.counts = {"frames": 0, "errors": 0, "events": 0}
        self.started = time.monotonic()
        self.fps = 0.0
        self.rate = RateWindow(5.0)  # fps over the last 5 s, read against the clock: 0 while no frame comes
        self.lock = threading.Lock()  # the event tracker and the recorder: the output thread and the quiet watch
        self._last_t: float | None = None
        self.capture: ThreadedCapture | None = None  # set by run() before the first frame

    def failed(self, item: CapturedFrame, exc: BaseException) -> None:
        """A frame that failed in inference, finishing or output: counted and logged, the run goes on."""
        self.counts["errors"] += 1
        # the first errors with a traceback, then a reminder now and then: a broken model must not flood the log
        if self.counts["errors"] <= 5 or self.counts["errors"] % 100 == 0:
            log.error("frame %d failed (%d errors so far); continuing", item.index, self.counts["errors"],
                      exc_info=(type(exc), exc, exc.__traceback__))

    def event_record(self, update) -> dict:
        """An event line (docs/schemas/event-record.schema.json): the update, its schema version and source."""
        return {"schema_version": RECORD_SCHEMA_VERSION, "source": self.source_id, **update.to_record()}

    def process(self, done: FrameDone) -> None:
        """Everything after the model, on the output thread (edge.loop.FrameLoop calls it in frame order)."""
        opts = self.options
        item, result, detect_ms = done.item, done.result, done.detect_ms
        t1 = time.monotonic()
        self.latency.add("detect", detect_ms)
        self.latency.add_many(result.timings_ms)

        score, label = tracked_score(result, opts.event_label)
        t_rel = round(item.t_monotonic - self.started, 4)
        with self.lock:  # the quiet watch may end an open event from its own thread
            update = self.tracker.update(item.index, t_rel, score, label)
        record = {"schema_version": RECORD_SCHEMA_VERSION, "source": self.source_id, "frame": item.index, "t": t_rel,
                  **result.to_record(), "smoothed": round(self.tracker.smoothed, 5)}
        # when the frame was captured (wall clock, UTC) and, for files, where it sits in the source
        if item.t_wall is not None:
            record["time"] = utc_iso(item.t_wall)
        if item.media_ms is not None:
            record["media_ms"] = round(float(item.media_ms), 3)
        if item.file is not None:  # a still: its file name, and an annotated copy (edge.stills)
            record["file"] = item.file
        if opts.recording.run_id is not None:
            record = {"run": opts.recording.run_id, **record}
        if update is not None:
            record["event"] = self.event_record(update)
            self.counts["events"] += int(update.kind is EventKind.START)

        # annotation costs milliseconds on a Pi: only draw when someone will see it
        wants_picture = (self.recorder.video_active or (self.live is not None and self.live.watching)
                         or (update is not None and update.kind is EventKind.START) or item.file is not None)
        shown = self.annotator.annotate(item.frame, result) if wants_picture else item.frame
        t2 = time.monotonic()
        with self.lock:
            self.recorder.write(shown, result, record)
        t3 = time.monotonic()
        self.latency.add("annotate", (t2 - t1) * 1000.0)
        self.latency.add("sinks", (t3 - t2) * 1000.0)
        if self.metrics is not None:
            self.metrics.observe({**result.timings_ms, "detect": detect_ms, "annotate": (t2 - t1) * 1000.0,
                                  "sinks": (t3 - t2) * 1000.0})
        self.counts["frames"] += 1
        self.rate.add(t3)
        self.fps, self._last_t = self.rate.per_second(t3), t3

        if self.live is not None:
            cap = self.capture.stats()
            self.live.publish(shown, {
                "frame": item.index, "frames": self.counts["frames"], "fps": round(self.fps, 2),
                "scores": record["scores"], "positive": record["positive"], "smoothed": record["smoothed"],
                "event_open": self.tracker.active is not None, "events": self.counts["events"],
                "dropped": cap["dropped"], "corrupt": cap["corrupt"], "reconnects": cap["reconnects"],
                "detect_ms": round(detect_ms, 2), "label": label,  # the timeline plots the model's score, even below the decision
                "score": round(score if label is not None else float(np.max(result.scores)), 5),
                "enter": opts.hysteresis.enter, "leave": opts.hysteresis.leave, "event": record.get("event"),
            })
        if self.on_frame is not None:
            self.on_frame(item, result, record)

    def quiet(self) -> bool:
        """The camera sent nothing for ``hysteresis.interrupt_s``: end an open event, marked interrupted (quiet watch)."""
        cap = self.capture.stats() if self.capture is not None else {}
        if cap.get("queued") or cap.get("holding"):
            return False  # frames are waiting, or one read is waiting for room: a slow model, not a lost camera
        with self.lock:
            update = self.tracker.interrupt(time.monotonic() - self.started)
            if update is None:
                return False
            log.warning("event %d closed: no frame for %.1f s (interrupted)", update.event.id, update.no_frame_s)
            self.recorder.record_event(update.to_record())
            for sink in (s for s in self.extra if callable(getattr(s, "record_event", None))):
                sink.record_event(dataclasses.replace(update, no_frame_s=None).to_record())  # the MQTT schema has no such field
        if self.live is not None:
            self.live.close_events()
        return True

    def vitals(self) -> dict[str, Any]:
        """The run's counters now, for /metrics (read on the server's thread)."""
        cap = self.capture.stats() if self.capture is not None else {}
        now = time.monotonic()
        age = None if self._last_t is None else now - self._last_t
        return {**self.counts, **{k: cap.get(k) for k in ("dropped", "corrupt", "reconnects")}, "fps": self.rate.per_second(now),
                "last_frame_age_s": age, "event_open": int(self.tracker.active is not None),
                "sink_errors": self.recorder.sink_errors if self.recorder is not None else 0,
                "mqtt": next((s.link.stats() for s in self.extra if hasattr(s, "link")), None)}

    def summary(self, capture: ThreadedCapture, ended_by: str, signal_name: str | None) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        cap = capture.stats()
        latency = self.latency.summary()
        summary = {
            "run": self.options.recording.run_id,
            "frames": self.counts["frames"],
            "dropped": cap["dropped"],
            "corrupt": cap["corrupt"],
            "reconnects": cap["reconnects"],
            "errors": self.counts["errors"],
            "sink_errors": self.recorder.sink_errors if self.recorder is not None else 0,
            "events": self.counts["events"],
            "seconds": round(seconds, 3),
            "fps": round(self.counts["frames"] / seconds, 3) if seconds > 0 else 0.0,
            "p50_ms": {stage: s["p50"] for stage, s in latency.items()},
            "p95_ms": {stage: s["p95"] for stage, s in latency.items()},
            "latency_ms": latency,
            "ended_by": ended_by,
            "signal": signal_name,
            "source_error": cap["error"],
            "capture": cap,
            "recording": self.recorder.summary() if self.recorder is not None else None,
        }
        for sink in self.extra:  # e.g. "mqtt": what was published, delivered and is still spooled
            if callable(getattr(sink, "summary", None)):
                summary[getattr(sink, "name", type(sink).__name__)] = sink.summary()
        summary["exit_code"], summary["exit_reasons"] = outcome(summary)
        return json_safe(summary)  # JSON has no NaN: a non-finite figure is written as null
