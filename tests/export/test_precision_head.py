"""Mixed precision on a run with a localisation head: the encoder's layers are the candidates, the decoder stays
int8, and every step reports the head's centre heatmap against the float model's.

The head is the tiny classifier run's encoder with a decoder of random weights
(``build_head``, 8 channels): what is tested is the export's plumbing on the
combined model, not how well the head finds ships (tests/training/test_locate_e2e.py does that).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.manifest import load_manifest

pytestmark = pytest.mark.slow

FLOAT = ("Conv1", "block_16_project")


@pytest.fixture(scope="module")
def tiny_head_run(tiny_run, tmp_path_factory):
    import keras

    from training.locate import build_head, check_channels
    from training.run import load_run

    model, _ = load_run(tiny_run)
    info = json.loads((tiny_run / "run.json").read_text())
    out = tmp_path_factory.mktemp("head-run")
    keras.utils.set_random_seed(4)
    head = build_head(check_channels(model), width=8)
    # CenterNet's prior bias keeps an untrained map near 0.01, below int8's step: centre it so the map varies
    head.get_layer("centre_logits").bias.assign(np.zeros(1, np.float32))
    head.save(out / "head.keras")
    shutil.copyfile(tiny_run / "model.keras", out / "model.keras")
    info["head"] = {"kind": "locate", "stride": 8, "threshold": 0.5, "nms_iou": 0.3, "size_encoding": "log(side / stride)"}
    (out / "run.json").write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def head_export(tiny_head_run, scenes, tmp_path_factory):
    from export.exporter import ExportOptions, export_run

    out = tmp_path_factory.mktemp("head-mixed")
    export_run(tiny_head_run, out, ExportOptions(formats=("tflite-int8", "onnx-int8"), calib=str(scenes / "train"),
                                                 calib_size=24, int8_float=",".join(FLOAT), int8_holdout=16))
    return out


def _layers(run):
    from export.precision import layer_inventory
    from training.run import load_run

    model, info = load_run(run)
    return layer_inventory(model, info.task, tuple(info.input_size))


def test_the_combined_model_keeps_exactly_the_named_encoder_layers_in_float(head_export, tiny_head_run):
    from export.onnx_format import node_precisions
    from export.tflite_format import op_precisions

    layers = _layers(tiny_head_run)
    names = {layer.name for layer in layers}
    for name, read in (("model-int8.tflite", op_precisions), ("model-int8.onnx", node_precisions)):
        m = load_manifest(head_export / f"{name}.manifest.json")
        assert m.has_head and m.mixed_precision.float_layers == FLOAT
        ops = read(m.artifact_path.read_bytes(), layers)
        encoder = [op for op in ops if op[0] in names]
        decoder = [op for op in ops if op[0] not in names]
        assert sorted({op[0] for op in encoder if op[2] in ("float32", "float")}) == sorted(FLOAT), name
        # the decoder's convolutions (p8 ... size_out, the separable ones as two ops each) all run in int8
        assert len(decoder) >= 10 and all(op[2] == "int8" for op in decoder), (name, decoder)


def test_each_step_reports_the_head_centres_against_float(head_export):
    for name in ("model-int8.tflite", "model-int8.onnx"):
        doc = json.loads((head_export / f"{name}.precision.json").read_text())
        r = doc["frontier"][0]["centres_r"]
        assert r is not None and 0.5 < r <= 1.0, (name, r)
        assert "head centres r" in (head_export / f"{name}.precision.md").read_text()


def test_the_mixed_head_artifacts_locate_through_the_detector(head_export, val_images):
    from edge.detector import Detector

    image = val_images[0][0]
    for name in ("model-int8.tflite", "model-int8.onnx"):
        with Detector.from_manifest(head_export / f"{name}.manifest.json") as det:
            result = det.detect(image)
        assert result.located is not None and result.scores.shape == (1,)


def test_auto_on_a_head_run_ranks_encoder_layers_and_reports_the_head(tiny_head_run, scenes, tmp_path):
    from export.exporter import ExportOptions, export_run
    from export.precision import TargetsNotMet

    # targets this untrained model cannot reach, so that the search ranks and climbs
    with pytest.raises(TargetsNotMet, match="head centres r"):
        export_run(tiny_head_run, tmp_path, ExportOptions(
            formats=("tflite-int8",), calib=str(scenes / "train"), calib_size=24, int8_float="auto", int8_holdout=16,
            int8_targets="agreement=1,cam_r=0.999,max_float=0.3", int8_candidates=2))
    doc = json.loads((tmp_path / "model-int8.tflite.precision.json").read_text())
    names = {layer.name for layer in _layers(tiny_head_run)}
    ranked = [row["layer"] for row in doc["sensitivity"] if "shortfall" in row]
    assert ranked and set(ranked) <= names  # the decoder is never a candidate
    assert len(doc["frontier"]) == 3 and all(-1 <= step["centres_r"] <= 1 for step in doc["frontier"])
