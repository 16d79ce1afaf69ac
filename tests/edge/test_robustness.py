"""Robustness figures on hand-made scores and maps: CAM stability, agreement, summaries, options."""

from __future__ import annotations

import math

import numpy as np
import pytest


def test_cam_stability_on_hand_made_maps():
    from edge.robustness import pearson_rows

    a = np.array([[[0, 1], [2, 3]], [[1, 1], [1, 1]], [[1, 1], [1, 1]], [[0, 0], [0, 4]]], np.float32)
    b = np.array([[[0, 2], [4, 6]], [[1, 1], [1, 1]], [[0, 1], [2, 3]], [[4, 0], [0, 0]]], np.float32)
    r = pearson_rows(a, b)
    # scaled copy: 1; two equal flat maps: 1; a flat map against a varying one: 0;
    # a single peak moved to the opposite corner: -1/3
    assert r[:3].tolist() == [1.0, 1.0, 0.0]
    assert r[3] == pytest.approx(-1.0 / 3.0)
    assert pearson_rows(a, -a)[0] == pytest.approx(-1.0)


def test_cam_stability_matches_verify_pearson():
    from edge.robustness import pearson_rows
    from export.verify import pearson

    rng = np.random.default_rng(0)
    a, b = rng.random((5, 3, 4)), rng.random((5, 3, 4))
    assert pearson_rows(a, b) == pytest.approx([pearson(x, y) for x, y in zip(a, b)])


def test_figures_against_a_hand_count():
    from edge.robustness import figures

    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    clean = np.array([0.9, 0.8, 0.3, 0.1, 0.2, 0.6, 0.1, 0.1])
    noisy = np.array([0.9, 0.4, 0.6, 0.1, 0.7, 0.6, 0.1, 0.1])
    maps = np.random.default_rng(1).random((8, 3, 3))
    moved = maps.copy()
    moved[0] = maps[0][::-1, ::-1]
    f = figures(y, noisy, 0.5, clean, moved, maps)
    # recall 2/3 (0.9, 0.6 of three ships), specificity 3/5 (0.7 and 0.6 flagged): (2/3 + 3/5) / 2
    assert f["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 5) / 2)
    assert f["recall"] == pytest.approx(2 / 3) and f["specificity"] == pytest.approx(0.6)
    # decisions changed on images 1 (0.8 -> 0.4), 2 (0.3 -> 0.6) and 4 (0.2 -> 0.7)
    assert f["agreement"] == pytest.approx(5 / 8)
    r0 = np.corrcoef(maps[0].ravel(), moved[0].ravel())[0, 1]
    assert f["cam_r"] == pytest.approx((r0 + 7) / 8)
    # clean positives: images 0, 1 and 5
    assert f["cam_r_positive"] == pytest.approx((r0 + 2) / 3)
    assert f["roc_auc"] == pytest.approx(11.5 / 15)  # 15 ship/other pairs; 11 ranked right, one tie (0.6 / 0.6)


def _doc() -> dict:
    """Two corruptions at severities 1 and 2; keras drops on fog, int8 drops more on jpeg."""
    def fig(ba, cam=1.0):
        return {"balanced_accuracy": ba, "roc_auc": ba, "agreement": 1.0, "cam_r": cam, "cam_r_positive": cam}

    table = {("clean", 0): (0.90, 0.89), ("fog", 1): (0.88, 0.87), ("fog", 2): (0.80, 0.80),
             ("jpeg", 1): (0.87, 0.83), ("jpeg", 2): (0.86, 0.78)}
    conds = [{"corruption": c, "severity": s, "models": {"keras": fig(k), "tflite-int8": fig(q, 0.5)}}
             for (c, s), (k, q) in table.items()]
    return {"models": ["keras", "tflite-int8"], "float_reference": "keras", "conditions": conds, "items": 8,
            "positives": 3, "data": ["d"], "seed": 0, "adversarial": [
                {"attack": "fgsm", "eps": 2.0, "models": {"keras": fig(0.4, 0.9), "tflite-int8": fig(0.6, 0.8)}}]}


def test_summary_means_gaps_and_survival():
    from edge.robustreport import summarise

    s = summarise(_doc())
    k, q = s["models"]["keras"], s["models"]["tflite-int8"]
    assert k["mean"]["balanced_accuracy"] == pytest.approx((0.88 + 0.80 + 0.87 + 0.86) / 4)
    assert k["per_severity"][2] == pytest.approx(0.83)
    assert k["per_corruption"]["jpeg"] == pytest.approx(0.865)
    # keras: fog 0.80 at severity 2 is 10 points down (stops at 1); jpeg stays within 5 (0.86)
    assert k["survives_up_to"] == {"fog": 1, "jpeg": 2}
    # int8 (clean 0.89): jpeg 0.83 at 1 is 6 points down
    assert q["survives_up_to"] == {"fog": 1, "jpeg": 0}
    g = s["gaps"]["tflite-int8"]
    assert g["clean"] == pytest.approx(-0.01)
    assert g["per_severity"][1]["mean"] == pytest.approx(-0.025)
    assert g["per_severity"][2]["worst"] == pytest.approx(-0.08) and g["per_severity"][2]["worst_corruption"] == "jpeg"
    assert g["within_aim"] is False
    assert q["mean"]["cam_r"] == 0.5
    assert s["adversarial"] == {"fgsm 2": {"keras": 0.4, "tflite-int8": 0.6}}


def test_markdown_and_json_say_the_same(tmp_path):
    import json

    from edge.robustreport import write_report

    doc = write_report(_doc(), tmp_path)
    on_disk = json.loads((tmp_path / "robustness.json").read_text())
    assert on_disk["summary"]["models"]["keras"]["survives_up_to"] == {"fog": 1, "jpeg": 2}
    md = (tmp_path / "robustness.md").read_text()
    assert "| jpeg | 0.87 / 0.83 | 0.86 / 0.78 |" in md
    assert "| tflite-int8 | -0.010 |" in md and "| no |" in md
    assert (tmp_path / "severity_accuracy.png").stat().st_size > 0 and (tmp_path / "adversarial.png").is_file()
    assert doc["summary"]["gaps"]["tflite-int8"]["within_aim"] is False


def test_nan_is_written_as_null():
    from edge.robustreport import clean_json

    assert clean_json({"a": [float("nan"), 1.0, np.float32(2)], "b": math.inf}) == {"a": [None, 1.0, 2.0], "b": None}


def test_stratified_pick_keeps_shares():
    from edge.robustness import stratified_pick

    labels = np.array([1] * 30 + [0] * 270)
    idx = stratified_pick(labels, 100, seed=0)
    assert len(idx) == 100 and labels[idx].sum() == 10 and np.all(np.diff(idx) > 0)
    assert np.array_equal(stratified_pick(labels, None, 0), np.arange(300))
    rare = np.array([1] + [0] * 999)
    idx = stratified_pick(rare, 10, 0)
    assert len(idx) == 10 and rare[idx].sum() == 1  # a rare class keeps one


@pytest.mark.parametrize("kwargs, raises", [
    ({}, False),
    ({"corruptions": ("fog", "jpeg"), "severities": (5, 1, 1)}, False),
    ({"corruptions": "all"}, False),
    ({"corruptions": "fog,rain"}, False),
    ({"corruptions": ("snow",)}, True),
    ({"severities": (0,)}, True),
    ({"severities": (6,)}, True),
    ({"severities": ()}, True),
    ({"eps": (0.0,)}, True),
    ({"pgd_steps": -1}, True),
    ({"limit": 1}, True),
    ({"grid_severity": 0}, True),
    ({"threshold": 1.2}, True),
    ({"threshold": 0.25}, False),
])
def test_options(kwargs, raises):
    from edge.errors import ConfigError
    from edge.robustness import RobustnessOptions

    if raises:
        with pytest.raises(ConfigError):
            RobustnessOptions(**kwargs)
    else:
        o = RobustnessOptions(**kwargs)
        assert o.conditions()[0] == ("clean", 0) and list(o.severities) == sorted(set(o.severities))


def test_corrupt_batch_seeds_each_image_by_its_index():
    from edge.corruptions import corrupt
    from edge.robustness import corrupt_batch, image_seed

    images = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    out = corrupt_batch(images, "gaussian_noise", 2, seed=7)
    assert np.array_equal(out[1], corrupt(images[1], "gaussian_noise", 2, seed=image_seed(7, 1)))
    assert corrupt_batch(images, "clean", 0, seed=7) is images


def test_a_baseline_report_is_compared_model_by_model(tmp_path):
    import json

    from edge.errors import DataError
    from edge.robustreport import load_baseline, write_report

    write_report(_doc(), tmp_path / "base")
    better = _doc()
    for c in better["conditions"]:
        if c["corruption"] != "clean":
            c["models"]["keras"]["balanced_accuracy"] += 0.05
    doc = write_report(better, tmp_path / "new", baseline=tmp_path / "base" / "robustness.json")
    md = (tmp_path / "new" / "robustness.md").read_text()
    assert "Same images, same corruption seeds." in md
    # keras: clean unchanged, corrupted mean (0.88 + 0.80 + 0.87 + 0.86) / 4 = 0.8525 -> 0.9025 (printed 0.903)
    assert "| keras | 0.900 → 0.900 | 0.853 → 0.903 |" in md
    assert json.loads((tmp_path / "new" / "robustness.json").read_text())["baseline"]["models"] == ["keras", "tflite-int8"]
    assert doc["baseline"]["summary"]["tflite-int8"]["mean"]["balanced_accuracy"] == pytest.approx(0.82)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError):
        load_baseline(tmp_path / "bad.json")
