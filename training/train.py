"""A training run: data, two-phase fine-tuning, early stopping, best checkpoint, metrics."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge import atomic
from edge.errors import ConfigError, DataError
from edge.manifest import Task
from training import data as D
from training.config import TrainConfig
from training.model import BACKBONE, ModelConfig, build_classifier

log = logging.getLogger("edgecam.training")


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict
    seconds: float


class RunClock:
    """Wall and CPU seconds of one run across the processes (sessions) that trained it.

    A resumed run starts from the totals its ``state.json`` recorded, so the
    time budget and ``run.json`` count every session, not only the last. Time a
    process spent after its last completed epoch before it died is lost.

    Example:
        >>> clock = RunClock.from_state({"elapsed_s": 600.0, "cpu_s": 2400.0, "sessions": 1})
        >>> clock.sessions, clock.elapsed_s() >= 600.0
        (2, True)
    """

    def __init__(self, prior_s: float = 0.0, prior_cpu_s: float = 0.0, sessions: int = 1,
                 wall=time.monotonic, cpu=time.process_time):
        self.prior_s, self.prior_cpu_s, self.sessions = float(prior_s), float(prior_cpu_s), int(sessions)
        self._wall, self._cpu = wall, cpu
        self._t0, self._c0 = wall(), cpu()

    @classmethod
    def from_state(cls, state: dict | None, **clocks) -> "RunClock":
        """The clock of a new session: continues ``state`` (a resumed run's state.json), or starts at zero."""
        if not state:
            return cls(**clocks)
        return cls(state.get("elapsed_s", 0.0), state.get("cpu_s", 0.0), int(state.get("sessions", 1)) + 1, **clocks)

    def session_s(self) -> float:
        return self._wall() - self._t0

    def elapsed_s(self) -> float:
        return self.prior_s + self.session_s()

    def cpu_s(self) -> float:
        return self.prior_cpu_s + self._cpu() - self._c0

    def fields(self) -> dict:
        return {"elapsed_s": round(self.elapsed_s(), 3), "cpu_s": round(self.cpu_s(), 3), "sessions": self.sessions}


@dataclass
class Progress:
    """What ``state.json`` records after every epoch, so that ``--resume`` continues the run and its clocks."""

    run: Path
    monitor: str
    clock: RunClock
    best: float | None = None
    phase: str = "head"
    epoch: int = 0
    epochs_run: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_state(cls, run: Path, state: dict | None, monitor: str, **clocks) -> "Progress":
        """A new session's progress: continues ``state`` (a resumed run's state.json), or starts afresh."""
        clock = RunClock.from_state(state, **clocks)
        if not state:
            return cls(Path(run), monitor, clock)
        epochs_run = state.get("epochs_run") or {state["phase"]: state["epoch"]}
        return cls(Path(run), monitor, clock, state.get("best"), state["phase"], state["epoch"], dict(epochs_run))

    def epoch_done(self, phase: str, epoch: int, best: float | None) -> None:
        """Record epoch ``epoch`` (1-based, counted within ``phase``) and write state.json."""
        self.phase, self.epoch, self.best = phase, epoch, best
        self.epochs_run[phase] = epoch
        self.write()

    def write(self) -> None:
        atomic.write_json(self.run / "state.json", {
            "phase": self.phase, "epoch": self.epoch, "best": self.best, "monitor": self.monitor,
            "epochs_run": self.epochs_run, **self.clock.fields()})


class TimeBudget:
    """Decides, at each epoch end and before each phase, whether one more epoch fits in the run's time budget.

    The next epoch is predicted to last the mean of this phase's epochs so far in
    this session (the first one includes tracing, so the guess errs long);
    phase 2 is predicted at phase 1's pace, which errs short, since fine-tuning
    back-propagates through the backbone. Elapsed time is the run's total
    (:class:`RunClock`), across phases and resumed sessions.

    Example:
        >>> budget = TimeBudget(None, RunClock())
        >>> budget.may_start("head", 1, 5)
        True
    """

    def __init__(self, seconds: float | None, clock: RunClock):
        self.seconds, self.clock = seconds, clock
        self.stopped = False
        self._durations: list[float] = []
        self._mark = clock.elapsed_s()

    def may_start(self, phase: str, first_epoch: int, total: int) -> bool:
        """Whether ``phase`` may run epoch ``first_epoch`` (1-based) of ``total``; resets the epoch timer."""
        if self.stopped:
            log.warning("time budget: phase %s not started: the budget is spent", phase)
            return False
        now = self.clock.elapsed_s()
        guess = float(np.mean(self._durations)) if self._durations else 0.0
        if self.seconds is not None and (now >= self.seconds or now + guess > self.seconds):
            self._stop(f"phase {phase} not started (epoch {first_epoch} of {total} would be next)", now, guess)
            return False
        self._durations, self._mark = [], now
        return True

    def epoch_ended(self, phase: str, epoch: int, total: int) -> bool:
        """True when training must stop after epoch ``epoch`` (1-based) of ``total`` in ``phase``."""
        now = self.clock.elapsed_s()
        self._durations.append(now - self._mark)
        self._mark = now
        guess = float(np.mean(self._durations))
        if self.seconds is None or epoch >= total or now + guess <= self.seconds:
            return False
        self._stop(f"stopping phase {phase} after epoch {epoch} of {total}", now, guess)
        return True

    def _stop(self, what: str, now: float, guess: float) -> None:
        self.stopped = True
        if guess > 0:
            log.warning("time budget: %s: %.1f s elapsed + ~%.1f s per epoch would exceed the budget of %g s",
                        what, now, guess, self.seconds)
        else:
            log.warning("time budget: %s: %.1f s elapsed, the budget of %g s is spent", what, now, self.seconds)


def load_data(cfg: TrainConfig) -> tuple[D.LabeledImages, D.LabeledImages]:
    """Training and validation sets as the config describes, bad images checked."""
    if cfg.csv:
        full = D.from_csv(cfg.csv, cfg.data)
        train, val = D.stratified_split(full, cfg.val_split, cfg.seed)
    else:
        root = Path(cfg.data)
        if (root / "train").is_dir() and cfg.val is None and (root / "val").is_dir():
            train, val = D.from_folder(root / "train", cfg.positive), D.from_folder(root / "val", cfg.positive)
        elif cfg.val is not None:
            train, val = D.from_folder(root, cfg.positive), D.from_folder(cfg.val, cfg.positive)
        else:
            train, val = D.stratified_split(D.from_folder(root, cfg.positive), cfg.val_split, cfg.seed)
        if train.labels != val.labels:
            raise DataError(f"training labels {train.labels} differ from validation labels {val.labels}")
    if cfg.max_images:
        rng = np.random.default_rng(cfg.seed)
        train = train.subset(np.sort(rng.permutation(len(train))[: cfg.max_images]))
    train, val = D.drop_bad_all([train, val], cfg.skip_bad)  # one check, so one error lists every bad file
    return train, val


def compile_model(model, task: str, lr):
    import keras

    if task == Task.MULTICLASS:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.AUC(name="auc", from_logits=True)]
    else:
        # The dense layer emits logits; a loss that expected probabilities here
        # cost this project's seed days of a model that never learned.
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metrics = [
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
            keras.metrics.AUC(name="auc", from_logits=True, multi_label=task == Task.MULTILABEL),
        ]
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics)
    return loss


def cosine_schedule(lr: float, decay_steps: int):
    """``lr`` decaying to zero along a half cosine over ``decay_steps`` steps.

    A run resumed midway decays over the epochs it has left, from ``lr``
    again: the optimiser's step count is not part of the checkpoint.
    """
    import keras

    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=int(decay_steps), alpha=0.0)


def distribution_strategy(kind: str = "auto"):
    """``auto``: MultiWorkerMirrored when TF_CONFIG is set, Mirrored on >1 GPU, else the default."""
    import tensorflow as tf

    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multiworker" or (kind == "auto" and os.environ.get("TF_CONFIG")):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if kind != "auto":
        raise ConfigError(f"strategy: expected auto, none, mirrored or multiworker; received {kind!r}")
    return tf.distribute.get_strategy()


def _callbacks(cfg: TrainConfig, progress: Progress, budget: TimeBudget, phase: str, total: int):
    import keras

    run = progress.run
    mode = "min" if cfg.monitor == "val_loss" else "max"

    class Checkpoint(keras.callbacks.Callback):
        """Best model to ``model.keras``, the latest to ``last.keras`` and progress to ``state.json``, all atomically."""

        def on_epoch_end(self, epoch, logs=None):
            value = float((logs or {}).get(cfg.monitor, np.nan))
            best = progress.best
            if np.isfinite(value) and (best is None or (value < best if mode == "min" else value > best)):
                best = value
                _save(self.model, run / "model.keras")
            _save(self.model, run / "last.keras")
            progress.epoch_done(phase, epoch + 1, best)

    class BudgetStop(keras.callbacks.Callback):
        """Ends ``fit`` at an epoch end when one more epoch would overrun ``cfg.time_budget``."""

        def on_epoch_end(self, epoch, logs=None):
            if budget.epoch_ended(phase, epoch + 1, total):
                self.model.stop_training = True

    return [
        Checkpoint(),
        keras.callbacks.EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run / f"history_{phase}.csv"), append=True),
        BudgetStop(),  # last, so the epoch it times includes the checkpoint writes
    ]


def _save(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)


def set_finetune(model, blocks: int) -> int:
    """Unfreeze the last ``blocks`` inverted-residual blocks (and the final 1x1 conv); return #trainable layers."""
    backbone = model.get_layer(BACKBONE)
    backbone.trainable = True
    first = 17 - blocks
    n = 0
    for layer in backbone.layers:
        name = layer.name
        block = int(name.split("_")[1]) if name.startswith("block_") else (99 if name.startswith(("Conv_1", "out_relu")) else -1)
        layer.trainable = block >= first and blocks > 0
        n += int(layer.trainable)
    return n


@dataclass(frozen=True)
class _Phases:
    """What the head and fine-tuning phases share: the config, the data, the clocks and the state resumed from."""

    cfg: TrainConfig
    state: dict | None
    progress: Progress
    budget: TimeBudget
    strategy: object
    train_ds: object
    val_ds: object
    class_weight: dict | None
    steps: int  # batches per epoch
    task: str

    def resumed_epoch(self, phase: str) -> int:
        """The epochs of ``phase`` a resumed run already finished (0 for a new run)."""
        return self.state["epoch"] if self.state and self.state["phase"] == phase else 0

    def fit(self, model, phase: str, start: int, epochs: int) -> tuple[str, dict]:
        h = model.fit(self.train_ds, validation_data=self.val_ds, epochs=epochs, initial_epoch=start,
                      class_weight=self.class_weight, callbacks=_callbacks(self.cfg, self.progress, self.budget, phase, epochs),
                      verbose=self.cfg.verbose)
        return phase, h.history


def train(cfg: TrainConfig, strategy=None, resume: bool = False) -> TrainResult:
    """Run both phases and write the run directory.

    With ``cfg.time_budget`` training stops at the end of the epoch after which
    one more would overrun the budget, counted over the whole run (both phases
    and, with ``resume``, the earlier sessions); the final evaluation still runs.

    Example:
        >>> result = train(TrainConfig(data="runs/demo/data", out="runs/demo/train"))  # doctest: +SKIP
        >>> result.metrics["balanced_accuracy"]  # doctest: +SKIP
    """
    run = Path(cfg.out)
    state = _read_state(run) if resume else None
    progress = Progress.from_state(run, state, cfg.monitor)  # the session clock starts here
    budget = TimeBudget(cfg.time_budget, progress.clock)
    train_set, val_set = load_data(cfg)  # bad data is refused before a run folder is made or Keras is loaded
    import keras

    run.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    task = train_set.task
    log.info("data: %d train %s, %d val %s", len(train_set), train_set.counts(), len(val_set), val_set.counts())
    cw = _class_weights(cfg, train_set)
    atomic.write_json(run / "config.json", cfg.to_dict())
    info = {"task": task, "labels": list(train_set.labels), "negative_label": train_set.negative_label,
            "input_size": list(cfg.input_size), "class_weight": cw, "counts": {"train": train_set.counts(), "val": val_set.counts()}}

    phases = _Phases(cfg, state, progress, budget, strategy or distribution_strategy(),
                     D.tf_dataset(train_set, cfg.input_size, cfg.batch_size, True, cfg.seed, cfg.augment, cfg.mixup,
                                  weather=cfg.weather),
                     D.tf_dataset(val_set, cfg.input_size, cfg.batch_size, False), cw,
                     int(np.ceil(len(train_set) / cfg.batch_size)), task)
    model = _start_model(phases, len(train_set.labels))
    histories = _fit_head(phases, model) + _fit_finetune(phases, model)
    model = _best_model(run, model)
    _write_history(run, histories)
    from training.evaluate import evaluate_keras

    metrics = evaluate_keras(model, val_set, cfg.input_size, task, rule=cfg.threshold_rule, target_recall=cfg.target_recall)
    info["thresholds"] = metrics["thresholds"]
    info["threshold_rule"] = metrics["threshold_rule"]
    clock = progress.clock
    info.update({
        "seconds": round(clock.elapsed_s(), 1),  # every session of this run: training and evaluation
        "seconds_this_session": round(clock.session_s(), 1),
        "sessions": clock.sessions,
        "cpu_seconds": round(clock.cpu_s(), 1),
        "time_budget_s": cfg.time_budget,
        "stopped_by_budget": budget.stopped,
        "epochs_run": {"head": progress.epochs_run.get("head", 0), "finetune": progress.epochs_run.get("finetune", 0)},
    })
    atomic.write_json(run / "run.json", info)
    progress.write()  # a later --resume then counts this session's evaluation too
    atomic.write_json(run / "metrics.json", metrics)
    _write_plots(run, model, val_set, metrics, cfg.input_size, task)
    return TrainResult(run, metrics, clock.session_s())


def _class_weights(cfg: TrainConfig, train_set: D.LabeledImages) -> dict | None:
    """The class weights ``cfg.class_weight`` asks for (``auto``: balanced when the classes are imbalanced)."""
    mode = cfg.class_weight
    if mode == "auto":
        mode = "balanced" if D.is_imbalanced(train_set) else "none"
    cw = D.class_weights(train_set, mode)
    log.info("class weights (%s): %s", mode, cw)
    return cw


def _start_model(phases: _Phases, num_classes: int):
    """The model phase 1 trains, compiled: the resumed one, ``cfg.init_model``, or a new classifier."""
    import keras

    cfg, state = phases.cfg, phases.state
    run = Path(cfg.out)
    with phases.strategy.scope():
        if state and (run / "last.keras").exists():
            model = keras.models.load_model(run / "last.keras")
            log.info("resuming %s from phase %s epoch %d (session %d, %.0f s so far)",
                     run, state["phase"], state["epoch"], phases.progress.clock.sessions, phases.progress.clock.prior_s)
        elif cfg.init_model:
            # continue from an earlier model's weights (e.g. after another round of mined negatives)
            init = Path(cfg.init_model)
            if not init.is_file():
                raise DataError(f"init_model: expected a model.keras to start from; {init} does not exist")
            model = keras.models.load_model(init)
            log.info("starting from the weights of %s", init)
        else:
            model = build_classifier(ModelConfig(num_classes=num_classes, task=phases.task, input_size=cfg.input_size,
                                                 alpha=cfg.alpha, weights=cfg.weights, pooling=cfg.pooling, dropout=cfg.dropout))
        if cfg.weights is not None:
            model.get_layer(BACKBONE).trainable = False
        compile_model(model, phases.task, _head_lr(cfg, phases.steps, _head_start(phases)))
    return model


def _head_start(phases: _Phases) -> int:
    """Phase 1's first epoch (0-based): where a resumed run stopped, all of it when it had moved on to phase 2."""
    if phases.state and phases.state["phase"] != "head":
        return phases.cfg.epochs
    return phases.resumed_epoch("head")


def _head_lr(cfg: TrainConfig, steps: int, start: int):
    """Phase 1's learning rate: a constant, or a cyclic or cosine schedule over the epochs left."""
    if cfg.schedule == "cyclic":
        from training.lr import triangular_schedule

        return triangular_schedule(cfg.lr / 10, cfg.lr, step_size=2 * steps)
    if cfg.schedule == "cosine":
        return cosine_schedule(cfg.lr, steps * max(cfg.epochs - start, 1))
    return cfg.lr


def _fit_head(phases: _Phases, model) -> list[tuple[str, dict]]:
    """Phase 1 (the head, over a frozen backbone when pretrained), unless done or over the budget."""
    cfg, start = phases.cfg, _head_start(phases)
    if cfg.epochs > start and phases.budget.may_start("head", start + 1, cfg.epochs):
        return [phases.fit(model, "head", start, cfg.epochs)]
    return []


def _fit_finetune(phases: _Phases, model) -> list[tuple[str, dict]]:
    """Phase 2: the last ``cfg.finetune_blocks`` blocks of a pretrained backbone unfrozen, at ``cfg.finetune_lr``."""
    cfg, start = phases.cfg, phases.resumed_epoch("finetune")
    pretrained = cfg.weights is not None
    if pretrained and cfg.finetune_epochs > start and phases.budget.may_start("finetune", start + 1, cfg.finetune_epochs):
        with phases.strategy.scope():
            n = set_finetune(model, cfg.finetune_blocks)
            log.info("phase 2: %d backbone layers trainable (last %d blocks), lr %g", n, cfg.finetune_blocks, cfg.finetune_lr)
            lr = cfg.finetune_lr
            if cfg.schedule == "cosine":
                lr = cosine_schedule(cfg.finetune_lr, phases.steps * max(cfg.finetune_epochs - start, 1))
            compile_model(model, phases.task, lr)
        return [phases.fit(model, "finetune", start, cfg.finetune_epochs)]
    if not pretrained and cfg.finetune_epochs > 0:
        log.info("phase 2 skipped: the backbone was trained from scratch in phase 1 (weights=None)")
    return []


def _best_model(run: Path, model):
    """The best checkpoint, or ``model`` itself (saved as it) when no finite validation metric was ever seen."""
    import keras

    if (run / "model.keras").exists():
        return keras.models.load_model(run / "model.keras")
    _save(model, run / "model.keras")
    return model


def _write_plots(run: Path, model, val_set, metrics: dict, size, task: str) -> None:
    try:
        from training import plots

        plots.run_plots(run, model, val_set, metrics, size, task)
    except ImportError as exc:  # matplotlib is optional for headless CI images
        log.warning("plots skipped: %s", exc)


def _read_state(run: Path) -> dict | None:
    """The state.json of a run to resume, or None when it has none."""
    path = run / "state.json"
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if "elapsed_s" not in state:  # written before the run clock existed
        last = json.loads((run / "run.json").read_text()).get("seconds", 0.0) if (run / "run.json").is_file() else 0.0
        log.warning("%s has no elapsed time; counting earlier sessions as the %.0f s run.json reported", path, last)
        state["elapsed_s"] = last
    return state


def _write_history(run: Path, histories) -> None:
    rows = []
    epoch = 0
    for phase, hist in histories:
        n = len(next(iter(hist.values()))) if hist else 0
        for i in range(n):
            epoch += 1
            rows.append({"epoch": epoch, "phase": phase, **{k: float(v[i]) for k, v in hist.items()}})
    atomic.write_json(run / "history.json", rows)


__all__ = ["TrainConfig", "TrainResult", "train", "load_data", "replace"]
