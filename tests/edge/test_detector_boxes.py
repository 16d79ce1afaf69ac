"""The detector's CAM, boxes and peak on a scripted backend: no model, exact feature maps."""

from __future__ import annotations

import types

import numpy as np
import pytest

from edge.boxes import boxes_from_heatmap
from edge.cam import normalise, resize_heatmap
from edge.detector import Detector, DetectorOptions


class ScriptedBackend:
    """Returns the feature map it is given; the CAM weights are ones, so the CAM is the channel sum."""

    def __init__(self, features: np.ndarray, score: float = 0.9, input_size=(96, 160), pooling="max", extra=None):
        k = features.shape[-1]
        self.features, self.score, self._size = features.astype(np.float32), score, input_size
        self.manifest = types.SimpleNamespace(
            labels=("ship",), thresholds=(0.5,), task="binary", extra=dict(extra or {}),
            cam=types.SimpleNamespace(weights=np.ones((k, 1), np.float32), bias=np.zeros(1, np.float32), pooling=pooling),
        )
        self.options = types.SimpleNamespace(input_size=None)

    @property
    def input_size(self):
        return self._size

    def prepare(self, batch):
        return batch

    def infer_prepared(self, batch, dequantize=True):
        n = len(batch)
        return {"scores": np.full((n, 1), self.score, np.float32), "features": np.repeat(self.features[None], n, 0)}

    def output_quantization(self, role, arr):
        return None

    def dequantize(self, role, arr):
        return arr

    def infer(self, batch):
        return self.infer_prepared(batch)

    def close(self):
        pass


def _features():
    f = np.zeros((3, 5, 2), np.float32)  # a 96x160 input at stride 32
    f[1, 3] = (2.0, 1.0)  # a hot cell
    f[1, 4] = (1.0, 0.5)  # and a warm neighbour
    return f


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("frame_hw", [(192, 320), (360, 640), (96, 160)])
def test_boxes_at_input_resolution_match_boxes_on_the_frame_heatmap(resize, frame_hw):
    det = Detector(ScriptedBackend(_features()), DetectorOptions(resize=resize, warmup=0, min_box_area=16))
    frame = np.zeros((*frame_hw, 3), np.uint8)
    r = det.detect(frame)
    on_frame = boxes_from_heatmap(r.heatmap, 0.5, 16, 0)
    assert len(r.boxes) == len(on_frame) == 1
    # one input pixel covers frame/input pixels (4 at most here): the two boxes agree within that
    step = max(frame_hw[0] / 96, frame_hw[1] / 160)
    np.testing.assert_allclose(r.boxes.xyxy, on_frame.xyxy, atol=step + 1)
    np.testing.assert_allclose(r.boxes.score, on_frame.score, atol=0.02)
    assert (r.boxes.xyxy[:, 2] <= frame_hw[1]).all() and (r.boxes.xyxy[:, 3] <= frame_hw[0]).all()


def test_the_frame_heatmap_and_peak_are_those_of_the_cam():
    det = Detector(ScriptedBackend(_features()), DetectorOptions(warmup=0))
    r = det.detect(np.zeros((192, 320, 3), np.uint8))
    cam = normalise(_features().sum(-1))
    np.testing.assert_allclose(r.heatmap, resize_heatmap(cam, (192, 320)), atol=1e-6)
    x, y = r.peak
    assert 3 * 64 <= x < 4.5 * 64 and 64 <= y < 128, "the peak sits in the hot cell, pulled towards its warm neighbour"


def test_negative_frames_get_no_boxes_and_no_heatmap_work():
    det = Detector(ScriptedBackend(_features(), score=0.1), DetectorOptions(warmup=0))
    r = det.detect(np.zeros((192, 320, 3), np.uint8))
    assert not r.positive.any() and len(r.boxes) == 0
    assert r._heatmap is None, "the frame-size heatmap is computed only when read"
    assert r.heatmap.shape == (192, 320)


def test_cam_of_an_int8_feature_map_equals_the_cam_of_its_dequantised_copy():
    from edge.cam import DenseCAM
    from edge.manifest import Quantization

    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (7, 7, 64), dtype=np.int8)
    weights = rng.normal(size=(64, 3)).astype(np.float32)
    quant = Quantization(scale=0.0473, zero_point=-128)
    cam = DenseCAM(weights)
    for cls in range(3):
        expected = cam.raw(quant.dequantize(q), cls)
        got = cam.raw_quantized(q[None], cls, quant.scale, quant.zero_point)
        assert got.dtype == np.float32 and got.shape == (7, 7)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4 * np.abs(expected).max())


def test_the_detector_reads_an_int8_feature_map_through_the_backend_quantisation():
    from edge.manifest import Quantization

    quant = Quantization(scale=0.5, zero_point=-10)
    float_map = _features()
    q = np.round(float_map / quant.scale + quant.zero_point).astype(np.int8)

    class Int8Backend(ScriptedBackend):
        def infer_prepared(self, batch, dequantize=True):
            out = {"scores": np.full((len(batch), 1), self.score, np.float32), "features": np.repeat(q[None], len(batch), 0)}
            return {**out, "features": quant.dequantize(out["features"])} if dequantize else out

        def output_quantization(self, role, arr):
            return quant if role == "features" and arr.dtype == np.int8 else None

    frame = np.zeros((192, 320, 3), np.uint8)
    a = Detector(Int8Backend(float_map), DetectorOptions(warmup=0)).detect(frame)
    b = Detector(ScriptedBackend(float_map), DetectorOptions(warmup=0)).detect(frame)
    np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-6)
    np.testing.assert_allclose(a.boxes.xyxy, b.boxes.xyxy)
    assert a.peak == pytest.approx(b.peak)


def test_infer_then_finish_on_another_thread_equals_detect():
    import threading

    from edge.errors import ConfigError

    det = Detector(ScriptedBackend(_features()), DetectorOptions(warmup=0))
    frame = np.zeros((192, 320, 3), np.uint8)
    whole = det.detect(frame)
    inference = det.infer([det.prepare(frame)])
    finished = []
    t = threading.Thread(target=lambda: finished.extend(det.finish(inference)))
    t.start()
    t.join()
    (split,) = finished
    np.testing.assert_array_equal(split.scores, whole.scores)
    np.testing.assert_array_equal(split.boxes.xyxy, whole.boxes.xyxy)
    np.testing.assert_allclose(split.heatmap, whole.heatmap)
    assert split.peak == whole.peak and split.timings_ms["infer"] == inference.infer_ms
    with pytest.raises(ConfigError, match="at least one prepared frame"):
        det.infer([])
