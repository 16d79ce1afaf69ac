"""``edgecam robustness`` end to end on the tiny model: the report's figures against a direct computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_SIZE, has_module

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (has_module("tensorflow") and has_module("cv2") and has_module("ai_edge_litert")),
                       reason="needs edgecam[all] (TensorFlow, OpenCV, LiteRT)"),
]


@pytest.fixture(scope="module")
def float_and_int8(tiny_run, scenes, tmp_path_factory) -> Path:
    from export.exporter import ExportOptions, export_run

    out = tmp_path_factory.mktemp("robust-export")
    export_run(tiny_run, out, ExportOptions(formats=("tflite-fp32", "tflite-int8"), calib=str(scenes / "train"),
                                            calib_size=32))
    return out


def _balanced_accuracy(y: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    from edge.metrics import binary_report

    return binary_report(y, scores, threshold)["balanced_accuracy"]


def test_class_folder_report_matches_a_direct_computation(float_and_int8, tiny_run, scenes, tmp_path):
    from edge.detector import Detector, DetectorOptions
    from edge.robustness import RobustnessOptions, corrupt_batch, stratified_pick
    from export.robustness import robustness
    from export.verify import pearson
    from training.adversarial import fgsm
    from training.data import from_folder, load_rgb
    from training.model import cam_weights, inference_model
    from training.run import load_run

    opts = RobustnessOptions(corruptions=("fog", "gaussian_noise"), severities=(1, 4), limit=24, eps=(4.0,), seed=2)
    doc = robustness(float_and_int8, scenes / "val", None, opts, out=tmp_path / "rb")
    assert doc["models"] == ["keras", "tflite-fp32", "tflite-int8"] and doc["items"] == 24
    on_disk = json.loads((tmp_path / "rb" / "robustness.json").read_text())
    for name in ("robustness.md", "severity_accuracy.png", "severity_cam.png", "adversarial.png", "grid.png"):
        assert (tmp_path / "rb" / name).stat().st_size > 0, name

    # the same 24 images, corrupted the same way, scored directly
    d = from_folder(scenes / "val")
    d = d.subset(stratified_pick(d.targets[:, 0], 24, 2))
    y = d.targets[:, 0].astype(int)
    images = load_rgb(list(d.paths), TINY_SIZE)
    fog4 = corrupt_batch(images, "fog", 4, seed=2)
    record = next(c for c in on_disk["conditions"] if c["corruption"] == "fog" and c["severity"] == 4)

    model, info = load_run(tiny_run)
    thr = info.thresholds[0]
    inf = inference_model(model, "binary", input_size=TINY_SIZE)
    clean_out, fog_out = inf.predict(images.astype(np.float32), verbose=0), inf.predict(fog4.astype(np.float32), verbose=0)
    w = cam_weights(model)[0][:, 0]
    keras = record["models"]["keras"]
    assert keras["balanced_accuracy"] == pytest.approx(_balanced_accuracy(y, fog_out["scores"][:, 0], thr), abs=1e-9)
    agree = ((fog_out["scores"][:, 0] >= thr) == (clean_out["scores"][:, 0] >= thr)).mean()
    assert keras["agreement"] == pytest.approx(agree)
    r = [pearson(a @ w, b @ w) for a, b in zip(fog_out["features"], clean_out["features"])]
    assert keras["cam_r"] == pytest.approx(float(np.mean(r)), abs=1e-4)

    int8 = float_and_int8 / "model-int8.tflite.manifest.json"
    with Detector.from_manifest(int8, input_size=TINY_SIZE, options=DetectorOptions(warmup=0)) as det:
        scores = np.array([det.detect(img).scores[0] for img in fog4])
        thr8 = float(det.thresholds[0])
    assert record["models"]["tflite-int8"]["balanced_accuracy"] == pytest.approx(_balanced_accuracy(y, scores, thr8))

    adv = fgsm(model, images, d.targets, 4.0)
    adv_scores = inf.predict(adv.astype(np.float32), verbose=0)["scores"][:, 0]
    fgsm_keras = on_disk["adversarial"][0]["models"]["keras"]
    assert on_disk["adversarial"][0]["eps"] == 4.0
    assert fgsm_keras["balanced_accuracy"] == pytest.approx(_balanced_accuracy(y, adv_scores, thr), abs=1e-9)

    s = on_disk["summary"]["models"]["keras"]
    conds = [c for c in on_disk["conditions"] if c["corruption"] != "clean"]
    assert s["mean"]["balanced_accuracy"] == pytest.approx(np.mean([c["models"]["keras"]["balanced_accuracy"] for c in conds]))


def _frames(root: Path, n: int = 6) -> Path:
    """``n`` 120x160 sea frames in COCO layout, a bright hull (class 'boat') on all but the first."""
    import cv2

    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img = np.full((120, 160, 3), (90, 60, 30), np.uint8) + rng.integers(0, 20, (120, 160, 3), dtype=np.uint8)
        name = f"cam0_2024-03-{1 + i:02d}_12-00-00.jpg"
        images.append({"id": i + 1, "file_name": name, "width": 160, "height": 120})
        if i:
            x, y = int(rng.integers(10, 100)), int(rng.integers(20, 90))
            img[y : y + 14, x : x + 40] = 235
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, 40, 14]})
        cv2.imwrite(str(root / "images" / name), img)
    (root / "coco.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                "categories": [{"id": 1, "name": "boat"}]}))
    return root


def test_box_labelled_report_matches_a_direct_computation(float_and_int8, tmp_path):
    from edge.boxeval import BoxEvalOptions, frames_to_evaluate
    from edge.detector import Detector, DetectorOptions
    from edge.imageio import read_image
    from edge.locmetrics import FrameOutcome, LocalisationReport
    from edge.robustness import RobustnessOptions, box_robustness, corrupt_batch, frame_px

    data = _frames(tmp_path / "frames")
    box = BoxEvalOptions(positive=("boat",), grid=0)
    opts = RobustnessOptions(corruptions=("jpeg", "rain"), severities=(3,), limit=None, seed=1)
    doc = box_robustness(float_and_int8, [str(data)], box, opts, tmp_path / "rb")
    assert doc["kind"] == "boxes" and doc["models"] == ["tflite-fp32", "tflite-int8"] and doc["items"] == 6
    assert (tmp_path / "rb" / "severity_pointing.png").is_file() and (tmp_path / "rb" / "grid.png").is_file()
    record = next(c for c in doc["conditions"] if c["corruption"] == "rain")["models"]["tflite-int8"]

    frames = frames_to_evaluate([str(data)], box)
    report = LocalisationReport()
    with Detector.from_manifest(float_and_int8 / "model-int8.tflite.manifest.json", options=DetectorOptions(warmup=0)) as det:
        px = frame_px(det.manifest.train_input_size or det.manifest.input_size, det.scale)
        for i, f in enumerate(frames):
            img = corrupt_batch(read_image(f.path)[None], "rain", 3, 1, px, first_index=i)[0]
            r = det.detect(img)
            report.add(FrameOutcome(Path(f.path).name, f.camera, f.boxes_of("boat"), float(r.scores[0]),
                                    bool(r.positive[0]), r.peak, r.boxes.xyxy, r.boxes.score))
    direct = report.summary()["overall"]
    assert record["pointing_game"] == pytest.approx(direct["pointing_game"])
    assert record["flagged_vessel_frames"] == pytest.approx(direct["flagged_vessel_frames"])
    assert record["roc_auc"] == (None if direct["roc_auc"] is None else pytest.approx(direct["roc_auc"]))
