"""Draw a FrameResult onto a frame: CAM overlay, boxes, score and fps text.

Every annotator returns a new frame and leaves its input untouched: the same
frame may go on to a sink or the live view unannotated. ``compose`` copies once
and lets each annotator draw on that copy.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Sequence

import cv2
import numpy as np

from edge.checks import positive_int
from edge.errors import ConfigError, FrameError
from edge.results import FrameResult

__all__ = ["Annotator", "HeatmapAnnotator", "BoxAnnotator", "LocatedAnnotator", "LabelAnnotator", "Compose", "compose", "default_annotator"]


def _check_color(color: Sequence[int]) -> tuple[int, int, int]:
    if len(color) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in color):
        raise ConfigError(f"expected an RGB color of three ints in [0, 255]; received {color!r}")
    return (int(color[0]), int(color[1]), int(color[2]))


class Annotator(ABC):
    """Base of annotators: ``annotate(scene, result)`` returns an annotated copy.

    Subclasses implement ``draw(canvas, result)``, which may write into
    ``canvas`` (already a private copy).

    Example:
        >>> out = BoxAnnotator().annotate(frame, result)  # doctest: +SKIP
    """

    def annotate(self, scene: np.ndarray, result: FrameResult) -> np.ndarray:
        """Return an annotated copy of the RGB uint8 ``scene``."""
        if not isinstance(scene, np.ndarray) or scene.dtype != np.uint8 or scene.ndim != 3 or scene.shape[2] != 3:
            got = f"{scene.dtype} {scene.shape}" if isinstance(scene, np.ndarray) else type(scene).__name__
            raise FrameError(f"expected an RGB uint8 (H, W, 3) scene; received {got}")
        return self.draw(scene.copy(), result)

    @abstractmethod
    def draw(self, canvas: np.ndarray, result: FrameResult) -> np.ndarray:
        """Draw onto ``canvas`` (a copy the caller owns) and return it."""


class HeatmapAnnotator(Annotator):
    """Blend the CAM heatmap over the frame with an OpenCV colormap.

    Args:
        alpha: heatmap weight in [0, 1].
        colormap: an OpenCV colormap id.
    """

    def __init__(self, alpha: float = 0.45, colormap: int = cv2.COLORMAP_JET) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"HeatmapAnnotator.alpha must be in [0, 1]; received {alpha!r}")
        self.alpha = float(alpha)
        self.colormap = int(colormap)

    def draw(self, canvas: np.ndarray, result: FrameResult) -> np.ndarray:
        h, w = canvas.shape[:2]
        heat = result.heatmap
        if heat.shape != (h, w):
            heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
        level = (np.clip(np.nan_to_num(heat), 0.0, 1.0) * 255).astype(np.uint8)
        color = cv2.cvtColor(cv2.applyColorMap(level, self.colormap), cv2.COLOR_BGR2RGB)
        cv2.addWeighted(color, self.alpha, canvas, 1.0 - self.alpha, 0.0, dst=canvas)
        return canvas


class BoxAnnotator(Annotator):
    """Rectangles around ``result.boxes`` (``x1``/``y1`` exclusive, drawn on the last pixel inside).

    Args:
        color: RGB color.
        thickness: line width in pixels (>= 1).
    """

    def __init__(self, color: Sequence[int] = (0, 255, 0), thickness: int = 2) -> None:
        self.color, self.thickness = _check_color(color), positive_int("BoxAnnotator.thickness", thickness)

    def draw(self, canvas: np.ndarray, result: FrameResult) -> np.ndarray:
        for x0, y0, x1, y1 in np.round(result.boxes.xyxy).astype(int):
            cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), self.color, self.thickness)
        return canvas


class LocatedAnnotator(BoxAnnotator):
    """Rectangles around the localisation head's boxes (``result.located``); nothing for an artifact without a head."""

    def __init__(self, color: Sequence[int] = (0, 230, 255), thickness: int = 2) -> None:
        super().__init__(color, thickness)

    def draw(self, canvas: np.ndarray, result: FrameResult) -> np.ndarray:
        located = getattr(result, "located", None)
        if located is None:
            return canvas
        for x0, y0, x1, y1 in np.round(located.xyxy).astype(int):
            cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), self.color, self.thickness)
        return canvas


class LabelAnnotator(Annotator):
    """Top label and score, plus the rate at which frames are annotated.

    The fps is measured here, between calls, as an exponential moving average,
    so it is the rate the viewer actually gets.

    Args:
        color: RGB text color (drawn on a dark box for contrast).
        scale: font scale.
        show_fps: append ``fps N.N`` once two frames have been seen.
    """

    def __init__(self, color: Sequence[int] = (255, 255, 255), scale: float = 0.6, show_fps: bool = True) -> None:
        if not scale > 0:
            raise ConfigError(f"LabelAnnotator.scale must be > 0; received {scale!r}")
        self.color, self.scale, self.show_fps = _check_color(color), float(scale), bool(show_fps)
        self.fps: float | None = None
        self._last: float | None = None

    def text_for(self, result: FrameResult) -> str:
        """The text drawn for ``result`` (uses the fps measured so far)."""
        top = result.top
        mark = "+" if result.positive[top] else "-"
        text = f"{result.labels[top]} {float(result.scores[top]):.2f} {mark}"
        if self.show_fps and self.fps is not None:
            text += f" | fps {self.fps:.1f}"
        return text

    def draw(self, canvas: np.ndarray, result: FrameResult) -> np.ndarray:
        now = time.monotonic()
        if self._last is not None and now > self._last:
            inst = 1.0 / (now - self._last)
            self.fps = inst if self.fps is None else 0.9 * self.fps + 0.1 * inst
        self._last = now
        text = self.text_for(result)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, self.scale, 1)
        cv2.rectangle(canvas, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
        cv2.putText(canvas, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, self.scale, self.color, 1, cv2.LINE_AA)
        return canvas


class Compose(Annotator):
    """Several annotators in order, drawing on one copy."""

    def __init__(self, annotators: Sequence[Annotator]) -> None:
        bad = [type(a).__name__ for a in annotators if not isinstance(a, Annotator)]
        if bad:
            raise ConfigError(f"compose expects Annotator instances; received {bad}")
        self.annotators = tuple(annotators)

    def draw(self, canvas: np.ndarray, result: FrameResult) -> np.ndarray:
        for annotator in self.annotators:
            canvas = annotator.draw(canvas, result)
        return canvas


def compose(*annotators: Annotator) -> Compose:
    """Chain annotators; the heatmap usually goes first so boxes and text stay crisp.

    Example:
        >>> overlay = compose(HeatmapAnnotator(), BoxAnnotator(), LabelAnnotator())
        >>> len(overlay.annotators)
        3
    """
    return Compose(annotators)


def default_annotator() -> Compose:
    """Heatmap overlay, then CAM boxes (green) and the head's boxes (cyan) when there are any, then label and fps."""
    return compose(HeatmapAnnotator(), BoxAnnotator(), LocatedAnnotator(), LabelAnnotator())
