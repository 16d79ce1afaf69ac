"""The localisation head's targets (drawn from hand-made boxes) and numpy decoding (peaks, sizes, NMS)."""

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.locate import decode, grid_shape, nms, render_targets


def test_targets_peak_at_each_centre_cell_with_log_sizes():
    boxes = [[40, 40, 56, 72], [100, 8, 108, 16]]  # centres (48, 56) and (104, 12) -> cells (7, 6) and (1, 13)
    t = render_targets(boxes, (128, 128))
    assert t.heat.shape == (16, 16) and t.size.shape == (16, 16, 2)
    assert np.argwhere(t.mask == 1).tolist() == [[1, 13], [7, 6]]
    assert t.heat[7, 6] == 1.0 and t.heat[1, 13] == 1.0
    np.testing.assert_allclose(t.size[7, 6], np.log([16 / 8, 32 / 8]), rtol=1e-6)
    np.testing.assert_allclose(t.size[1, 13], [0.0, 0.0], atol=1e-6)
    # far from both boxes the heatmap is dark; the tall box spreads further along y than along x
    assert t.heat[14, 1] < 1e-3
    assert t.heat[9, 6] > t.heat[7, 8]


def test_bump_spread_follows_box_size():
    small = render_targets([[60, 60, 68, 68]], (128, 128)).heat
    large = render_targets([[16, 16, 112, 112]], (128, 128)).heat
    # two cells from the centre: a small vessel's bump has faded, a large one's has not
    assert small[7 + 2, 8] < 0.05 < 0.5 < large[7 + 2, 8]


def test_boxes_outside_the_input_are_skipped_and_shapes_checked():
    t = render_targets([[200, 200, 240, 240]], (128, 96))
    assert t.heat.shape == (16, 12) and t.mask.sum() == 0 and t.heat.max() == 0
    assert grid_shape((130, 97)) == (17, 13)
    with pytest.raises(ConfigError, match="x1 > x0"):
        render_targets([[10, 10, 5, 20]], (64, 64))
    with pytest.raises(ConfigError, match=r"\(N, 4\)"):
        render_targets([[1, 2, 3]], (64, 64))


def test_decoding_a_rendered_heatmap_recovers_the_boxes():
    boxes = np.array([[40, 40, 56, 72], [100, 10, 104, 14], [3, 90, 60, 120], [180, 30, 230, 50]], np.float32)
    t = render_targets(boxes, (128, 256))
    found, scores = decode(t.heat, t.size, 0.5)
    assert len(found) == 4 and np.all(scores == 1.0)
    order = [int(np.argmin(np.abs(found - b).sum(1))) for b in boxes]
    assert sorted(order) == [0, 1, 2, 3]
    assert np.abs(found[order] - boxes).max() < 2.5  # within a third of a cell


def test_decoding_thresholds_and_suppresses_duplicates():
    heat = np.zeros((8, 8), np.float32)
    heat[2, 2], heat[2, 4] = 0.9, 0.8  # two peaks two cells apart, each a 3x3 maximum
    heat[6, 6] = 0.2  # below the threshold
    size = np.zeros((8, 8, 2), np.float32)
    size[2, 2] = size[2, 4] = np.log(4.0)  # 32-px boxes: the two overlap by IoU 0.6
    found, scores = decode(heat, size, 0.3, iou_threshold=0.3)
    assert scores.tolist() == pytest.approx([0.9])
    np.testing.assert_allclose(found[0], [4, 4, 36, 36])
    found, scores = decode(heat, size, 0.3, iou_threshold=0.7)
    assert scores.tolist() == pytest.approx([0.9, 0.8])
    assert len(decode(heat, size, 0.95)[0]) == 0


def test_nms_keeps_best_first_and_separate_boxes():
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    assert nms(xyxy, np.array([0.5, 0.9, 0.7]), 0.5).tolist() == [1, 2]


def test_decode_rejects_mismatched_maps():
    with pytest.raises(ConfigError, match="size"):
        decode(np.zeros((4, 4)), np.zeros((4, 5, 2)), 0.5)
    with pytest.raises(ConfigError, match="threshold"):
        decode(np.zeros((4, 4)), np.zeros((4, 4, 2)), 1.5)


def test_located_boxes_are_drawn_and_recorded_beside_the_cam_boxes():
    from edge.annotate import LocatedAnnotator
    from edge.results import Boxes, FrameResult

    def result(located):
        return FrameResult(np.array([0.9]), ("vessel",), np.array([True]), np.zeros((40, 60), np.float32),
                           Boxes.empty(), {}, None, located)

    head = Boxes(np.array([[10, 5, 30, 25]], np.float32), np.array([0.8], np.float32), np.zeros(1, np.int32))
    canvas = LocatedAnnotator(color=(0, 230, 255), thickness=1).annotate(np.zeros((40, 60, 3), np.uint8), result(head))
    assert canvas[5, 10:30].tolist() == [[0, 230, 255]] * 20 and canvas[15, 20].tolist() == [0, 0, 0]
    record = result(head).to_record()["located"]  # the same form as the CAM's boxes
    assert record == head.to_list() and record[0]["xyxy"] == [10.0, 5.0, 30.0, 25.0] and record[0]["score"] == 0.8
    plain = np.zeros((40, 60, 3), np.uint8)
    assert LocatedAnnotator().annotate(plain, result(None)).max() == 0
    assert "located" not in result(None).to_record()


def test_head_passes_come_from_the_manifest_and_bad_ones_are_refused():
    from edge.locate import HeadPass, head_passes

    assert head_passes({"stride": 8, "threshold": 0.5}) == ()
    listed = head_passes({"scales": [{"factor": 0.5, "threshold": 0.4, "min_side": 48}, {"factor": 0.25, "threshold": 0.6}]})
    assert listed == (HeadPass(0.5, 0.4, 48.0), HeadPass(0.25, 0.6, 0.0))
    with pytest.raises(ConfigError, match="factor"):
        head_passes({"scales": [{"factor": 1.5, "threshold": 0.4}]})
    with pytest.raises(ConfigError, match="threshold"):
        head_passes({"scales": [{"factor": 0.5}]})
    with pytest.raises(ConfigError, match="list"):
        head_passes({"scales": {"factor": 0.5, "threshold": 0.4}})


def _head_sees(boxes, input_hw, largest):
    """A head that finds only the boxes at most ``largest`` input pixels wide: its maps, rendered from them."""
    boxes = np.asarray(boxes, np.float32)
    seen = boxes[(boxes[:, 2] - boxes[:, 0]) <= largest]
    t = render_targets(seen, input_hw)
    return t.heat, t.size


def test_a_downscaled_pass_finds_the_large_vessel_and_the_merge_keeps_one_box_per_vessel():
    from edge.locate import keep_larger, merge_passes

    frame = np.array([[40, 60, 280, 140], [400, 200, 416, 212]], np.float32)  # a 240-px ferry and a 16-px boat
    # frame scale: the head misses the ferry (wider than the 128 px it learned)
    heat, size = _head_sees(frame, (256, 512), 128)
    base = decode(heat, size, 0.5)
    assert len(base[0]) == 1
    # half the frame scale: the ferry is 120 px, the boat 8; both found, mapped back to frame pixels
    heat, size = _head_sees(frame * 0.5, (128, 256), 128)
    half_boxes, half_scores = decode(heat, size, 0.5)
    half = (half_boxes / 0.5, half_scores)
    assert len(half[0]) == 2
    merged, scores = merge_passes([base, half], 0.3)
    assert len(merged) == 2 and len(scores) == 2  # the boat, found twice, is one box
    for truth in frame:
        assert np.abs(merged - truth).max(axis=1).min() < 5.0
    # the pass's small boxes can be dropped before the merge: the boat then comes from the frame scale only
    kept = keep_larger(*half, 32.0)
    assert len(kept[0]) == 1 and kept[0][0, 2] - kept[0][0, 0] > 200
    assert merge_passes([], 0.3)[0].shape == (0, 4)
    with pytest.raises(ConfigError, match="one score per box"):
        merge_passes([(frame, np.ones(1))], 0.3)
