"""``edgecam demo --quick`` end to end: every step runs and writes what the README promises."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from training.demo import DemoOptions, run_demo

    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(DemoOptions(out=str(out), quick=True, frames=30))
    return out, summary


def test_summary_has_the_promised_figures(demo):
    out, summary = demo
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("val_accuracy", "int8_agreement", "pointing_game_keras", "pointing_game_int8", "frames", "seconds"):
        assert key in on_disk, key
    assert on_disk["frames"] == 30
    for key in ("val_accuracy", "int8_agreement", "pointing_game_keras", "pointing_game_int8"):
        assert 0.0 <= on_disk[key] <= 1.0, (key, on_disk[key])
    assert on_disk["ship_frames"] > 0
    assert on_disk["onnx_fp32_max_abs_diff"] <= 1e-4


def test_frames_jsonl_has_one_record_per_frame(demo):
    out, summary = demo
    lines = (out / "frames.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(summary["frames"]))
    assert all("ship" in r["scores"] for r in records)


def test_video_is_playable(demo):
    import cv2

    out, summary = demo
    cap = cv2.VideoCapture(str(out / "video.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == summary["frames"]


def test_artifacts_and_parity_report(demo):
    out, _ = demo
    names = sorted(p.name for p in (out / "export").iterdir())
    assert "model-int8.tflite.manifest.json" in names and "model-fp32.onnx.manifest.json" in names
    parity = json.loads((out / "export" / "parity.json").read_text())
    assert {r["format"] for r in parity["artifacts"]} == {"tflite-int8", "onnx-fp32"}


def test_the_table_warns_that_quick_figures_mean_nothing(demo, capsys):
    from training.demo import print_table

    out, summary = demo
    print_table(summary, out)
    printed = capsys.readouterr().out
    assert "int8 agreement with Keras" in printed and "not a model" in printed
    # the outputs line names what is in the folder and nothing else (it once listed a frame.png never written)
    listed = printed.split(f"outputs in {out}: ", 1)[1].splitlines()[0].split(", ")
    assert listed == sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if not p.name.startswith("."))
    assert "frames.jsonl" in listed and "export/" in listed
    print_table({**summary, "quick": False}, out)
    assert "not a model" not in capsys.readouterr().out
