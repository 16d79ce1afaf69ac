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

import contextlib
import logging
import math
import os
import signal
import threading
from typing import Any, Callable, Iterator, Sequence

from edge.annotate import Annotator, default_annotator
from edge.atomic import write_json
from edge.capture import ThreadedCapture
from edge.errors import ConfigError, EdgecamError
from edge.events import QuietWatch
from edge.fleet_metrics import create_metrics
from edge.live import LiveServer
from edge.loop import FrameDetector, FrameLoop
from edge.recording import Recorder, outcome
from edge.run_options import RunOptions
from edge.run_state import OnFrame, RunState
from edge.sinks import Sink
from edge.sources import FrameSource
from edge.watchdog import Watchdog

__all__ = ["RunOptions", "FrameDetector", "run"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def report_after_stop(stop: threading.Event) -> Iterator[None]:
    """Around a run and its caller's report: once ``stop`` is set, a repeated SIGINT/SIGTERM is logged and ignored.

    :func:`run` restores the caller's handlers when it returns; a second Ctrl-C
    that lands after that would otherwise interrupt the caller while it prints
    how the run ended. Inside this block a signal before ``stop`` is set goes to
    the handler that was in place (Python's KeyboardInterrupt, or the default
    action), so nothing changes until a run has been stopped.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal.signal only works on the main thread
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            log.warning("received %s after the run stopped; finishing its report first", signal.Signals(signum).name)
            return
        old = previous[signum]
        if callable(old):
            old(signum, frame)
        elif old != signal.SIG_IGN:  # the default action: end the process by this signal, as before the block
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
        ConfigError: ``event_label`` is not one of the detector's labels, or ``options.threshold``
            differs from the detector's ``DetectorOptions.box_threshold``.
        SourceError: the source cannot be opened at all.

    Long because: this docstring is the run's contract (every file written, every summary field); the
    body is a short sequence of the helpers below.

    Example:
        >>> summary = run(detector, open_source("synthetic"), RunOptions(out_dir="runs/demo", mode="all"))  # doctest: +SKIP
        >>> summary["frames"], summary["p95_ms"]["detect"]  # doctest: +SKIP
    """
    options = options if options is not None else RunOptions()
    _check_event_label(detector, options)
    _check_box_threshold(detector, options)
    stop = stop_event if stop_event is not None else threading.Event()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    state = _new_state(detector, source, options, on_frame, annotator, sinks)
    frames = _frame_loop(detector, state, options)
    signals: dict[str, Any] = {"signal": None, "flushing": False}
    restore_signals = _install_signal_handlers(stop, signals)
    ended_by = "error"  # replaced below on every orderly way out of the loop
    quiet: QuietWatch | None = None
    capture = state.capture
    # systemd: READY once the model is warm (it was, at load), WATCHDOG while frames or reconnect attempts go on
    watchdog = Watchdog(lambda: (state.counts["frames"], *(capture.stats()[k] for k in ("reconnects", "reconnect_failures"))))
    try:
        quiet = _start_outputs(state, frames, source)
        watchdog.ready(f"running {type(source).__name__}")
        ended_by = frames.drive(stop, options.max_frames)
    except KeyboardInterrupt:
        if signals["signal"] is None:
            raise  # the caller's own interrupt, not a second signal to this loop
        ended_by = "stopped"  # a second signal: the frame loop stopped at once; the flush below still runs
    finally:
        signals["flushing"] = True
        summary = _close_outputs(state, frames, quiet, watchdog, ended_by, signals["signal"])
        restore_signals()
    log.info("run ended (%s): %d frames in %.1f s", ended_by, summary["frames"], summary["seconds"])
    return summary


def _check_event_label(detector: FrameDetector, options: RunOptions) -> None:
    labels = tuple(getattr(detector, "labels", ()) or ())
    if options.event_label is not None and labels and options.event_label not in labels:
        raise ConfigError(f"RunOptions.event_label must be one of the detector labels {list(labels)}; received {options.event_label!r}")


def _check_box_threshold(detector: FrameDetector, options: RunOptions) -> None:
    """One box threshold per run: ``RunOptions.threshold``, when given, must be the detector's ``box_threshold``.

    The detector draws boxes on whole frames and the tiler on stitched ones; two levels would give two
    answers for the same frame, so a disagreeing pair is refused rather than one silently winning.
    """
    own = getattr(getattr(detector, "options", None), "box_threshold", None)
    if options.threshold is None or own is None or math.isclose(float(own), float(options.threshold)):
        return
    raise ConfigError(f"RunOptions.threshold expects the detector's box threshold (DetectorOptions.box_threshold {own:g}) "
                      f"or None; received {options.threshold:g} (set one of them: the detector's is used on whole frames)")


def _new_state(detector: FrameDetector, source: FrameSource, options: RunOptions, on_frame: OnFrame | None,
               annotator: Annotator | None, sinks: Sequence[Sink] | None) -> RunState:
    """The run's state with its capture, recorder and extra sinks (nothing started yet)."""
    state = RunState(detector, options, on_frame, annotator if annotator is not None else default_annotator())
    if callable(getattr(on_frame, "attach", None)):  # e.g. edge.progress.Progress: it reads the run's counters
        on_frame.attach(state.vitals)
    state.source_id = options.source_id or repr(source)
    # Without tiling, the capture thread fits each frame to the model input
    # while the previous one is inferred (a detector offering ``prepare``).
    prepare = getattr(detector, "prepare", None) if options.tile is None else None
    if prepare is not None and not callable(getattr(detector, "detect_prepared", None)):
        prepare = None
    state.capture = ThreadedCapture(source, options.mode, options.queue_size, options.reconnect, options.stride,
                                    options.target_fps, prepare=prepare)
    state.recorder = Recorder(options.out_dir, options.recording, started=state.started)
    state.extra = list(sinks or ())
    return state


def _frame_loop(detector: FrameDetector, state: RunState, options: RunOptions) -> FrameLoop:
    """The frame loop whose output thread takes the CAM, boxes, events, annotation and sinks off the inference thread."""
    # an absolute-heatmap detector boxes at its own decision threshold when tiled, as on whole frames;
    # None: the detector's own rule (its box_threshold, which _check_box_threshold found equal to the run's)
    level = None if getattr(detector, "absolute", False) else options.threshold
    return FrameLoop(detector, state.capture, state.process, on_error=state.failed, tile=options.tile, tile_level=level,
                     queue_size=options.queue_size)


def _start_outputs(state: RunState, frames: FrameLoop, source: FrameSource) -> QuietWatch | None:
    """Open the records, sinks and live view, start the loop and the video; return the quiet watch, if any."""
    options, recorder, capture = state.options, state.recorder, state.capture
    recorder.open_records()
    for sink in state.extra:
        recorder.sinks[getattr(sink, "name", type(sink).__name__)] = sink
    if options.live_address is not None:
        host, port = options.live_address
        state.metrics = create_metrics(state.vitals)
        state.live = LiveServer(host, port, allow_remote=options.allow_remote, auth=options.live_auth,
                                metrics=state.metrics.render if state.metrics is not None else None, stale_s=options.stale_s,
                                max_clients=options.live_clients, idle_s=options.live_idle_s)
    frames.start()
    if options.write_video:
        recorder.open_video(options.video_fps or options.target_fps or ((source.fps or 15.0) / options.stride),
                            live=bool(getattr(source, "is_live", False)))
    # a live source that gives no frame (none read, none finished) for interrupt_s: an open event ends there;
    # a file loses nothing by being slow
    if options.hysteresis.interrupt_s is not None and getattr(source, "is_live", False):
        return QuietWatch(lambda: capture.stats()["read"] + state.counts["frames"], options.hysteresis.interrupt_s,
                          state.quiet).start()
    return None


def _close_outputs(state: RunState, frames: FrameLoop, quiet: QuietWatch | None, watchdog: Watchdog, ended_by: str,
                   signal_name: str | None) -> dict[str, Any]:
    """Stop the loop, close the open event, the sinks and the live view, and write summary.json; return the summary."""
    if quiet is not None:
        quiet.close()
    try:
        frames.close()  # stops the capture; the output thread finishes the frames it still holds
    except EdgecamError:
        log.exception("the output thread failed")
    _close_event(state)
    watchdog.close(f"stopping: {ended_by}")
    state.recorder.close()
    for sink in state.extra:  # closed with the recorder; again here (idempotent) if the run failed before it had them
        try:
            sink.close()
        except Exception:
            log.exception("closing %s failed", getattr(sink, "name", sink))
    if state.live is not None:
        state.live.close()
    summary = state.summary(state.capture, ended_by, signal_name)
    state.recorder.release_reserve()  # the space kept aside for this file
    path = state.options.out_dir / "summary.json"
    try:
        write_json(path, summary)
    except Exception as exc:
        log.error("could not write %s: %s", path, exc)
        summary["summary_written"] = False
        summary["exit_code"], summary["exit_reasons"] = outcome(summary)
    return summary


def _close_event(state: RunState) -> None:
    """The end of the run ends an open event: in the records and in every sink that takes events."""
    final = state.tracker.close()
    if final is None:
        return
    try:
        state.recorder.record_event(state.event_record(final))
    except Exception:
        log.exception("could not record the end of event %d", final.event.id)
    for sink in (s for s in state.extra if callable(getattr(s, "record_event", None))):
        try:
            sink.record_event(state.event_record(final))
        except Exception:
            log.exception("%s could not take the end of event %d", getattr(sink, "name", sink), final.event.id)
