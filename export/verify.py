"""Parity report: every artifact against the Keras model on the same real images.

Scores (max/mean absolute difference, decision agreement, accuracy, balanced
accuracy and ROC AUC with deltas), CAM fidelity (Pearson correlation, IoU of
the top-20 % regions, peak displacement in feature cells), a collapse check
and a quick latency figure. Gates per format make the command fail in CI.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge import atomic
from edge.checks import positive_int
from edge.errors import ConfigError, DataError
from edge.formats import Gates, format_specs
from edge.manifest import find_manifests, load_manifest
from edge.metrics import pearson, top_region_iou  # heatmap agreement; edge/metrics.py holds them for export/precision.py too

log = logging.getLogger("edgecam.export")

GATE_KEYS = Gates.keys()


def default_gates() -> dict[str, Gates]:
    """Each format's own gates, from its row of the format table (:data:`edge.formats.FORMATS`)."""
    return {key: spec.gates for key, spec in format_specs().items()}


def __getattr__(name: str):
    # the defaults as they were once spelled: derived from the format table now, not copied
    if name == "DEFAULT_GATES":
        return {key: g.to_dict() for key, g in default_gates().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_gates(path: str | Path | None) -> dict[str, Gates]:
    """Defaults, overridden per format (or for every format with ``"*"``) by a JSON file."""
    gates = default_gates()
    if path is None:
        return gates
    try:
        user = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"gate file {path}: expected a JSON object of format -> gates; {exc}") from exc
    if not isinstance(user, dict):
        raise ConfigError(f"gate file {path}: expected a JSON object of format -> gates; received {type(user).__name__}")
    for fmt, values in user.items():
        if fmt != "*" and fmt not in gates:
            raise ConfigError(f"gate file {path}: unknown format {fmt!r}; expected one of {sorted(gates)} or '*'")
        for target in (gates if fmt == "*" else [fmt]):
            gates[target] = gates[target].updated(values, f"gate file {path}, {fmt}")
    return gates


def peak_shift(a: np.ndarray, b: np.ndarray) -> float:
    ya, xa = np.unravel_index(int(np.argmax(a)), a.shape)
    yb, xb = np.unravel_index(int(np.argmax(b)), b.shape)
    return float(np.hypot(ya - yb, xa - xb))


@dataclass(frozen=True)
class Reference:
    """Keras outputs on the verification images."""

    images: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    cams: np.ndarray
    centres: np.ndarray | None = None  # the localisation head's centre heatmaps, for a run with a head


def keras_reference(run: str | Path, images: np.ndarray, targets: np.ndarray, task: str) -> Reference:
    from edge.cam import DenseCAM
    from training.model import cam_weights, inference_model
    from training.run import load_run

    model, _ = load_run(run)
    inf = inference_model(model, task, input_size=images.shape[1:3])
    w, b, _ = cam_weights(model)
    cam = DenseCAM(w, b)
    scores, cams = [], []
    # 64 stills at a time, fewer for whole frames: the early feature maps of a 1088x1920 frame take gigabytes
    step = int(np.clip(64 * 96 * 96 // (images.shape[1] * images.shape[2]), 1, 64))
    for i in range(0, len(images), step):
        out = inf.predict(images[i : i + step].astype(np.float32), verbose=0)
        scores.append(out["scores"])
        cams += [cam.raw(f, int(c)) for f, c in zip(out["features"], out["scores"].argmax(1))]
    return Reference(images, targets, np.concatenate(scores), np.stack(cams), _keras_centres(run, model, images, step))


def _keras_centres(run, model, images: np.ndarray, step: int) -> np.ndarray | None:
    """The head's centre heatmaps in Keras, or None for a run without a localisation head."""
    from training.locate import combined_inference
    from training.locate_data import load_head

    head = load_head(run)
    if head is None:
        return None
    inf = combined_inference(model, head, dynamic=False, input_size=images.shape[1:3])
    return np.concatenate([np.asarray(inf(images[i : i + step].astype(np.float32), training=False)["centres"])[..., 0]
                           for i in range(0, len(images), step)])


@dataclass(frozen=True)
class HeadParity:
    """The localisation head's centre heatmaps of an artifact against Keras."""

    head_centre_correlation: float  # mean over images
    head_centre_max_abs_diff: float
    head_same_peak: float  # share of images whose heatmap peaks in the same cell


def head_parity(manifest_path: Path, ref: Reference) -> HeadParity:
    """The artifact's centre heatmaps against Keras: mean correlation, largest difference, same peak cell."""
    from edge.detector import Detector, DetectorOptions

    got = []
    with Detector.from_manifest(manifest_path, input_size=tuple(ref.images.shape[1:3]),
                                options=DetectorOptions(warmup=1)) as det:
        for i in range(0, len(ref.images), 16):
            inf = det.infer([det.prepare(img) for img in ref.images[i : i + 16]])
            got.append(det.backend.dequantize("centres", inf.head["centres"])[..., 0])
    got = np.concatenate(got)
    corr = [pearson(a, b) for a, b in zip(got, ref.centres)]
    same_peak = [np.argmax(a) == np.argmax(b) for a, b in zip(got, ref.centres)]
    return HeadParity(float(np.nanmean(corr)), float(np.abs(got - ref.centres).max()), float(np.mean(same_peak)))


def runtime_outputs(manifest_path: Path, images: np.ndarray, classes: np.ndarray, latency_runs: int = 20
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """(scores, raw CAMs, ms per image) of an artifact through the runtime's own path.

    The frames go through :class:`edge.detector.Detector` (its input fitting,
    casting and backend) and the CAM through its :class:`edge.cam.DenseCAM`,
    straight from an int8 feature map where the artifact gives one: what is
    verified is what ships. The CAM is taken for ``classes`` (the reference's
    top class) so the two maps answer the same question.
    """
    from edge.detector import Detector, DetectorOptions

    scores, cams = [], []
    with Detector.from_manifest(manifest_path, input_size=tuple(images.shape[1:3]), options=DetectorOptions(warmup=1)) as det:
        be = det.backend
        for i in range(0, len(images), 16):
            inf = det.infer([det.prepare(img) for img in images[i : i + 16]])
            scores.append(be.dequantize("scores", inf.scores))
            fq = be.output_quantization("features", inf.features)
            for f, c in zip(inf.features, classes[i : i + 16]):
                cams.append(det.cam.raw(f, int(c)) if fq is None else det.cam.raw_quantized(f, int(c), fq.scale, fq.zero_point))
        one = be.prepare(images[:1])
        be.infer_prepared(one)
        t0 = time.perf_counter()
        for _ in range(latency_runs):
            be.infer_prepared(one)
        latency = (time.perf_counter() - t0) * 1e3 / latency_runs
    return np.concatenate(scores), np.stack(cams), latency


@dataclass
class ParityRow:
    """Every parity figure of one artifact against the Keras model; one row of ``parity.json``.

    ``agreement_far`` / ``agreement_near``: decision agreement on the images
    whose Keras logit is at least / less than the margin from the threshold's.
    ``cam_correlation_positive``: on the images Keras calls positive.
    ``failures``: the gates it fails (filled by :func:`verify`).
    """

    format: str
    artifact: str
    size_bytes: int
    float_layers: list[str]
    float_mac_share: float
    mixed_targets: dict[str, float] | None
    mixed_met: bool | None
    max_abs_score_diff: float
    mean_abs_score_diff: float
    agreement: float
    near_boundary: int
    agreement_far: float
    agreement_near: float
    accuracy: float
    balanced_accuracy: float
    roc_auc: float
    keras_accuracy: float
    keras_balanced_accuracy: float
    keras_roc_auc: float
    balanced_accuracy_delta: float
    roc_auc_delta: float
    cam_correlation: float
    cam_correlation_min: float
    positives: int
    cam_correlation_positive: float
    cam_top20_iou: float
    cam_peak_shift_cells: float
    collapsed: bool
    latency_ms: float
    head: HeadParity | None = None
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON row: the figures, the head's (for a run with one) and the failures last."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("head", "failures")}
        return {**d, **(asdict(self.head) if self.head is not None else {}), "failures": list(self.failures)}


def compare_artifact(manifest_path: Path, ref: Reference, latency_runs: int = 20, margin: float = 1.0) -> ParityRow:
    """Every parity figure of one artifact against the reference.

    Agreement is also given far from the decision boundary (the Keras logit
    at least ``margin`` from the threshold's): flips near it are expected,
    flips far from it are the defect. CAM correlation is also given on the
    images Keras calls positive, where the heatmap is what a user looks at.
    """
    m = load_manifest(manifest_path)
    scores, cams, latency = runtime_outputs(manifest_path, ref.images, ref.scores.argmax(1), latency_runs)
    mixed = m.mixed_precision
    return ParityRow(
        format=m.format, artifact=m.artifact, size_bytes=m.size_bytes,
        float_layers=list(mixed.float_layers) if mixed else [], float_mac_share=mixed.float_mac_share if mixed else 0.0,
        mixed_targets=dict(mixed.targets) if mixed else None, mixed_met=mixed.met if mixed else None,
        **_score_figures(m, ref, scores, margin), **_cam_figures(m, ref, cams), latency_ms=latency,
        head=head_parity(manifest_path, ref) if m.has_head and ref.centres is not None else None)


def _score_figures(m, ref: Reference, scores: np.ndarray, margin: float) -> dict[str, Any]:
    """Score differences, decision agreement (all, far from and near the boundary) and the metrics with deltas."""
    from export.precision import decisions, margins
    from training.evaluate import report

    thr = list(m.thresholds)
    art = report(m.task, ref.targets, scores, m.labels, m.negative_label, thresholds=thr)
    kr = report(m.task, ref.targets, ref.scores, m.labels, m.negative_label, thresholds=thr)
    thr_arr = np.asarray(thr, np.float32)
    same = (decisions(scores, thr_arr, m.task) == decisions(ref.scores, thr_arr, m.task)).all(1)
    near = margins(ref.scores, thr_arr, m.task) < margin
    diff = np.abs(scores - ref.scores)
    decided = (scores >= thr_arr) if m.task != "multiclass" else scores.argmax(1)
    return {
        "max_abs_score_diff": float(diff.max()), "mean_abs_score_diff": float(diff.mean()),
        "agreement": float(same.mean()), "near_boundary": int(near.sum()),
        "agreement_far": float(same[~near].mean()) if (~near).any() else 1.0,
        "agreement_near": float(same[near].mean()) if near.any() else 1.0,
        "accuracy": art.get("accuracy", art.get("exact_match")), "balanced_accuracy": art["balanced_accuracy"],
        "roc_auc": art["roc_auc"], "keras_accuracy": kr.get("accuracy", kr.get("exact_match")),
        "keras_balanced_accuracy": kr["balanced_accuracy"], "keras_roc_auc": kr["roc_auc"],
        "balanced_accuracy_delta": art["balanced_accuracy"] - kr["balanced_accuracy"],
        "roc_auc_delta": art["roc_auc"] - kr["roc_auc"],
        "collapsed": bool(np.std(scores, axis=0).max() < 1e-6 or len(np.unique(decided, axis=0)) == 1),
    }


def _cam_figures(m, ref: Reference, cams: np.ndarray) -> dict[str, Any]:
    """CAM correlation (all images and those Keras calls positive), top-20 % IoU and peak shift."""
    from export.precision import decisions

    thr_arr = np.asarray(m.thresholds, np.float32)
    corr = np.array([pearson(a, b) for a, b in zip(cams, ref.cams)])
    positive = decisions(ref.scores, thr_arr, m.task).any(1) if m.task != "multiclass" else np.ones(len(corr), bool)
    return {
        "cam_correlation": float(np.mean(corr)), "cam_correlation_min": float(np.min(corr)),
        "positives": int(positive.sum()),
        "cam_correlation_positive": float(corr[positive].mean()) if positive.any() else float("nan"),
        "cam_top20_iou": float(np.mean([top_region_iou(a, b) for a, b in zip(cams, ref.cams)])),
        "cam_peak_shift_cells": float(np.mean([peak_shift(a, b) for a, b in zip(cams, ref.cams)])),
    }


# gate, the row's figure it bounds (or a function of the row), whether the gate is a maximum, the failure's wording
_CHECKS = (
    ("max_abs_score_diff", "max_abs_score_diff", True, "max |score diff| {v:.2e} > {g:.0e}"),
    ("max_mean_abs_score_diff", "mean_abs_score_diff", True, "mean |score diff| {v:.2e} > {g:.0e}"),
    ("min_agreement", "agreement", False, "agreement {v:.4f} < {g}"),
    ("max_balanced_accuracy_drop", lambda f: -f("balanced_accuracy_delta"), True, "balanced accuracy drop {v:.4f} > {g}"),
    ("min_cam_correlation", "cam_correlation", False, "CAM correlation {v:.4f} < {g}"),
)


def apply_gates(row: ParityRow | Mapping[str, Any], gates: Mapping[str, Gates]) -> list[str]:
    """The gates a row fails. A mixed-precision artifact is also held to the targets its manifest claims.

    ``row`` is a :class:`ParityRow` or its JSON form (a row of a saved ``parity.json``).
    """
    as_dict = isinstance(row, Mapping)

    def figure(name: str) -> Any:
        return row[name] if as_dict else getattr(row, name)

    g = gates.get(figure("format"), Gates())
    # a saved row of an older parity.json may have no mixed-precision figures
    claimed, met = (row.get("mixed_targets"), row.get("mixed_met")) if as_dict else (row.mixed_targets, row.mixed_met)
    if claimed and met:
        g = replace(g, min_agreement=max(g.min_agreement or 0.0, claimed["agreement"]),
                    min_cam_correlation=max(g.min_cam_correlation or 0.0, claimed["cam_r"]))
    fails = []
    for gate, measure, is_max, text in _CHECKS:
        bound = getattr(g, gate)
        value = figure(measure) if isinstance(measure, str) else measure(figure)
        if bound is not None and (value > bound if is_max else value < bound):
            fails.append(text.format(v=value, g=bound))
    if figure("collapsed") and not g.allow_collapse:
        fails.append("predictions collapsed to one class")
    return fails


def verify(export_dir: str | Path, data: str | Path, positive: str | None = None, gates_file: str | Path | None = None,
           run: str | Path | None = None, limit: int | None = None, out: str | Path | None = None, seed: int = 0,
           margin: float = 1.0) -> dict:
    """Compare every artifact in ``export_dir`` with its Keras model on ``data``; write report.md/json.

    Example:
        >>> r = verify("runs/demo/export", "runs/demo/data/val")  # doctest: +SKIP
        >>> r["passed"]  # doctest: +SKIP
        True
    """
    from training.data import from_folder, load_rgb

    positive_int("limit", limit, allow_none=True)
    manifests = find_manifests(export_dir)
    first = load_manifest(manifests[0])
    run = run or first.extra.get("source_run")
    if not run or not Path(run).exists():
        raise DataError(f"verify needs the Keras run the artifacts came from; manifest names {run!r} (pass --model RUN)")
    pos = positive if positive is not None else (first.labels[0] if first.task == "binary" else None)
    d = from_folder(data, pos)
    if list(d.labels) != list(first.labels):
        raise DataError(f"the artifacts' labels are {list(first.labels)}; {data} gives {list(d.labels)} (use --positive)")
    if limit is not None and len(d) > limit:
        rng = np.random.default_rng(seed)
        d = d.subset(np.sort(rng.permutation(len(d))[:limit]))
    size = first.train_input_size or first.input_size
    images = load_rgb(list(d.paths), size)
    ref = keras_reference(run, images, d.targets, first.task)
    gates = load_gates(gates_file)
    rows = []
    for i, mp in enumerate(manifests, 1):
        started = time.monotonic()
        log.info("verify [%d/%d]: %s on %d images ...", i, len(manifests), mp.name, len(images))
        row = compare_artifact(mp, ref, margin=margin)
        row.failures = apply_gates(row, gates)
        rows.append(row)
        log.info("verify [%d/%d]: %s %s in %.0f s", i, len(manifests), mp.name,
                 "passed" if not row.failures else f"failed {len(row.failures)} gate(s)", time.monotonic() - started)
    result = {"data": str(data), "images": len(images), "input_size": list(size), "run": str(run), "margin": margin,
              "artifacts": [r.to_dict() for r in rows], "gates": {k: g.to_dict() for k, g in gates.items()},
              "passed": all(not r.failures for r in rows)}
    out = Path(out or export_dir)
    atomic.write_json(out / "parity.json", result)
    atomic.write_text(out / "parity.md", to_markdown(result))
    return result


def frame_fidelity(export_dir: str | Path, frames: str | Path, size: tuple[int, int], limit: int = 40,
                   run: str | Path | None = None, out: str | Path | None = None, seed: int = 0) -> dict:
    """CAM fidelity on whole frames at frame size, where the map has real resolution.

    A 96-px still gives MobileNetV2 a 3x3 feature map, on which a correlation
    says little. Here every artifact and the Keras model run on the same
    frames (a folder of camera images, searched recursively) resized to
    ``size``; the figures are per-frame CAM correlation (all frames and those
    Keras calls positive), the top-20 % IoU and how often the CAM peak lands in
    the same feature cell. Written to ``frames.md`` / ``frames.json``.
    """
    from edge.imageio import IMAGE_SUFFIXES
    from training.data import load_rgb

    positive_int("frames limit", limit)
    manifests = find_manifests(export_dir)
    first = load_manifest(manifests[0])
    run = run or first.extra.get("source_run")
    if not run or not Path(run).exists():
        raise DataError(f"verify needs the Keras run the artifacts came from; manifest names {run!r} (pass --model RUN)")
    paths = sorted(p for p in Path(frames).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"--frames: expected camera images under {frames}; found none")
    if len(paths) > limit:
        rng = np.random.default_rng(seed)
        paths = [paths[i] for i in sorted(rng.permutation(len(paths))[:limit])]
    images = load_rgb([str(p) for p in paths], tuple(size))
    ref = keras_reference(run, images, np.zeros((len(images), len(first.labels)), np.float32), first.task)
    thr = np.asarray(first.thresholds, np.float32)
    positive = (ref.scores >= thr).any(1) if first.task != "multiclass" else np.ones(len(images), bool)
    rows = []
    for i, mp in enumerate(manifests, 1):
        log.info("verify --frames [%d/%d]: %s on %d frames ...", i, len(manifests), mp.name, len(images))
        m = load_manifest(mp)
        _, cams, _ = runtime_outputs(mp, images, ref.scores.argmax(1), latency_runs=1)
        r = np.array([pearson(a, b) for a, b in zip(cams, ref.cams)])
        same_peak = [peak_shift(a, b) == 0 for a, b in zip(cams, ref.cams)]
        mixed = m.mixed_precision
        rows.append({"format": m.format, "float_mac_share": mixed.float_mac_share if mixed else 0.0,
                     "cam_correlation": float(r.mean()), "positives": int(positive.sum()),
                     "cam_correlation_positive": float(r[positive].mean()) if positive.any() else float("nan"),
                     "cam_top20_iou": float(np.mean([top_region_iou(a, b) for a, b in zip(cams, ref.cams)])),
                     "same_peak_cell": float(np.mean(same_peak))})
    result = {"frames": str(frames), "images": len(images), "input_size": list(size),
              "feature_map": list(ref.cams.shape[1:]), "artifacts": rows}
    lines = [f"CAM fidelity against Keras on {len(images)} frames of `{frames}` at {size[0]}x{size[1]} "
             f"({ref.cams.shape[1]}x{ref.cams.shape[2]} feature cells), {int(positive.sum())} called positive by Keras.", "",
             "| artifact | float MACs | CAM r | CAM r positives | top-20% IoU | same peak cell |", "|---|--:|--:|--:|--:|--:|"]
    for row in rows:
        lines.append(f"| {row['format']} | {100 * row['float_mac_share']:.1f} % | {row['cam_correlation']:.4f} | "
                     f"{row['cam_correlation_positive']:.4f} | {row['cam_top20_iou']:.3f} | {row['same_peak_cell']:.2f} |")
    out = Path(out or export_dir)
    atomic.write_json(out / "frames.json", result)
    atomic.write_text(out / "frames.md", "\n".join(lines) + "\n")
    return result


def to_markdown(result: dict) -> str:
    lines = [
        f"Parity against Keras on {result['images']} images of `{result['data']}` at {result['input_size'][0]}x{result['input_size'][1]}.",
        "",
        "| artifact | float MACs | size KiB | max Δscore | agreement | agreement far | bal. acc (Δ) | ROC AUC (Δ) | CAM r | CAM r positives | top-20% IoU | peak shift | ms/img | gate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["artifacts"]:
        gate = "pass" if not r["failures"] else "FAIL: " + "; ".join(r["failures"])
        share = r.get("float_mac_share", 0.0)
        name = r["format"] + (f" ({len(r['float_layers'])} float layers)" if r.get("float_layers") else "")
        lines.append(
            f"| {name} | {100 * share:.1f} % | {r['size_bytes'] / 1024:.0f} | {r['max_abs_score_diff']:.1e} | {r['agreement']:.4f} | "
            f"{r['agreement_far']:.4f} | "
            f"{r['balanced_accuracy']:.4f} ({r['balanced_accuracy_delta']:+.4f}) | {r['roc_auc']:.4f} ({r['roc_auc_delta']:+.4f}) | "
            f"{r['cam_correlation']:.4f} | {r['cam_correlation_positive']:.4f} | {r['cam_top20_iou']:.3f} | "
            f"{r['cam_peak_shift_cells']:.2f} | {r['latency_ms']:.2f} | {gate} |"
        )
    near = {r["near_boundary"] for r in result["artifacts"]}
    lines += ["", f"*Agreement far*: on the images whose Keras logit is at least {result.get('margin', 1.0):g} from the "
              f"threshold's ({', '.join(str(result['images'] - n) for n in sorted(near))} of {result['images']}). "
              "*CAM r positives*: on the images Keras calls positive. Float MACs: share of multiply-accumulates an int8 "
              "artifact keeps in float (`--int8-float`)."]
    heads = [r for r in result["artifacts"] if "head_centre_correlation" in r]
    if heads:
        lines += ["", "Localisation head, centre heatmap against Keras:", "",
                  "| artifact | correlation | max abs difference | same peak cell |", "|---|---:|---:|---:|"]
        lines += [f"| {r['format']} | {r['head_centre_correlation']:.4f} | {r['head_centre_max_abs_diff']:.4f} | "
                  f"{r['head_same_peak']:.2f} |" for r in heads]
    return "\n".join(lines) + "\n"
