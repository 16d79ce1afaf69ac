"""Tiles cover the frame; stitched CAMs give one box for a ship on a seam."""

from __future__ import annotations

import numpy as np
import pytest

from edge.boxes import boxes_from_heatmap
from edge.errors import ConfigError, FrameError
from edge.results import Boxes, FrameResult
from edge.tiling import TileSpec, detect_tiled, make_tiles, stitch


@pytest.mark.parametrize(
    "kwargs, ok",
    [
        ({"tile": (224, 224), "overlap": 0.25}, True),
        ({"tile": (100, 50), "overlap": 0.0}, True),
        ({"tile": [64, 64]}, True),
        ({"tile": (0, 10)}, False),
        ({"tile": (10,)}, False),
        ({"tile": (10.5, 10)}, False),
        ({"tile": (10, 10), "overlap": 1.0}, False),
        ({"tile": (10, 10), "overlap": -0.1}, False),
        ({"tile": (10, 10), "overlap": "0.2"}, False),
    ],
)
def test_tilespec_validation(kwargs, ok):
    if ok:
        spec = TileSpec(**kwargs)
        assert isinstance(spec.tile, tuple)
    else:
        with pytest.raises(ConfigError):
            TileSpec(**kwargs)


def test_make_tiles_exact_windows():
    # 300 wide, tiles 128 with stride 96: origins 0, 96, then flush at 172
    windows = make_tiles((128, 300, 3), TileSpec((128, 128), overlap=0.25))
    assert windows == [(0, 0, 128, 128), (0, 96, 128, 224), (0, 172, 128, 300)]


def test_frame_smaller_than_tile_gives_one_clipped_window():
    assert make_tiles((50, 80), TileSpec((224, 224))) == [(0, 0, 50, 80)]


@pytest.mark.parametrize("shape", [(360, 640), (1080, 1920), (224, 224), (225, 449), (500, 130)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_tiles_cover_frame_flush_and_overlap(shape, overlap):
    spec = TileSpec((224, 224), overlap)
    windows = make_tiles(shape, spec)
    covered = np.zeros(shape, np.int32)
    for y0, x0, y1, x1 in windows:
        assert 0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]
        assert (y1 - y0, x1 - x0) == (min(224, shape[0]), min(224, shape[1]))
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    assert max(w[2] for w in windows) == shape[0] and max(w[3] for w in windows) == shape[1]
    xs = sorted({w[1] for w in windows})
    # neighbours share at least the requested overlap (the flush tile shares more)
    for a, b in zip(xs, xs[1:]):
        assert 224 - (b - a) >= int(224 * overlap) - 1


def test_stitch_takes_max_and_checks_shapes():
    out = stitch(
        [np.full((2, 3), 0.2), np.full((2, 3), 0.7)],
        [(0, 0, 2, 3), (1, 2, 3, 5)],
        (4, 6, 3),
    )
    expected = np.zeros((4, 6), np.float32)
    expected[0:2, 0:3] = 0.2
    expected[1:3, 2:5] = 0.7
    np.testing.assert_allclose(out, expected)
    with pytest.raises(FrameError, match="expected a \\(2, 3\\) heatmap"):
        stitch([np.zeros((3, 3))], [(0, 0, 2, 3)], (4, 6))
    with pytest.raises(FrameError, match="one heatmap per window"):
        stitch([np.zeros((2, 3))], [], (4, 6))
    with pytest.raises(FrameError, match="inside"):
        stitch([np.zeros((2, 3))], [(3, 4, 5, 7)], (4, 6))


class FakeTileDetector:
    """A 'CAM' that is the bright pixels of the tile, optionally faded at the tile border.

    Like a real CAM, the heatmap is normalised per tile and blind at the very
    edge (zero padding), so a blob on a seam between non-overlapping tiles is
    split by a small gap.
    """

    labels = ("ship",)

    def __init__(self, border: int = 0):
        self.border = border
        self.calls: list[list[tuple[int, ...]]] = []

    def detect_batch(self, frames):
        self.calls.append([f.shape for f in frames])
        results = []
        for f in frames:
            heat = (f[..., 0] > 128).astype(np.float32)
            if self.border:
                b = self.border
                heat[:b], heat[-b:], heat[:, :b], heat[:, -b:] = 0, 0, 0, 0
            score = float(heat.mean() > 0) * 0.9
            results.append(
                FrameResult([score], self.labels, [score > 0.5], heat, Boxes.empty(), {"infer": 1.0, "cam": 0.5})
            )
        return results


def _frame_with_blob(h, w, y0, y1, x0, x1):
    frame = np.zeros((h, w, 3), np.uint8)
    frame[y0:y1, x0:x1, 0] = 255
    return frame


@pytest.mark.parametrize("overlap, border", [(0.25, 0), (0.5, 1), (0.0, 0), (0.0, 1)])
def test_blob_straddling_a_seam_gives_one_box(overlap, border):
    spec = TileSpec((100, 100), overlap)
    # frame 100 x 300; with overlap 0 the seams are at x=100 and x=200
    frame = _frame_with_blob(100, 300, 30, 60, 80, 130)
    det = FakeTileDetector(border)
    result = detect_tiled(det, frame, spec, threshold=0.5)

    assert len(det.calls) == 1, "one batched call for all tiles"
    assert det.calls[0] == [(100, 100, 3)] * len(make_tiles(frame.shape, spec))
    assert result.boxes.xyxy.tolist() == [[80.0, 30.0, 130.0, 60.0]]
    assert result.heatmap.shape == (100, 300)
    np.testing.assert_allclose(result.scores, [0.9])
    assert result.positive.tolist() == [True]
    assert result.timings_ms["infer"] == pytest.approx(1.0 * len(det.calls[0]))
    assert {"stitch", "tiled_total"} <= set(result.timings_ms)


def test_seam_gap_really_splits_the_raw_boxes():
    # the case the merge exists for: without it the seam gives two boxes
    frame = _frame_with_blob(100, 300, 30, 60, 80, 130)
    det = FakeTileDetector(border=1)
    windows = make_tiles(frame.shape, TileSpec((100, 100), 0.0))
    heat = stitch([r.heatmap for r in det.detect_batch([frame[a:c, b:d] for a, b, c, d in windows])], windows, frame.shape)
    assert sorted(boxes_from_heatmap(heat).xyxy.tolist()) == [[80.0, 30.0, 99.0, 60.0], [101.0, 30.0, 130.0, 60.0]]


def test_two_separate_ships_stay_two():
    frame = _frame_with_blob(100, 300, 10, 30, 10, 40)
    frame[60:90, 200:260, 0] = 255
    result = detect_tiled(FakeTileDetector(), frame, TileSpec((100, 100), 0.25))
    assert sorted(result.boxes.xyxy.tolist()) == [[10.0, 10.0, 40.0, 30.0], [200.0, 60.0, 260.0, 90.0]]


def test_detect_tiled_rejects_non_rgb_frames():
    with pytest.raises(FrameError, match="RGB uint8"):
        detect_tiled(FakeTileDetector(), np.zeros((100, 100), np.uint8), TileSpec((50, 50)))
