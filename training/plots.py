"""Plots of a run: learning curves, LR finder, ROC, PR, confusion matrix, CAM grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge import metrics as M
from edge.manifest import Task


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from edge.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix[1:])
    _plt().close(fig)


def learning_curves(history: list[dict], path: Path, title: str = "") -> None:
    plt = _plt()
    keys = [k for k in ("loss", "accuracy", "auc") if history and k in history[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), layout="constrained")
    axes = np.atleast_1d(axes)
    ep = [r["epoch"] for r in history]
    # where phase 2 (fine-tuning) starts, if the run had both phases
    switch = next((r["epoch"] for r in history if r.get("phase") == "finetune"), None)
    for ax, k in zip(axes, keys):
        ax.plot(ep, [r[k] for r in history], label="train")
        if f"val_{k}" in history[0]:
            ax.plot(ep, [r[f"val_{k}"] for r in history], label="val")
        if switch is not None and switch != ep[0]:
            ax.axvline(switch - 0.5, color="grey", ls=":", lw=1, label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path)


def lr_finder(result: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(result["lr"], result["loss"])
    ax.axvline(result["suggested_lr"], color="r", ls="--", label=f"suggested {result['suggested_lr']:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed loss")
    ax.legend()
    _save(fig, path)


def roc_pr(y_true, y_score, threshold: float, out_dir: Path) -> None:
    plt = _plt()
    fpr, tpr, thr = M.roc_curve(y_true, y_score)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUC {M.roc_auc(y_true, y_score):.4f}")
    i = int(np.argmin(np.abs(thr - threshold)))
    ax.plot(fpr[i], tpr[i], "ro", label=f"threshold {threshold:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    _save(fig, out_dir / "roc.png")
    p, r, _ = M.precision_recall_curve(y_true, y_score)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(r, p, label=f"AP {M.average_precision(y_true, y_score):.4f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="lower left")
    _save(fig, out_dir / "pr.png")


def confusion(cm, names, path: Path) -> None:
    plt = _plt()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 1 + 0.8 * len(names)))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _save(fig, path)


def cam_grid(images: np.ndarray, heatmaps: np.ndarray, titles: list[str], path: Path, cols: int = 6) -> None:
    import cv2

    plt = _plt()
    n = len(images)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.1 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, img, hm, t in zip(np.ravel(axes), images, heatmaps, titles):
        colour = cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        ax.imshow((0.55 * img + 0.45 * colour).astype(np.uint8))
        ax.set_title(t, fontsize=7)
    _save(fig, path)


def run_plots(run: Path, model, val_set, metrics: dict, size, task: str, n_cam: int = 18) -> None:
    """All plots of a finished run, into ``run/plots/``."""
    from training.cam import cam_reference
    from training.data import load_rgb
    from training.evaluate import predict_keras
    from edge.cam import normalise, resize_heatmap

    out = run / "plots"
    out.mkdir(exist_ok=True)
    history = json.loads((run / "history.json").read_text())
    if history:
        learning_curves(history, out / "learning_curves.png", run.name)
    images = load_rgb(list(val_set.paths), tuple(size))
    names = ([val_set.negative_label or "negative"] + list(val_set.labels)) if task == Task.BINARY else list(val_set.labels)
    if task == Task.BINARY:
        probs = predict_keras(model, images, task)
        roc_pr(val_set.targets[:, 0], probs[:, 0], metrics["threshold"], out)
    if "confusion" in metrics:
        confusion(metrics["confusion"], names, out / "confusion.png")
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(images), min(n_cam, len(images)), replace=False))
    scores, cams = cam_reference(model, images[pick], 0, task)
    hms = np.stack([resize_heatmap(normalise(c), tuple(size)) for c in cams])
    titles = [f"{names[int(val_set.class_index[i])] if task != 'multilabel' else ''} p={s[0]:.2f}" for i, s in zip(pick, scores)]
    cam_grid(images[pick], hms, titles, out / "cam_grid.png")
