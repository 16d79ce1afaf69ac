"""The parity report: its figures on known arrays, its gates, and a real run on CIFAR photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.errors import ConfigError
from export.verify import apply_gates, load_gates, pearson, peak_shift, top_region_iou, verify


def test_pearson_iou_and_peak_shift_on_known_maps():
    a = np.array([[0, 1, 2], [3, 4, 5]], float)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    b = a.copy()
    b[0, 0], b[1, 2] = 5, 0  # peak moves from (1, 2) to (0, 0)
    assert peak_shift(a, b) == pytest.approx(np.hypot(1, 2))
    # top 20 % of 6 cells = 1 cell each: a's is (1,2), b's is (0,0): disjoint
    assert top_region_iou(a, b) == 0.0
    assert top_region_iou(a, a) == 1.0


def _row(**kw):
    row = {"format": "tflite-int8", "max_abs_score_diff": 0.01, "mean_abs_score_diff": 1e-3, "agreement": 0.99, "balanced_accuracy_delta": -0.001,
           "cam_correlation": 0.97, "collapsed": False}
    row.update(kw)
    return row


@pytest.mark.parametrize(
    "change, failure",
    [
        ({}, None),
        ({"agreement": 0.9}, "agreement"),
        ({"balanced_accuracy_delta": -0.05}, "balanced accuracy drop"),
        ({"cam_correlation": 0.5}, "CAM correlation"),
        ({"collapsed": True}, "collapsed"),
        ({"format": "onnx-fp32", "max_abs_score_diff": 1e-3, "agreement": 1.0, "cam_correlation": 1.0}, "score diff"),
        ({"format": "tflite-fp16", "mean_abs_score_diff": 1e-2, "agreement": 1.0, "cam_correlation": 1.0}, "mean |score"),
    ],
)
def test_gates(change, failure):
    fails = apply_gates(_row(**change), load_gates(None))
    if failure is None:
        assert fails == []
    else:
        assert len(fails) == 1 and failure in fails[0]


def test_gate_file_overrides_and_rejects_unknown(tmp_path):
    f = tmp_path / "gates.json"
    f.write_text(json.dumps({"*": {"min_agreement": 0.5}, "tflite-int8": {"min_cam_correlation": 0.99}}))
    gates = load_gates(f)
    assert gates["onnx-fp32"].min_agreement == 0.5 and gates["tflite-int8"].min_cam_correlation == 0.99
    f.write_text(json.dumps({"tflite-int8": {"min_agreemnt": 0.5}}))
    with pytest.raises(ConfigError, match="min_agreemnt"):
        load_gates(f)
    f.write_text(json.dumps({"tflite-int4": {}}))
    with pytest.raises(ConfigError, match="tflite-int4"):
        load_gates(f)


@pytest.mark.slow
def test_verify_on_generated_scenes_writes_reports(tiny_export, scenes, caplog):
    with caplog.at_level("INFO", logger="edgecam.export"):
        r = verify(tiny_export, scenes / "val")
    done = [r_.getMessage() for r_ in caplog.records if r_.getMessage().startswith("verify [") and " in " in r_.getMessage()]
    assert len(done) == 6 and done[0].startswith("verify [1/6]: ") and done[-1].startswith("verify [6/6]: ")
    assert {a["format"] for a in r["artifacts"]} == {"tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8",
                                                     "onnx-fp32", "onnx-int8"}
    by = {a["format"]: a for a in r["artifacts"]}
    # fp32 rounding can flip an image sitting exactly at the threshold; at most one of 48
    assert by["onnx-fp32"]["max_abs_score_diff"] <= 1e-4 and by["onnx-fp32"]["agreement"] >= 47 / 48
    assert by["tflite-fp32"]["cam_correlation"] >= 0.999
    md = (tiny_export / "parity.md").read_text()
    assert "| tflite-int8 |" in md and json.loads((tiny_export / "parity.json").read_text())["images"] == r["images"]


@pytest.mark.slow
@pytest.mark.shared
def test_int8_does_not_collapse_on_real_photos(tmp_path, cifar, imagenet_weights):
    """ImageNet MobileNetV2, a short head-only fit on CIFAR ship-vs-rest, int8 calibrated on real photos."""
    from export.exporter import ExportOptions, export_run
    from training.config import TrainConfig
    from training.train import train

    run = tmp_path / "run"
    train(TrainConfig(data=str(cifar / "val"), out=str(run), positive="ship", input_size=(64, 64), alpha=1.0,
                      weights=str(imagenet_weights), epochs=2, batch_size=32, max_images=600, augment="none", verbose=0,
                      finetune_epochs=0, schedule="constant"))
    export_run(run, tmp_path / "exp", ExportOptions(formats=("tflite-int8", "onnx-int8"), calib=str(cifar / "train"),
                                                     calib_size=100))
    r = verify(tmp_path / "exp", cifar / "val", positive="ship", limit=400)
    for a in r["artifacts"]:
        print(a["format"], a["agreement"], a["cam_correlation"], a["balanced_accuracy"], a["keras_balanced_accuracy"])
        assert not a["collapsed"], a
        assert a["keras_balanced_accuracy"] > 0.7  # the model learned something real to preserve
        assert a["agreement"] >= 0.85
        assert a["balanced_accuracy"] >= a["keras_balanced_accuracy"] - 0.1


# the row of parity.json as edgecam has written it (runs/cifar13/exp-auto/parity.json), in order
PARITY_KEYS = ["format", "artifact", "size_bytes", "float_layers", "float_mac_share", "mixed_targets", "mixed_met",
               "max_abs_score_diff", "mean_abs_score_diff", "agreement", "near_boundary", "agreement_far",
               "agreement_near", "accuracy", "balanced_accuracy", "roc_auc", "keras_accuracy", "keras_balanced_accuracy",
               "keras_roc_auc", "balanced_accuracy_delta", "roc_auc_delta", "cam_correlation", "cam_correlation_min",
               "positives", "cam_correlation_positive", "cam_top20_iou", "cam_peak_shift_cells", "collapsed",
               "latency_ms", "failures"]


def _parity_row(**kw):
    from export.verify import ParityRow

    figures = {k: 0.5 for k in PARITY_KEYS if k not in ("format", "artifact", "failures")}
    figures.update(size_bytes=1000, float_layers=[], mixed_targets=None, mixed_met=None, near_boundary=3, positives=7,
                   collapsed=False)
    figures.update(kw)
    return ParityRow(format="tflite-int8", artifact="model-int8.tflite", **figures)


def test_a_parity_row_writes_the_json_row_it_always_has():
    from export.verify import HeadParity

    row = _parity_row(agreement=0.9)
    row.failures = apply_gates(row, load_gates(None))
    d = row.to_dict()
    assert list(d) == PARITY_KEYS and d["failures"] == row.failures and "agreement 0.9000 < 0.97" in d["failures"][0]
    assert json.loads(json.dumps(d)) == d  # plain JSON, nothing left as a dataclass
    # a run with a localisation head adds its three figures before the failures
    d = _parity_row(head=HeadParity(0.99, 0.02, 1.0)).to_dict()
    assert list(d) == PARITY_KEYS[:-1] + ["head_centre_correlation", "head_centre_max_abs_diff", "head_same_peak",
                                          "failures"]
    # gating the saved JSON row gives what gating the row gave
    assert apply_gates(d, load_gates(None)) == apply_gates(_parity_row(), load_gates(None))


def test_gates_come_from_the_format_table_and_refuse_bad_values(tmp_path):
    from edge.formats import Gates, format_spec

    gates = load_gates(None)
    assert gates["tflite-fp16"] == format_spec("tflite-fp16").gates
    assert gates["tflite-fp16"].to_dict() == {"max_mean_abs_score_diff": 5e-3, "min_agreement": 0.99,
                                              "min_cam_correlation": 0.99, "allow_collapse": False}
    assert Gates().updated({"allow_collapse": True}).allow_collapse is True
    f = tmp_path / "gates.json"
    for doc, message in (({"*": {"min_agreement": "high"}}, "min_agreement: expected a number"),
                         ({"*": {"allow_collapse": 1}}, "allow_collapse: expected true or false"),
                         ({"onnx-fp32": [0.9]}, "expected an object of gate -> value"),
                         ([1], "expected a JSON object")):
        f.write_text(json.dumps(doc))
        with pytest.raises(ConfigError, match=message):
            load_gates(f)


@pytest.mark.parametrize("kw, message", [({"limit": 0}, "limit: expected a positive integer or None; received 0"),
                                         ({"limit": 2.5}, "limit: expected a positive integer")])
def test_verify_refuses_a_limit_that_is_no_count(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        verify(tmp_path, tmp_path, **kw)
