"""``edgecam bench --keras``: the naive baseline, a Keras model called on single frames (imports TensorFlow).

:func:`edge.bench.bench_keras` loads this module by name, so the device runtime never imports it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge.bench import Clock, FrameFeed, KerasResult, LatencySummary, time_loop

__all__ = ["bench_keras"]


def bench_keras(model_path: Path, feed: FrameFeed, frames: int, clock: Clock = time.perf_counter,
                input_size: tuple[int, int] | None = None) -> KerasResult:
    """The naive baseline: the Keras model on single frames. Imports TensorFlow (only here).

    With ``input_size`` the trained weights are rewired at that size with the
    same two outputs as the artifacts (scores and feature map), so both sides
    do the same work per frame.
    """
    result = KerasResult(model=str(model_path))
    try:
        import tensorflow as tf
    except ImportError as exc:
        result.skipped = f"TensorFlow is not importable ({exc})"
        return result
    import cv2

    t0 = clock()
    model = tf.keras.models.load_model(model_path, compile=False)
    if input_size is not None:
        import json as _json

        from training.model import inference_model

        info_path = Path(model_path).with_name("run.json")
        task = _json.loads(info_path.read_text())["task"] if info_path.is_file() else "binary"
        model = inference_model(model, task, input_size=tuple(input_size))
    result.load_ms = (clock() - t0) * 1e3
    _, h, w, _ = model.input_shape

    def batch() -> np.ndarray:
        # same contract as the artifacts: RGB 0..255, resized to the model input
        return cv2.resize(feed.next(), (w, h), interpolation=cv2.INTER_AREA)[None].astype(np.float32)

    for _ in range(3):
        model(batch(), training=False)
        model.predict(batch(), verbose=0)
    durations, wall = time_loop(lambda: model(batch(), training=False), frames, clock)
    result.call = LatencySummary.from_durations(durations, wall)
    durations, wall = time_loop(lambda: model.predict(batch(), verbose=0), frames, clock)
    result.predict = LatencySummary.from_durations(durations, wall)
    return result
