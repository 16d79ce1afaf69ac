"""The localisation head end to end on generated sea scenes with known boxes: train -> export -> runtime."""

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


def _scenes(root: Path, n: int = 36, seed: int = 0) -> Path:
    """``n`` 192x256 generated sea scenes with 1-3 ships (a few with none), as a YOLO dataset of class 'ship'."""
    import cv2

    from edge.synthetic.dataset import render_scene
    from edge.synthetic.spec import SceneSpec

    rng = np.random.default_rng(seed)
    spec = SceneSpec(height=192, width=256, ship_length=(24.0, 64.0), hard_negative_rate=0.2)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [ship]\n")
    for i in range(n):
        image, boxes = render_scene(rng, spec, 0 if i % 9 == 0 else int(rng.integers(1, 4)))
        name = f"cam{i % 2}_2024-03-{1 + i % 28:02d}_{10 + i // 28:02d}-00-00"
        cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        lines = [f"0 {(x0 + x1) / 512:.5f} {(y0 + y1) / 384:.5f} {(x1 - x0) / 256:.5f} {(y1 - y0) / 192:.5f}"
                 for x0, y0, x1, y1 in boxes]
        (root / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_head_trains_exports_binds_by_role_and_finds_the_ships(tmp_path, imagenet_weights):
    from edge.boxeval import BoxEvalOptions, evaluate_boxes
    from edge.detector import Detector
    from edge.manifest import load_manifest
    from export.exporter import ExportOptions, export_run
    from training.boxtrain import BoxTrainOptions, train_boxes
    from training.config import TrainConfig
    from training.locate_data import LocateOptions
    from training.locate_train import train_locate

    data = _scenes(tmp_path / "data")
    classifier = tmp_path / "classifier"
    cfg = TrainConfig(data=str(data), out=str(classifier), input_size=(64, 64), alpha=1.0,
                      weights=str(imagenet_weights),
                      pooling="cell", epochs=1, finetune_epochs=0, batch_size=32, augment="none", verbose=0)
    train_boxes(cfg, BoxTrainOptions(datasets=(str(data),), positive=("ship",), scale=1.0, test_fraction=0.25,
                                     val_fraction=0.2, mine_frames=0, final_mining_epochs=0))
    run = tmp_path / "head"
    info = train_locate(LocateOptions(from_run=str(classifier), datasets=(str(data),), positive=("ship",),
                                      out=str(run), crop=128, per_frame=6, background=4, epochs=150, patience=150,
                                      width=24, dropout=0.0, lr=5e-3))
    assert info["head"]["stride"] == 8 and 0.0 < info["head"]["threshold"] < 1.0

    written = export_run(run, run / "export", ExportOptions(formats=("tflite-fp32", "onnx-fp32")))
    for path in written:
        m = load_manifest(path)
        assert m.has_head and {o.role for o in m.outputs} == {"scores", "features", "centres", "sizes"}
        assert m.extra["head"]["threshold"] == info["head"]["threshold"]
        # bound by name: the head's heatmap has one channel at stride 8, the sizes two
        assert m.output("centres").shape[-1] == 1 and m.output("sizes").shape[-1] == 2

    split = json.loads((run / "split.json").read_text())
    doc = evaluate_boxes(run / "export", [str(data)], BoxEvalOptions(positive=("ship",), split=str(run / "split.json"),
                                                                     grid=0), run / "eval")
    assert doc["frames"] == len(split["test"])
    for name, res in doc["artifacts"].items():
        head = res["head_summary"]["overall"]
        # stated recall on held-out generated scenes: at least 0.6 of the ships (centre-hit), few false boxes
        assert head["recall"]["centre"][">=32"]["total"] + head["recall"]["centre"]["<32"]["total"] > 0
        found = head["recall"]["centre"][">=32"]["found"] + head["recall"]["centre"]["<32"]["found"]
        total = head["recall"]["centre"][">=32"]["total"] + head["recall"]["centre"]["<32"]["total"]
        assert found / total >= 0.6, (name, head["recall"])
        assert head["false_boxes_per_frame"] <= 1.0
    assert "side by side" in (run / "eval" / "boxeval.md").read_text()

    # float TFLite and ONNX decode the same boxes from the same frame (parity of the head's outputs)
    from edge.imageio import read_image

    frame = read_image(sorted((data / "images").iterdir())[1])
    located = []
    for path in written:
        with Detector.from_manifest(path) as det:
            located.append(det.detect(frame).located)
    assert len(located[0]) == len(located[1])
    if len(located[0]):
        np.testing.assert_allclose(located[0].xyxy, located[1].xyxy, atol=1.0)
