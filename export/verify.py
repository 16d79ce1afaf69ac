"""Parity report: every artifact against the Keras model on the same real images.

Scores (max/mean absolute difference, decision agreement, accuracy, balanced
accuracy and ROC AUC with deltas), CAM fidelity (Pearson correlation, IoU of
the top-20 % regions, peak displacement in feature cells), a collapse check
and a quick latency figure. Gates per format make the command fail in CI.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import atomic
from edge.errors import ConfigError, DataError
from edge.manifest import find_manifests, load_manifest

GATE_KEYS = ("max_abs_score_diff", "max_mean_abs_score_diff", "min_agreement", "max_balanced_accuracy_drop",
             "min_cam_correlation", "allow_collapse")

DEFAULT_GATES: dict[str, dict] = {
    "tflite-fp32": {"max_abs_score_diff": 1e-4, "min_agreement": 0.999, "min_cam_correlation": 0.999},
    "onnx-fp32": {"max_abs_score_diff": 1e-4, "min_agreement": 0.999, "min_cam_correlation": 0.999},
    # float16 weights: the worst image can move by 0.1+ where the sigmoid is steep, so the
    # gate is on the mean difference and on decisions, not on the single worst score
    "tflite-fp16": {"max_mean_abs_score_diff": 5e-3, "min_agreement": 0.99, "min_cam_correlation": 0.99},
    "tflite-dynamic": {"min_agreement": 0.98, "max_balanced_accuracy_drop": 0.02, "min_cam_correlation": 0.95},
    "tflite-int8": {"min_agreement": 0.97, "max_balanced_accuracy_drop": 0.02, "min_cam_correlation": 0.90},
    "onnx-int8": {"min_agreement": 0.97, "max_balanced_accuracy_drop": 0.02, "min_cam_correlation": 0.90},
}


def load_gates(path: str | Path | None) -> dict[str, dict]:
    """Defaults, overridden per format (or for every format with ``"*"``) by a JSON file."""
    gates = {k: dict(v, allow_collapse=False) for k, v in DEFAULT_GATES.items()}
    if path is None:
        return gates
    try:
        user = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"gate file {path}: expected a JSON object of format -> gates; {exc}") from exc
    for fmt, values in user.items():
        if fmt != "*" and fmt not in gates:
            raise ConfigError(f"gate file {path}: unknown format {fmt!r}; expected one of {sorted(gates)} or '*'")
        bad = sorted(set(values) - set(GATE_KEYS))
        if bad:
            raise ConfigError(f"gate file {path}: unknown gate(s) {bad} for {fmt}; expected some of {list(GATE_KEYS)}")
        for target in (gates if fmt == "*" else [fmt]):
            gates[target].update(values)
    return gates


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float((a * b).sum() / den)


def top_region_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.2) -> float:
    """IoU of the cells holding each map's top ``fraction`` of values."""
    k = max(1, int(round(a.size * fraction)))
    ma = np.zeros(a.size, bool)
    mb = np.zeros(b.size, bool)
    ma[np.argsort(-a.ravel(), kind="stable")[:k]] = True
    mb[np.argsort(-b.ravel(), kind="stable")[:k]] = True
    return float((ma & mb).sum() / (ma | mb).sum())


def peak_shift(a: np.ndarray, b: np.ndarray) -> float:
    ya, xa = np.unravel_index(int(np.argmax(a)), a.shape)
    yb, xb = np.unravel_index(int(np.argmax(b)), b.shape)
    return float(np.hypot(ya - yb, xa - xb))


def cam_maps(features: np.ndarray, weights: np.ndarray, class_index: int = 0) -> np.ndarray:
    return np.einsum("nhwk,k->nhw", features.astype(np.float32), weights[:, class_index])


@dataclass(frozen=True)
class Reference:
    """Keras outputs on the verification images."""

    images: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    cams: np.ndarray


def keras_reference(run: str | Path, images: np.ndarray, targets: np.ndarray, task: str) -> Reference:
    from training.model import cam_weights, inference_model
    from training.train import load_run

    model, _ = load_run(run)
    inf = inference_model(model, task, input_size=images.shape[1:3])
    weights = cam_weights(model)[0]
    scores, cams = [], []
    for i in range(0, len(images), 64):
        out = inf.predict(images[i : i + 64].astype(np.float32), verbose=0)
        scores.append(out["scores"])
        cams.append(cam_maps(out["features"], weights))
    return Reference(images, targets, np.concatenate(scores), np.concatenate(cams))


def compare_artifact(manifest_path: Path, ref: Reference, latency_runs: int = 20) -> dict:
    """Every parity figure of one artifact against the reference."""
    from edge.backends import create_backend
    from training.evaluate import report

    m = load_manifest(manifest_path)
    scores, cams = [], []
    with create_backend(m) as be:
        for i in range(0, len(ref.images), 16):
            out = be.infer(ref.images[i : i + 16])
            scores.append(out["scores"])
            cams.append(cam_maps(out["features"], m.cam.weights))
        one = ref.images[:1]
        be.infer(one)
        t0 = time.perf_counter()
        for _ in range(latency_runs):
            be.infer(one)
        latency = (time.perf_counter() - t0) * 1e3 / latency_runs
    scores, cams = np.concatenate(scores), np.concatenate(cams)
    thr = list(m.thresholds)
    art = report(m.task, ref.targets, scores, m.labels, m.negative_label, thresholds=thr)
    kr = report(m.task, ref.targets, ref.scores, m.labels, m.negative_label, thresholds=thr)
    thr_arr = np.asarray(thr, np.float32)
    if m.task == "multiclass":
        agree = float((scores.argmax(1) == ref.scores.argmax(1)).mean())
    else:
        agree = float(((scores >= thr_arr) == (ref.scores >= thr_arr)).all(1).mean())
    diff = np.abs(scores - ref.scores)
    corr = [pearson(a, b) for a, b in zip(cams, ref.cams)]
    iou = [top_region_iou(a, b) for a, b in zip(cams, ref.cams)]
    shift = [peak_shift(a, b) for a, b in zip(cams, ref.cams)]
    decisions = (scores >= thr_arr) if m.task != "multiclass" else scores.argmax(1)
    collapsed = bool(np.std(scores, axis=0).max() < 1e-6 or len(np.unique(decisions, axis=0)) == 1)
    return {
        "format": m.format,
        "artifact": m.artifact,
        "size_bytes": m.size_bytes,
        "max_abs_score_diff": float(diff.max()),
        "mean_abs_score_diff": float(diff.mean()),
        "agreement": agree,
        "accuracy": art.get("accuracy", art.get("exact_match")),
        "balanced_accuracy": art["balanced_accuracy"],
        "roc_auc": art["roc_auc"],
        "keras_accuracy": kr.get("accuracy", kr.get("exact_match")),
        "keras_balanced_accuracy": kr["balanced_accuracy"],
        "keras_roc_auc": kr["roc_auc"],
        "balanced_accuracy_delta": art["balanced_accuracy"] - kr["balanced_accuracy"],
        "roc_auc_delta": art["roc_auc"] - kr["roc_auc"],
        "cam_correlation": float(np.mean(corr)),
        "cam_correlation_min": float(np.min(corr)),
        "cam_top20_iou": float(np.mean(iou)),
        "cam_peak_shift_cells": float(np.mean(shift)),
        "collapsed": collapsed,
        "latency_ms": latency,
    }


def apply_gates(row: dict, gates: dict) -> list[str]:
    g = gates.get(row["format"], {})
    fails = []
    if "max_abs_score_diff" in g and row["max_abs_score_diff"] > g["max_abs_score_diff"]:
        fails.append(f"max |score diff| {row['max_abs_score_diff']:.2e} > {g['max_abs_score_diff']:.0e}")
    if "max_mean_abs_score_diff" in g and row["mean_abs_score_diff"] > g["max_mean_abs_score_diff"]:
        fails.append(f"mean |score diff| {row['mean_abs_score_diff']:.2e} > {g['max_mean_abs_score_diff']:.0e}")
    if "min_agreement" in g and row["agreement"] < g["min_agreement"]:
        fails.append(f"agreement {row['agreement']:.4f} < {g['min_agreement']}")
    if "max_balanced_accuracy_drop" in g and -row["balanced_accuracy_delta"] > g["max_balanced_accuracy_drop"]:
        fails.append(f"balanced accuracy drop {-row['balanced_accuracy_delta']:.4f} > {g['max_balanced_accuracy_drop']}")
    if "min_cam_correlation" in g and row["cam_correlation"] < g["min_cam_correlation"]:
        fails.append(f"CAM correlation {row['cam_correlation']:.4f} < {g['min_cam_correlation']}")
    if row["collapsed"] and not g.get("allow_collapse", False):
        fails.append("predictions collapsed to one class")
    return fails


def verify(export_dir: str | Path, data: str | Path, positive: str | None = None, gates_file: str | Path | None = None,
           run: str | Path | None = None, limit: int | None = None, out: str | Path | None = None, seed: int = 0) -> dict:
    """Compare every artifact in ``export_dir`` with its Keras model on ``data``; write report.md/json.

    Example:
        >>> r = verify("runs/demo/export", "runs/demo/data/val")  # doctest: +SKIP
        >>> r["passed"]  # doctest: +SKIP
        True
    """
    from training.data import from_folder, load_rgb

    manifests = find_manifests(export_dir)
    first = load_manifest(manifests[0])
    run = run or first.extra.get("source_run")
    if not run or not Path(run).exists():
        raise DataError(f"verify needs the Keras run the artifacts came from; manifest names {run!r} (pass --model RUN)")
    pos = positive if positive is not None else (first.labels[0] if first.task == "binary" else None)
    d = from_folder(data, pos)
    if list(d.labels) != list(first.labels):
        raise DataError(f"the artifacts' labels are {list(first.labels)}; {data} gives {list(d.labels)} (use --positive)")
    if limit and len(d) > limit:
        rng = np.random.default_rng(seed)
        d = d.subset(np.sort(rng.permutation(len(d))[:limit]))
    size = tuple(first.extra.get("train_input_size", first.input_size))
    images = load_rgb(list(d.paths), size)
    ref = keras_reference(run, images, d.targets, first.task)
    gates = load_gates(gates_file)
    rows = []
    for mp in manifests:
        row = compare_artifact(mp, ref)
        row["failures"] = apply_gates(row, gates)
        rows.append(row)
    result = {"data": str(data), "images": len(images), "input_size": list(size), "run": str(run),
              "artifacts": rows, "gates": gates, "passed": all(not r["failures"] for r in rows)}
    out = Path(out or export_dir)
    atomic.write_json(out / "parity.json", result)
    atomic.write_text(out / "parity.md", to_markdown(result))
    return result


def to_markdown(result: dict) -> str:
    lines = [
        f"Parity against Keras on {result['images']} images of `{result['data']}` at {result['input_size'][0]}x{result['input_size'][1]}.",
        "",
        "| artifact | size KiB | max Δscore | agreement | bal. acc (Δ) | ROC AUC (Δ) | CAM r | top-20% IoU | peak shift | ms/img | gate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["artifacts"]:
        gate = "pass" if not r["failures"] else "FAIL: " + "; ".join(r["failures"])
        lines.append(
            f"| {r['format']} | {r['size_bytes'] / 1024:.0f} | {r['max_abs_score_diff']:.1e} | {r['agreement']:.4f} | "
            f"{r['balanced_accuracy']:.4f} ({r['balanced_accuracy_delta']:+.4f}) | {r['roc_auc']:.4f} ({r['roc_auc_delta']:+.4f}) | "
            f"{r['cam_correlation']:.4f} | {r['cam_top20_iou']:.3f} | {r['cam_peak_shift_cells']:.2f} | {r['latency_ms']:.2f} | {gate} |"
        )
    return "\n".join(lines) + "\n"
