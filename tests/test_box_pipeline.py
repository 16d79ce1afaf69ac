"""Box-labelled frames end to end: train on crops, export with the frame scale, evaluate through the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import has_module

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (has_module("tensorflow") and has_module("cv2") and has_module("ai_edge_litert")),
                       reason="needs edgecam[all] (TensorFlow, OpenCV, LiteRT)"),
]


def _coco(root: Path, n: int = 24, seed: int = 0) -> Path:
    """``n`` 256x320 sea frames in COCO layout: a bright hull (class 'boat') on most, a red 'buoy' on all."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img = np.zeros((256, 320, 3), np.uint8)
        img[:] = (90, 60, 30)
        img += rng.integers(0, 25, img.shape, dtype=np.uint8)
        name = f"cam{i % 3}_2024-02-{1 + i:02d}_12-00-00.jpg"
        images.append({"id": i + 1, "file_name": name, "width": 320, "height": 256})
        if i % 6:
            x, y = int(rng.integers(10, 250)), int(rng.integers(20, 200))
            img[y : y + 20, x : x + 48] = (235, 235, 235)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, 48, 20]})
        bx, by = int(rng.integers(0, 300)), 236
        img[by : by + 12, bx : bx + 12] = (30, 30, 220)
        anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 2, "bbox": [bx, by, 12, 12]})
        cv2.imwrite(str(root / "images" / name), img)
    (root / "coco.json").write_text(json.dumps({
        "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "boat"}, {"id": 2, "name": "buoy"}]}))
    return root


def test_box_dataset_trains_exports_with_its_scale_and_evaluates(tmp_path):
    from edge.boxeval import BoxEvalOptions, evaluate_boxes
    from export.exporter import ExportOptions, export_run
    from training.boxtrain import BoxTrainOptions, train_boxes
    from training.config import TrainConfig

    data = _coco(tmp_path / "data")
    run = tmp_path / "run"
    cfg = TrainConfig(data=str(data), out=str(run), input_size=(64, 64), alpha=0.35, weights=None, pooling="cell",
                      epochs=2, batch_size=16, augment="none", verbose=0)
    opts = BoxTrainOptions(datasets=(str(data),), positive=("boat",), scale=1.0, test_fraction=0.25, val_fraction=0.25)
    train_boxes(cfg, opts)

    info = json.loads((run / "run.json").read_text())
    assert info["frame_scale"] == 1.0 and info["box_training"]["positive"] == ["boat"]
    split = json.loads((run / "split.json").read_text())
    assert split["test"] and not set(split["test"]) & set(split["train"])
    crops = json.loads((run / "tiles" / "tiles.json").read_text())
    assert crops["train"]["positive"] > 0 and crops["train"]["hard"] > 0  # the buoys are hard negatives

    written = export_run(run, run / "export", ExportOptions(formats=("tflite-fp32", "tflite-int8"),
                                                            calib=str(run / "tiles" / "train"), calib_size=32))
    manifests = [json.loads(Path(p).read_text()) for p in written]
    assert manifests and all(m["extra"]["frame_scale"] == 1.0 and m["cam"]["pooling"] == "cell" for m in manifests)

    doc = evaluate_boxes(run / "export", [str(data)], BoxEvalOptions(positive=("boat",), split=str(run / "split.json"),
                                                                     grid=4), run / "eval")
    assert doc["frames"] == len(split["test"])
    for name, res in doc["artifacts"].items():
        overall = res["summary"]["overall"]
        assert overall["frames"] == doc["frames"]
        assert res["timing"]["scale"] == 1.0 and res["timing"]["absolute_heatmap"] is True
        assert 0.0 <= overall["flagged_vessel_frames"] <= 1.0
    assert (run / "eval" / "boxeval.md").read_text().count("|") > 10
    assert list((run / "eval").glob("frames_*.png")) and list((run / "eval").glob("pr_*.png"))
