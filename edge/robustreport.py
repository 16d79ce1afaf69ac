"""The robustness report: summary figures, Markdown, plots and the picture grid.

Works on the document :mod:`export.robustness` (class folders) or
:func:`edge.robustness.box_conditions` (box-labelled frames) builds: a list
of conditions, each with figures per model. Numpy only; matplotlib and
OpenCV are imported where a picture is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import atomic
from edge.errors import DataError
from edge.corruptions import CLEAN, UNSEEN_BY_WEATHER

SURVIVE_DROP = 0.05  # a condition is survived while the headline figure stays within 5 points of clean
# the figure means, gaps and survival are computed on: balanced accuracy on class folders; on box-labelled
# frames, where few frames are empty, the pointing game
HEADLINES = {"balanced_accuracy": "balanced accuracy", "pointing_game": "pointing game"}


def headline(doc: dict) -> str:
    return doc.get("headline", "balanced_accuracy")
GAP_AIM = 0.01  # an artifact should stay within 1 point of the float model at every severity


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else None


def clean_json(obj):
    """NaN and inf as None (JSON has no NaN), recursively."""
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def summarise(doc: dict) -> dict:
    """Per model: clean figures, means over corruptions and severities, per severity and per corruption,
    the highest severity each corruption is survived at; per artifact, its gap to the float reference."""
    models, ref = doc["models"], doc["float_reference"]
    conds = [c for c in doc["conditions"] if c["corruption"] != CLEAN]
    clean = next(c for c in doc["conditions"] if c["corruption"] == CLEAN)["models"]
    names = list(dict.fromkeys(c["corruption"] for c in conds))
    severities = sorted({c["severity"] for c in conds})
    keys = [k for k in ("balanced_accuracy", "roc_auc", "agreement", "cam_r", "cam_r_positive", "pointing_game",
                        "flagged_vessel_frames", "clear_empty_frames", "recall_iou_wide") if k in clean[models[0]]]
    key = headline(doc)

    def ba(m, name, s):
        return next(c["models"][m][key] for c in conds if c["corruption"] == name and c["severity"] == s)

    out = {"headline": key, "models": {}, "gaps": {}}
    for m in models:
        base = clean[m][key]
        survives = {}
        for name in names:
            ok = 0
            for s in severities:
                if base - ba(m, name, s) > SURVIVE_DROP:
                    break
                ok = s
            survives[name] = ok
        out["models"][m] = {
            "clean": {k: clean[m].get(k) for k in keys},
            "mean": {k: _mean(c["models"][m].get(k) for c in conds) for k in keys},
            "mean_seen": _mean(c["models"][m][key] for c in conds if c["corruption"] not in UNSEEN_BY_WEATHER),
            "mean_unseen": _mean(c["models"][m][key] for c in conds if c["corruption"] in UNSEEN_BY_WEATHER),
            "per_severity": {s: _mean(ba(m, n, s) for n in names) for s in severities},
            "per_corruption": {n: _mean(ba(m, n, s) for s in severities) for n in names},
            "survives_up_to": survives,
        }
    for m in models:
        if m == ref:
            continue
        per = {}
        for s in severities:
            diffs = {n: ba(m, n, s) - ba(ref, n, s) for n in names}
            worst = min(diffs, key=diffs.get)
            per[s] = {"mean": float(np.mean(list(diffs.values()))), "worst": diffs[worst], "worst_corruption": worst}
        clean_gap = clean[m][key] - clean[ref][key]
        out["gaps"][m] = {"clean": clean_gap, "per_severity": per,
                          "within_aim": all(abs(v["mean"]) <= GAP_AIM for v in per.values())}
    if doc.get("adversarial"):
        out["adversarial"] = {f"{a['attack']} {a['eps']:g}": {m: a["models"][m]["balanced_accuracy"] for m in a["models"]}
                              for a in doc["adversarial"]}
    return out


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


@dataclass(frozen=True)
class _Layout:
    """What every section of the Markdown report reads from the document."""

    doc: dict
    models: list
    names: list  # corruptions, in report order
    severities: list
    lookup: dict  # (corruption, severity) -> the models' figures
    box: bool
    what: str  # "frames" or "images"
    key: str  # the headline figure
    label: str

    @classmethod
    def of(cls, doc: dict) -> "_Layout":
        conds = [c for c in doc["conditions"] if c["corruption"] != CLEAN]
        box, key = doc.get("kind") == "boxes", headline(doc)
        return cls(doc, doc["models"], list(dict.fromkeys(c["corruption"] for c in conds)),
                   sorted({c["severity"] for c in conds}), {(c["corruption"], c["severity"]): c["models"] for c in conds},
                   box, "frames" if box else "images", key, HEADLINES[key])


def to_markdown(doc: dict) -> str:
    """The report as Markdown: means, per-condition tables, gaps, survival, adversarial sweep."""
    t = _Layout.of(doc)
    lines = _md_intro(t) + _md_means(t) + _md_condition_tables(t) + _md_gaps(t) + _md_survival(t) + _md_adversarial(t)
    lines += baseline_markdown(doc)
    lines += ["", "Decisions at the thresholds above. Agreement: share of "
              f"{t.what} whose decision did not change from the clean {t.what[:-1]}. CAM r: Pearson correlation of the "
              "heatmap with the same model's heatmap on the clean input"
              + (" (at feature-cell resolution)" if not t.box else " (frame heatmaps at 64 px wide)")
              + "; *positives*: on those the model calls positive when clean.", ""]
    return "\n".join(lines)


def _md_intro(t: _Layout) -> list[str]:
    doc = t.doc
    return [f"# Robustness: {doc['items']} {t.what} of {', '.join(map(str, doc['data']))}",
            "", f"{doc['positives']} with the positive class; models: {', '.join(t.models)} (float reference: "
            f"{doc['float_reference']}). Corruptions at severities {', '.join(map(str, t.severities))}, seed {doc['seed']}. "
            + (f"Decision thresholds: {', '.join(f'{m} {v:.3f}' for m, v in doc['thresholds'].items())}. "
               if doc.get("thresholds") else "") +
            f"Machine: {doc.get('machine_line', 'n/a')}.", ""]


def _md_means(t: _Layout) -> list[str]:
    s, key, box = t.doc["summary"], t.key, t.box
    lines = ["## Mean over corruptions and severities", "",
             f"Means of the {t.label} unless named.", "",
             "| model | clean | corrupted mean | drop | mean, kinds `--weather` trains on | mean, rain and droplets | "
             "ROC AUC clean / corrupted | agreement | CAM r | CAM r positives |"
             + (" vessel frames flagged, clean / corrupted | empty frames clear, clean / corrupted |" if box else ""),
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + ("--:|--:|" if box else "")]
    for m in t.models:
        g = s["models"][m]
        c, mean = g["clean"], g["mean"]
        drop = None if mean[key] is None or c[key] is None else c[key] - mean[key]
        row = (f"| {m} | {_f(c[key])} | {_f(mean[key])} | {_f(drop)} | {_f(g['mean_seen'])} | "
               f"{_f(g['mean_unseen'])} | {_f(c['roc_auc'])} / {_f(mean['roc_auc'])} | {_f(mean['agreement'])} | "
               f"{_f(mean['cam_r'])} | {_f(mean['cam_r_positive'])} |")
        if box:
            row += (f" {_f(c.get('flagged_vessel_frames'))} / {_f(mean.get('flagged_vessel_frames'))} |"
                    f" {_f(c.get('clear_empty_frames'))} / {_f(mean.get('clear_empty_frames'))} |")
        lines.append(row)
    return lines


def _md_condition_tables(t: _Layout) -> list[str]:
    if t.box:
        tables = [("pointing_game", "Pointing game (heatmap peak inside a vessel box)"),
                  ("flagged_vessel_frames", "Vessel frames flagged"),
                  ("recall_iou_wide", "Vessels at least 32 px wide found by a box (IoU ≥ 0.1)"),
                  ("cam_r", "CAM stability (correlation with the clean heatmap)")]
    else:
        tables = [("balanced_accuracy", "Balanced accuracy"),
                  ("cam_r", "CAM stability (correlation with the clean heatmap)")]
    lines: list[str] = []
    for key, title in tables:
        lines += ["", f"## {title} per corruption and severity", "", f"Each cell: {' / '.join(t.models)}.", "",
                  "| corruption | " + " | ".join(f"severity {v}" for v in t.severities) + " |",
                  "|---|" + "--:|" * len(t.severities)]
        lines += [f"| {n} | " + " | ".join(" / ".join(_f(t.lookup[(n, v)][m].get(key), 2) for m in t.models)
                                           for v in t.severities) + " |" for n in t.names]
    return lines


def _md_gaps(t: _Layout) -> list[str]:
    gaps = t.doc["summary"]["gaps"]
    if not gaps:
        return []
    lines = ["", f"## Artifacts against {t.doc['float_reference']}: {t.label} difference", "",
             f"Mean over corruptions at each severity (aim: within ±{GAP_AIM:g}), and the worst single corruption.", "",
             "| artifact | clean | " + " | ".join(f"severity {v}" for v in t.severities) + " | within aim |",
             "|---|--:|" + "--:|" * len(t.severities) + "---|"]
    for m, g in gaps.items():
        cells = [f"{v['mean']:+.3f} (worst {v['worst']:+.3f} {v['worst_corruption']})" for v in g["per_severity"].values()]
        lines.append(f"| {m} | {g['clean']:+.3f} | " + " | ".join(cells) + f" | {'yes' if g['within_aim'] else 'no'} |")
    return lines


def _md_survival(t: _Layout) -> list[str]:
    s = t.doc["summary"]
    lines = ["", "## Which conditions each model survives", "",
             f"The highest severity at which the {t.label} stays within {100 * SURVIVE_DROP:g} points of clean "
             "(0: not even severity 1).", "", "| corruption | " + " | ".join(t.models) + " |", "|---|" + "--:|" * len(t.models)]
    for n in t.names:
        lines.append(f"| {n} | " + " | ".join(str(s["models"][m]["survives_up_to"][n]) for m in t.models) + " |")
    return lines


def _md_adversarial(t: _Layout) -> list[str]:
    if not t.doc.get("adversarial"):
        return []
    models = t.models
    lines = ["", "## Adversarial perturbations (made on the Keras model, sent to every artifact)", "",
             "ε in grey levels of 0..255. Keras is attacked white-box; the artifacts receive the same images (transfer).",
             "", "| attack | ε | " + " | ".join(f"{m} bal. acc / agreement / CAM r" for m in models) + " |",
             "|---|--:|" + "--:|" * len(models)]
    for a in t.doc["adversarial"]:
        lines.append(f"| {a['attack']} | {a['eps']:g} | " + " | ".join(
            f"{_f(a['models'][m]['balanced_accuracy'])} / {_f(a['models'][m]['agreement'])} / {_f(a['models'][m]['cam_r'])}"
            for m in models) + " |")
    return lines


def _style(model: str, index: int) -> tuple[str, str, str]:
    """Line colour, style and marker by role: Keras black, float artifacts blue and dashed, int8 red."""
    marker = "os^dv"[index % 5]
    if model == "keras":
        return "k", "-", marker
    if "int8" in model or "dynamic" in model:
        return "tab:red", "-", marker
    if "fp32" in model or "fp16" in model:
        return "tab:blue", "--", marker
    return "tab:green", ":", marker


def plot_curves(doc: dict, path: str | Path, metric: str = "balanced_accuracy", label: str = "balanced accuracy") -> None:
    """One small plot per corruption (and one of the mean): ``metric`` against severity, every model on the same axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = doc["models"]
    conds = [c for c in doc["conditions"] if c["corruption"] != CLEAN]
    names = list(dict.fromkeys(c["corruption"] for c in conds))
    panels = names + ["mean"]
    cols = 4
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.5 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    base = doc.get("baseline") or {}
    lines = [(m, doc["conditions"], "", 1.0) for m in models]
    lines += [(m, base["conditions"], " (baseline)", 0.4) for m in models if m in base.get("models", [])]
    lo = 1.0
    axes = []
    for i, name in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        axes.append(ax)
        for m, source, suffix, alpha in lines:
            xs, ys = [], []
            for sev in sorted({c["severity"] for c in source}):
                vals = [c["models"][m].get(metric) for c in source if c["severity"] == sev and
                        (sev == 0 or name == "mean" or c["corruption"] == name)]
                if _mean(vals) is not None:
                    xs.append(sev)
                    ys.append(_mean(vals))
            color, ls, marker = _style(m, models.index(m))
            ax.plot(xs, ys, color=color, ls=ls if alpha == 1.0 else ":", marker=marker, ms=3, lw=1.4, alpha=alpha,
                    label=m + suffix)
            lo = min([lo] + ys)
        ax.set_title(name if name != "mean" else "mean over corruptions", fontsize=9)
        ax.set_xticks(range(0, 6))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_ylim(max(0.0, lo - 0.05), 1.01)
    axes[0].set_ylabel(label, fontsize=8)
    axes[-1].set_xlabel("severity", fontsize=8)
    axes[-1].legend(fontsize=7, loc="lower left")
    _save(fig, path)


def plot_adversarial(doc: dict, path: str | Path) -> None:
    """Balanced accuracy and CAM stability against ε, one line per model and attack."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    adv = doc.get("adversarial") or []
    if not adv:
        return
    clean = next(c for c in doc["conditions"] if c["corruption"] == CLEAN)["models"]
    fig = Figure(figsize=(9.5, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    for attack in dict.fromkeys(a["attack"] for a in adv):
        rows = [a for a in adv if a["attack"] == attack]
        for j, m in enumerate(doc["models"]):
            for ax, key in zip(axes, ("balanced_accuracy", "cam_r")):
                xs = [0.0] + [a["eps"] for a in rows]
                ys = [clean[m][key] if key != "cam_r" else 1.0] + [a["models"][m][key] for a in rows]
                ax.plot(xs, ys, color=_style(m, j)[0], ls="-" if attack == "fgsm" else "--", marker=_style(m, j)[2], ms=3,
                        label=f"{m} ({attack}{', white-box' if m == doc['float_reference'] else ', transfer'})")
    axes[0].set(xlabel="ε (grey levels of 255)", ylabel="balanced accuracy", title="Adversarial accuracy")
    axes[1].set(xlabel="ε (grey levels of 255)", ylabel="CAM r with the clean heatmap", title="Heatmap stability")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    _save(fig, path)


def _save(fig, path: str | Path) -> None:
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix[1:] or "png")


def overlay(image: np.ndarray, heat: np.ndarray, width: int) -> np.ndarray:
    """``image`` resized to ``width`` with a heatmap (any size, normalised here) blended over it."""
    import cv2

    from edge.cam import normalise, resize_heatmap

    h = max(1, int(round(image.shape[0] * width / image.shape[1])))
    base = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA if image.shape[1] > width else cv2.INTER_NEAREST)
    hm = resize_heatmap(normalise(heat), (h, width))
    color = cv2.applyColorMap(np.uint8(np.clip(hm, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    return (0.55 * base + 0.45 * color).astype(np.uint8)


def grid_panel(title: str, image: np.ndarray, outputs: dict, models: list[str], width: int,
               gt: np.ndarray | None = None) -> np.ndarray:
    """One condition: the image under each model's heatmap side by side, scores in the caption."""
    import cv2

    tiles = []
    for m in models:
        scores, heats = outputs[m]
        tile = overlay(image, np.asarray(heats[0], np.float32), width)
        if gt is not None and len(gt):
            s = width / image.shape[1]
            for x0, y0, x1, y1 in np.asarray(gt) * s:
                cv2.rectangle(tile, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 0), 1)
        tiles.append(tile)
    row = np.hstack(tiles)
    bar = np.full((34, row.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, "  ".join(f"{m} {float(outputs[m][0][0]):.2f}" for m in models), (4, 28),
                cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    return np.vstack([bar, row])


def load_baseline(path: str | Path) -> dict:
    """What a report needs of an earlier ``robustness.json`` to compare with it (e.g. the model trained without
    ``--weather``): its means and its per-condition balanced accuracy, CAM r and pointing game."""
    import json

    try:
        base = json.loads(Path(path).read_text())
        summary = base["summary"]["models"]
        conditions = base["conditions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"baseline: expected a robustness.json written by edgecam robustness at {path}; {exc}") from exc
    keep = ("balanced_accuracy", "cam_r", "pointing_game", "flagged_vessel_frames")
    return {"path": str(path), "data": base.get("data"), "items": base.get("items"), "seed": base.get("seed"),
            "headline": base["summary"].get("headline", "balanced_accuracy"),
            "models": list(summary),
            "summary": {m: {k: g.get(k) for k in ("clean", "mean", "mean_seen", "mean_unseen", "per_severity")}
                        for m, g in summary.items()},
            "conditions": [{"corruption": c["corruption"], "severity": c["severity"],
                            "models": {m: {k: f.get(k) for k in keep} for m, f in c["models"].items()}}
                           for c in conditions]}


def baseline_markdown(doc: dict) -> list[str]:
    """The section comparing this report with its baseline, model by model."""
    base = doc.get("baseline")
    if not base:
        return []
    s = doc["summary"]["models"]
    severities = sorted({c["severity"] for c in doc["conditions"] if c["corruption"] != CLEAN})
    same = (base["data"], base["items"], base["seed"]) == (doc["data"], doc["items"], doc["seed"])
    lines = ["", f"## Against the baseline `{base['path']}`", "",
             ("Same images, same corruption seeds." if same else
              "**Not the same images or seeds as this report**: compare with care."), "",
             f"{HEADLINES[headline(doc)].capitalize()}, baseline → this report.", "",
             "| model | clean | corrupted mean | kinds `--weather` trains on | rain and droplets | "
             + " | ".join(f"severity {v}" for v in severities) + " |", "|---|" + "--:|" * (4 + len(severities))]
    for m in doc["models"]:
        if m not in base["summary"]:
            continue
        b, t = base["summary"][m], s[m]
        per = [f"{_f((b['per_severity'] or {}).get(str(v), (b['per_severity'] or {}).get(v)))} → {_f(t['per_severity'][v])}"
               for v in severities]
        k = headline(doc)
        lines.append(f"| {m} | {_f(b['clean'][k])} → {_f(t['clean'][k])} | {_f(b['mean'][k])} → {_f(t['mean'][k])} | "
                     f"{_f(b['mean_seen'])} → {_f(t['mean_seen'])} | {_f(b['mean_unseen'])} → {_f(t['mean_unseen'])} | "
                     + " | ".join(per) + " |")
    return lines


def write_report(doc: dict, out: str | Path, panels: list[np.ndarray] | None = None,
                 baseline: str | Path | None = None) -> dict:
    """Summary into ``doc``, then ``robustness.json``, ``robustness.md`` and the pictures in ``out``.

    With ``baseline`` (an earlier ``robustness.json``) the report also
    compares with it, and the curves show it dotted.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc["summary"] = summarise(doc)
    if baseline is not None:
        doc["baseline"] = load_baseline(baseline)
    doc = clean_json(doc)
    atomic.write_json(out / "robustness.json", doc)
    atomic.write_text(out / "robustness.md", to_markdown(doc))
    if doc.get("kind") == "boxes":
        plot_curves(doc, out / "severity_pointing.png", "pointing_game", "pointing game")
        plot_curves(doc, out / "severity_flagged.png", "flagged_vessel_frames", "vessel frames flagged")
    else:
        plot_curves(doc, out / "severity_accuracy.png")
    plot_curves(doc, out / "severity_cam.png", "cam_r", "CAM r with the clean heatmap")
    plot_adversarial(doc, out / "adversarial.png")
    if panels:
        from edge.boxeval import write_grid

        write_grid(panels, out / "grid.png", columns=3 if doc.get("kind") == "boxes" else 4)
    return doc


__all__ = ["baseline_markdown", "clean_json", "grid_panel", "load_baseline", "overlay", "plot_adversarial", "plot_curves",
           "summarise", "to_markdown", "write_report"]
