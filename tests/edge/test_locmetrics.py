"""Localisation metrics on hand-made boxes and peaks with known answers, and against scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge.errors import ConfigError, DataError
from edge.locmetrics import (
    FrameOutcome,
    LocalisationReport,
    average_precision,
    box_average_precision,
    centre_hits,
    iou_matrix,
    match,
    pointing_hit,
    precision_recall_curve,
    roc_auc,
)

NO_BOXES = np.zeros((0, 4))


def _frame(frame_id, gt=NO_BOXES, boxes=NO_BOXES, box_scores=None, score=0.5, flagged=None, peak=None, camera="bow"):
    boxes = np.asarray(boxes, float)
    if box_scores is None:
        box_scores = np.linspace(0.9, 0.5, len(boxes))
    return FrameOutcome(frame_id=frame_id, camera=camera, gt=np.asarray(gt, float), score=score,
                        flagged=score >= 0.5 if flagged is None else flagged, peak=peak, boxes=boxes,
                        box_scores=np.asarray(box_scores, float))


# --- boxes -------------------------------------------------------------------------------------------------

def test_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 3, 1, 0], [1 / 3, 1, 0]])
    assert iou_matrix(np.array([[5, 5, 5, 5]]), np.array([[5, 5, 5, 5]])).tolist() == [[0.0]]  # not NaN
    assert iou_matrix(NO_BOXES, b).shape == (0, 3)


@pytest.mark.parametrize("pred, gt, hit", [
    ([0, 0, 200, 200], [95, 95, 105, 105], True),   # gt centre in a much larger pred: IoU 0.0025
    ([40, 40, 60, 60], [45, 45, 300, 300], True),   # only the pred centre (50, 50) lies in gt
    ([0, 0, 60, 60], [50, 50, 150, 150], False),    # overlapping corners, neither centre inside the other
    ([0, 0, 10, 10], [20, 0, 30, 10], False),
])
def test_centre_hit_either_way(pred, gt, hit):
    assert centre_hits(np.array([pred]), np.array([gt])).tolist() == [[hit]]


def test_centre_hit_without_iou_finds_the_vessel_only_by_centre():
    pred, gt = np.array([[0, 0, 200, 200]]), np.array([[95, 95, 105, 105]])
    assert iou_matrix(pred, gt)[0, 0] == pytest.approx(100 / 40000)
    m = match(pred, gt, iou_threshold=0.1)
    assert m["gt_found_iou"].tolist() == [False]
    assert m["gt_found_centre"].tolist() == [True]
    assert m["pred_false"].tolist() == [False]


GT_PAIR = np.array([[0, 0, 40, 20], [60, 0, 100, 20]])
WIDE = [0, 0, 80, 20]    # IoU 0.5 with gt 0, 0.2 with gt 1
NARROW = [0, 0, 36, 20]  # IoU 0.9 with gt 0 only


@pytest.mark.parametrize("scores, found, owner", [
    # the wide box goes first and takes gt 0 (its best); the narrow one then finds gt 0 taken: gt 1 is missed
    ([0.9, 0.8], [True, False], [0, -1]),
    # the narrow box goes first and takes gt 0; the wide one falls back to gt 1
    ([0.5, 0.8], [True, True], [1, 0]),
])
def test_greedy_matching_follows_score_order(scores, found, owner):
    m = match(np.array([WIDE, NARROW]), GT_PAIR, iou_threshold=0.1, scores=np.array(scores))
    np.testing.assert_allclose(iou_matrix(np.array([WIDE, NARROW]), GT_PAIR), [[0.5, 0.2], [0.9, 0.0]])
    assert m["gt_found_iou"].tolist() == found
    assert m["gt_pred_iou"].tolist() == owner
    assert m["gt_found_centre"].tolist() == found  # both boxes hit gt 0 by centre as well
    assert m["pred_false"].tolist() == [False, False]  # a duplicate on a claimed vessel is not a false box


def test_match_without_scores_keeps_the_given_order_and_flags_false_boxes():
    m = match(np.array([WIDE, [300, 300, 310, 310]]), GT_PAIR)
    assert m["gt_pred_iou"].tolist() == [0, -1]
    assert m["pred_false"].tolist() == [False, True]
    empty = match(NO_BOXES, GT_PAIR)
    assert empty["gt_found_iou"].tolist() == [False, False] and empty["pred_false"].shape == (0,)


GT_BOX = np.array([[100, 100, 140, 120]])


@pytest.mark.parametrize("peak, tolerance, hit", [
    ((120, 110), 0.0, True),
    ((140, 110), 0.0, True),     # on the edge
    ((150, 110), 0.0, False),    # 10 px right of the box
    ((150, 110), 15.0, True),
    ((160, 110), 15.0, False),   # 20 px right
    ((150, 132), 15.0, True),    # 10 px right and 12 px below: inside the grown box
    (None, 15.0, False),
])
def test_pointing_game_with_and_without_tolerance(peak, tolerance, hit):
    assert pointing_hit(peak, GT_BOX, tolerance) is hit


def test_pointing_on_a_frame_without_gt_is_a_miss():
    assert pointing_hit((5, 5), NO_BOXES, 15.0) is False


# --- frame-level scores ------------------------------------------------------------------------------------

def test_roc_auc_and_average_precision_by_hand():
    # ranked 0.8(+) 0.4(-) 0.35(+) 0.1(-): 3 of 4 pos/neg pairs in order; AP = 0.5*1 + 0.5*2/3
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    assert average_precision(scores, labels) == pytest.approx(5 / 6)
    p, r, t = precision_recall_curve(scores, labels)
    np.testing.assert_allclose(p, [1, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(r, [0.5, 0.5, 1, 1])
    np.testing.assert_allclose(t, [0.8, 0.4, 0.35, 0.1])
    # a tie between a positive and a negative counts half
    assert roc_auc([0.5, 0.5, 0.9], [0, 1, 1]) == pytest.approx(0.75)
    assert average_precision([0.5, 0.5], [0, 1]) == pytest.approx(0.5)


def test_undefined_scores_are_nan_and_swapped_arguments_fail():
    assert np.isnan(roc_auc([0.2, 0.9], [1, 1]))
    assert np.isnan(average_precision([0.2, 0.9], [0, 0]))
    assert np.isnan(roc_auc([], []))
    with pytest.raises(DataError, match="labels"):
        roc_auc([0, 1, 1], [0.2, 0.7, 0.9])
    with pytest.raises(DataError, match="one label per score"):
        average_precision([0.1, 0.2], [1])


@pytest.mark.parametrize("seed", range(5))
def test_scores_agree_with_scikit_learn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    # rounded scores make many ties, where the two definitions could part
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 2)
    assert roc_auc(scores, labels) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(sk.average_precision_score(labels, scores), abs=1e-12)
    p, r, t = precision_recall_curve(scores, labels)
    sk_p, sk_r, sk_t = sk.precision_recall_curve(labels, scores)
    # sklearn: thresholds ascending, plus a (precision 1, recall 0) end point
    np.testing.assert_allclose(p, sk_p[:-1][::-1])
    np.testing.assert_allclose(r, sk_r[:-1][::-1])
    np.testing.assert_allclose(t, sk_t[::-1])


# --- box AP ------------------------------------------------------------------------------------------------

def _two_frames(scores):
    """Two frames, one vessel each; preds ranked: on vessel A, nowhere, on vessel B (with scores as given)."""
    a = _frame("a", gt=[[0, 0, 50, 50]], boxes=[[0, 0, 50, 50]], box_scores=[scores[0]])
    b = _frame("b", gt=[[100, 100, 150, 150]], boxes=[[300, 300, 350, 350], [100, 100, 150, 150]],
               box_scores=[scores[1], scores[2]])
    return [a, b]


def test_box_ap_with_a_false_box_in_the_middle():
    # TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3
    assert box_average_precision(_two_frames([0.9, 0.8, 0.7]), 0.5) == pytest.approx(5 / 6)
    # FP, TP, TP: precision 0, 1/2, 2/3; all-point interpolation lifts recall 1/2 to 2/3 -> AP = 2/3
    assert box_average_precision(_two_frames([0.7, 0.9, 0.6]), 0.5) == pytest.approx(2 / 3)


def test_box_ap_counts_a_duplicate_as_false_and_honours_the_threshold():
    dup = _frame("d", gt=[[0, 0, 50, 50]], boxes=[[0, 0, 50, 50], [0, 0, 50, 50]], box_scores=[0.9, 0.8])
    assert box_average_precision([dup], 0.5) == pytest.approx(1.0)  # the duplicate comes after full recall
    dup_first = _frame("d", gt=[[0, 0, 50, 50], [100, 0, 150, 50]],
                       boxes=[[0, 0, 50, 50], [0, 0, 50, 50], [100, 0, 150, 50]], box_scores=[0.9, 0.8, 0.7])
    assert box_average_precision([dup_first], 0.5) == pytest.approx(5 / 6)
    loose = _frame("l", gt=[[0, 0, 100, 100]], boxes=[[0, 0, 100, 40]], box_scores=[0.9])  # IoU 0.4
    assert box_average_precision([loose], 0.3) == pytest.approx(1.0)
    assert box_average_precision([loose], 0.5) == pytest.approx(0.0)
    assert np.isnan(box_average_precision([_frame("e")], 0.5))


# --- the report ---------------------------------------------------------------------------------------------

def _sized_frame():
    """Vessels 10, 50 and 200 px wide: the 50 found by IoU, the 10 only by centre, the 200 missed; one false box."""
    gt = [[0, 0, 10, 10], [100, 0, 150, 30], [300, 0, 500, 80]]
    boxes = [[100, 0, 150, 30], [0, 0, 60, 60], [600, 300, 620, 320]]
    return _frame("sizes", gt=gt, boxes=boxes, score=0.9, peak=(400, 40))


def test_recall_per_width_bucket():
    report = LocalisationReport()
    report.add(_sized_frame())
    recall = report.summary()["overall"]["recall"]
    assert {b: (r["found"], r["total"]) for b, r in recall["iou"].items()} == {
        "<32": (0, 1), "32-96": (1, 1), ">96": (0, 1), ">=32": (1, 2)}
    assert {b: (r["found"], r["total"]) for b, r in recall["centre"].items()} == {
        "<32": (1, 1), "32-96": (1, 1), ">96": (0, 1), ">=32": (1, 2)}
    assert recall["iou"][">=32"]["recall"] == 0.5 and recall["iou"]["<32"]["recall"] == 0.0


@pytest.mark.parametrize("width, bucket", [(31.9, "<32"), (32, "32-96"), (95.9, "32-96"), (96, ">96")])
def test_bucket_edges(width, bucket):
    report = LocalisationReport()
    report.add(_frame("w", gt=[[0, 0, width, 10]], score=0.9))
    recall = report.summary()["overall"]["recall"]["iou"]
    assert [b for b, r in recall.items() if r["total"] and b != ">=32"] == [bucket]


def test_false_boxes_per_frame_and_frame_shares():
    report = LocalisationReport()
    report.add(_sized_frame())                                                        # vessel, 1 false box
    report.add(_frame("e1", boxes=[[0, 0, 5, 5], [9, 9, 20, 20]], score=0.7))         # empty, flagged, 2 false
    report.add(_frame("e2", score=0.1))                                               # empty, clear, no boxes
    report.add(_frame("v2", gt=[[10, 10, 60, 30]], score=0.2, peak=(70, 20)))         # vessel, missed
    o = report.summary()["overall"]
    assert (o["frames"], o["vessel_frames"], o["empty_frames"]) == (4, 2, 2)
    assert o["false_boxes"] == 3
    assert o["false_boxes_per_frame"] == pytest.approx(3 / 4)
    assert o["false_boxes_per_empty_frame"] == pytest.approx(1.0)
    assert o["flagged_vessel_frames"] == 0.5 and o["clear_empty_frames"] == 0.5
    # peaks: (400, 40) is inside the 200 px vessel; (70, 20) is 10 px right of its vessel
    assert o["pointing_game"] == 0.5 and o["pointing_game_tol"] == 1.0
    # frame scores 0.9(+) 0.7(-) 0.2(+) 0.1(-)
    assert o["roc_auc"] == pytest.approx(0.75)
    assert o["ap"] == pytest.approx(5 / 6)


def test_per_camera_summary_is_json_ready():
    report = LocalisationReport(tolerance_px=15.0, iou_threshold=0.1)
    report.add(_frame("1", gt=[[0, 0, 40, 40]], boxes=[[0, 0, 40, 40]], score=0.9, peak=(20, 20), camera="bow"))
    report.add(_frame("2", score=0.3, camera="bow"))
    report.add(_frame("1", gt=[[0, 0, 40, 40]], score=0.4, peak=(200, 200), camera="stern"))  # same id, other camera
    s = report.summary()
    assert list(s["per_camera"]) == ["bow", "stern"]
    bow, stern = s["per_camera"]["bow"], s["per_camera"]["stern"]
    assert (bow["frames"], bow["roc_auc"], bow["pointing_game"], bow["box_ap_50"]) == (2, 1.0, 1.0, 1.0)
    assert (stern["frames"], stern["roc_auc"], stern["ap"], stern["pointing_game"]) == (1, None, 1.0, 0.0)
    assert stern["clear_empty_frames"] is None and stern["box_ap_50"] == 0.0
    assert s["overall"]["frames"] == 3 and s["overall"]["box_ap_50"] == pytest.approx(0.5)
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def test_empty_report_summary():
    o = LocalisationReport().summary()["overall"]
    assert o["frames"] == 0 and o["roc_auc"] is None and o["false_boxes_per_frame"] is None


def test_markdown_holds_the_figures():
    report = LocalisationReport()
    report.add(_sized_frame())
    report.add(_frame("e1", boxes=[[0, 0, 5, 5]], score=0.7, camera="stern"))
    md = report.to_markdown("Harbour test set")
    assert md.startswith("## Harbour test set\n")
    for text in ("| Vessel frames flagged | 100.0 % (1 of 1) |",
                 "| Empty frames left unflagged | 0.0 % (0 of 1) |",
                 "| Heatmap peak inside a vessel box | 100.0 % (1 of 1) |",
                 "| Vessels found, IoU ≥ 0.1, width ≥ 32 px | 50.0 % (1 of 2) |",
                 "| Vessels found, centre inside, width < 32 px | 100.0 % (1 of 1) |",
                 "| False boxes per frame (all frames / empty frames) | 1.00 / 1.00 |",
                 "| Frame score ROC AUC, vessel vs empty | 1.000 |",
                 "| Figure | bow | stern |"):
        assert text in md, text
    single = LocalisationReport()
    single.add(_sized_frame())
    assert "Per camera" not in single.to_markdown("one camera")
    assert "| Frame score ROC AUC, vessel vs empty | n/a |" in single.to_markdown("one camera")


def test_plot_pr_writes_a_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    report = LocalisationReport()
    for k, (score, vessel) in enumerate([(0.9, 1), (0.7, 0), (0.6, 1), (0.2, 0)]):
        report.add(_frame(str(k), gt=[[0, 0, 40, 40]] if vessel else NO_BOXES, score=score))
    out = tmp_path / "plots" / "pr.png"
    report.plot_pr(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["pr.png"]  # no temporary file left behind
    empty = LocalisationReport()
    empty.add(_frame("e"))
    with pytest.raises(DataError, match="needs frames with a vessel"):
        empty.plot_pr(tmp_path / "none.png")


# --- boundaries ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, error", [
    ({}, None),
    ({"gt": []}, None),                                    # an empty list means no vessel
    ({"peak": np.array([3.0, 4.0])}, None),
    ({"gt": [0, 0, 10, 10]}, "expected an \\(N, 4\\) array"),
    ({"gt": [[10, 0, 0, 10]]}, "x1 >= x0"),
    ({"gt": [[0, 0, np.nan, 10]]}, "finite"),
    ({"box_scores": [0.5, 0.4]}, "one per box"),
    ({"score": 1.5}, "score: expected a number in \\[0, 1\\]"),
    ({"score": True}, "score"),
    ({"flagged": 1}, "flagged: expected a bool"),
    ({"peak": (1.0,)}, "peak"),
    ({"camera": ""}, "camera"),
])
def test_frame_outcome_checks_its_inputs(change, error):
    kwargs = dict(frame_id="f", camera="bow", gt=[[0, 0, 10, 10]], score=0.5, flagged=True, peak=(5, 5),
                  boxes=[[0, 0, 10, 10]], box_scores=[0.9])
    kwargs.update(change)
    if error is None:
        FrameOutcome(**kwargs)
    else:
        with pytest.raises(DataError, match=error):
            FrameOutcome(**kwargs)


def test_report_rejects_bad_settings_and_repeated_frames():
    with pytest.raises(ConfigError, match="iou_threshold"):
        LocalisationReport(iou_threshold=0.0)
    with pytest.raises(ConfigError, match="tolerance_px"):
        LocalisationReport(tolerance_px=-1)
    report = LocalisationReport()
    report.add(_frame("f"))
    with pytest.raises(DataError, match="added twice"):
        report.add(_frame("f"))
    with pytest.raises(DataError, match="FrameOutcome"):
        report.add({"frame_id": "g"})


def test_inputs_are_not_mutated():
    gt = np.array([[0.0, 0, 10, 10], [100, 0, 150, 30]])
    boxes = np.array([[100.0, 0, 150, 30], [0, 0, 60, 60], [600, 300, 620, 320]])
    box_scores = np.array([0.3, 0.9, 0.5])
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    kept = [a.copy() for a in (gt, boxes, box_scores, scores, labels)]
    match(boxes, gt, scores=box_scores)
    iou_matrix(boxes, gt), centre_hits(boxes, gt), pointing_hit((5, 5), gt, 15.0)
    roc_auc(scores, labels), average_precision(scores, labels), precision_recall_curve(scores, labels)
    outcome = FrameOutcome("f", "bow", gt=gt, score=0.9, flagged=True, peak=(5, 5), boxes=boxes, box_scores=box_scores)
    report = LocalisationReport()
    report.add(outcome)
    report.summary(), report.to_markdown("t"), box_average_precision([outcome], 0.5)
    for before, after in zip(kept, (gt, boxes, box_scores, scores, labels)):
        np.testing.assert_array_equal(before, after)
    # the outcome holds read-only copies: the caller may reuse its buffers for the next frame
    gt[0, 0] = 99
    assert outcome.gt[0, 0] == 0
    with pytest.raises(ValueError):
        outcome.boxes[0, 0] = 1


def test_import_pulls_in_no_plotting_or_training_library():
    code = ("import sys, edge.locmetrics; "
            "print(sorted(m for m in ('matplotlib', 'sklearn', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
