"""The project's own outputs against the JSON Schemas it publishes (docs/schemas): manifest, frame, event and outage
records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fleet_support
from edge.cli import main
from edge.recording import latest_run
from edge.results import RECORD_SCHEMA_VERSION

tiny_model = fleet_support.tiny_model  # the fixture, shared with the fleet tests
SCHEMAS = fleet_support.REPO / "docs" / "schemas"


def load_schema(name: str) -> dict:
    """A schema with every $ref replaced by what it points at (a local #/$defs/... or another file's $id)."""
    by_id = {json.loads(p.read_text())["$id"]: p for p in SCHEMAS.glob("*.schema.json")}
    root = json.loads((SCHEMAS / f"{name}.schema.json").read_text())

    def inline(node, defs):
        if isinstance(node, list):
            return [inline(v, defs) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if ref.startswith("#/$defs/"):
                target = defs[ref.split("/")[-1]]
            else:
                other = json.loads(by_id[ref].read_text())
                target, defs = other, other.get("$defs", {})
            return inline({k: v for k, v in target.items() if k not in ("$id", "$schema")}, defs)
        return {k: inline(v, defs) for k, v in node.items() if k != "$defs"}

    return inline(root, root.get("$defs", {}))


def validate(value, schema: dict) -> None:
    """jsonschema where installed (pip install 'edgecam[dev]'), else the subset checker of the fleet tests."""
    try:
        import jsonschema
    except ModuleNotFoundError:
        fleet_support.check_schema(value, schema)
        return
    try:
        jsonschema.Draft202012Validator(schema).validate(value)
    except jsonschema.ValidationError as exc:
        raise AssertionError(str(exc)) from None


def stills(folder: Path, pattern: str) -> Path:
    """One PNG per letter: 'r' a red frame (the tiny model scores it high), '.' a black one."""
    cv2 = pytest.importorskip("cv2")
    folder.mkdir()
    for i, c in enumerate(pattern):
        img = np.zeros((48, 64, 3), np.uint8)
        if c == "r":
            img[..., 2] = 255  # BGR on disk
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return folder


@pytest.fixture(scope="module")
def recorded(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("schemas")
    frames = stills(root / "frames", "...rrrrrr.....rrrr")  # one event that ends, one the end of the run closes
    out = root / "runs"
    assert main(["run", str(tiny_model), "--source", str(frames), "--out", str(out), "--no-video", "--enter", "0.6",
                 "--leave", "0.45", "--min-frames", "2"]) == 0
    return latest_run(out)


def test_frame_records_match_the_schema(recorded):
    schema = load_schema("frame-record")
    records = fleet_support.read_jsonl(recorded / "frames.jsonl")
    assert len(records) == 18 and any("event" in r for r in records) and any(r["boxes"] for r in records)
    for r in records:
        validate(r, schema)
    assert {r["schema_version"] for r in records} == {RECORD_SCHEMA_VERSION}
    assert {r["source"] for r in records} == {records[0]["source"]} and "ImageFolderSource" in records[0]["source"]


def test_event_records_match_the_schema(recorded):
    schema = load_schema("event-record")
    lines = fleet_support.read_jsonl(recorded / "events" / "events.jsonl")
    assert [line["kind"] for line in lines] == ["start", "end", "start", "end"]
    for line in lines:
        validate(line, schema)
    assert "time" in lines[0] and "time" not in lines[-1]  # the run's end closed the last one: no frame, no time


def test_the_manifest_matches_the_schema(tiny_model):
    validate(json.loads(Path(tiny_model).read_text()), load_schema("manifest"))


def _outage_lines(tmp_path: Path) -> list[dict]:
    """frames.jsonl of a live source that went silent twice: once between frames, once until the run ended."""
    from edge.recording import Recorder, RecordingOptions

    now = [0.0]
    rec = Recorder(tmp_path, RecordingOptions(run_id="r1", outage_s=5.0), clock=lambda: now[0], started=0.0)
    rec.open_records()
    for i, t in enumerate([0.0, 0.1, 12.0]):
        rec.write(np.zeros((4, 4, 3), np.uint8), None, {"schema_version": RECORD_SCHEMA_VERSION, "source": "cam-east",
                                                        "frame": i, "t": t, "time": f"2026-01-01T00:00:{t:06.3f}Z"})
    now[0] = 30.0
    rec.close()
    return [line for line in fleet_support.read_jsonl(tmp_path / "frames.jsonl") if line.get("kind") == "outage"]


def test_outage_records_match_the_schema_and_name_the_source(tmp_path):
    schema = load_schema("outage-record")
    lines = _outage_lines(tmp_path)
    assert [line["ongoing"] for line in lines] == [False, True]
    for line in lines:
        validate(line, schema)
        assert line["schema_version"] == RECORD_SCHEMA_VERSION and line["source"] == "cam-east"
    broken = {k: v for k, v in lines[0].items() if k != "source"}
    with pytest.raises(AssertionError):
        validate(broken, schema)


@pytest.mark.parametrize("name, broken", [
    ("frame-record", lambda r: r.pop("source")),
    ("frame-record", lambda r: r.update(schema_version=2)),
    ("frame-record", lambda r: r.update(scores="high")),
    ("frame-record", lambda r: r["boxes"].append({"xyxy": [0, 0, 4, 4], "score": 0.5, "class_id": 0})),  # no confidence
    ("event-record", lambda r: r.update(kind="middle")),
    ("event-record", lambda r: r.update(unexpected=1)),
])
def test_the_schemas_refuse_a_broken_record(recorded, name, broken):
    path = recorded / ("frames.jsonl" if name == "frame-record" else "events/events.jsonl")
    record = fleet_support.read_jsonl(path)[0]
    broken(record)
    with pytest.raises(AssertionError):
        validate(record, load_schema(name))


def test_a_set_source_id_names_the_source(tiny_model, tmp_path):
    frames = stills(tmp_path / "frames", "..")
    cfg = tmp_path / "cam.toml"
    cfg.write_text(f'model = "{tiny_model}"\nsource = "{frames}"\nout = "{tmp_path / "runs"}"\nno_video = true\n'
                   'source_id = "harbour-east"\n')
    assert main(["run", "--config", str(cfg)]) == 0
    records = fleet_support.read_jsonl(latest_run(tmp_path / "runs") / "frames.jsonl")
    assert [r["source"] for r in records] == ["harbour-east", "harbour-east"]
