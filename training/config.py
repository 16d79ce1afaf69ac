"""Training options: one frozen dataclass that rejects unknown keys."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edge.checks import non_negative_int, positive_int
from edge.cli_args import parse_duration
from edge.errors import ConfigError, reject_unknown_keys

__all__ = ["TrainConfig", "parse_duration"]  # parse_duration lives in edge.cli_args (the --time-budget type)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` in the run directory.

    Attributes:
        data: folder per class (``train`` sub-folder optional), or a CSV for multi-label.
        val: validation folder; when None, ``val_split`` of ``data`` is held out (stratified).
        positive: make a multi-class folder one-vs-rest binary with this class positive.
        input_size, alpha, weights, pooling, dropout: the model (see ``ModelConfig``).
        epochs: phase 1 (head only on a pretrained backbone; everything from scratch).
        finetune_epochs, finetune_blocks, finetune_lr: phase 2, last N blocks unfrozen.
        lr, schedule: phase 1 rate; ``constant``, ``cyclic`` (triangular, phase 1) or
            ``cosine`` (each phase decays from its rate to zero over its epochs).
        class_weight: ``auto`` (balanced when imbalanced), ``balanced`` or ``none``.
        augment: ``aerial`` (top-down views: any rotation), ``upright`` (side views) or ``none``.
        weather: ``maritime`` also puts half the training images through one random
            camera condition (noise, blur, haze, light, contrast, JPEG; see
            ``training.weather``), on top of ``augment``; ``none`` (default) does not.
        monitor: validation metric for early stopping and the best checkpoint.
        threshold_rule: ``youden`` or ``recall`` (with ``target_recall``) or ``fixed`` (0.5).
        time_budget: wall seconds for the whole run (both phases, every ``--resume`` session);
            training stops at the end of the epoch after which one more would overrun it
            (see ``parse_duration`` for ``90m`` and the like). None: no limit.
        init_model: a ``model.keras`` whose weights a new run starts from (box
            training's last mining round continues the trained model this way).
    """

    data: str
    out: str = "runs/train"
    val: str | None = None
    val_split: float = 0.2
    positive: str | None = None
    csv: str | None = None
    input_size: tuple[int, int] = (96, 96)
    alpha: float = 0.35
    weights: str | None = None
    pooling: str = "max"
    dropout: float = 0.2
    batch_size: int = 64
    epochs: int = 3
    lr: float = 1e-3
    schedule: str = "cosine"
    finetune_epochs: int = 18
    finetune_blocks: int = 17
    finetune_lr: float = 1e-4
    class_weight: str = "auto"
    augment: str = "upright"
    weather: str = "none"
    mixup: float = 0.0
    patience: int = 8
    monitor: str = "val_auc"
    threshold_rule: str = "youden"
    target_recall: float = 0.95
    seed: int = 0
    skip_bad: bool = False
    max_images: int | None = None
    time_budget: float | None = None
    init_model: str | None = None
    verbose: int = 1

    def __post_init__(self) -> None:
        choices = {
            "pooling": ("max", "avg", "cell"),
            "schedule": ("constant", "cyclic", "cosine"),
            "class_weight": ("auto", "balanced", "none"),
            "threshold_rule": ("youden", "recall", "fixed"),
            "monitor": ("val_auc", "val_loss", "val_accuracy"),
            "augment": ("aerial", "upright", "none"),
            "weather": ("none", "maritime"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: expected one of {list(allowed)}; received {getattr(self, key)!r}")
        for key in ("epochs", "finetune_epochs", "finetune_blocks", "patience"):
            non_negative_int(key, getattr(self, key))
        positive_int("batch_size", self.batch_size)
        if self.lr <= 0 or self.finetune_lr <= 0:
            raise ConfigError(f"lr, finetune_lr: expected positive rates; received {self.lr}, {self.finetune_lr}")
        if self.time_budget is not None:
            budget = self.time_budget
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not (math.isfinite(budget) and budget > 0):
                raise ConfigError(f"time_budget: expected seconds > 0 or None; received {budget!r}")
            object.__setattr__(self, "time_budget", float(budget))
        if not 0 <= self.finetune_blocks <= 17:
            raise ConfigError(f"finetune_blocks: MobileNetV2 has 17 blocks; received {self.finetune_blocks}")
        size = self.input_size
        if isinstance(size, int):
            size = (size, size)
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        if isinstance(self.augment, bool):  # older configs said True/False
            object.__setattr__(self, "augment", "aerial" if self.augment else "none")
        if isinstance(self.weights, str) and self.weights.lower() in ("none", ""):
            object.__setattr__(self, "weights", None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        reject_unknown_keys(cls, d, "training options")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d
