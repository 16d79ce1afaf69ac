"""``edgecam run`` (the device's own subcommand); training/commands.py and export/commands.py hold the others.

Each imports what it needs when called: ``edgecam run`` never imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

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


def cmd_run(a) -> int:
    from devices import load_profile, resolve_run_settings
    from edge.backends import BackendOptions, create_backend, runs_format
    from edge.cli_args import gpu_settings
    from edge.detector import Detector, DetectorOptions
    from edge.events import HysteresisOptions
    from edge.manifest import load_manifest
    from edge.pipeline import RunOptions, run
    from edge.recording import RecordingOptions, RunFolder
    from edge.sink_kinds import make_sinks, parse_sink_spec
    from edge.sources import CaptureMode, open_source
    from edge.tiling import TileSpec

    for spec in a.sink:  # an unknown --sink is refused before the model loads or a folder is made
        parse_sink_spec(spec)
    s = resolve_run_settings(a.device, backend=a.backend, threads=a.threads, source=a.source, **gpu_settings(a))
    preferred = [f.value for f in ([s.artifact_format] if s.artifact_format else [])]
    if a.device:  # the profile's fallbacks, in its order, where they fit the backend in use
        preferred += [f.value for f in load_profile(a.device).fallback_formats if s.backend is None or runs_format(s.backend.value, f.value)]
    preferred += ["tflite-int8", "tflite-fp32", "onnx-fp32", "onnx-int8", "tflite-fp16", "tflite-dynamic"]
    manifest_path = pick_manifest(a.model, preferred)
    manifest = load_manifest(manifest_path)
    # A model trained on crops of box-labelled frames runs every frame resized
    # by the scale it was trained at, whatever the frame's size: no fixed input
    # size then, and the detector takes the scale from the manifest itself.
    size, note = run_input_size(manifest.input_size, a.input_size, a.scale is not None or bool(manifest.extra.get("frame_scale")),
                                s.input_size, a.profile_size, a.device)
    if note:
        print(f"edgecam run: {note}", file=sys.stderr)
    # a profile's backend is used when it runs this artifact's format; else the format's default
    backend = a.backend or (s.backend.value if s.backend and runs_format(s.backend.value, manifest.format) else None)
    det_opts = DetectorOptions(resize=a.resize or "stretch", box_threshold=a.box_threshold, scale=a.scale)
    providers = tuple(s.execution_providers) or None
    # the profile's capture format reaches cameras (CameraSource, Picamera2Source); a pipeline
    # states its own caps (the profile is checked to agree), files and streams have theirs
    capture_size = (s.capture_width, s.capture_height) if s.capture_width and s.capture_height else None
    source = open_source(s.source or "synthetic", size=capture_size, fps=s.capture_fps)
    # --mode wins; else a profile's capture mode, which is meant for live sources; else
    # latest for live sources and all for files (a file never needs to drop frames)
    if a.mode:
        mode = CaptureMode(a.mode)
    elif source.is_live:
        mode = CaptureMode(s.capture_mode.value) if s.capture_mode else CaptureMode.LATEST
    else:
        mode = CaptureMode.ALL
    recording = dict(segment_s=a.segment_seconds or None, min_free_mb=a.min_free_mb, jsonl_max_mb=a.jsonl_max_mb or None,
                     jsonl_keep=a.jsonl_keep, outage_s=a.outage_seconds or None, retain=a.retain,
                     stills=a.stills)
    RecordingOptions(**recording)  # a bad value is refused before the model loads or a folder is made
    from edge.config import RUN_SETTINGS

    settings = {k: getattr(a, k) for k in RUN_SETTINGS if getattr(a, k, None) is not None}  # --config only
    checked = RunOptions.from_dict({"out_dir": a.out, **settings})  # likewise refused now; reconnect becomes BackoffOptions
    settings = {k: getattr(checked, k) for k in settings}
    mqtt = mqtt_options(a)  # likewise; None without --mqtt / --mqtt-config (paho is then never imported)
    live_auth = a.live_auth or os.environ.get("EDGECAM_LIVE_AUTH") or None
    if live_auth is not None:
        from edge.live import LiveAuth

        LiveAuth.parse(live_auth)  # a malformed spec is refused now, without echoing the secret
    thr = float(manifest.thresholds[0])
    enter = a.enter if a.enter is not None else thr
    leave = a.leave if a.leave is not None else max(0.0, enter * 0.6)
    # the TensorRT engine cache lives in the run's folder (--out), so the next run reuses it
    bopts = BackendOptions(threads=s.threads, providers=providers or ("CPUExecutionProvider",), input_size=size,
                           gpu=s.gpu, run_dir=Path(a.out))
    with _load_detector(Detector, lambda: create_backend(manifest, backend, bopts), det_opts, size) as det:
        folder = RunFolder.create(a.out)  # a folder of its own: a restart never overwrites an earlier run
        opts = RunOptions(
            out_dir=folder.path, mode=mode, stride=a.stride, tile=TileSpec(tile=tuple(size or (640, 640))) if a.tile else None,
            threshold=a.box_threshold, hysteresis=HysteresisOptions(enter=enter, leave=leave, min_frames=a.min_frames,
                                                                interrupt_s=a.event_timeout or None),
            live=a.live, allow_remote=a.allow_remote, live_auth=live_auth, live_clients=a.live_max_clients,
            live_idle_s=a.live_idle_seconds, stale_s=a.stale_seconds or 10.0, write_video=not a.no_video, max_frames=a.max_frames,
            recording=RecordingOptions(run_id=folder.run_id, **recording), **settings,
        )
        sinks = make_sinks(a.sink, folder.path)
        if mqtt is not None:
            from edge.mqtt_sink import MqttSink

            sinks.append(MqttSink(mqtt, folder.run_id, spool_dir=Path(a.out) / "mqtt-spool",
                                  model={"format": manifest.format, "artifact": Path(manifest.artifact).name,
                                         "sha256": manifest.sha256, "labels": list(manifest.labels)},
                                  thresholds={"decision": thr, "enter": enter, "leave": leave, "min_frames": a.min_frames}))
        at = f"{det.scale:g}x each frame's size" if det.scale else f"{size[0]}x{size[1]}"
        print(f"edgecam run: {manifest.format} via {det.backend.key} at {at}, source {source!r}, mode {mode.value}")
        print(f"edgecam run: recording into {folder.path} ({folder.root / 'latest'} points at it)", flush=True)
        progress = None
        if a.progress_seconds != 0:  # None: the default interval; a negative one is refused by Progress
            from edge.progress import Progress, known_length

            progress = Progress(total=known_length(source, a.stride, a.max_frames), interval_s=a.progress_seconds)
        try:
            summary = run(det, source, opts, sinks=sinks, on_frame=progress)
        finally:
            if progress is not None:
                progress.close()
    shown = ("run", "frames", "dropped", "corrupt", "reconnects", "seconds", "fps", "events", "p50_ms", "p95_ms", "ended_by",
             "signal", "errors", "sink_errors", "source_error", "recording", "mqtt", "exit_code", "exit_reasons")
    print_json({k: summary[k] for k in shown if k in summary})
    print(f"edgecam run: {run_ending(summary)}")
    return int(summary["exit_code"])


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
