"""Crops cut from box-labelled frames: what is positive, what is negative, and no crop from a validation frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edge.datasets import LabeledFrame, load_box_dataset  # noqa: E402
from training.tiles import TileOptions, _touches, mine_windows, negative_windows, positive_windows, write_tiles  # noqa: E402


def _yolo(root: Path, n: int = 6, seed: int = 0) -> Path:
    """``n`` 320x240 frames with one bright 'boat' (class 1) and one 'car' (class 0) each, in YOLO layout."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("nc: 2\nnames: ['car', 'boat']\n")
    for i in range(n):
        img = np.full((240, 320, 3), 60, np.uint8)
        bx, by = int(rng.integers(20, 200)), int(rng.integers(20, 100))
        img[by : by + 24, bx : bx + 40] = 250
        cx, cy = (bx + 150) % 260, 200
        img[cy : cy + 16, cx : cx + 30] = (0, 0, 200)
        name = f"cam{i % 2}_2024-01-0{1 + i // 2}_10-0{i}-00"
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), img)
        (root / "labels" / f"{name}.txt").write_text(
            f"1 {(bx + 20) / 320:.6f} {(by + 12) / 240:.6f} {40 / 320:.6f} {24 / 240:.6f}\n"
            f"0 {(cx + 15) / 320:.6f} {(cy + 8) / 240:.6f} {30 / 320:.6f} {16 / 240:.6f}\n")
    return root


def test_positive_windows_hold_the_whole_box_and_stay_in_the_frame():
    rng = np.random.default_rng(0)
    opts = TileOptions(input_size=64, scale=1.0, positives_per_box=20)
    for box in (np.array([100, 50, 140, 74], np.float32), np.array([0, 0, 90, 90], np.float32)):
        wins = positive_windows(box, (320, 240), opts, rng)
        assert wins
        for x0, y0, x1, y1 in wins:
            assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]
            assert x0 >= 0 and y0 >= 0 and x1 <= 320 and y1 <= 240
            assert x1 - x0 >= 64 - 1e-3  # never smaller than the base window, larger for a large vessel


def test_negative_windows_never_touch_a_vessel():
    rng = np.random.default_rng(1)
    vessels = np.array([[100, 50, 140, 74], [200, 150, 260, 190]], np.float32)
    others = np.array([[10, 200, 40, 216], [120, 60, 130, 70]], np.float32)  # the second lies on a vessel
    opts = TileOptions(input_size=48, scale=1.0, negatives_per_frame=50, margin=4.0)
    wins = negative_windows(vessels, others, (320, 240), opts, rng)
    assert len(wins) > 20
    kinds = {k for k, _ in wins}
    assert {"negative", "context", "hard"} <= kinds
    for _, win in wins:
        assert not _touches(win, vessels, 4.0)


def test_mined_windows_avoid_vessels_and_take_the_strongest_cells_first():
    frame = LabeledFrame(path="x.jpg", width=320, height=256, boxes=np.array([[0, 0, 40, 40]], np.float32),
                         classes=("boat",), camera="c", timestamp=None)
    probs = np.zeros((8, 10), np.float32)
    probs[0, 0] = 0.99  # on the vessel: a true detection, not a false alarm
    probs[5, 7] = 0.9
    probs[2, 8] = 0.6
    probs[5, 6] = 0.8  # next to the 0.9 cell: the same false alarm
    opts = TileOptions(input_size=64, scale=1.0)
    wins = mine_windows(probs, frame, ("boat",), opts, floor=0.5, per_frame=5)
    centres = [((w[0] + w[2]) / 2, (w[1] + w[3]) / 2) for w in wins]
    assert len(wins) == 2
    assert centres[0] == pytest.approx((7.5 * 32, 5.5 * 32))
    assert centres[1] == pytest.approx((8.5 * 32, 2.5 * 32))


def test_tiles_from_a_yolo_dataset(tmp_path):
    ds = load_box_dataset(_yolo(tmp_path / "data"))
    counts = write_tiles(ds.frames, ("boat",), tmp_path / "tiles", "boat", TileOptions(input_size=64, scale=1.0), "train")
    pos = sorted((tmp_path / "tiles" / "boat").glob("*.jpg"))
    neg = sorted((tmp_path / "tiles" / "no_boat").glob("*.jpg"))
    assert counts.positive == len(pos) > 0 and counts.negative + counts.context + counts.hard == len(neg) > 0
    assert counts.hard > 0  # the cars
    img = cv2.imread(str(pos[0]))
    assert img.shape == (64, 64, 3)
    # every positive crop shows the bright boat; no negative crop does
    assert all(cv2.imread(str(p))[..., 1].max() > 200 for p in pos)
    assert all(cv2.imread(str(p))[..., 1].max() < 200 for p in neg)


def test_split_keeps_validation_and_held_out_frames_out_of_the_training_crops(tmp_path):
    from training.boxtrain import BoxTrainOptions, split_datasets

    root = _yolo(tmp_path / "data", n=12)
    splits = split_datasets(BoxTrainOptions(datasets=(str(root),), positive=("boat",), test_fraction=0.25,
                                            val_fraction=0.25), seed=0)
    names = {k: {Path(f.path).stem for f in v} for k, v in splits.items()}
    assert names["train"] and names["val"] and names["test"]
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"]) and not (names["val"] & names["test"])
    write_tiles(splits["train"], ("boat",), tmp_path / "tiles", "boat", TileOptions(input_size=64, scale=1.0), "train")
    crops = [p.name for p in (tmp_path / "tiles").rglob("*.jpg")]
    assert crops
    for held in names["val"] | names["test"]:
        assert not any(held[:40] in c for c in crops)


def test_a_positive_class_that_the_dataset_lacks_is_refused(tmp_path):
    from edge.errors import DataError
    from training.boxtrain import BoxTrainOptions, split_datasets

    root = _yolo(tmp_path / "data")
    with pytest.raises(DataError, match="none of these is a class"):
        split_datasets(BoxTrainOptions(datasets=(str(root),), positive=("ship",)), seed=0)


def test_bad_tile_options_are_refused():
    from edge.errors import ConfigError

    for bad in ({"scale": 0.0}, {"input_size": 16}, {"context": (0.5,)}, {"negatives_per_frame": -1}):
        with pytest.raises(ConfigError):
            TileOptions(**bad)


def test_frame_threshold_keeps_false_peaks_within_the_allowance():
    from training.boxtrain import fit_frame_threshold

    frames, maps = [], []
    false_levels = [0.9, 0.8, 0.7, 0.6]  # one false peak per frame, far from the vessel
    for i, f in enumerate(false_levels):
        probs = np.full((4, 6), 0.02, np.float32)
        probs[1, 1] = 0.95 if i % 2 else 0.65  # the vessel's cell: x 32..64, y 32..64
        probs[3, 5] = f
        frame = LabeledFrame(path=f"f{i}.jpg", width=192, height=128, boxes=np.array([[34, 36, 70, 60]], np.float32),
                             classes=("boat",), camera="c", timestamp=None)
        maps.append((frame, probs))
    fitted = fit_frame_threshold(maps, ("boat",), scale=1.0, max_false_per_frame=0.5)
    # 4 frames allow 2 false peaks: the third strongest (0.7) must fall below the threshold
    assert float(np.float32(0.7)) < fitted["threshold"] <= 0.8 + 1e-6
    assert fitted["false_per_frame"] == 0.5
    assert fitted["recall_wide"] == 0.5 and fitted["wide_vessels"] == 4  # only the 0.95 vessels stay above it


def test_a_vessel_wider_than_the_window_is_also_cut_from_inside_at_the_runtime_scale():
    rng = np.random.default_rng(2)
    opts = TileOptions(input_size=64, scale=1.0, positives_per_box=4)
    box = np.array([20, 100, 300, 180], np.float32)  # 280 px long: over four windows
    wins = positive_windows(box, (640, 480), opts, rng)
    inside = [w for w in wins if w[2] - w[0] == pytest.approx(64)]
    whole = [w for w in wins if w[0] <= box[0] and w[2] >= box[2]]
    assert len(inside) == 4 and len(whole) >= 1
    for x0, y0, x1, y1 in inside:
        assert box[0] <= x0 and x1 <= box[2]  # along the hull, never past its ends


def test_a_split_file_is_reused_frame_for_frame(tmp_path):
    import json

    from training.boxtrain import BoxTrainOptions, split_datasets

    root = _yolo(tmp_path / "data", n=12)
    first = split_datasets(BoxTrainOptions(datasets=(str(root),), positive=("boat",), test_fraction=0.25), seed=0)
    doc = {k: [f.path for f in v] for k, v in first.items()}
    (tmp_path / "split.json").write_text(json.dumps(doc))
    again = split_datasets(BoxTrainOptions(datasets=(str(root),), positive=("boat",), test_fraction=0.25,
                                           split_file=str(tmp_path / "split.json")), seed=7)
    assert {k: [f.path for f in v] for k, v in again.items()} == doc
