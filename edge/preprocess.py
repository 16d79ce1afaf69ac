"""Fit a frame to the model input: stretch or letterbox, then cast or quantise."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from edge.errors import FrameError


class ResizeMode(str, Enum):
    STRETCH = "stretch"
    LETTERBOX = "letterbox"


@dataclass(frozen=True)
class Placement:
    """Where the resized frame sits in the model input: scale and padding offsets."""

    scale_y: float
    scale_x: float
    pad_top: int
    pad_left: int
    content_h: int
    content_w: int


def check_frame(frame: object) -> np.ndarray:
    """Return ``frame`` if it is a non-empty uint8 (H, W, 3) array, else raise FrameError."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"expected a uint8 HxWx3 frame (numpy array); received {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise FrameError(f"expected a uint8 HxWx3 frame; received {frame.dtype} {frame.shape}")
    return frame


def fit(frame: np.ndarray, size: tuple[int, int], mode: ResizeMode = ResizeMode.STRETCH) -> tuple[np.ndarray, Placement]:
    """Resize ``frame`` (RGB uint8) to ``size`` = (height, width).

    ``letterbox`` keeps the aspect ratio and pads with mid-grey; ``stretch``
    fills the input. Returns the image and its :class:`Placement`, which maps
    heatmaps back onto the frame.
    """
    import cv2

    check_frame(frame)
    H, W = frame.shape[:2]
    h, w = int(size[0]), int(size[1])
    mode = ResizeMode(mode)
    if mode is ResizeMode.STRETCH:
        interp = cv2.INTER_AREA if (H > h or W > w) else cv2.INTER_LINEAR
        out = cv2.resize(frame, (w, h), interpolation=interp) if (H, W) != (h, w) else frame
        return out, Placement(h / H, w / W, 0, 0, h, w)
    s = min(h / H, w / W)
    ch, cw = max(1, round(H * s)), max(1, round(W * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    content = cv2.resize(frame, (cw, ch), interpolation=interp)
    out = np.full((h, w, 3), 128, np.uint8)
    top, left = (h - ch) // 2, (w - cw) // 2
    out[top : top + ch, left : left + cw] = content
    return out, Placement(ch / H, cw / W, top, left, ch, cw)


def unplace(heatmap: np.ndarray, placement: Placement, frame_shape: tuple[int, int]) -> np.ndarray:
    """Map a heatmap at model-input size back to the frame (crop the padding, resize)."""
    from edge.cam import resize_heatmap

    p = placement
    content = heatmap[p.pad_top : p.pad_top + p.content_h, p.pad_left : p.pad_left + p.content_w]
    return resize_heatmap(content, frame_shape[:2])
