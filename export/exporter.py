"""Export a trained run to edge formats, each with a manifest: a table of formats, one module per family.

The formats are the rows of :data:`edge.formats.FORMATS` (plugins included);
each row's exporter (:mod:`export.converters`) converts the model, and
:func:`export_run` writes every result beside its manifest.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.atomic import atomic_path
from edge.checks import positive_int
from edge.errors import ConfigError
from edge.formats import FORMATS, FormatExporter, FormatSpec, format_keys, format_spec, format_specs
from edge.manifest import MANIFEST_SUFFIX, CamSpec, Manifest, manifest_path_for
from edge.plugins import Entry
from export.converters import ExportContext

if TYPE_CHECKING:
    from training.run import RunInfo

log = logging.getLogger("edgecam.export")


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        formats: keys of the format table (:func:`edge.formats.format_keys`), or ``("all",)``.
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
            fmts = tuple(format_specs())  # every format that loads; a broken plugin is logged and left out
        unknown = [f for f in fmts if f not in format_keys()]
        if unknown or not fmts:
            raise ConfigError(f"formats: expected some of {format_keys()} or 'all'; received {list(self.formats)}")
        object.__setattr__(self, "formats", fmts)
        need = [f for f in fmts if format_spec(f).needs_calibration]
        if need and not self.calib:
            raise ConfigError(f"{need} need real calibration images: pass --calib DIR")
        positive_int("calib_size", self.calib_size)
        positive_int("opset", self.opset)
        from export.precision import RANKINGS, parse_float_option, parse_targets

        parse_float_option(self.int8_float)  # fail at once on a malformed option
        parse_targets(self.int8_targets)
        positive_int("int8_holdout", self.int8_holdout)
        positive_int("int8_candidates", self.int8_candidates, allow_none=True)
        if self.int8_ranking not in RANKINGS:
            raise ConfigError(f"int8_ranking: expected one of {list(RANKINGS)}; received {self.int8_ranking!r}")

    @property
    def mixed(self) -> bool:
        """True when some int8 layers are to stay float."""
        from export.precision import parse_float_option

        return parse_float_option(self.int8_float)[0] != "none" and any(format_spec(f).needs_calibration for f in self.formats)


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("edgecam", "tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def export_run(run: str | Path, out_dir: str | Path, options: ExportOptions) -> list[Path]:
    """Export the model of a training run; return the manifest paths written.

    Every format is a row of :data:`edge.formats.FORMATS` whose exporter
    (:mod:`export.converters`, or a plugin's) converts the model; this loop
    only writes each result with its manifest.

    Example:
        >>> export_run("runs/demo/train", "runs/demo/export",
        ...            ExportOptions(formats=("tflite-int8",), calib="runs/demo/data/val"))  # doctest: +SKIP
    """
    from export.saved import write_saved_model
    from training.run import load_run

    model, info = load_run(run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inference = _inference(run, model, info, options)
    calibration, held_out = _calibration(info, options)
    saved = write_saved_model(inference)
    ctx = ExportContext(options=options, info=info, inference=inference, saved=saved,
                        size=tuple(options.input_size or info.input_size), cam=_cam(model), calibration=calibration)
    if options.mixed:
        ctx.mixed_plan = lambda key, fp32_onnx: _mixed_plan(key, ctx, fp32_onnx, held_out, model, out)
    written, unmet = [], []
    try:
        for i, key in enumerate(options.formats, 1):
            started = time.monotonic()
            log.info("export [%d/%d]: %s ...", i, len(options.formats), key)
            path, size_bytes, plan = _export_one(format_spec(key), ctx, run, out)
            written.append(path)
            if plan is not None and plan.mode == "auto" and not plan.met:
                unmet.append(plan)
            log.info("export [%d/%d]: %s written, %.1f MB in %.0f s", i, len(options.formats), key,
                     size_bytes / 2**20, time.monotonic() - started)
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    if unmet:
        from export.precision import TargetsNotMet

        text = "\n\n".join(f"{p.format} (artifact written, manifest says met: false):\n{p.frontier()}" for p in unmet)
        raise TargetsNotMet(f"--int8-float auto: targets not met within the float cap; the frontier:\n{text}")
    return written


def _inference(run, model, info: RunInfo, options: ExportOptions):
    """The Keras model to export, with free height and width (and the localisation head's outputs, for a head run)."""
    from training.locate_data import load_head
    from training.model import inference_model

    head = load_head(run)
    if head is not None:
        from training.locate import combined_inference

        return combined_inference(model, head)  # scores and features, plus centres and sizes
    return inference_model(model, info.task, dynamic=True)


def _cam(model) -> CamSpec:
    from training.model import cam_weights

    return CamSpec(*cam_weights(model))


def _calibration(info: RunInfo, options: ExportOptions):
    """(calibration images, images held out to measure mixed precision); (None, None) when no format calibrates."""
    if not any(format_spec(f).needs_calibration for f in options.formats):
        return None, None
    from export.calibration import collect

    # one-vs-rest has no "rest" folder: only real class names can be checked for coverage
    negative = info.negative_label
    expected = list(info.labels) + ([negative] if negative and negative != "rest" else [])
    extra_images = options.int8_holdout if options.mixed else 0
    calibration = collect(options.calib, info.input_size, options.calib_size + extra_images, options.seed, expected)
    if not options.mixed:
        log.info("%s", calibration.coverage_line())
        return calibration, None
    calibration, held_out = calibration.hold_out(extra_images)
    log.info("%s; %d more held out to measure mixed precision", calibration.coverage_line(), len(held_out))
    return calibration, held_out


def _export_one(spec: FormatSpec, ctx: ExportContext, run, out: Path) -> tuple[Path, int, Any]:
    """Convert one format through its row's exporter and write it with its manifest: (manifest path, bytes, plan)."""
    exporter = _exporter(spec)
    conv = exporter.convert(spec, ctx)
    inp, outs = exporter.describe(conv.content, ctx)
    extra = dict(conv.extra)
    if ctx.calibration is not None and spec.needs_calibration:
        cal = ctx.calibration
        extra["calibration"] = {"images": int(len(cal.images)), "per_class": cal.per_class, "source": cal.source,
                                **extra.get("calibration", {})}
    if conv.plan is not None:
        extra["int8_float"] = conv.plan.to_manifest()
    extra["source_run"] = str(Path(run).resolve())
    info = ctx.info
    if info.frame_scale:
        # trained on crops cut at this scale: the runtime resizes whole frames by it
        extra["frame_scale"] = float(info.frame_scale)
    if info.head is not None:
        # how the runtime decodes the head's outputs (edge.locate.decode)
        extra["head"] = {k: info.head[k] for k in ("kind", "stride", "threshold", "nms_iou", "size_encoding")}
        # the extra scales the runtime also runs the head at (edge.locate.HeadPass), chosen on validation frames
        extra["head"]["scales"] = list(info.head.get("scales", []))
    extra.update(ctx.options.extra)
    path = _write_pair(out / spec.filename, conv.content, _manifest(spec, conv.content, ctx, inp, outs, exporter, extra))
    return path, len(conv.content), conv.plan


def _exporter(spec: FormatSpec) -> FormatExporter:
    """The :class:`FormatExporter` a format row names (a plugin's too); a failure names the distribution."""
    exporter = Entry(spec.key, spec.exporter, FORMATS.get(spec.key).dist).load()
    if not isinstance(exporter, FormatExporter):
        raise ConfigError(f"format {spec.key!r}: exporter {spec.exporter} is {exporter!r}, "
                          "expected an edge.formats.FormatExporter")
    return exporter


def _mixed_plan(key, ctx: ExportContext, fp32_onnx, held_out, model, out: Path):
    """Choose the float layers of one int8 format (see :mod:`export.precision`) and write its report."""
    import dataclasses
    import json

    from edge import atomic
    from edge.cam import DenseCAM
    from export import precision

    options, info, calibration = ctx.options, ctx.info, ctx.calibration
    size = tuple(info.input_size)  # the trained size: layer MACs, and the default timing size
    spec = format_spec(key)
    mode, names = precision.parse_float_option(options.int8_float)
    targets = precision.parse_targets(options.int8_targets)
    layers = precision.layer_inventory(model, info.task, size)
    cam = DenseCAM(ctx.cam.weights, ctx.cam.bias)
    with contextlib.ExitStack() as stack:
        if spec.family == "tflite":
            from export.tflite_format import TFLiteMixed

            if options.io != "float":
                log.info("tflite-int8 with float layers keeps float input and output (--io %s does not apply)", options.io)
            q = TFLiteMixed(ctx.saved, calibration.images, layers)
        else:
            from export.onnx_format import OnnxCalibration, OnnxMixed

            cal = stack.enter_context(OnnxCalibration(fp32_onnx, calibration, options.onnx_calibration))
            q = OnnxMixed(cal, layers, options.per_channel, debug_images=calibration.images[:16])
        ref_out = q.outputs(q.float_artifact(), held_out)  # a head's centres too: its fidelity is reported per step
        ref = precision.reference(cam, ref_out["scores"], ref_out["features"], list(info.thresholds), info.task,
                                  ref_out.get("centres"))
        latency = None
        if targets.max_latency is not None or targets.latency_size is not None:
            from export.precision_latency import meter_for

            targets = dataclasses.replace(targets, latency_size=targets.latency_size or tuple(options.input_size or size))
            run_fields = {k: getattr(info, k) for k in ("task", "labels", "thresholds", "negative_label", "head")}
            describe = _exporter(spec).describe  # the row's own describer, at the timing size
            timing_ctx = dataclasses.replace(ctx, size=targets.latency_size)
            meter = meter_for(key, q, targets.latency_size, ctx.cam, lambda content: describe(content, timing_ctx),
                              **run_fields)
            latency = stack.enter_context(meter).ratio
        if mode == "auto":
            plan = precision.search(q, layers, ref, cam, held_out, targets, options.int8_candidates,
                                    ranking=options.int8_ranking, latency=latency)
        else:
            plan = precision.explicit(q, layers, precision.LayerNames(layers).check(names), ref, cam, held_out, targets,
                                      latency)
            log.info("%s: float layers %s: float share %.1f %%, %s", key, ", ".join(plan.float_layers),
                     100 * plan.float_share, plan.fidelity.line() + precision.latency_line(plan.latency))
    stem = spec.filename
    atomic.write_text(out / f"{stem}.precision.md", precision.report_markdown(plan))
    doc = {**plan.to_manifest(), "format": key, "frontier": [
        {"added": s.added, "float_layers": list(s.float_layers), "float_share": s.float_share, "latency": s.latency,
         **vars(s.fidelity)} for s in plan.steps], "sensitivity": list(plan.sensitivity),
        "not_taken_over_latency_cap": [{"layer": n, "latency": r} for n, r in plan.rejected]}
    atomic.write_text(out / f"{stem}.precision.json", json.dumps(doc, indent=2, default=float) + "\n")
    return plan


def _manifest(spec: FormatSpec, content: bytes, ctx: ExportContext, inp, outs, exporter: FormatExporter,
              extra: dict) -> Manifest:
    import hashlib

    info = ctx.info
    return Manifest(
        format=spec.key,
        artifact=spec.filename,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        task=info.task,
        labels=tuple(info.labels),
        negative_label=info.negative_label,
        thresholds=tuple(info.thresholds),
        threshold_rule=info.threshold_rule,
        input=inp,
        outputs=outs,
        input_size=tuple(int(s) for s in ctx.size),
        preprocessing={"color": "RGB", "range": [0, 255], "layout": "NHWC", "resize": "stretch",
                       "normalisation": "inside the model: x / 127.5 - 1"},
        cam=ctx.cam,
        tools=tool_versions(),
        signature=exporter.signature,
        train_input_size=tuple(info.input_size),
        extra=dict(extra, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
    )


def _write_pair(path: Path, content: bytes, manifest: Manifest) -> Path:
    """Artifact and manifest, both written to temporary files first; the manifest lands last.

    A crash at any point leaves either the previous pair, or the new artifact
    with no manifest yet (which nothing loads), never a half-written file.
    """
    import json

    mpath = manifest_path_for(path)
    text = json.dumps(manifest.to_dict(), indent=2) + "\n"
    # Context managers exit innermost first: the artifact is renamed into
    # place, then its manifest.
    with atomic_path(mpath) as tmp_man, atomic_path(path) as tmp_art:
        tmp_art.write_bytes(content)
        tmp_man.write_text(text, encoding="utf-8")
    return mpath


def list_formats() -> list[str]:
    """Every format ``--formats`` accepts: the keys of :data:`edge.formats.FORMATS`."""
    return format_keys()


__all__ = ["ExportOptions", "export_run", "list_formats", "MANIFEST_SUFFIX"]
