"""``edgecam robustness`` on class folders: the Keras model and every artifact under each camera condition.

The Keras model of the run and each artifact beside it see the same
corrupted images (:mod:`edge.corruptions`, at the training input size), and
the same adversarial images: FGSM (and PGD with ``pgd_steps``) is computed
on the Keras model, white-box, and the perturbed uint8 images are then sent
through each artifact's runtime (transfer, as an attacker without the int8
graph would do). The figures and the report come from
:mod:`edge.robustness` and :mod:`edge.robustreport`; box-labelled frames go
through :func:`edge.robustness.box_robustness` instead (no Keras there).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError
from edge.manifest import Task
from edge.robustness import CLEAN, ArtifactModel, RobustnessOptions, figures, float_first, machine_line, \
    run_conditions, select_manifests, stratified_pick

log = logging.getLogger("edgecam.robustness")


class KerasModel:
    """The run's Keras model as a robustness model function: scores and raw CAMs of the positive class."""

    def __init__(self, run: str | Path, input_size: tuple[int, int], batch: int = 128) -> None:
        from edge.cam import DenseCAM
        from training.model import cam_weights, inference_model
        from training.run import load_run

        self.model, self.info = load_run(run)
        if self.info.task != Task.BINARY:
            raise ConfigError(f"robustness: expected a binary (one-vs-rest) model; {run} is {self.info.task}")
        self.inference = inference_model(self.model, "binary", input_size=tuple(input_size))
        self.cam = DenseCAM(*cam_weights(self.model)[:2])
        self.threshold = float(self.info.thresholds[0]) if self.info.thresholds else 0.5
        self.batch = batch

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, cams = [], []
        for i in range(0, len(images), self.batch):
            out = self.inference(images[i : i + self.batch].astype(np.float32), training=False)
            scores.append(np.asarray(out["scores"])[:, 0])
            cams.append(np.stack([self.cam.raw(f, 0) for f in np.asarray(out["features"])]))
        return np.concatenate(scores).astype(np.float64), np.concatenate(cams)


def _run_of(target: Path, first, run: str | Path | None) -> Path:
    if run is None and (target / "model.keras").is_file():
        run = target
    run = run or first.extra.get("source_run")
    if not run or not Path(run).exists():
        raise DataError(f"robustness needs the Keras run the artifacts came from; the manifest names {run!r} "
                        "(pass --model RUN)")
    return Path(run)


def robustness(target: str | Path, data: str | Path, positive: str | None = None,
               opts: RobustnessOptions | None = None, run: str | Path | None = None, out: str | Path | None = None) -> dict:
    """Run every condition of ``opts`` on a class folder; write ``out/robustness.{json,md}`` and the pictures.

    ``target`` is a run folder with ``export/``, an export folder or one
    manifest. Returns the report document (see :func:`edge.robustreport.summarise`).

    Example:
        >>> doc = robustness("runs/cifar/export", "data/val", "ship", RobustnessOptions(limit=500))  # doctest: +SKIP
        >>> doc["summary"]["models"]["tflite-int8"]["mean"]["balanced_accuracy"]  # doctest: +SKIP
        0.87
    """
    from edge.manifest import load_manifest
    from edge.robustreport import write_report
    from training.data import from_folder, load_rgb

    opts = opts or RobustnessOptions()
    target = Path(target)
    manifests = select_manifests(target, opts.formats)
    first = load_manifest(manifests[0])
    run = _run_of(target, first, run)
    if first.task != Task.BINARY:
        raise ConfigError(f"robustness: expected a binary (one-vs-rest) model; the artifacts are {first.task}")
    d = from_folder(data, positive if positive is not None else first.labels[0])
    if list(d.labels) != list(first.labels):
        raise DataError(f"the artifacts' labels are {list(first.labels)}; {data} gives {list(d.labels)} (use --positive)")
    d = d.subset(stratified_pick(d.targets[:, 0], opts.limit, opts.seed))
    size = first.train_input_size or first.input_size
    images = load_rgb(list(d.paths), size)
    y = d.targets[:, 0].astype(np.int64)
    keras = KerasModel(run, size)
    artifacts = {m.name: m for m in (ArtifactModel(mp, size, opts.backend, opts.threads) for mp in manifests)}
    try:
        order = float_first(["keras", *artifacts])
        models = {"keras": (keras, opts.threshold or keras.threshold)}
        models |= {k: (a, opts.threshold or a.threshold) for k, a in artifacts.items()}
        models = {k: models[k] for k in order}
        grid = _Grid(y, order)
        records, clean = run_conditions(images, y, models, opts, on_grid=grid)
        adversarial = _adversarial(keras, images, d.targets, y, models, clean, opts)
    finally:
        for a in artifacts.values():
            a.close()
    machine, line = machine_line()
    doc = {"kind": "classes", "data": [str(data)], "run": str(run), "items": len(images), "positives": int(y.sum()),
           "positive": first.labels[0], "input_size": list(size), "models": order, "float_reference": "keras",
           "seed": opts.seed, "severities": list(opts.severities), "corruptions": list(opts.corruptions),
           "thresholds": {k: thr for k, (_, thr) in models.items()},
           "machine": machine, "machine_line": line, "conditions": records, "adversarial": adversarial}
    out = Path(out) if out else (manifests[0].parent / "robustness")
    return write_report(doc, out, grid.panels, opts.baseline)


class _Grid:
    """The picture grid: one image (the positive Keras is surest of, clean) under every condition, every model."""

    def __init__(self, y: np.ndarray, order: list[str]) -> None:
        self.y, self.order = y, order
        self.panels: list[np.ndarray] = []
        self.pick: int | None = None

    def __call__(self, name, severity, batch, outputs) -> None:
        from edge.robustreport import grid_panel

        if self.pick is None:
            self.pick = int(np.argmax(np.where(self.y == 1, outputs["keras"][0], -np.inf)))
        i = self.pick
        title = "clean" if severity == 0 else f"{name}, severity {severity}"
        self.panels.append(grid_panel(title, batch[i], {k: (v[0][i : i + 1], v[1][i : i + 1]) for k, v in outputs.items()},
                                      self.order, 160))


def _adversarial(keras: KerasModel, images, targets, y, models, clean, opts: RobustnessOptions) -> list[dict]:
    """FGSM (and PGD) on the Keras model, white-box; the perturbed images sent through every model (transfer)."""
    from training.adversarial import pgd

    records = []
    for steps, attack in [(1, "fgsm")] + ([(opts.pgd_steps, f"pgd{opts.pgd_steps}")] if opts.pgd_steps > 1 else []):
        for eps in opts.eps:
            adv = pgd(keras.model, images, targets, eps, steps=steps)
            rec = {"attack": attack, "eps": eps, "models": {}}
            for k, (fn, thr) in models.items():
                scores, cams = fn(adv)
                rec["models"][k] = figures(y, scores, thr, clean[k][0], cams, clean[k][1])
            records.append(rec)
            log.info("robustness: %s eps %g: %s", attack, eps,
                     ", ".join(f"{k} {f['balanced_accuracy']:.3f}" for k, f in rec["models"].items()))
    return records


__all__ = ["CLEAN", "KerasModel", "robustness"]
