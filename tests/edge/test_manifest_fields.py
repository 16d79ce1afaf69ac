"""The manifest's signature and training size as fields, and its formats from the format table."""

from __future__ import annotations

import json

import pytest

from edge.errors import ManifestError
from edge.manifest import Manifest, Task, load_manifest
from tests.edge import fleet_support

tiny_model = fleet_support.tiny_model  # a module-scoped fixture: an ONNX model with its manifest


def _doc(tiny_model) -> dict:
    return json.loads(tiny_model.read_text())


def test_signature_and_train_input_size_are_fields_written_at_the_top(tiny_model):
    doc = _doc(tiny_model)
    doc.update(signature="serving_default", train_input_size=[96, 160])
    m = Manifest.from_dict(doc)
    assert m.signature == "serving_default" and m.train_input_size == (96, 160) and "signature" not in m.extra
    out = m.to_dict()
    assert out["signature"] == "serving_default" and out["train_input_size"] == [96, 160]
    assert Manifest.from_dict(out).to_dict() == out


def test_a_manifest_that_kept_them_in_extra_still_loads(tmp_path, tiny_model):
    doc = _doc(tiny_model)
    for key in ("signature", "train_input_size"):
        doc.pop(key, None)
    doc["extra"] = {**doc.get("extra", {}), "signature": "serving_default", "train_input_size": [128, 128],
                    "source_run": "runs/real2"}
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / doc["artifact"]).write_bytes((tiny_model.parent / doc["artifact"]).read_bytes())
    (folder / tiny_model.name).write_text(json.dumps(doc))
    m = load_manifest(folder / tiny_model.name)
    assert m.signature == "serving_default" and m.train_input_size == (128, 128)
    assert m.extra == {"source_run": "runs/real2"}  # moved to the fields, not kept twice


def test_a_manifest_without_them_has_none_and_its_task_is_the_enum(tiny_model):
    m = load_manifest(tiny_model)
    assert m.signature is None and m.train_input_size is None
    assert m.task is Task.BINARY and m.to_dict()["task"] == "binary"


@pytest.mark.parametrize("change, message", [
    ({"train_input_size": [96]}, r"train_input_size: expected \[h, w\] of positive integers"),
    ({"train_input_size": [0, 96]}, r"train_input_size: expected \[h, w\]"),
    ({"signature": ""}, "signature: expected a signature name or null"),
    ({"format": "onnx-fp64"}, "format: expected one of tflite-fp32, .*, onnx-int8; received 'onnx-fp64'"),
])
def test_malformed_fields_are_refused(tiny_model, change, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict({**_doc(tiny_model), **change})
