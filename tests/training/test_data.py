"""Data loading: layouts, one-vs-rest, class weights, and every error path naming the path."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import DataError


def _img(path, value=100):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((12, 12, 3), value, np.uint8))


@pytest.fixture
def tree(tmp_path):
    for c, n in (("ship", 3), ("car", 5), ("bird", 4)):
        for i in range(n):
            _img(tmp_path / "d" / c / f"{i}.png", 30 * i)
    return tmp_path / "d"


def test_one_vs_rest(tree):
    from training.data import from_folder

    d = from_folder(tree, positive="ship")
    assert d.task == "binary" and d.labels == ("ship",) and d.negative_label == "rest"
    assert d.counts() == {"rest": 9, "ship": 3}
    assert int(d.targets.sum()) == 3


def test_multiclass_without_positive(tree):
    from training.data import from_folder

    d = from_folder(tree)
    assert d.task == "multiclass" and d.labels == ("bird", "car", "ship")
    np.testing.assert_array_equal(d.targets.sum(0), [4, 5, 3])


def test_no_prefix_pair_is_binary(tmp_path):
    from training.data import from_folder

    for c in ("ship", "no_ship"):
        for i in range(2):
            _img(tmp_path / c / f"{i}.png")
    d = from_folder(tmp_path)
    assert d.task == "binary" and d.labels == ("ship",) and d.negative_label == "no_ship"


@pytest.mark.parametrize(
    "counts, expected",
    [((3, 9), {0: 12 / (2 * 9), 1: 12 / (2 * 3)}), ((5, 5), {0: 1.0, 1: 1.0})],
)
def test_class_weights_match_counts(counts, expected):
    from training.data import LabeledImages, class_weights

    pos, neg = counts
    t = np.r_[np.ones(pos), np.zeros(neg)].astype(np.float32)[:, None]
    d = LabeledImages(tuple(f"{i}.png" for i in range(pos + neg)), t, ("ship",), "binary", "rest")
    w = class_weights(d, "balanced")
    assert w == pytest.approx(expected)
    # weighted counts are equal: each class contributes the same total weight
    assert w[0] * neg == pytest.approx(w[1] * pos)


def test_stratified_split_keeps_shares(tree):
    from training.data import from_folder, stratified_split

    d = from_folder(tree, positive="ship")
    tr, va = stratified_split(d, 0.34, seed=0)
    assert len(tr) + len(va) == len(d)
    assert va.counts()["ship"] == 1 and va.counts()["rest"] == 3
    assert not set(tr.paths) & set(va.paths)


def test_missing_folder_names_the_path(tmp_path):
    from training.data import from_folder

    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        from_folder(tmp_path / "nope")


def test_empty_class_folder_names_it(tree):
    from training.data import from_folder

    (tree / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty is empty"):
        from_folder(tree)


def test_non_image_file_names_it(tree):
    from training.data import from_folder

    (tree / "car" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt"):
        from_folder(tree)


def test_one_class_only(tmp_path):
    from training.data import from_folder

    _img(tmp_path / "ship" / "a.png")
    with pytest.raises(DataError, match="at least two class folders"):
        from_folder(tmp_path)


def test_unknown_positive_lists_classes(tree):
    from training.data import from_folder

    with pytest.raises(DataError, match=r"--positive 'boat'.*\['bird', 'car', 'ship'\]"):
        from_folder(tree, positive="boat")


def test_corrupt_images_are_listed_or_skipped(tree):
    from training.data import drop_bad, from_folder

    (tree / "ship" / "bad1.png").write_bytes(b"\x89PNG not really")
    (tree / "car" / "bad2.jpg").write_bytes(b"")
    d = from_folder(tree, positive="ship")
    with pytest.raises(DataError) as info:
        drop_bad(d, skip_bad=False)
    assert "bad1.png" in str(info.value) and "bad2.jpg" in str(info.value) and "--skip-bad" in str(info.value)
    kept = drop_bad(d, skip_bad=True)
    assert len(kept) == len(d) - 2


def test_read_image_errors(tmp_path):
    from edge.imageio import read_image

    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="x.png"):
        read_image(tmp_path / "x.png")
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_csv_multilabel(tmp_path):
    from training.data import from_csv

    for i in range(3):
        _img(tmp_path / f"{i}.png")
    (tmp_path / "labels.csv").write_text("path,cat,dog\n0.png,1,0\n1.png,1,1\n2.png,0,1\n")
    d = from_csv(tmp_path / "labels.csv")
    assert d.task == "multilabel" and d.labels == ("cat", "dog")
    np.testing.assert_array_equal(d.targets, [[1, 0], [1, 1], [0, 1]])
    (tmp_path / "bad.csv").write_text("path,cat,dog\n0.png,1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv:2"):
        from_csv(tmp_path / "bad.csv")


def test_a_format_training_cannot_decode_is_refused_up_front(tree):
    """OpenCV reads TIFF, tf.io.decode_image does not: a .tif once passed the check and crashed training 78 s in."""
    import cv2

    from training.data import drop_bad, from_folder

    cv2.imwrite(str(tree / "ship" / "scan.tif"), np.full((12, 12, 3), 50, np.uint8))
    (tree / "car" / "disguised.png").write_bytes((tree / "ship" / "scan.tif").read_bytes())  # a TIFF named .png
    d = from_folder(tree, positive="ship")
    with pytest.raises(DataError) as info:
        drop_bad(d, skip_bad=False)
    text = str(info.value)
    assert "2 of 14 are not" in text and "JPEG, PNG, GIF, BMP, WebP" in text
    assert "scan.tif: TIFF format, which training cannot decode" in text and "disguised.png: TIFF format" in text
    assert len(drop_bad(d, skip_bad=True)) == 12


def test_train_and_val_are_checked_together_so_one_error_lists_both(tree, tmp_path):
    from training.data import drop_bad_all, from_folder

    val = tmp_path / "val"
    for c in ("ship", "car", "bird"):
        _img(val / c / "0.png")
    (tree / "ship" / "bad1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (val / "car" / "bad2.jpg").write_bytes(b"")
    with pytest.raises(DataError) as info:
        drop_bad_all([from_folder(tree, positive="ship"), from_folder(val, positive="ship")], skip_bad=False)
    text = str(info.value)
    assert "2 of 17 are not" in text and "bad1.png: corrupt PNG" in text and "bad2.jpg: empty (0 bytes)" in text


def test_training_refuses_bad_data_before_making_its_run_folder(tree, tmp_path):
    import cv2

    from training.train import TrainConfig, train

    cv2.imwrite(str(tree / "ship" / "scan.tif"), np.full((12, 12, 3), 50, np.uint8))
    out = tmp_path / "run"
    with pytest.raises(DataError, match="scan.tif: TIFF format"):
        train(TrainConfig(data=str(tree), out=str(out), positive="ship"))
    assert not out.exists()


def test_evaluate_lists_every_unreadable_image_or_skips_them(tmp_path):
    """evaluate once stopped at the first corrupt file and had no --skip-bad (issue 15, item 16)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import cv2

    from edge.soak import tiny_onnx_model
    from training.evaluate import evaluate_path

    manifest = tiny_onnx_model(tmp_path / "model")
    data = tmp_path / "data"
    for c, colour in (("ship", (0, 0, 255)), ("no_ship", (40, 40, 40))):
        (data / c).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(data / c / f"{i}.png"), np.full((16, 16, 3), colour, np.uint8))
    (data / "ship" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (data / "no_ship" / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(data / "no_ship" / "scan.tif"), np.full((16, 16, 3), 40, np.uint8))  # OpenCV reads it: evaluated
    with pytest.raises(DataError) as info:
        evaluate_path(manifest, data)
    text = str(info.value)
    assert "expected images OpenCV can decode; 2 of 11 are not" in text
    assert "cut.png: corrupt PNG" in text and "empty.jpg: empty (0 bytes)" in text
    r = evaluate_path(manifest, data, skip_bad=True)
    assert r["skipped"] == 2 and r["n"] == 9 and r["accuracy"] == 1.0
