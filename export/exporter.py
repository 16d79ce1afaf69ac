"""Export a trained run to edge formats, each with a manifest: a table of formats, one module per family."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.atomic import atomic_path
from edge.errors import ConfigError
from edge.manifest import FORMATS, MANIFEST_SUFFIX, CamSpec, Manifest, manifest_path_for

log = logging.getLogger("edgecam.export")


@dataclass(frozen=True)
class Format:
    key: str
    filename: str
    needs_calibration: bool


TABLE: dict[str, Format] = {
    "tflite-fp32": Format("tflite-fp32", "model-fp32.tflite", False),
    "tflite-fp16": Format("tflite-fp16", "model-fp16.tflite", False),
    "tflite-dynamic": Format("tflite-dynamic", "model-dynamic.tflite", False),
    "tflite-int8": Format("tflite-int8", "model-int8.tflite", True),
    "onnx-fp32": Format("onnx-fp32", "model-fp32.onnx", False),
    "onnx-int8": Format("onnx-int8", "model-int8.onnx", True),
}
assert tuple(TABLE) == FORMATS  # one list of formats for writer and reader


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        formats: keys of :data:`TABLE`, or ``("all",)``.
        calib: folder of real images for int8 calibration (class sub-folders welcome).
        calib_size: images used for calibration, stratified over classes.
        io: ``tflite-int8`` input/output type: ``uint8``, ``int8`` or ``float``.
        opset: ONNX opset.
        onnx_calibration: ``minmax``, ``entropy`` or ``percentile``.
        per_channel: per-channel weight quantisation for ``onnx-int8``.
        input_size: (h, w) the manifest declares (default: the training size).
            Artifacts keep free height/width, so a runtime may choose another.
        int8_float: layers of the int8 formats to keep in float: ``none`` (full
            int8), ``auto`` (chosen against ``int8_targets``, see
            :mod:`export.precision`) or ``LAYER,LAYER`` (Keras layer names).
        int8_targets: ``agreement=0.995,cam_r=0.97,max_float=0.25,margin=1``
            (any subset; the rest default) for ``auto``.
        int8_holdout: calibration-folder images held out (never calibrated on)
            to measure mixed precision against the float model.
        int8_candidates: ``auto`` ranks only this many layers, those the
            quantisation library's tensor statistics call worst (default: all).
        int8_ranking: how ``auto`` measures a layer's sensitivity:
            ``int8-one`` or ``float-one`` (see :func:`export.precision.search`).
    """

    formats: tuple[str, ...] = ("tflite-int8", "onnx-fp32")
    calib: str | None = None
    calib_size: int = 300
    io: str = "uint8"
    opset: int = 17
    onnx_calibration: str = "minmax"
    per_channel: bool = True
    input_size: tuple[int, int] | None = None
    seed: int = 0
    int8_float: str = "none"
    int8_targets: str | None = None
    int8_holdout: int = 300
    int8_candidates: int | None = None
    int8_ranking: str = "int8-one"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        fmts = tuple(self.formats)
        if fmts == ("all",):
            fmts = tuple(TABLE)
        unknown = [f for f in fmts if f not in TABLE]
        if unknown or not fmts:
            raise ConfigError(f"formats: expected some of {list(TABLE)} or 'all'; received {list(self.formats)}")
        object.__setattr__(self, "formats", fmts)
        if any(TABLE[f].needs_calibration for f in fmts) and not self.calib:
            need = [f for f in fmts if TABLE[f].needs_calibration]
            raise ConfigError(f"{need} need real calibration images: pass --calib DIR")
        if self.calib_size < 1:
            raise ConfigError(f"calib_size: expected >= 1; received {self.calib_size}")
        from export.precision import RANKINGS, parse_float_option, parse_targets

        parse_float_option(self.int8_float)  # fail at once on a malformed option
        parse_targets(self.int8_targets)
        if self.int8_holdout < 1:
            raise ConfigError(f"int8_holdout: expected >= 1 image; received {self.int8_holdout}")
        if self.int8_candidates is not None and self.int8_candidates < 1:
            raise ConfigError(f"int8_candidates: expected >= 1 layer or None; received {self.int8_candidates}")
        if self.int8_ranking not in RANKINGS:
            raise ConfigError(f"int8_ranking: expected one of {list(RANKINGS)}; received {self.int8_ranking!r}")

    @property
    def mixed(self) -> bool:
        """True when some int8 layers are to stay float."""
        from export.precision import parse_float_option

        return parse_float_option(self.int8_float)[0] != "none" and any(TABLE[f].needs_calibration for f in self.formats)


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("edgecam", "tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def export_run(run: str | Path, out_dir: str | Path, options: ExportOptions) -> list[Path]:
    """Export the model of a training run; return the manifest paths written.

    Example:
        >>> export_run("runs/demo/train", "runs/demo/export",
        ...            ExportOptions(formats=("tflite-int8",), calib="runs/demo/data/val"))  # doctest: +SKIP
    """
    from training.model import cam_weights, inference_model
    from training.train import load_run

    model, info = load_run(run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = info["task"]
    train_size = tuple(info["input_size"])
    size = tuple(options.input_size or train_size)
    from training.locate_data import load_head

    head = load_head(run)
    if head is not None:
        from training.locate import combined_inference

        inference = combined_inference(model, head)  # scores and features, plus centres and sizes
    else:
        inference = inference_model(model, task, dynamic=True)
    w, b, pooling = cam_weights(model)
    calibration = held_out = None
    if any(TABLE[f].needs_calibration for f in options.formats):
        from export.calibration import collect

        # one-vs-rest has no "rest" folder: only real class names can be checked for coverage
        negative = info.get("negative_label")
        expected = info["labels"] + ([negative] if negative and negative != "rest" else [])
        extra_images = options.int8_holdout if options.mixed else 0
        calibration = collect(options.calib, train_size, options.calib_size + extra_images, options.seed, expected)
        if options.mixed:
            calibration, held_out = calibration.hold_out(extra_images)
            log.info("%s; %d more held out to measure mixed precision", calibration.coverage_line(), len(held_out))
        else:
            log.info("%s", calibration.coverage_line())
    from export.saved import write_saved_model

    saved = write_saved_model(inference)
    fp32_onnx = None
    written, unmet = [], []
    try:
        for i, key in enumerate(options.formats, 1):
            fmt = TABLE[key]
            started = time.monotonic()
            log.info("export [%d/%d]: %s ...", i, len(options.formats), key)
            plan = None
            if key.startswith("tflite"):
                from export import tflite_format

                if key == "tflite-int8" and options.mixed:
                    plan = _mixed_plan(key, saved, None, calibration, held_out, model, info, train_size, options, out)
                    content = plan.content
                else:
                    content = tflite_format.convert(saved, key, calibration, options.io)
                inp, outs = tflite_format.describe(content, size)
                extra = {"signature": "serving_default"}
            else:
                from export import onnx_format

                if fp32_onnx is None:
                    fp32_onnx = onnx_format.convert_fp32(inference, options.opset)
                content = fp32_onnx
                if key == "onnx-int8" and options.mixed:
                    plan = _mixed_plan(key, saved, fp32_onnx, calibration, held_out, model, info, train_size, options, out)
                    content = plan.content
                elif key == "onnx-int8":
                    content = onnx_format.quantize_int8(fp32_onnx, calibration, options.onnx_calibration, options.per_channel)
                content = onnx_format.embed_metadata(content, _essentials(info, key, size, w, b, pooling))
                inp, outs = onnx_format.describe(content)
                extra = {"opset": options.opset}
            if calibration is not None and fmt.needs_calibration:
                extra["calibration"] = {"images": int(len(calibration.images)), "per_class": calibration.per_class,
                                        "source": calibration.source}
                if key == "onnx-int8":
                    extra["calibration"].update(method=options.onnx_calibration, per_channel=options.per_channel)
                else:
                    # a mixed artifact keeps float I/O so that a float `features` leaves it unrounded
                    extra["calibration"]["io"] = "float" if plan is not None else options.io
            if plan is not None:
                extra["int8_float"] = plan.to_manifest()
                if plan.mode == "auto" and not plan.met:
                    unmet.append(plan)
            extra["source_run"] = str(Path(run).resolve())
            extra["train_input_size"] = list(train_size)
            if info.get("frame_scale"):
                # trained on crops cut at this scale: the runtime resizes whole frames by it
                extra["frame_scale"] = float(info["frame_scale"])
            if head is not None:
                # how the runtime decodes the head's outputs (edge.locate.decode)
                extra["head"] = {k: info["head"][k] for k in ("kind", "stride", "threshold", "nms_iou", "size_encoding")}
            extra.update(options.extra)
            written.append(_write_pair(out / fmt.filename, content, info, key, inp, outs, size, w, b, pooling, extra))
            log.info("export [%d/%d]: %s written, %.1f MB in %.0f s", i, len(options.formats), key,
                     len(content) / 2**20, time.monotonic() - started)
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    if unmet:
        from export.precision import TargetsNotMet

        text = "\n\n".join(f"{p.format} (artifact written, manifest says met: false):\n{p.frontier()}" for p in unmet)
        raise TargetsNotMet(f"--int8-float auto: targets not met within the float cap; the frontier:\n{text}")
    return written


def _mixed_plan(key, saved, fp32_onnx, calibration, held_out, model, info, size, options: ExportOptions, out: Path):
    """Choose the float layers of one int8 format (see :mod:`export.precision`) and write its report."""
    import dataclasses
    import json

    from edge import atomic
    from edge.cam import DenseCAM
    from export import precision
    from training.model import cam_weights

    mode, names = precision.parse_float_option(options.int8_float)
    targets = precision.parse_targets(options.int8_targets)
    layers = precision.layer_inventory(model, info["task"], size)
    w, b, _ = cam_weights(model)
    cam = DenseCAM(w, b)
    with contextlib.ExitStack() as stack:
        if key == "tflite-int8":
            from export.tflite_format import TFLiteMixed

            if options.io != "float":
                log.info("tflite-int8 with float layers keeps float input and output (--io %s does not apply)", options.io)
            q = TFLiteMixed(saved, calibration.images, layers)
        else:
            from export.onnx_format import OnnxCalibration, OnnxMixed

            cal = stack.enter_context(OnnxCalibration(fp32_onnx, calibration, options.onnx_calibration))
            q = OnnxMixed(cal, layers, options.per_channel, debug_images=calibration.images[:16])
        ref_out = q.outputs(q.float_artifact(), held_out)  # a head's centres too: its fidelity is reported per step
        ref = precision.reference(cam, ref_out["scores"], ref_out["features"], info["thresholds"], info["task"],
                                  ref_out.get("centres"))
        latency = None
        if targets.max_latency is not None or targets.latency_size is not None:
            from export.precision_latency import meter_for

            targets = dataclasses.replace(targets, latency_size=targets.latency_size or tuple(options.input_size or size))
            run_fields = {k: info.get(k) for k in ("task", "labels", "thresholds", "negative_label", "head")}
            latency = stack.enter_context(meter_for(key, q, targets.latency_size, cam_weights(model), **run_fields)).ratio
        if mode == "auto":
            plan = precision.search(q, layers, ref, cam, held_out, targets, options.int8_candidates,
                                    ranking=options.int8_ranking, latency=latency)
        else:
            plan = precision.explicit(q, layers, precision.LayerNames(layers).check(names), ref, cam, held_out, targets,
                                      latency)
            log.info("%s: float layers %s: float share %.1f %%, %s", key, ", ".join(plan.float_layers),
                     100 * plan.float_share, plan.fidelity.line() + precision.latency_line(plan.latency))
    stem = TABLE[key].filename
    atomic.write_text(out / f"{stem}.precision.md", precision.report_markdown(plan))
    doc = {**plan.to_manifest(), "format": key, "frontier": [
        {"added": s.added, "float_layers": list(s.float_layers), "float_share": s.float_share, "latency": s.latency,
         **vars(s.fidelity)} for s in plan.steps], "sensitivity": list(plan.sensitivity),
        "not_taken_over_latency_cap": [{"layer": n, "latency": r} for n, r in plan.rejected]}
    atomic.write_text(out / f"{stem}.precision.json", json.dumps(doc, indent=2, default=float) + "\n")
    return plan


def _essentials(info, key, size, w, b, pooling) -> dict:
    outputs = {"scores": "scores", "features": "features"}
    if "head" in info:
        outputs.update(centres="centres", sizes="sizes")
    return {"format": key, "task": info["task"], "labels": info["labels"], "negative_label": info.get("negative_label"),
            "thresholds": info["thresholds"], "input_size": list(size), "input_range": [0, 255], "layout": "NHWC",
            "color": "RGB", "outputs": outputs, "cam_pooling": pooling,
            "cam_weights_shape": list(w.shape)}


def _write_pair(path: Path, content: bytes, info, key, inp, outs, size, w, b, pooling, extra) -> Path:
    """Artifact and manifest, both written to temporary files first; the manifest lands last.

    A crash at any point leaves either the previous pair, or the new artifact
    with no manifest yet (which nothing loads), never a half-written file.
    """
    import hashlib
    import json

    mpath = manifest_path_for(path)
    manifest = Manifest(
        format=key,
        artifact=path.name,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        task=info["task"],
        labels=tuple(info["labels"]),
        negative_label=info.get("negative_label"),
        thresholds=tuple(float(t) for t in info["thresholds"]),
        threshold_rule=info.get("threshold_rule", "fixed"),
        input=inp,
        outputs=outs,
        input_size=tuple(int(s) for s in size),
        preprocessing={"color": "RGB", "range": [0, 255], "layout": "NHWC", "resize": "stretch",
                       "normalisation": "inside the model: x / 127.5 - 1"},
        cam=CamSpec(w, b, pooling),
        tools=tool_versions(),
        extra=dict(extra, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
    )
    text = json.dumps(manifest.to_dict(), indent=2) + "\n"
    # Context managers exit innermost first: the artifact is renamed into
    # place, then its manifest.
    with atomic_path(mpath) as tmp_man, atomic_path(path) as tmp_art:
        tmp_art.write_bytes(content)
        tmp_man.write_text(text, encoding="utf-8")
    return mpath


def list_formats() -> list[str]:
    return list(TABLE)


__all__ = ["ExportOptions", "TABLE", "export_run", "list_formats", "MANIFEST_SUFFIX"]
