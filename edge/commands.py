"""Implementations of the ``edgecam`` subcommands; each imports what it needs when called."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from edge.cli import print_json
from edge.errors import ConfigError, EdgecamError, ManifestError

log = logging.getLogger("edgecam")


def cmd_demo(a) -> int:
    from training.demo import DemoOptions, run_demo

    opts = DemoOptions(out=a.out, seed=a.seed, weights=a.weights, epochs=a.epochs, frames=a.frames, quick=a.quick)
    run_demo(opts)
    return 0


def alpha_for(alpha: float | None, weights: str | None) -> float:
    """An explicit --alpha, else the width in a Keras weights file name (``..._1.0_224_no_top.h5``), else 0.35."""
    import re

    if alpha is not None:
        return alpha
    m = re.search(r"_(\d\.\d+)_\d+_no_top", Path(weights or "").name)
    return float(m.group(1)) if m else 0.35


def _train_head(a) -> int:
    """``edgecam train DATA... --head locate --from-run RUN``: the localisation head on a classifier run's encoder."""
    from training.locate_data import LocateOptions, train_locate

    if not a.from_run:
        raise ConfigError("train --head locate: expected --from-run RUN (a classifier trained on box-labelled frames)")
    if not a.positive:
        raise ConfigError("train --head locate: expected --positive CLASS[,CLASS...] (the vessel classes)")
    opts = LocateOptions(from_run=a.from_run, datasets=tuple(a.data), out=a.out, epochs=a.head_epochs,
                         crop=a.head_crop, per_frame=a.head_crops, background=a.head_background,
                         positive=tuple(p for p in a.positive.split(",") if p),
                         time_budget_s=a.time_budget, seed=a.seed)
    run = train_locate(opts)
    print(f"run: {a.out}  ({run['head']['seconds']:.0f} s)")
    return 0


def cmd_train(a) -> int:
    from edge.datasets import is_box_dataset
    from training.config import TrainConfig

    if getattr(a, "head", None):
        return _train_head(a)
    a.alpha = alpha_for(a.alpha, a.weights)
    boxes = is_box_dataset(a.data[0])
    if not boxes and len(a.data) > 1:
        raise ConfigError(f"train: several DATA folders are read only as box-labelled datasets; {a.data[0]} is not one")
    cfg = TrainConfig(
        data=a.data[0], out=a.out, val=a.val, val_split=a.val_split, positive=a.positive, csv=a.csv,
        input_size=a.input_size, alpha=a.alpha, weights=a.weights,
        pooling=a.pooling or ("cell" if boxes else "max"), dropout=a.dropout,
        batch_size=a.batch_size, epochs=a.epochs, lr=a.lr, schedule=a.schedule, finetune_epochs=a.finetune_epochs,
        finetune_blocks=a.finetune_blocks, finetune_lr=a.finetune_lr, class_weight=a.class_weight,
        augment=a.augment, weather=a.weather, mixup=a.mixup, patience=a.patience, monitor=a.monitor,
        threshold_rule=a.threshold_rule, target_recall=a.target_recall, seed=a.seed, skip_bad=a.skip_bad,
        max_images=a.max_images, time_budget=a.time_budget, verbose=1 if sys.stdout.isatty() else 2,
    )
    if a.find_lr or a.sanity:
        from training.checks import find_lr, sanity

        if a.sanity:
            print(json.dumps(sanity(cfg)))
        if a.find_lr:
            result = find_lr(cfg)
            print(f"suggested learning rate: {result['suggested_lr']:.3g} (plot: {Path(cfg.out) / 'plots' / 'lr_finder.png'})")
            return 0
    from training.train import distribution_strategy, train

    if boxes:
        from training.boxtrain import BoxTrainOptions, train_boxes

        if not a.positive:
            raise ConfigError("train: box-labelled data needs --positive CLASS[,CLASS...] (the vessel classes)")
        opts = BoxTrainOptions(datasets=tuple(a.data), positive=tuple(p for p in a.positive.split(",") if p),
                               label=a.label, scale=a.scale, test_fraction=a.test_fraction, split_by=a.split_by, split_file=a.split_file,
                               mine_frames=a.mine_frames)
        result = train_boxes(cfg, opts, strategy=distribution_strategy(a.strategy), resume=a.resume)
    else:
        result = train(cfg, strategy=distribution_strategy(a.strategy), resume=a.resume)
    m = result.metrics
    print(f"run: {result.run_dir}  ({result.seconds:.0f} s)")
    for k in ("accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "threshold", "threshold_rule"):
        if k in m:
            print(f"  {k:<18} {m[k]:.4f}" if isinstance(m[k], float) else f"  {k:<18} {m[k]}")
    return 0


def cmd_evaluate(a) -> int:
    from edge.datasets import is_box_dataset

    if is_box_dataset(a.data[0]):
        return _evaluate_boxes(a)
    if len(a.data) > 1:
        raise ConfigError(f"evaluate: several DATA folders are read only as box-labelled datasets; {a.data[0]} is not one")
    from training.evaluate import evaluate_path

    r = evaluate_path(a.model, a.data[0], a.positive, a.tta, skip_bad=a.skip_bad)
    if a.json:
        print_json(r)
        return 0
    tta = f", TTA over {' and '.join(r['tta'])} flips" if r["tta"] else ""
    skipped = f", {r['skipped']} unreadable left out" if r.get("skipped") else ""
    print(f"{r['model']} on {r['data']} ({r['n']} images{tta}{skipped})")
    for k in ("accuracy", "exact_match", "balanced_accuracy", "roc_auc", "pr_auc", "threshold", "threshold_rule"):
        if k in r:
            v = r[k]
            print(f"  {k:<18} {v:.4f}" if isinstance(v, float) else f"  {k:<18} {v}")
    for name, pc in r.get("per_class", {}).items():
        if "precision" in pc:
            print(f"  {name:<18} P {pc['precision']:.3f}  R {pc['recall']:.3f}  F1 {pc['f1']:.3f}  n {pc['support']}")
    return 0


def _evaluate_boxes(a) -> int:
    """Localisation figures of every artifact of ``a.model`` on box-labelled frames (no TensorFlow needed)."""
    from edge.boxeval import BoxEvalOptions, evaluate_boxes, manifests_of

    if not a.positive:
        raise ConfigError("evaluate: box-labelled data needs --positive CLASS[,CLASS...] (the vessel classes)")
    split = a.split
    if split is None and Path(a.model).is_dir() and (Path(a.model) / "split.json").is_file():
        split = str(Path(a.model) / "split.json")  # a run folder: judge it on its own held-out frames
    opts = BoxEvalOptions(positive=tuple(p for p in a.positive.split(",") if p), split=split, split_name=a.split_name,
                          scale=a.scale, grid=a.grid, threshold=a.threshold)
    out = a.out or str((Path(a.model) if Path(a.model).is_dir() else manifests_of(a.model)[0].parent) / "boxeval")
    doc = evaluate_boxes(a.model, list(a.data), opts, out)
    if a.json:
        print_json(doc)
        return 0
    print(Path(out, "boxeval.md").read_text())
    print(f"written: {out}/boxeval.json, boxeval.md, pr_*.png, frames_*.png")
    return 0


def cmd_export(a) -> int:
    from export.exporter import ExportOptions, export_run

    opts = ExportOptions(
        formats=tuple(f.strip() for f in a.formats.split(",") if f.strip()), calib=a.calib, calib_size=a.calib_size,
        io=a.io, opset=a.opset, onnx_calibration=a.onnx_calibration, per_channel=not a.no_per_channel,
        input_size=a.input_size, int8_float=a.int8_float, int8_targets=a.int8_targets, int8_holdout=a.int8_holdout,
    )
    out = a.out or str(Path(a.run) / "export")
    for m in export_run(a.run, out, opts):
        print(m)
    return 0


def cmd_verify(a) -> int:
    from export.verify import verify

    r = verify(a.dir, a.data, a.positive, a.gate, a.model, a.limit)
    if not a.json:
        from export.verify import to_markdown

        print(to_markdown(r))
        print(f"report: {Path(a.dir) / 'parity.md'}, {Path(a.dir) / 'parity.json'}")
    f = None
    if a.frames:
        from export.verify import frame_fidelity

        f = frame_fidelity(a.dir, a.frames, a.frame_size, a.frames_limit, a.model)
        if not a.json:
            print(Path(a.dir, "frames.md").read_text())
    if a.json:  # one document, so the output parses: the parity report, with the frame fidelity under a key
        print_json(r if f is None else {**r, "frame_fidelity": f})
    text = sys.stderr if a.json else sys.stdout  # the verdict is for people; with --json stdout is JSON alone
    failed = [f"{row['format']}: {'; '.join(row['failures'])}" for row in r["artifacts"] if row["failures"]]
    if failed:
        print("verify: FAILED\n  " + "\n  ".join(failed), file=text)
        return 1
    print("verify: all artifacts pass their gates", file=text)
    return 0


def cmd_robustness(a) -> int:
    """Class folders: Keras and every artifact (export.robustness); box-labelled frames: the artifacts only."""
    from edge.datasets import is_box_dataset
    from edge.robustness import RobustnessOptions

    def numbers(text: str, kind, flag: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"{flag}: expected a comma list of numbers; received {text!r}") from None

    opts = RobustnessOptions(corruptions=tuple(a.corruptions.split(",")) if a.corruptions != "all" else "all",
                             severities=numbers(a.severities, int, "--severities"), seed=a.seed, limit=a.limit,
                             eps=numbers(a.eps, float, "--eps"), pgd_steps=a.pgd_steps, grid_severity=a.grid_severity,
                             formats=tuple(f.strip() for f in a.formats.split(",") if f.strip()) if a.formats else None,
                             baseline=a.baseline, threshold=a.threshold)
    if is_box_dataset(a.data[0]):
        from edge.boxeval import BoxEvalOptions, manifests_of
        from edge.robustness import box_robustness

        if not a.positive:
            raise ConfigError("robustness: box-labelled data needs --positive CLASS[,CLASS...] (the vessel classes)")
        split = a.split
        if split is None and Path(a.model).is_dir() and (Path(a.model) / "split.json").is_file():
            split = str(Path(a.model) / "split.json")  # a run folder: its own held-out frames
        box = BoxEvalOptions(positive=tuple(p for p in a.positive.split(",") if p), split=split, split_name=a.split_name,
                             scale=a.scale, grid=0, threshold=a.threshold)
        out = a.out or str(manifests_of(a.model)[0].parent / "robustness")
        doc = box_robustness(a.model, list(a.data), box, opts, out)
    else:
        if len(a.data) > 1:
            raise ConfigError(f"robustness: several DATA folders are read only as box-labelled datasets; {a.data[0]} is not one")
        from edge.boxeval import manifests_of
        from export.robustness import robustness

        out = a.out or str(manifests_of(a.model)[0].parent / "robustness")
        doc = robustness(a.model, a.data[0], a.positive, opts, a.run, out)
    if a.json:
        print_json(doc)
        return 0
    from edge.robustreport import to_markdown

    print(to_markdown(doc))
    print(f"written: {out}/robustness.json, robustness.md, severity_*.png, adversarial.png, grid.png")
    return 0


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
    from edge.backends import BackendOptions, create_backend
    from edge.cli import gpu_settings
    from edge.detector import Detector, DetectorOptions
    from edge.events import HysteresisOptions
    from edge.manifest import load_manifest
    from edge.pipeline import RunOptions, run
    from edge.recording import RecordingOptions, RunFolder
    from edge.sources import CaptureMode, open_source
    from edge.tiling import TileSpec

    s = resolve_run_settings(a.device, backend=a.backend, threads=a.threads, source=a.source, **gpu_settings(a))
    preferred = [f.value for f in ([s.artifact_format] if s.artifact_format else [])]
    if a.device:  # the profile's fallbacks, in its order, where they fit the backend in use
        preferred += [f.value for f in load_profile(a.device).fallback_formats if s.backend is None or f.backend is s.backend]
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
    backend = a.backend or (s.backend.value if s.backend and s.backend.value in ("litert", "onnxruntime") and
                            manifest.format.startswith("tflite" if s.backend.value == "litert" else "onnx") else None)
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
        sinks = []
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
