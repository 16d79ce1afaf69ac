"""The frame loop: capture -> detect -> events -> sinks -> live view, with a clean stop.

Three threads share the work: the capture thread reads each frame and fits it
to the model input, the main thread runs the model, and the output thread
takes the CAM, boxes, events, annotation and sinks, in frame order. A stop
request still records the frames already inferred.

One bad frame costs one frame (counted), never the run. SIGINT/SIGTERM set a
stop event, so a ``systemctl stop`` or Ctrl-C still finalises the video, closes
the JSON lines and writes ``summary.json``; a second signal stops the frame
loop at once but not that flush. Writes the disk refuses follow the policy of
:mod:`edge.recording`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge.annotate import Annotator, default_annotator
from edge.atomic import write_json
from edge.errors import reject_unknown_keys, ConfigError, EdgecamError
from edge.events import EventKind, EventTracker, HysteresisOptions, QuietWatch
from edge.fleet_metrics import create_metrics
from edge.live import LiveAuth, LiveServer
from edge.recording import Recorder, RecordingOptions, json_safe, outcome
from edge.results import RECORD_SCHEMA_VERSION, FrameResult
from edge.capture import BackoffOptions, CapturedFrame, CaptureMode, ThreadedCapture
from edge.loop import FrameDetector, FrameDone, FrameLoop
from edge.sinks import Sink, utc_iso
from edge.sources import FrameSource
from edge.stats import LatencyStats, RateWindow
from edge.tiling import TileSpec
from edge.watchdog import Watchdog

__all__ = ["RunOptions", "FrameDetector", "run"]

log = logging.getLogger(__name__)

OnFrame = Callable[[CapturedFrame, FrameResult, dict], None]


def _parse_live(address: str) -> tuple[str, int]:
    m = re.fullmatch(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]*)):?(?P<port>\d+)", address.strip())
    if not m:
        raise ConfigError(f"RunOptions.live expects 'PORT', 'HOST:PORT' or '[IPv6]:PORT'; received {address!r}")
    host = m.group("v6") or m.group("host") or "127.0.0.1"
    return host, int(m.group("port"))


@dataclass(frozen=True)
class RunOptions:
    """How a run captures, decides and records.

    Attributes:
        out_dir: folder for ``frames.jsonl``, ``video.mp4``, ``events/`` and ``summary.json``.
        mode: ``LATEST`` (live: skip to the newest frame) or ``ALL`` (files: every frame).
        stride: process every ``stride``-th source frame.
        tile: tile the frame (large frames, small ships), or None for one inference per frame.
        threshold: heatmap threshold for boxes when tiling, in (0, 1].
        hysteresis: event thresholds.
        smoother_alpha: EMA weight of the newest score for events.
        event_label: label whose score drives events; None = top positive label (0 when none).
        live: ``"PORT"`` / ``"HOST:PORT"`` for the live view, or None.
        allow_remote: allow the live view on a non-loopback address.
        live_auth: ``bearer:TOKEN`` or ``basic:USER:PASSWORD`` for the page, the stream and ``/metrics``; None: none.
        stale_s: no frame for this long: the live page shows its banner and ``/healthz`` answers 503.
        live_clients: connections the live view serves at once (more are refused and counted).
        live_idle_s: a live-view connection idle this long is closed.
        write_video: write the annotated ``video.mp4``.
        video_fps: frame rate of the video; None = the source's / stride, else 15.
        max_frames: stop after this many frames taken from the capture (a frame
            that fails counts); None = until the source ends.
        target_fps: cap the processed frame rate (see ThreadedCapture); None = no cap.
        queue_size: capture queue bound in ALL mode.
        reconnect: backoff for live sources.
        recording: run id, video segments, free-space floor and ``frames.jsonl`` rotation.
        source_id: names the source in every frame and event record; None: the source's
            description (``repr``, credentials removed).

    Example:
        >>> RunOptions.from_dict({"out_dir": "runs/x", "mode": "all", "hysteresis": {"enter": 0.7}}).mode
        <CaptureMode.ALL: 'all'>
    """

    out_dir: Path = Path("runs/live")
    mode: CaptureMode = CaptureMode.LATEST
    stride: int = 1
    tile: TileSpec | None = None
    threshold: float = 0.5
    hysteresis: HysteresisOptions = HysteresisOptions()
    smoother_alpha: float = 0.5
    event_label: str | None = None
    live: str | None = None
    allow_remote: bool = False
    live_auth: str | None = field(default=None, repr=False)
    stale_s: float = 10.0
    live_clients: int = 16
    live_idle_s: float = 30.0
    write_video: bool = True
    video_fps: float | None = None
    max_frames: int | None = None
    target_fps: float | None = None
    queue_size: int = 4
    reconnect: BackoffOptions = BackoffOptions()
    recording: RecordingOptions = RecordingOptions()
    source_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        try:
            object.__setattr__(self, "mode", CaptureMode(self.mode))
        except ValueError:
            raise ConfigError(f"RunOptions.mode expects one of {[m.value for m in CaptureMode]}; received {self.mode!r}") from None
        for name, value in (("stride", self.stride), ("queue_size", self.queue_size), ("max_frames", self.max_frames)):
            if value is None and name == "max_frames":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RunOptions.{name} must be an int >= 1{' or None' if name == 'max_frames' else ''}; received {value!r}")
        checks = (
            ("tile", self.tile is None or isinstance(self.tile, TileSpec), "a TileSpec or None"),
            ("threshold", isinstance(self.threshold, (int, float)) and 0.0 < self.threshold <= 1.0, "a number in (0, 1]"),
            ("hysteresis", isinstance(self.hysteresis, HysteresisOptions), "HysteresisOptions"),
            ("smoother_alpha", isinstance(self.smoother_alpha, (int, float)) and 0.0 < self.smoother_alpha <= 1.0, "a number in (0, 1]"),
            ("reconnect", isinstance(self.reconnect, BackoffOptions), "BackoffOptions"),
            ("recording", isinstance(self.recording, RecordingOptions), "RecordingOptions"),
            ("video_fps", self.video_fps is None or (isinstance(self.video_fps, (int, float)) and self.video_fps > 0), "None or > 0"),
            ("stale_s", isinstance(self.stale_s, (int, float)) and not isinstance(self.stale_s, bool) and self.stale_s > 0, "> 0"),
            ("target_fps", self.target_fps is None or (isinstance(self.target_fps, (int, float)) and self.target_fps > 0), "None or > 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"RunOptions.{name} must be {expected}; received {getattr(self, name)!r}")
        if self.live_auth is not None:
            LiveAuth.parse(self.live_auth)  # raises on a malformed spec, without echoing the secret
        if self.live is not None:
            host, port = _parse_live(str(self.live))
            if not 0 <= port <= 65535:
                raise ConfigError(f"RunOptions.live port must be in [0, 65535]; received {self.live!r}")

    @property
    def live_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the live view, or None."""
        return None if self.live is None else _parse_live(str(self.live))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunOptions":
        """Build from plain data (JSON/CLI), rejecting unknown keys and converting nested options."""
        reject_unknown_keys(cls, data)
        values = dict(data)
        if isinstance(values.get("hysteresis"), Mapping):
            values["hysteresis"] = HysteresisOptions.from_dict(values["hysteresis"])
        if isinstance(values.get("tile"), Mapping):
            values["tile"] = TileSpec(**values["tile"])
        if isinstance(values.get("reconnect"), Mapping):
            values["reconnect"] = BackoffOptions(**values["reconnect"])
        if isinstance(values.get("recording"), Mapping):
            values["recording"] = RecordingOptions.from_dict(values["recording"])
        return cls(**values)


def _install_signal_handlers(stop: threading.Event, state: dict) -> Callable[[], None]:
    """Route SIGINT/SIGTERM to ``stop`` (noting the first in ``state["signal"]``); return a function restoring the old handlers.

    Once ``state["flushing"]`` is set, a further signal is logged and ignored:
    interrupting the flush would lose the open video segment and summary.json.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal.signal only works on the main thread

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if state.get("flushing"):
            log.warning("received %s while closing outputs; finishing that first (SIGKILL stops without it)", name)
            return
        if stop.is_set():
            log.warning("received %s again; stopping the frame loop now (the outputs are still closed)", name)
            raise KeyboardInterrupt  # a second signal means: stop now, do not wait for the frame
        log.warning("received %s; finishing the current frame and closing outputs", name)
        state["signal"] = name
        stop.set()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError) as exc:
            log.debug("cannot install a handler for %s: %s", sig, exc)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _tracked_score(result: FrameResult, event_label: str | None) -> tuple[float, str | None]:
    if event_label is not None:
        return float(result.scores[result.labels.index(event_label)]), event_label
    positive = np.flatnonzero(result.positive)
    if len(positive) == 0:
        return 0.0, None
    best = int(positive[np.argmax(result.scores[positive])])
    return float(result.scores[best]), result.labels[best]


class _Loop:
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

        score, label = _tracked_score(result, opts.event_label)
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


def run(
    detector: FrameDetector,
    source: FrameSource,
    options: RunOptions | None = None,
    stop_event: threading.Event | None = None,
    on_frame: OnFrame | None = None,
    sinks: Sequence[Sink] | None = None,
    annotator: Annotator | None = None,
) -> dict[str, Any]:
    """Run the detector over a source until it ends, ``max_frames``, ``stop_event`` or a signal.

    Writes into ``options.out_dir``: ``frames.jsonl`` (one record per frame:
    frame, t, scores, positive, boxes, timings_ms, smoothed, and event when one
    starts or ends; rotated by ``recording.jsonl_max_mb``), the annotated video
    if ``write_video`` (``video/NNNNNN.mp4`` segments with ``recording.segment_s``,
    else ``video.mp4``), ``events/events.jsonl`` with a snapshot per event, and
    ``summary.json`` (written atomically last). With ``recording.run_id`` every
    record carries ``"run"``. The detector is not closed: the caller owns it.

    Args:
        detector: ``detect`` (and ``detect_batch`` when tiling) plus ``labels``.
        source: the frame source; opened and closed here.
        options: run options; defaults to ``RunOptions()``.
        stop_event: set it from another thread to stop; SIGINT/SIGTERM set it too
            when ``run`` is called on the main thread.
        on_frame: called as ``on_frame(captured, result, record)`` after each frame,
            on the output thread, in frame order.
        sinks: sinks besides ``frames.jsonl``, the events and the video, which are always written
            (e.g. :class:`edge.mqtt_sink.MqttSink`, or any :class:`edge.sinks.Sink`, which receives an
            :class:`edge.records.FrameRecord`); None: none. Written under the recorder's
            storage policy and closed with it; each is told the event the end of the run closes
            (``record_event``), and its ``summary()`` goes into the summary under its ``name``.
        annotator: draws the video, snapshot and live picture; None: :func:`edge.annotate.default_annotator`.

    Returns:
        The summary dict also written to ``summary.json``: frames, dropped,
        corrupt, reconnects, errors, events, seconds, fps, p50_ms/p95_ms per
        stage, latency_ms, ended_by (``source ended``, ``source failed``,
        ``stopped``, ``max_frames`` or ``error``), signal (``SIGINT``,
        ``SIGTERM`` or None), source_error, recording (what was written and
        lost, see :class:`edge.recording.Recorder`), and exit_code with
        exit_reasons (see :func:`edge.recording.outcome`); non-finite numbers are None.

    Raises:
        ConfigError: ``event_label`` is not one of the detector's labels.
        SourceError: the source cannot be opened at all.

    Example:
        >>> summary = run(detector, open_source("synthetic"), RunOptions(out_dir="runs/demo", mode="all"))  # doctest: +SKIP
        >>> summary["frames"], summary["p95_ms"]["detect"]  # doctest: +SKIP
    """
    options = options if options is not None else RunOptions()
    labels = tuple(getattr(detector, "labels", ()) or ())
    if options.event_label is not None and labels and options.event_label not in labels:
        raise ConfigError(f"RunOptions.event_label must be one of the detector labels {list(labels)}; received {options.event_label!r}")
    stop = stop_event if stop_event is not None else threading.Event()
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    loop = _Loop(detector, options, on_frame, annotator if annotator is not None else default_annotator())
    if callable(getattr(on_frame, "attach", None)):  # e.g. edge.progress.Progress: it reads the run's counters
        on_frame.attach(loop.vitals)
    loop.source_id = options.source_id or repr(source)
    # Without tiling, the capture thread fits each frame to the model input
    # while the previous one is inferred (a detector offering ``prepare``).
    prepare = getattr(detector, "prepare", None) if options.tile is None else None
    if prepare is not None and not callable(getattr(detector, "detect_prepared", None)):
        prepare = None
    capture = ThreadedCapture(source, options.mode, options.queue_size, options.reconnect, options.stride,
                              options.target_fps, prepare=prepare)
    loop.capture = capture
    # an absolute-heatmap detector boxes at its own decision threshold when tiled, as on whole frames
    level = None if getattr(detector, "absolute", False) else options.threshold
    # the output thread takes the CAM, boxes, events, annotation and sinks off the inference thread
    frames = FrameLoop(detector, capture, loop.process, on_error=loop.failed, tile=options.tile, tile_level=level,
                       queue_size=options.queue_size)
    signals: dict[str, Any] = {"signal": None, "flushing": False}
    restore_signals = _install_signal_handlers(stop, signals)
    ended_by = "error"  # replaced below on every orderly way out of the loop
    quiet: QuietWatch | None = None
    loop.recorder = recorder = Recorder(out, options.recording, started=loop.started)
    loop.extra = list(sinks or ())
    # systemd: READY once the model is warm (it was, at load), WATCHDOG while frames or reconnect attempts go on
    watchdog = Watchdog(lambda: (loop.counts["frames"], *(capture.stats()[k] for k in ("reconnects", "reconnect_failures"))))
    try:
        recorder.open_records()
        for sink in loop.extra:
            recorder.sinks[getattr(sink, "name", type(sink).__name__)] = sink
        if options.live_address is not None:
            host, port = options.live_address
            loop.metrics = create_metrics(loop.vitals)
            loop.live = LiveServer(host, port, allow_remote=options.allow_remote, auth=options.live_auth,
                                   metrics=loop.metrics.render if loop.metrics is not None else None, stale_s=options.stale_s,
                                   max_clients=options.live_clients, idle_s=options.live_idle_s)
        frames.start()
        if options.write_video:
            recorder.open_video(options.video_fps or options.target_fps or ((source.fps or 15.0) / options.stride),
                                live=bool(getattr(source, "is_live", False)))
        # a live source that gives no frame (none read, none finished) for interrupt_s: an open event ends there;
        # a file loses nothing by being slow
        if options.hysteresis.interrupt_s is not None and getattr(source, "is_live", False):
            quiet = QuietWatch(lambda: capture.stats()["read"] + loop.counts["frames"], options.hysteresis.interrupt_s,
                               loop.quiet).start()
        watchdog.ready(f"running {type(source).__name__}")
        ended_by = frames.drive(stop, options.max_frames)
    except KeyboardInterrupt:
        if signals["signal"] is None:
            raise  # the caller's own interrupt, not a second signal to this loop
        ended_by = "stopped"  # a second signal: the frame loop stopped at once; the flush below still runs
    finally:
        signals["flushing"] = True
        if quiet is not None:
            quiet.close()
        try:
            frames.close()  # stops the capture; the output thread finishes the frames it still holds
        except EdgecamError:
            log.exception("the output thread failed")
        final = loop.tracker.close()
        if final is not None:
            try:
                recorder.record_event(loop.event_record(final))
            except Exception:
                log.exception("could not record the end of event %d", final.event.id)
            for sink in (s for s in loop.extra if callable(getattr(s, "record_event", None))):
                try:
                    sink.record_event(loop.event_record(final))
                except Exception:
                    log.exception("%s could not take the end of event %d", getattr(sink, "name", sink), final.event.id)
        watchdog.close(f"stopping: {ended_by}")
        recorder.close()
        for sink in loop.extra:  # closed with the recorder; again here (idempotent) if the run failed before it had them
            try:
                sink.close()
            except Exception:
                log.exception("closing %s failed", getattr(sink, "name", sink))
        if loop.live is not None:
            loop.live.close()
        summary = loop.summary(capture, ended_by, signals["signal"])
        recorder.release_reserve()  # the space kept aside for this file
        try:
            write_json(out / "summary.json", summary)
        except Exception as exc:
            log.error("could not write %s: %s", out / "summary.json", exc)
            summary["summary_written"] = False
            summary["exit_code"], summary["exit_reasons"] = outcome(summary)
        restore_signals()
    log.info("run ended (%s): %d frames in %.1f s", ended_by, summary["frames"], summary["seconds"])
    return summary
