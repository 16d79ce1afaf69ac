"""A finished training run read back: the Keras model and its ``run.json`` as a :class:`RunInfo`.

Its own module so that training/evaluate.py (which reads runs) and training/train.py
(which evaluates what it trained) do not import each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge.errors import DataError
from edge.manifest import Task

__all__ = ["RunInfo", "load_run", "read_run_info"]


@dataclass(frozen=True)
class RunInfo:
    """What ``run.json`` says about a trained model; what the readers of a run use, typed.

    Attributes:
        task: what the scores mean.
        labels: the class names, in score order.
        thresholds: one decision threshold per label.
        input_size: (h, w) the model was trained at.
        negative_label: the name of "none of the labels" (``rest`` for one-vs-rest), or None.
        threshold_rule: how the thresholds were chosen.
        frame_scale: trained on crops cut at this scale (box training); the runtime
            resizes whole frames by it. None when trained on whole images.
        head: the localisation head's settings (``kind``, ``stride``, ``threshold``,
            ``nms_iou``, ``size_encoding``...) for a head run, else None.
        extra: every other key of run.json (counts, timings, box training...), kept as written.

    Example:
        >>> info = RunInfo.from_dict({"task": "binary", "labels": ["ship"], "thresholds": [0.5],
        ...                           "input_size": [96, 96], "seconds": 12.0})
        >>> info.task, info.extra
        (<Task.BINARY: 'binary'>, {'seconds': 12.0})
    """

    task: Task
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    input_size: tuple[int, int]
    negative_label: str | None = None
    threshold_rule: str = "fixed"
    frame_scale: float | None = None
    head: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    REQUIRED = ("task", "labels", "thresholds", "input_size")

    @classmethod
    def from_dict(cls, d: Any, where: str = "run.json") -> "RunInfo":
        """Read a run.json document; missing required keys or values of the wrong kind raise a DataError."""
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected a JSON object; received {type(d).__name__}")
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise DataError(f"{where}: missing key(s) {missing}; a run.json names at least {list(cls.REQUIRED)}")
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            task = Task(d["task"])
        except ValueError:
            raise DataError(f"{where}: task: expected one of {[t.value for t in Task]}; received {d['task']!r}") from None
        try:
            size = tuple(int(v) for v in d["input_size"])
            thresholds = tuple(float(t) for t in d["thresholds"])
            scale = float(d["frame_scale"]) if d.get("frame_scale") else None
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: expected numbers in input_size, thresholds and frame_scale; {exc}") from None
        if len(size) != 2 or not isinstance(d["labels"], list) or len(thresholds) != len(d["labels"]):
            raise DataError(f"{where}: expected input_size [h, w] and one threshold per label; received input_size "
                            f"{d['input_size']!r}, labels {d['labels']!r}, thresholds {d['thresholds']!r}")
        head = d.get("head")
        if head is not None and not isinstance(head, dict):
            raise DataError(f"{where}: head: expected an object; received {type(head).__name__}")
        return cls(task=task, labels=tuple(str(label) for label in d["labels"]), thresholds=thresholds,
                   input_size=size, negative_label=d.get("negative_label"),
                   threshold_rule=d.get("threshold_rule", "fixed"), frame_scale=scale, head=head,
                   extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The run.json document again: the typed keys and ``extra``, in one object."""
        d: dict[str, Any] = {"task": str(self.task), "labels": list(self.labels), "thresholds": list(self.thresholds),
                             "input_size": list(self.input_size), "negative_label": self.negative_label,
                             "threshold_rule": self.threshold_rule}
        if self.frame_scale is not None:
            d["frame_scale"] = self.frame_scale
        if self.head is not None:
            d["head"] = self.head
        return {**d, **self.extra}


def read_run_info(path: str | Path) -> RunInfo:
    """The :class:`RunInfo` of ``run.json`` at ``path`` (no Keras needed)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"expected a JSON run.json at {path}; could not read it: {exc}") from exc
    return RunInfo.from_dict(doc, str(path))


def load_run(path: str | Path):
    """(keras model, :class:`RunInfo`) from a run directory or a ``model.keras`` inside one."""
    import keras

    path = Path(path)
    run = path if path.is_dir() else path.parent
    model_path = run / "model.keras" if path.is_dir() else path
    if not model_path.is_file():
        raise DataError(f"expected a trained model at {model_path}; none exists (train first: edgecam train DATA)")
    info_path = run / "run.json"
    if not info_path.is_file():
        raise DataError(f"expected run.json beside {model_path} (labels, task, thresholds); none exists")
    info = read_run_info(info_path)
    from training.lr import _triangular_class

    _triangular_class()  # registers the cyclical schedule so a model trained with it loads

    return keras.models.load_model(model_path, compile=False), info
