"""The detector on real exported artifacts: same numbers as the export layer, CAM in numpy, no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge.cam import DenseCAM, normalise, resize_heatmap


@pytest.mark.slow  # exports a tiny model
@pytest.mark.parametrize("name", ["model-int8.tflite", "model-fp32.onnx", "model-fp32.tflite"])
def test_detector_equals_export_layer(tiny_export, name):
    from edge.backends import create_backend
    from edge.detector import Detector
    from edge.manifest import load_manifest
    from edge.synthetic import SceneClip

    mp = tiny_export / (name + ".manifest.json")
    manifest = load_manifest(mp)
    frames = [f for f, _ in SceneClip(seed=1, n_frames=4, width=320, height=192).frames()]
    from edge.preprocess import fit

    with create_backend(manifest) as be, Detector.from_manifest(mp) as det:
        for frame in frames:
            r = det.detect(frame)
            out = be.infer(fit(frame, manifest.input_size)[0][None])
            np.testing.assert_array_equal(r.scores, out["scores"][0])
            cam = manifest.cam.weights[:, 0]
            expected = resize_heatmap(normalise(out["features"][0] @ cam), frame.shape[:2])
            np.testing.assert_allclose(r.heatmap, expected, atol=1e-6)
            assert set(r.timings_ms) == {"preprocess", "infer", "cam", "boxes"}


@pytest.mark.slow  # exports a tiny model
@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_prepare_on_another_thread_then_detect_prepared_equals_detect(tiny_export, resize):
    import threading

    from edge.detector import Detector, DetectorOptions
    from edge.synthetic import SceneClip

    frames = [f for f, _ in SceneClip(seed=3, n_frames=3, width=320, height=192).frames()]
    mp = tiny_export / "model-int8.tflite.manifest.json"
    with Detector.from_manifest(mp, options=DetectorOptions(resize=resize)) as det:
        prepared = []
        worker = threading.Thread(target=lambda: prepared.extend(det.prepare(f) for f in frames))
        worker.start()
        worker.join()
        for frame, p in zip(frames, prepared):
            assert p.frame is frame and p.input.shape == (1, *det.input_size, 3)
            a, b = det.detect(frame), det.detect_prepared(p)
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.heatmap, b.heatmap)
            np.testing.assert_array_equal(a.boxes.xyxy, b.boxes.xyxy)
            assert a.peak == b.peak and b.timings_ms["preprocess"] == p.preprocess_ms


@pytest.mark.slow  # exports a tiny model
def test_detector_rejects_bad_frames(tiny_export):
    from edge.detector import Detector
    from edge.errors import FrameError

    with Detector.from_manifest(tiny_export / "model-int8.tflite.manifest.json") as det:
        for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float64), np.zeros((0, 5, 3), np.uint8), "frame"):
            with pytest.raises(FrameError, match=r"expected an RGB uint8 \(H, W, 3\) frame"):
                det.detect(bad)


@pytest.mark.slow  # exports a tiny model
def test_detector_does_not_mutate_the_frame(tiny_export):
    from edge.detector import Detector

    frame = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    before = frame.copy()
    with Detector.from_manifest(tiny_export / "model-fp32.onnx.manifest.json") as det:
        det.detect(frame)
    np.testing.assert_array_equal(frame, before)


@pytest.mark.slow  # exports a tiny model
def test_close_is_idempotent(tiny_export):
    from edge.detector import Detector
    from edge.errors import ArtifactError

    det = Detector.from_manifest(tiny_export / "model-fp32.onnx.manifest.json")
    frame = np.zeros((*det.input_size, 3), np.uint8)
    det.detect(frame)
    released, real_close = [], det.backend.close
    det.backend.close = lambda: (released.append(True), real_close())
    det.close()
    det.close()
    assert released == [True]  # the runtime is released once, whatever the number of calls
    with pytest.raises(ArtifactError, match="closed"):
        det.detect(frame)  # and a closed detector says so instead of running a freed session


def test_dense_cam_is_the_weighted_channel_sum():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3, 4, 5)).astype(np.float32)
    w = rng.normal(size=(5, 2)).astype(np.float32)
    raw = DenseCAM(w).raw(feats, 1)
    hand = sum(w[k, 1] * feats[:, :, k] for k in range(5))
    np.testing.assert_allclose(raw, hand, rtol=1e-6, atol=1e-6)
    heat = DenseCAM(w)(feats, 1, size=(30, 40))
    relu = np.maximum(hand, 0) / np.maximum(hand, 0).max()
    np.testing.assert_allclose(heat, resize_heatmap(relu, (30, 40)), atol=1e-6)
    # upsampling interpolates between cell centres, so the peak stays at most 1
    assert heat.shape == (30, 40) and 0.9 <= heat.max() <= 1.0 and heat.min() >= 0.0


def test_resize_heatmap_numpy_and_opencv_agree(monkeypatch):
    import builtins

    cam = np.random.default_rng(1).random((3, 5)).astype(np.float32)
    with_cv = resize_heatmap(cam, (30, 47))
    real_import = builtins.__import__

    def no_cv2(name, *a, **k):
        if name == "cv2":
            raise ImportError("hidden")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    without = resize_heatmap(cam, (30, 47))
    np.testing.assert_allclose(with_cv, without, atol=1e-3)


@pytest.mark.slow  # exports a tiny model
def test_runtime_never_imports_tensorflow(tiny_export):
    """Import edge, load an artifact, detect and run the pipeline: TensorFlow and Keras stay out of sys.modules."""
    code = f"""
import sys
from pathlib import Path
import tempfile
from edge.detector import Detector
from edge.pipeline import RunOptions, run
from edge.sources import SyntheticSource, CaptureMode
for name in ("model-int8.tflite", "model-fp32.onnx"):
    with Detector.from_manifest(Path({str(tiny_export)!r}) / (name + ".manifest.json")) as det:
        run(det, SyntheticSource(n_frames=5, width=320, height=192), RunOptions(out_dir=Path(tempfile.mkdtemp()), mode=CaptureMode.ALL))
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("IMPORTED", bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "IMPORTED []" in out.stdout, out.stdout + out.stderr[-2000:]


@pytest.mark.slow  # exports a tiny model
def test_onnxruntime_threads_do_not_spin_unless_asked(tiny_export):
    from edge.detector import Detector

    key = "session.intra_op.allow_spinning"
    mp = tiny_export / "model-fp32.onnx.manifest.json"
    for spin, expected in ((False, "0"), (True, "1")):
        with Detector.from_manifest(mp, spin_wait=spin) as det:
            assert det.backend.session_options.get_session_config_entry(key) == expected


@pytest.mark.slow  # exports a tiny model
def test_threads_default_to_one_per_physical_core_in_both_runtimes(tiny_export, monkeypatch):
    import types

    import edge.backends.base as base
    import edge.backends.litert as litert
    from edge.detector import Detector

    monkeypatch.setattr(base, "physical_cores", lambda: 3)
    real = litert.interpreter_module()
    given: list[object] = []

    def recording(**kwargs):
        given.append(kwargs["num_threads"])
        return real.Interpreter(**kwargs)

    monkeypatch.setattr(litert, "interpreter_module",
                        lambda: types.SimpleNamespace(__name__=real.__name__, Interpreter=recording))
    for threads, expected in ((None, 3), (1, 1)):
        with Detector.from_manifest(tiny_export / "model-int8.tflite.manifest.json", threads=threads) as det:
            assert det.backend.threads == expected and given[-1] == expected
        with Detector.from_manifest(tiny_export / "model-fp32.onnx.manifest.json", threads=threads) as det:
            assert det.backend.threads == expected
            assert det.backend.session_options.intra_op_num_threads == expected
