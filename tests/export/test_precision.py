"""Mixed precision for int8 artifacts: layer names, fidelity figures, the auto search and the manifest record.

The search is tested on a made-up quantiser whose every plan has a known
fidelity, so "stops when the targets hold" and "stops at the cap" are checked
on exact values; the real formats are checked in test_precision_formats.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.cam import DenseCAM
from edge.errors import ConfigError, ManifestError
from export import precision as P

LAYERS = (
    P.Layer("Conv1", "conv", 400),
    P.Layer("block_1_expand", "conv", 300),
    P.Layer("block_1_depthwise", "depthwise", 100),
    P.Layer("block_1_project", "conv", 0),  # made-up: no MACs, so the shares below stay round
    P.Layer("Conv_1", "conv", 150),
    P.Layer("logits", "dense", 50),
)  # 1000 MACs in all


@pytest.mark.parametrize(
    "name, layer",
    [
        # TFLite fuses conv, batch norm and ReLU6 into one op named after all three
        ("inference_1/mobilenetv2_1.00_96_1/block_1_expand_relu_1/Relu6;inference_1/mobilenetv2_1.00_96_1/block_1_expand_1/convolution",
         "block_1_expand"),
        ("inference_1/mobilenetv2_1.00_96_1/block_1_depthwise_relu_1/Relu6;x/block_1_depthwise_BN_1/batchnorm/mul_1;1",
         "block_1_depthwise"),
        # tf2onnx keeps the batch-norm name on a 1x1 conv, and Conv_1's norm is lower case
        ("inference_1/mobilenetv2_0.35_None_1/block_1_expand_BN_1/batchnorm/mul_1", "block_1_expand"),
        ("inference_1/mobilenetv2_0.35_None_1/Conv_1_bn_1/batchnorm/mul_1", "Conv_1"),
        ("inference_1/mobilenetv2_0.35_None_1/out_relu_1/Relu6", "Conv_1"),
        ("inference_1/mobilenetv2_0.35_None_1/bn_Conv1_1/batchnorm/mul_1", "Conv1"),
        ("inference_1/mobilenetv2_0.35_None_1/Conv1_relu_1/Relu6", "Conv1"),
        ("edgecam_inference_1/pool_1/Max", "logits"),
        ("edgecam_inference_1/scores_1/Sigmoid", "logits"),
        ("StatefulPartitionedCall:0", "Conv_1"),  # a signature output, passed in exactly
        ("NumericVerify/StatefulPartitionedCall:0:57", "Conv_1"),
        ("inference_1/mobilenetv2_0.35_None_1/block_1_pad_1/Pad", "block_1_expand"),  # pads the expansion's output
        ("inference_1/mobilenetv2_0.35_None_1/block_1_add_1/Add", "block_1_project"),  # adds to the projection's output
        ("inference_1/mobilenetv2_0.35_None_1/block_12_add_1/Add", None),  # block 12 is not one of LAYERS
        ("inference_1/preprocess_1/mul", "Conv1"),  # the rescaling feeds the first convolution
        ("inference_1/mobilenetv2_0.35_None_1/block_10_expand_1/convolution", None),  # not one of LAYERS
    ],
)
def test_layer_names_inside_artifacts(name, layer):
    names = P.LayerNames(LAYERS, {"StatefulPartitionedCall:0": "Conv_1"})
    assert names.of(name) == layer


def test_unknown_layer_name_fails_loudly_with_the_valid_ones():
    names = P.LayerNames(LAYERS)
    assert names.check(("logits", "Conv1", "Conv1")) == ("Conv1", "logits")  # graph order, once each
    with pytest.raises(ConfigError, match=r"unknown layer\(s\) \['conv_1'\].*'Conv_1'"):
        names.check(("conv_1",))


def test_float_share_and_features_layer():
    assert P.float_share(LAYERS, ["Conv_1", "logits"]) == pytest.approx(0.2)
    assert P.float_share(LAYERS, []) == 0.0
    assert P.features_layer(LAYERS) == "Conv_1"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("none", ("none", ())),
        ("auto", ("auto", ())),
        (" Conv_1 , logits ", ("explicit", ("Conv_1", "logits"))),
        (",", ConfigError),
    ],
)
def test_parse_float_option(text, expected):
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="--int8-float"):
            P.parse_float_option(text)
    else:
        assert P.parse_float_option(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, P.Targets(0.995, 0.97, 0.25, 1.0)),
        ("cam_r=0.9,max_float=0.1", P.Targets(0.995, 0.9, 0.1, 1.0)),
        ("agreement=0.99,margin=0.5", P.Targets(0.99, 0.97, 0.25, 0.5)),
        ("cam=0.9", "expected KEY=VALUE"),
        ("cam_r=high", "expects a number"),
        ("cam_r=1.5", r"in \[0, 1\]"),
    ],
)
def test_parse_targets(text, expected):
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            P.parse_targets(text)
    else:
        assert P.parse_targets(text) == expected


def test_hold_out_is_stratified_and_disjoint():
    from edge.errors import DataError
    from export.calibration import CalibrationSet

    images = np.arange(20)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    cal, held = CalibrationSet(images, {"ship": 10, "rest": 10}, "x").hold_out(6)
    assert cal.per_class == {"ship": 7, "rest": 7} and cal.source == "x"
    assert [int(x) for x in held[:, 0, 0, 0]] == [7, 8, 9, 17, 18, 19]
    assert not set(cal.images[:, 0, 0, 0].tolist()) & set(held[:, 0, 0, 0].tolist())
    with pytest.raises(DataError, match="hold-out"):
        CalibrationSet(images, {"ship": 20}, "x").hold_out(20)


def test_margins_and_decisions():
    thr = np.array([0.5], np.float32)
    scores = np.array([[0.5], [0.73105858], [0.1]], np.float32)  # logits 0, 1, -2.197
    np.testing.assert_allclose(P.margins(scores, thr, "binary"), [0.0, 1.0, np.log(9)], atol=1e-5)
    assert P.decisions(scores, thr, "binary").ravel().tolist() == [True, True, False]
    multi = np.array([[0.7, 0.2, 0.1]], np.float32)
    np.testing.assert_allclose(P.margins(multi, thr, "multiclass"), [np.log(3.5)], atol=1e-6)


def _features(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, 3, 4)).astype(np.float32)


def test_fidelity_on_known_outputs():
    cam = DenseCAM(np.array([[1.0], [0.5], [-1.0], [0.0]], np.float32), np.zeros(1, np.float32))
    feats = _features()
    scores = np.array([[0.9], [0.2], [0.55], [0.45], [0.95], [0.05], [0.8], [0.25]], np.float32)
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    same = P.fidelity(ref, cam, scores, feats)
    assert (same.agreement, same.agreement_far, same.cam_r, same.top20_iou) == (1.0, 1.0, pytest.approx(1.0), 1.0)
    assert same.near == 2 and same.positives == 4  # 0.55 and 0.45 lie within 1 logit of 0.5
    flipped = scores.copy()
    flipped[2], flipped[5] = 0.45, 0.6  # one flip near the boundary, one far from it
    noisy = feats.copy()
    noisy[0] = noisy[0][::-1]  # one positive image's map turned upside down
    f = P.fidelity(ref, cam, flipped, noisy)
    assert f.agreement == pytest.approx(6 / 8) and f.agreement_far == pytest.approx(5 / 6)
    r0 = P.fidelity(ref, cam, scores, noisy)
    assert r0.cam_r_positive < r0.cam_r < 1.0  # the damage is on a positive, so it weighs more there


def test_targets_met_and_shortfall():
    t = P.Targets(agreement=0.99, cam_r=0.9)
    f = P.Fidelity(100, 0.995, 5, 1.0, 0.95, 10, 0.95, 0.8)
    assert f.meets(t) and f.shortfall(t) == 0.0
    g = P.Fidelity(100, 0.98, 5, 1.0, 0.85, 10, 0.8, 0.5)
    assert not g.meets(t)
    assert g.shortfall(t) == pytest.approx(0.01 / 0.01 + 0.05 / 0.1)


class FakeQuantizer(P.MixedQuantizer):
    """Every float layer removes a known part of the error: the fidelity of a plan is known exactly.

    Scores are exact except for flips on the first ``flips`` images; the CAM
    gets noise whose size shrinks with each float layer.
    """

    format = "fake-int8"
    help = {"Conv1": (0, 0.02), "block_1_expand": (1, 0.1), "block_1_depthwise": (0, 0.01), "block_1_project": (0, 0.0),
            "Conv_1": (2, 0.15), "logits": (1, 0.0)}

    def __init__(self, images, scores, feats, start_flips=4, start_noise=0.3):
        self.images, self.scores, self.feats = images, scores, feats
        self.start = (start_flips, start_noise)
        self.calls: list[frozenset] = []

    def quantize(self, float_layers):
        self.calls.append(frozenset(float_layers))
        return ",".join(sorted(float_layers)).encode()

    def float_artifact(self):
        return b"float"

    def run(self, content, images):
        if content == b"float":
            return self.scores, self.feats
        layers = [n for n in content.decode().split(",") if n]
        flips = max(0, self.start[0] - sum(self.help[n][0] for n in layers))
        noise = max(0.0, self.start[1] - sum(self.help[n][1] for n in layers))
        s = self.scores.copy()
        s[:flips] = 1 - s[:flips]
        rng = np.random.default_rng(0)  # the same noise pattern for every plan: only its size changes
        return s, self.feats + noise * rng.standard_normal(self.feats.shape).astype(np.float32)

    def float_layers_in(self, content):
        return frozenset(n for n in content.decode().split(",") if n) if content != b"float" else frozenset()


def _setup(n=200):
    feats = _features(n, seed=1)
    rng = np.random.default_rng(2)
    scores = np.where(rng.random((n, 1)) < 0.5, 0.02, 0.98).astype(np.float32)  # every image far from 0.5
    cam = DenseCAM(np.array([[1.0], [0.5], [-1.0], [0.0]], np.float32), np.zeros(1, np.float32))
    return scores, feats, cam


@pytest.mark.parametrize("ranking", P.RANKINGS)
def test_auto_stops_as_soon_as_the_targets_hold(ranking):
    scores, feats, cam = _setup()
    q = FakeQuantizer(feats, scores, feats)
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    targets = P.Targets(agreement=0.99, cam_r=0.9, max_float_share=0.6)
    said = []
    plan = P.search(q, LAYERS, ref, cam, feats, targets, say=said.append, ranking=ranking)
    # ranked by what each layer alone does: Conv_1 (2 flips and half the noise fewer) first, then block_1_expand
    assert plan.met and plan.float_layers == ("block_1_expand", "Conv_1")
    assert plan.float_share == pytest.approx(0.45)
    assert [s.added for s in plan.steps] == [None, "Conv_1", "block_1_expand"]
    assert plan.fidelity.agreement == pytest.approx(0.995) and plan.fidelity.cam_r >= 0.9
    assert plan.steps[1].fidelity.agreement == pytest.approx(198 / 200)
    assert len(said) == 3 and said[1].startswith("fake-int8: + Conv_1: float share 15.0 %")
    assert plan.to_manifest()["float_layers"] == ["block_1_expand", "Conv_1"] and plan.to_manifest()["met"] is True


def test_auto_stops_at_the_cap_and_says_the_targets_were_not_met():
    scores, feats, cam = _setup()
    q = FakeQuantizer(feats, scores, feats)
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    targets = P.Targets(agreement=1.0, cam_r=0.999, max_float_share=0.2)
    said = []
    plan = P.search(q, LAYERS, ref, cam, feats, targets, say=said.append)
    assert not plan.met and plan.float_share <= 0.2
    # Conv_1 (15 %) fits, block_1_expand (30 %) would not: the cheaper logits (5 %) still does
    assert plan.float_layers == ("Conv_1", "logits") and plan.float_share == pytest.approx(0.2)
    assert "not met within 20 % float MACs; keeping the best step: Conv_1, logits (20.0 %)" in said[-1]
    assert "| 2 | logits | 20.0 % |" in plan.frontier()
    assert "Conv1" not in {r["layer"] for r in plan.sensitivity if "shortfall" in r}  # 40 % alone: never a candidate


def test_auto_with_full_int8_good_enough_keeps_everything_int8():
    scores, feats, cam = _setup()
    q = FakeQuantizer(feats, scores, feats, start_flips=0, start_noise=0.0)
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    plan = P.search(q, LAYERS, ref, cam, feats, P.Targets(), say=lambda s: None)
    assert plan.met and plan.float_layers == () and q.calls == [frozenset()]


def test_auto_is_deterministic():
    scores, feats, cam = _setup()
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    targets = P.Targets(agreement=0.999, cam_r=0.95, max_float_share=0.6)
    a = P.search(FakeQuantizer(feats, scores, feats), LAYERS, ref, cam, feats, targets, say=lambda s: None)
    b = P.search(FakeQuantizer(feats, scores, feats), LAYERS, ref, cam, feats, targets, say=lambda s: None)
    assert a.steps == b.steps and a.sensitivity == b.sensitivity


def test_a_quantiser_that_ignores_the_plan_is_caught():
    scores, feats, cam = _setup(20)

    class Liar(FakeQuantizer):
        def float_layers_in(self, content):
            return frozenset()

    ref = P.reference(cam, scores, feats, [0.5], "binary")
    with pytest.raises(ConfigError, match=r"asked for float layers \['Conv_1'\]; the artifact holds \[\]"):
        P.explicit(Liar(feats, scores, feats), LAYERS, ("Conv_1",), ref, cam, feats, P.Targets())


# --- the manifest record ------------------------------------------------------------


def _manifest_dict(fmt="tflite-int8", **int8_float):
    from edge.manifest import SCHEMA, SCHEMA_VERSION

    record = {"mode": "auto", "float_layers": ["Conv_1"], "float_mac_share": 0.067,
              "targets": {"agreement": 0.995, "cam_r": 0.97, "max_float_share": 0.25}, "met": True,
              "agreement": 0.996, "cam_r": 0.975, "measured_on": {"images": 300}}
    record.update(int8_float)
    tensor = {"name": "image", "role": "image", "shape": [1, -1, -1, 3], "dtype": "float32", "tensor": "image"}
    outs = [dict(tensor, name=r, role=r, tensor=r) for r in ("scores", "features")]
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "format": fmt, "artifact": "m", "sha256": "0" * 64,
            "size_bytes": 1, "task": "binary", "labels": ["ship"], "negative_label": "rest", "thresholds": [0.4],
            "threshold_rule": "youden", "input": tensor, "outputs": outs, "input_size": [96, 96], "preprocessing": {},
            "cam": {"weights": [[0.1]] * 4, "bias": [0.0], "pooling": "max"}, "extra": {"int8_float": record}}


def test_manifest_round_trips_the_mixed_precision_record():
    import json

    from edge.manifest import Manifest

    m = Manifest.from_dict(_manifest_dict())
    mp = m.mixed_precision
    assert mp.float_layers == ("Conv_1",) and mp.float_mac_share == 0.067 and mp.met is True
    assert mp.targets["cam_r"] == 0.97 and mp.cam_r == 0.975
    again = Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.mixed_precision == mp
    plain = _manifest_dict()
    del plain["extra"]["int8_float"]
    assert Manifest.from_dict(plain).mixed_precision is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mode": "greedy"}, "mode"),
        ({"float_mac_share": 1.5}, "float_mac_share"),
        ({"targets": {"agreement": 0.99}}, "targets: missing"),
        ({"surprise": 1}, "unknown keys"),
    ],
)
def test_malformed_mixed_precision_record_is_refused(change, message):
    from edge.manifest import Manifest

    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(_manifest_dict(**change))


def test_only_int8_formats_carry_float_layers():
    from edge.manifest import Manifest

    with pytest.raises(ManifestError, match="only int8 formats"):
        Manifest.from_dict(_manifest_dict(fmt="tflite-fp32"))


def test_verify_holds_a_mixed_artifact_to_the_targets_it_claims():
    from export.verify import apply_gates, load_gates

    row = {"format": "tflite-int8", "max_abs_score_diff": 0.1, "mean_abs_score_diff": 1e-3, "agreement": 0.99,
           "balanced_accuracy_delta": 0.0, "cam_correlation": 0.96, "collapsed": False,
           "mixed_targets": {"agreement": 0.995, "cam_r": 0.97, "max_float_share": 0.25}, "mixed_met": True}
    fails = apply_gates(row, load_gates(None))
    assert len(fails) == 2 and "agreement 0.9900 < 0.995" in fails[0] and "CAM correlation 0.9600 < 0.97" in fails[1]
    # a plan that said it missed its targets is held to the format's own gates only
    assert apply_gates(dict(row, mixed_met=False), load_gates(None)) == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"int8_float": ","}, "--int8-float"),
        ({"int8_targets": "cam_r=2"}, r"in \[0, 1\]"),
        ({"int8_holdout": 0}, "int8_holdout"),
        ({"int8_candidates": 0}, "int8_candidates"),
        ({"int8_ranking": "random"}, "int8_ranking"),
        ({"int8_float": "auto"}, None),
    ],
)
def test_export_options_check_the_mixed_precision_settings_at_once(options, message):
    from export.exporter import ExportOptions

    if message is None:
        opts = ExportOptions(formats=("tflite-int8", "onnx-fp32"), calib="x", **options)
        assert opts.mixed and not ExportOptions(formats=("onnx-fp32",), **options).mixed
    else:
        with pytest.raises(ConfigError, match=message):
            ExportOptions(formats=("tflite-int8",), calib="x", **options)


def test_a_pre_processing_that_changes_an_output_shape_is_caught():
    """The guards on onnxruntime's pre-processing: output shapes run on the same images, and declared ranks."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from export.onnx_format import _changed_outputs, _changed_ranks

    def graph(extra_axis: bool) -> bytes:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, None, None, 3])
        nodes = [helper.make_node("ReduceMean", ["image"], ["scores"], axes=[1, 2, 3], keepdims=0),
                 helper.make_node("Identity", ["image"], ["features"])]
        if extra_axis:
            nodes[1] = helper.make_node("Unsqueeze", ["image", "axis"], ["features"])
        outs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None]),
                helper.make_tensor_value_info("features", TensorProto.FLOAT, [None] * (5 if extra_axis else 4))]
        init = [helper.make_tensor("axis", TensorProto.INT64, [1], [1])] if extra_axis else []
        model = helper.make_model(helper.make_graph(nodes, "g", [image], outs, init),
                                  opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        return model.SerializeToString()

    images = np.zeros((1, 4, 6, 3), np.uint8)
    assert _changed_outputs(graph(False), graph(False), images) == []
    assert _changed_outputs(graph(False), graph(True), images) == ["features: (1, 4, 6, 3) -> (1, 1, 4, 6, 3)"]
    # the declared ranks, read without running: what OnnxCalibration.quantize checks on every artifact
    assert _changed_ranks(graph(False), graph(False)) == []
    assert _changed_ranks(graph(False), graph(True)) == ["features: 4 -> 5"]
