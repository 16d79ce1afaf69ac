"""Export a trained run to edge formats, each with a manifest: a table of formats, one module per family."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import shutil
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
    inference = inference_model(model, task, dynamic=True)
    w, b, pooling = cam_weights(model)
    calibration = None
    if any(TABLE[f].needs_calibration for f in options.formats):
        from export.calibration import collect

        # one-vs-rest has no "rest" folder: only real class names can be checked for coverage
        negative = info.get("negative_label")
        expected = info["labels"] + ([negative] if negative and negative != "rest" else [])
        calibration = collect(options.calib, train_size, options.calib_size, options.seed, expected)
        print(calibration.coverage_line())
    from export.saved import write_saved_model

    saved = write_saved_model(inference)
    fp32_onnx = None
    written = []
    try:
        for key in options.formats:
            fmt = TABLE[key]
            log.info("export: %s", key)
            if key.startswith("tflite"):
                from export import tflite_format

                content = tflite_format.convert(saved, key, calibration, options.io)
                inp, outs = tflite_format.describe(content, size)
                extra = {"signature": "serving_default"}
            else:
                from export import onnx_format

                if fp32_onnx is None:
                    fp32_onnx = onnx_format.convert_fp32(inference, options.opset)
                content = fp32_onnx
                if key == "onnx-int8":
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
                    extra["calibration"]["io"] = options.io
            extra["source_run"] = str(Path(run).resolve())
            extra["train_input_size"] = list(train_size)
            if info.get("frame_scale"):
                # trained on crops cut at this scale: the runtime resizes whole frames by it
                extra["frame_scale"] = float(info["frame_scale"])
            extra.update(options.extra)
            written.append(_write_pair(out / fmt.filename, content, info, key, inp, outs, size, w, b, pooling, extra))
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    return written


def _essentials(info, key, size, w, b, pooling) -> dict:
    return {"format": key, "task": info["task"], "labels": info["labels"], "negative_label": info.get("negative_label"),
            "thresholds": info["thresholds"], "input_size": list(size), "input_range": [0, 255], "layout": "NHWC",
            "color": "RGB", "outputs": {"scores": "scores", "features": "features"}, "cam_pooling": pooling,
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
