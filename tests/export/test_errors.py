"""Bad artifacts, manifests and calibration sets give specific errors; interrupted exports leave nothing half-written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.errors import ArtifactError, DataError, ManifestError
from edge.manifest import load_manifest

pytestmark = pytest.mark.slow


@pytest.fixture
def copy_pair(tiny_export, tmp_path):
    def make(name: str):
        for f in (name, name + ".manifest.json"):
            shutil.copy(tiny_export / f, tmp_path / f)
        return tmp_path / name, tmp_path / (name + ".manifest.json")

    return make


@pytest.mark.parametrize("name", ["model-int8.tflite", "model-fp32.onnx"])
def test_truncated_artifact_is_refused(copy_pair, name):
    art, man = copy_pair(name)
    art.write_bytes(art.read_bytes()[: art.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        load_manifest(man)


@pytest.mark.parametrize("name", ["model-int8.tflite", "model-fp32.onnx"])
def test_truncated_artifact_fails_to_load_even_with_a_matching_manifest(copy_pair, name):
    """Re-sign a truncated file: the runtime itself must then refuse it with an ArtifactError."""
    from edge.backends import create_backend
    from edge.manifest import sha256_file

    art, man = copy_pair(name)
    art.write_bytes(art.read_bytes()[:4096])
    d = json.loads(man.read_text())
    d["size_bytes"], d["sha256"] = art.stat().st_size, sha256_file(art)
    man.write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match="could not load"):
        create_backend(load_manifest(man))


def test_sha_mismatch_is_refused(copy_pair):
    art, man = copy_pair("model-fp32.tflite")
    data = bytearray(art.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    art.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(man)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(schema="other"), "schema"),
        (lambda d: d.update(surprise=1), "unknown keys"),
        (lambda d: d.pop("cam"), "missing keys"),
        (lambda d: d.update(format="tflite-int4"), "format"),
        (lambda d: d.update(thresholds=[0.5, 0.5]), "thresholds"),
    ],
)
def test_wrong_manifest_is_refused(copy_pair, edit, message):
    _, man = copy_pair("model-fp32.onnx")
    d = json.loads(man.read_text())
    edit(d)
    man.write_text(json.dumps(d))
    with pytest.raises(ManifestError, match=message):
        load_manifest(man)


def test_manifest_that_is_not_json(copy_pair):
    _, man = copy_pair("model-fp32.onnx")
    man.write_text("{not json")
    with pytest.raises(ManifestError, match="JSON"):
        load_manifest(man)


def test_empty_calibration_folder(tmp_path):
    from export.calibration import collect

    (tmp_path / "calib").mkdir()
    with pytest.raises(DataError, match="empty"):
        collect(tmp_path / "calib", (64, 64))


def test_too_small_calibration_folder(tmp_path):
    import cv2

    from export.calibration import collect

    d = tmp_path / "calib" / "ship"
    d.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), np.full((8, 8, 3), i * 40, np.uint8))
    with pytest.raises(DataError, match="at least 8 images.*found 3"):
        collect(tmp_path / "calib", (64, 64))


def test_calibration_is_stratified(scenes):
    from export.calibration import collect

    cal = collect(scenes / "train", (32, 32), n=20)
    assert cal.per_class == {"no_ship": 10, "ship": 10}
    assert cal.images.shape == (20, 32, 32, 3) and cal.images.dtype == np.uint8


def test_export_killed_midway_leaves_no_partial_files(tiny_run, scenes, tmp_path, monkeypatch, caplog):
    """The ONNX step dies after the TFLite pair is written: what is there is whole, nothing is half-written."""
    from export import onnx_format
    from export.exporter import ExportOptions, export_run

    def die(*a, **k):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(onnx_format, "convert_fp32", die)
    out = tmp_path / "exp"
    with caplog.at_level("INFO", logger="edgecam.export"), pytest.raises(KeyboardInterrupt):
        export_run(tiny_run, out, ExportOptions(formats=("tflite-fp32", "onnx-fp32"), calib=None))
    # progress per artifact: the first was started and written, the second started and never finished
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("export [")]
    assert [m.split(" ...")[0].split(" written")[0] for m in progress] == ["export [1/2]: tflite-fp32"] * 2 + ["export [2/2]: onnx-fp32"]
    assert "written" in progress[1] and " MB in " in progress[1]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model-fp32.tflite", "model-fp32.tflite.manifest.json"]
    load_manifest(out / "model-fp32.tflite.manifest.json")  # whole and matching


def test_write_pair_interrupted_while_writing(tmp_path, monkeypatch):
    """A failure inside the atomic write of an artifact leaves neither file nor temporary."""
    from edge import atomic

    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
