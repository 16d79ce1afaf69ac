"""Mixed precision in the real formats, on the tiny model: the graph holds exactly the float layers asked for,
``auto`` is deterministic and fails loudly with its frontier, and verify takes the CAM through the runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.manifest import load_manifest

pytestmark = pytest.mark.slow

FLOAT = ("block_16_project", "Conv_1")


@pytest.fixture(scope="module")
def mixed_export(tiny_run, scenes, tmp_path_factory):
    from export.exporter import ExportOptions, export_run

    out = tmp_path_factory.mktemp("mixed")
    export_run(tiny_run, out, ExportOptions(formats=("tflite-int8", "onnx-int8"), calib=str(scenes / "train"),
                                            calib_size=24, int8_float=",".join(reversed(FLOAT)), int8_holdout=16,
                                            int8_targets="latency_size=96x160"))
    return out


def _layers(tiny_run):
    from export.precision import layer_inventory
    from training.run import load_run

    model, info = load_run(tiny_run)
    return layer_inventory(model, info.task, info.input_size)


def test_tflite_keeps_exactly_the_named_layers_in_float(mixed_export, tiny_run):
    from export.precision import float_share
    from export.tflite_format import op_precisions

    layers = _layers(tiny_run)
    m = load_manifest(mixed_export / "model-int8.tflite.manifest.json")
    ops = op_precisions(m.artifact_path.read_bytes(), layers)
    assert [op[0] for op in ops] == [layer.name for layer in layers]  # every multiplying op found, in order
    assert [(op[0], op[1]) for op in ops if op[2] == "float32"] == [("block_16_project", "CONV_2D"), ("Conv_1", "CONV_2D")]
    assert [op[2] for op in ops].count("int8") == len(layers) - 2
    record = m.mixed_precision
    assert record.mode == "explicit" and record.float_layers == FLOAT
    assert record.float_mac_share == pytest.approx(float_share(layers, FLOAT), abs=1e-6)
    assert m.input.dtype == "float32" and m.output("features").dtype == "float32"  # float I/O: features unrounded
    assert m.extra["calibration"]["io"] == "float" and m.extra["calibration"]["images"] == 24  # 16 more were held out


def test_onnx_keeps_exactly_the_named_layers_in_float(mixed_export, tiny_run):
    from export.onnx_format import node_precisions

    layers = _layers(tiny_run)
    m = load_manifest(mixed_export / "model-int8.onnx.manifest.json")
    nodes = node_precisions(m.artifact_path.read_bytes(), layers)
    assert [n[0] for n in nodes] == [layer.name for layer in layers]  # every conv and the head's MatMul, once
    assert [n[0] for n in nodes if n[2] == "float"] == list(FLOAT)
    assert m.mixed_precision.float_layers == FLOAT
    report = (mixed_export / "model-int8.onnx.precision.md").read_text()
    assert "block_16_project, Conv_1" in report


def test_the_mixed_artifacts_are_timed_through_the_runtime_at_the_size_asked(mixed_export):
    for name in ("model-int8.tflite", "model-int8.onnx"):
        record = load_manifest(mixed_export / f"{name}.manifest.json").mixed_precision
        latency = record.measured_on["latency"]
        assert latency["input_size"] == [96, 160] and 0.2 < latency["ratio_to_full_int8"] < 10, (name, latency)
        assert "max_latency" not in record.targets  # timed, not capped
        doc = json.loads((mixed_export / f"{name}.precision.json").read_text())
        assert doc["frontier"][0]["latency"] == pytest.approx(latency["ratio_to_full_int8"], abs=1e-4)
        assert "Latency: median invoke at 96x160" in (mixed_export / f"{name}.precision.md").read_text()


def test_the_mixed_artifacts_run_in_the_runtime_close_to_float(mixed_export, val_images, keras_outputs):
    from edge.backends import create_backend

    images, _ = val_images
    for name in ("model-int8.tflite", "model-int8.onnx"):
        with create_backend(load_manifest(mixed_export / f"{name}.manifest.json")) as be:
            out = be.infer(images[:8])
        assert out["features"].dtype == np.float32 and out["features"].shape == keras_outputs[1][:8].shape
        # the float Conv_1 gets int8 inputs: features are close to Keras, not equal
        rel = np.abs(out["features"] - keras_outputs[1][:8]).mean() / np.abs(keras_outputs[1][:8]).mean()
        assert rel < 0.25, (name, rel)


def test_auto_on_the_tiny_model_is_deterministic(tiny_run, scenes):
    from edge.cam import DenseCAM
    from export import precision as P
    from export.calibration import collect
    from export.onnx_format import OnnxCalibration, OnnxMixed, convert_fp32
    from training.model import cam_weights, inference_model
    from training.run import load_run

    model, info = load_run(tiny_run)
    size = info.input_size
    layers = P.layer_inventory(model, info.task, size)
    cal, held = collect(scenes / "train", size, 40, seed=5).hold_out(16)
    cam = DenseCAM(*cam_weights(model)[:2])
    fp32 = convert_fp32(inference_model(model, info.task, dynamic=True))
    targets = P.Targets(agreement=1.0, cam_r=0.9999, max_float_share=0.2)
    plans = []
    for _ in range(2):
        with OnnxCalibration(fp32, cal) as c:
            q = OnnxMixed(c, layers, debug_images=cal.images[:4])
            ref = P.reference(cam, *q.run(q.float_artifact(), held), list(info.thresholds), info.task)
            plans.append(P.search(q, layers, ref, cam, held, targets, candidates=3, say=lambda s: None))
    a, b = plans
    assert a.steps == b.steps and a.float_layers == b.float_layers and len(a.steps) >= 2
    assert a.content == b.content  # byte for byte


def test_auto_that_cannot_meet_its_targets_exits_non_zero_with_the_frontier(tiny_run, scenes, tmp_path, capsys):
    from edge.cli import main

    out = tmp_path / "exp"
    code = main(["export", str(tiny_run), "--formats", "onnx-int8", "--calib", str(scenes / "train"),
                 "--calib-size", "24", "--int8-float", "auto", "--int8-holdout", "16",
                 "--int8-targets", "agreement=1,cam_r=1,max_float=0.01", "--out", str(out)])
    captured = capsys.readouterr()
    assert code != 0
    assert "targets not met" in captured.err and "| 0 | (full int8) | 0.0 % |" in captured.err
    m = load_manifest(out / "model-int8.onnx.manifest.json")  # the best plan within the cap is still written
    assert m.mixed_precision.met is False and m.mixed_precision.float_mac_share <= 0.01
    doc = json.loads((out / "model-int8.onnx.precision.json").read_text())
    assert doc["frontier"][0]["added"] is None and all(s["float_share"] <= 0.01 for s in doc["frontier"])


def test_verify_takes_the_cam_through_the_runtime(tiny_export, val_images, monkeypatch):
    """An int8 artifact's CAM comes from DenseCAM.raw_quantized on the int8 map, as in the detector."""
    from edge.backends import create_backend
    from edge.cam import DenseCAM
    from export.verify import runtime_outputs

    calls = []
    original = DenseCAM.raw_quantized

    def spy(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(DenseCAM, "raw_quantized", spy)
    images = val_images[0][:6]
    mp = tiny_export / "model-int8.tflite.manifest.json"
    scores, cams, ms = runtime_outputs(mp, images, np.zeros(6, int), latency_runs=2)
    assert len(calls) == 6 and ms > 0
    m = load_manifest(mp)
    with create_backend(m) as be:
        out = be.infer(images)
    expected = np.einsum("nhwk,k->nhw", out["features"], m.cam.weights[:, 0])
    np.testing.assert_allclose(cams, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, out["scores"], atol=1e-6)


def test_frame_fidelity_runs_every_artifact_at_frame_size(tiny_export, scenes, tmp_path):
    """A larger input gives a real map (3x5 cells here); float artifacts match Keras there, int8 ones are measured."""
    from export.verify import frame_fidelity

    r = frame_fidelity(tiny_export, scenes / "val", (96, 160), limit=6, out=tmp_path)
    assert r["images"] == 6 and r["feature_map"] == [3, 5]
    by = {a["format"]: a for a in r["artifacts"]}
    for fmt in ("tflite-fp32", "onnx-fp32"):
        assert by[fmt]["cam_correlation"] > 0.999 and by[fmt]["same_peak_cell"] == 1.0
    assert -1.0 <= by["tflite-int8"]["cam_correlation"] <= 1.0
    assert "| tflite-int8 | 0.0 % |" in (tmp_path / "frames.md").read_text()
