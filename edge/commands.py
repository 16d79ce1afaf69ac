"""``edgecam run`` (the device's own subcommand); training/commands.py and export/commands.py hold the others.

Each imports what it needs when called: ``edgecam run`` never imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.cli_args import print_json
from edge.errors import ConfigError, EdgecamError, ManifestError

log = logging.getLogger("edgecam")


def pick_manifest(model: str, preferred: list[str]) -> Path:
    """A manifest path from MODEL (manifest, artifact, or export folder; in a folder the first preferred format)."""
    from edge.manifest import find_manifests, load_manifest

    found = find_manifests(model)
    if len(found) == 1:
        return found[0]
    by_format = {load_manifest(p, verify=False).format: p for p in found}
    for fmt in preferred:
        if fmt in by_format:
            return by_format[fmt]
    raise ManifestError(f"{model} holds {sorted(by_format)}; expected one of {preferred} (pass the manifest you want)")


def scaled_size(manifest_size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """Keep the manifest's aspect ratio, set the short side, round to multiples of 32 (MobileNetV2's stride)."""
    h, w = manifest_size
    s = short_side / min(h, w)
    return max(32, int(round(h * s / 32)) * 32), max(32, int(round(w * s / 32)) * 32)


def run_input_size(trained: tuple[int, int], asked: tuple[int, int] | None, by_scale: bool, profile_short_side: int | None,
                   use_profile: bool, device: str | None) -> tuple[tuple[int, int] | None, str | None]:
    """The size ``edgecam run`` runs the model at, and a note when a device profile disagrees with it.

    ``--input-size`` wins; a model run by frame scale has no fixed size (None);
    then the model's trained size, unless ``--profile-size`` asks for the
    profile's (scaled to the trained aspect ratio). A model trained at 64 px
    run at a profile's 224 px sees objects at a scale it never saw, so the
    profile's size is only taken when asked for.

    Example:
        >>> run_input_size((64, 64), None, False, 224, False, "rpi5")[0]
        (64, 64)
        >>> run_input_size((64, 64), None, False, 224, True, "rpi5")
        ((224, 224), None)
    """
    if asked:
        return tuple(asked), None
    if by_scale:
        return None, None
    profiled = scaled_size(trained, profile_short_side) if profile_short_side else None
    if use_profile:
        if profiled is None:
            raise ConfigError(f"--profile-size expects a --device profile with an input size; received "
                              f"{device or 'no --device'}")
        return profiled, None
    if profiled is not None and profiled != tuple(trained):
        return tuple(trained), (f"the {device} profile suggests {profiled[0]}x{profiled[1]}; running at the model's "
                                f"trained {trained[0]}x{trained[1]} (--profile-size for the profile's, --input-size HxW "
                                "for another)")
    return tuple(trained), None


def event_threshold(labels: tuple[str, ...], thresholds: tuple[float, ...], task: str, event_label: str | None) -> float:
    """The decision threshold an event starts from by default (``--enter``), on the score that drives events.

    With an ``event_label`` that label's score drives events, so its own threshold is the bar. Without one,
    a multi-label model's events follow its top positive label, whichever it is: the lowest of the per-label
    thresholds, so every label the model calls positive reaches it. A binary model has one threshold.

    Raises:
        ConfigError: ``event_label`` is not one of ``labels``.

    Example:
        >>> event_threshold(("ship", "buoy"), (0.4, 0.7), "multilabel", "buoy")
        0.7
        >>> event_threshold(("ship", "buoy"), (0.4, 0.7), "multilabel", None)
        0.4
    """
    from edge.manifest import Task

    if event_label is not None:
        if event_label not in labels:
            raise ConfigError(f"event_label: expected one of the model's labels {list(labels)}; received {event_label!r}")
        return float(thresholds[labels.index(event_label)])
    if Task(task) is Task.MULTILABEL:
        return float(min(thresholds))
    return float(thresholds[0])


@dataclass(frozen=True)
class _RunInputs:
    """What ``edgecam run`` checks before the model loads or a run folder is made (bad input exits 2 at once)."""

    recording: dict[str, Any]
    settings: dict[str, Any]
    mqtt: Any
    live_auth: str | None
    decision: float
    enter: float
    leave: float


def cmd_run(a) -> int:
    from devices import resolve_run_settings
    from edge.backends import BackendOptions, create_backend, runs_format
    from edge.cli_args import gpu_settings
    from edge.detector import Detector, DetectorOptions
    from edge.manifest import load_manifest
    from edge.pipeline import report_after_stop
    from edge.recording import RunFolder
    from edge.sink_kinds import parse_sink_spec

    for spec in a.sink:  # an unknown --sink is refused before the model loads or a folder is made
        parse_sink_spec(spec)
    s = resolve_run_settings(a.device, backend=a.backend, threads=a.threads, source=a.source, **gpu_settings(a))
    manifest = load_manifest(pick_manifest(a.model, _preferred_formats(a.device, s)))
    # A model trained on crops of box-labelled frames runs every frame resized
    # by the scale it was trained at, whatever the frame's size: no fixed input
    # size then, and the detector takes the scale from the manifest itself.
    size, note = run_input_size(manifest.input_size, a.input_size, a.scale is not None or bool(manifest.extra.get("frame_scale")),
                                s.input_size, a.profile_size, a.device)
    if note:
        print(f"edgecam run: {note}", file=sys.stderr)
    # a profile's backend is used when it runs this artifact's format; else the format's default
    backend = a.backend or (s.backend.value if s.backend and runs_format(s.backend.value, manifest.format) else None)
    det_opts = DetectorOptions(resize=a.resize or "stretch", box_threshold=a.box_threshold, scale=a.scale,
                               head_passes=a.head_passes)
    source, mode = _open_source(a, s)
    checked = _check_run_inputs(a, manifest)
    # the TensorRT engine cache lives in the run's folder (--out), so the next run reuses it
    bopts = BackendOptions(threads=s.threads, providers=tuple(s.execution_providers) or ("CPUExecutionProvider",),
                           input_size=size, gpu=s.gpu, run_dir=Path(a.out))
    stop = threading.Event()  # set by the run on SIGINT/SIGTERM: from then on a repeat waits for the report below
    with report_after_stop(stop):
        with _load_detector(Detector, lambda: create_backend(manifest, backend, bopts), det_opts, size) as det:
            folder = RunFolder.create(a.out)  # a folder of its own: a restart never overwrites an earlier run
            opts = _run_options(a, checked, folder, mode, size)
            sinks = _run_sinks(a, checked, folder, manifest)
            at = f"{det.scale:g}x each frame's size" if det.scale else f"{size[0]}x{size[1]}"
            print(f"edgecam run: {manifest.format} via {det.backend.key} at {at}, source {source!r}, mode {mode.value}")
            print(f"edgecam run: recording into {folder.path} ({folder.root / 'latest'} points at it)", flush=True)
            summary = _run_with_progress(a, det, source, opts, sinks, stop)
        _report_run(summary)
    return int(summary["exit_code"])


def _report_run(summary: dict) -> None:
    """The run's summary as JSON (stdout with --json) and the line saying how it ended."""
    shown = ("run", "frames", "dropped", "corrupt", "reconnects", "seconds", "fps", "events", "p50_ms", "p95_ms", "ended_by",
             "signal", "errors", "sink_errors", "source_error", "recording", "mqtt", "exit_code", "exit_reasons")
    print_json({k: summary[k] for k in shown if k in summary})
    print(f"edgecam run: {run_ending(summary)}")


def _preferred_formats(device: str | None, s) -> list[str]:
    """Formats to pick from an export folder, best first: the profile's, its fallbacks the backend runs, then ours."""
    from devices import load_profile
    from edge.backends import runs_format

    preferred = [f.value for f in ([s.artifact_format] if s.artifact_format else [])]
    if device:  # the profile's fallbacks, in its order, where they fit the backend in use
        preferred += [f.value for f in load_profile(device).fallback_formats if s.backend is None or runs_format(s.backend.value, f.value)]
    from edge.formats import run_preference

    return preferred + [f for f in run_preference() if f not in preferred]


def _open_source(a, s):
    """The frame source and its capture mode."""
    from edge.sources import CaptureMode, open_source

    # the profile's capture format reaches cameras (CameraSource, Picamera2Source); a pipeline
    # states its own caps (the profile is checked to agree), files and streams have theirs
    capture_size = (s.capture_width, s.capture_height) if s.capture_width and s.capture_height else None
    source = open_source(s.source or "synthetic", size=capture_size, fps=s.capture_fps)
    # --mode wins; else a profile's capture mode, which is meant for live sources; else
    # latest for live sources and all for files (a file never needs to drop frames)
    if a.mode:
        return source, CaptureMode(a.mode)
    if source.is_live:
        return source, CaptureMode(s.capture_mode.value) if s.capture_mode else CaptureMode.LATEST
    return source, CaptureMode.ALL


def _check_run_inputs(a, manifest) -> _RunInputs:
    """Recording, --config settings, MQTT, live auth and event thresholds, each refused now if bad."""
    from edge.config import RUN_SETTINGS
    from edge.pipeline import RunOptions
    from edge.recording import RecordingOptions

    recording = dict(segment_s=a.segment_seconds or None, min_free_mb=a.min_free_mb, jsonl_max_mb=a.jsonl_max_mb or None,
                     jsonl_keep=a.jsonl_keep, outage_s=a.outage_seconds or None, retain=a.retain,
                     stills=a.stills)
    RecordingOptions(**recording)  # a bad value is refused before the model loads or a folder is made
    settings = {k: getattr(a, k) for k in RUN_SETTINGS if getattr(a, k, None) is not None}  # --config only
    checked = RunOptions.from_dict({"out_dir": a.out, **settings})  # likewise refused now; reconnect becomes BackoffOptions
    settings = {k: getattr(checked, k) for k in settings}
    mqtt = mqtt_options(a)  # likewise; None without --mqtt / --mqtt-config (paho is then never imported)
    live_auth = a.live_auth or os.environ.get("EDGECAM_LIVE_AUTH") or None
    if live_auth is not None:
        from edge.live import LiveAuth

        LiveAuth.parse(live_auth)  # a malformed spec is refused now, without echoing the secret
    # events start, by default, where the score driving them is called positive (multi-label: per label)
    decision = event_threshold(tuple(manifest.labels), tuple(manifest.thresholds), manifest.task, settings.get("event_label"))
    enter = a.enter if a.enter is not None else decision
    leave = a.leave if a.leave is not None else max(0.0, enter * 0.6)
    return _RunInputs(recording, settings, mqtt, live_auth, decision, enter, leave)


def _run_options(a, checked: _RunInputs, folder, mode, size):
    from edge.events import HysteresisOptions
    from edge.pipeline import RunOptions
    from edge.recording import RecordingOptions
    from edge.tiling import TileSpec

    return RunOptions(
        out_dir=folder.path, mode=mode, stride=a.stride, tile=TileSpec(tile=tuple(size or (640, 640))) if a.tile else None,
        threshold=a.box_threshold, hysteresis=HysteresisOptions(enter=checked.enter, leave=checked.leave,
                                                                min_frames=a.min_frames, interrupt_s=a.event_timeout or None),
        live=a.live, allow_remote=a.allow_remote, live_auth=checked.live_auth, live_clients=a.live_max_clients,
        live_idle_s=a.live_idle_seconds, stale_s=a.stale_seconds or 10.0, write_video=not a.no_video, max_frames=a.max_frames,
        recording=RecordingOptions(run_id=folder.run_id, **checked.recording), **checked.settings,
    )


def _run_sinks(a, checked: _RunInputs, folder, manifest) -> list:
    """The --sink outputs, and the MQTT link when asked for."""
    from edge.sink_kinds import make_sinks

    sinks = make_sinks(a.sink, folder.path)
    if checked.mqtt is not None:
        from edge.mqtt_sink import MqttSink

        sinks.append(MqttSink(checked.mqtt, folder.run_id, spool_dir=Path(a.out) / "mqtt-spool",
                              model={"format": manifest.format, "artifact": Path(manifest.artifact).name,
                                     "sha256": manifest.sha256, "labels": list(manifest.labels)},
                              thresholds={"decision": checked.decision, "enter": checked.enter, "leave": checked.leave,
                                          "min_frames": a.min_frames}))
    return sinks


def _run_with_progress(a, det, source, opts, sinks, stop: threading.Event | None = None) -> dict:
    """``edge.pipeline.run`` with the status line of --progress-seconds."""
    from edge.pipeline import run

    progress = None
    if a.progress_seconds != 0:  # None: the default interval; a negative one is refused by Progress
        from edge.progress import Progress, known_length

        progress = Progress(total=known_length(source, a.stride, a.max_frames), interval_s=a.progress_seconds)
    try:
        return run(det, source, opts, sinks=sinks, on_frame=progress, stop_event=stop)
    finally:
        if progress is not None:
            progress.close()


def _load_detector(detector_cls, make_backend, det_opts, size):
    """Load and warm the model up; a runtime that cannot run it at ``size`` is a one-line ConfigError (exit 2)."""
    try:
        return detector_cls(make_backend(), det_opts)
    except EdgecamError:
        raise
    except Exception as exc:  # noqa: BLE001 - the runtimes raise plain Exceptions (onnxruntime's Fail,
        # InvalidArgument), RuntimeError (LiteRT's XNNPack reshape failure) or MemoryError; the first line
        # of the runtime's message says what it refused
        logging.getLogger("edgecam").debug("loading the model failed", exc_info=True)
        at = f"{size[0]}x{size[1]}" if size else "each frame's size"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"expected a model this machine can load and run at {at}; received "
                          f"{type(exc).__name__}: {first} (try a smaller --input-size, or -v for the traceback)") from exc


def mqtt_options(a):
    """``MqttOptions`` from ``--mqtt-config`` and the ``--mqtt*`` flags (flags win), or None when neither is given."""
    if a.mqtt is None and a.mqtt_config is None:
        given = [f for f in ("mqtt_camera", "mqtt_prefix", "mqtt_client_id", "mqtt_user", "mqtt_ca", "mqtt_spool",
                             "mqtt_spool_mb") if getattr(a, f) is not None] + (["mqtt_thumbnail"] if a.mqtt_thumbnail else [])
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ConfigError(f"{flags} need --mqtt URL or --mqtt-config FILE; received neither")
        return None
    from edge.mqtt import MqttOptions, load_mqtt_config

    data = load_mqtt_config(a.mqtt_config) if a.mqtt_config else {}
    flags = {"url": a.mqtt, "camera": a.mqtt_camera, "prefix": a.mqtt_prefix, "client_id": a.mqtt_client_id,
             "username": a.mqtt_user, "ca_file": a.mqtt_ca, "spool_dir": a.mqtt_spool, "spool_mb": a.mqtt_spool_mb,
             "thumbnail": True if a.mqtt_thumbnail else None, "stale_s": a.stale_seconds}
    data.update({k: v for k, v in flags.items() if v is not None})
    options = MqttOptions.from_dict(data)
    import importlib.util

    if importlib.util.find_spec("paho") is None:  # said before the model loads or a run folder is made
        raise ConfigError("--mqtt needs paho-mqtt, which is not installed; expected it from pip install 'edgecam[fleet]'")
    return options


def run_ending(summary: dict) -> str:
    """One line: how the run ended, where it recorded, and its exit code with the reasons for a 1."""
    how = {"stopped": f"stopped by {summary.get('signal') or 'request'}", "max_frames": "reached --max-frames",
           "source ended": "the source ended", "source failed": f"the source failed ({summary.get('source_error')})",
           "error": "stopped by an error"}.get(summary["ended_by"], summary["ended_by"])
    flushed = ", outputs flushed" if summary["ended_by"] == "stopped" else ""
    if summary.get("corrupt"):  # unreadable stills or frames that do not decode: skipped, not the end
        flushed += f" ({summary['corrupt']} corrupt frames skipped)"
    where = (summary.get("recording") or {}).get("folder", "?")
    code, reasons = summary["exit_code"], summary.get("exit_reasons") or []
    return (f"{how} after {summary['frames']} frames{flushed}; recorded in {where}; exit {code}"
            + (f": {'; '.join(reasons)}" if reasons else ""))
