"""Extension points as tables, open to other distributions through entry points (edge.plugins).

Two ways in: a faked entry-point table (monkeypatched importlib.metadata.entry_points),
and a real distribution's metadata written into a temporary folder on PYTHONPATH,
which ``edgecam run`` finds on its own.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge import backends
from edge.errors import ConfigError
from edge.formats import FORMATS, RUN_PREFERENCE, format_keys, format_spec, run_preference
from edge.plugins import ExtensionTable, PluginError
from edge.sink_kinds import SINKS, make_sinks
from edge.sources import PLUGIN_SOURCES, SOURCE_KINDS, open_source
from tests.edge import fleet_support
from tests.edge.fleet_support import edgecam_cmd, env

tiny_model = fleet_support.tiny_model  # a module-scoped fixture: an ONNX model with its manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = "tests.plugins.extension_example"
DIST = "edgecam-extension-example"


def _entry_points(rows):
    """An importlib.metadata.entry_points stand-in: rows of (group, name, value)."""
    class Dist:
        name = DIST

    def fake(group=None, **kw):
        found = [importlib.metadata.EntryPoint(name, value, g) for g, name, value in rows if g == group]
        for ep in found:  # EntryPoint.dist is set by the metadata machinery; do what it does
            ep._for(Dist())
        return importlib.metadata.EntryPoints(found)

    return fake


@pytest.fixture
def plugged(monkeypatch):
    """Install the example extension (and a broken one) as entry points; restore the tables afterwards."""
    rows = [("edgecam.backends", "onnx-counting", f"{EXAMPLE}:CountingOnnxBackend"),
            ("edgecam.backends", "broken", "edgecam_missing_module:Backend"),
            ("edgecam.backends", "litert", f"{EXAMPLE}:CountingOnnxBackend"),  # a clash: edgecam's own wins
            ("edgecam.sources", "ramp", f"{EXAMPLE}:ramp_source"),
            ("edgecam.sinks", "csv", f"{EXAMPLE}:csv_sink"),
            ("edgecam.sinks", "not-a-factory", f"{EXAMPLE}:__doc__"),
            ("edgecam.formats", "onnx-ort-basic", f"{EXAMPLE}:ORT_BASIC"),
            ("edgecam.formats", "onnx-wrong-key", f"{EXAMPLE}:ORT_BASIC")]
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points(rows))
    tables = (backends.BACKENDS, PLUGIN_SOURCES, SINKS, FORMATS)
    for t in tables:
        t.refresh()
    yield
    for t in tables:
        t.refresh()


def test_listing_reads_names_only_and_loading_is_lazy(plugged):
    sys.modules.pop(EXAMPLE, None)
    assert backends.backend_keys() == ["litert", "onnxruntime", "onnx-counting", "broken"]
    assert EXAMPLE not in sys.modules, "listing the table must not import a plugin"
    assert backends.backend_class("onnx-counting").key == "onnx-counting" and EXAMPLE in sys.modules
    assert backends.BACKENDS.get("litert").dist is None  # the clashing plugin was ignored


def test_a_broken_plugin_is_named_with_its_distribution(plugged):
    with pytest.raises(PluginError, match=rf"'broken' from distribution '{DIST}'.*ModuleNotFoundError"):
        backends.backend_class("broken")
    with pytest.raises(PluginError, match="expected a factory callable"):
        make_sinks(["not-a-factory"], Path("."))
    # the rest of the table still works, and the derived defaults skip the broken one
    assert backends.default_for_format()["onnx-fp32"] == "onnxruntime"


def test_a_plugin_of_the_wrong_kind_is_refused():
    table = ExtensionTable("backend", "edgecam.backends", {"x": "edge.sinks:JsonlSink"}, backends._check)
    with pytest.raises(PluginError, match="expected a subclass of edge.backends.Backend"):
        table.load("x")
    table = ExtensionTable("backend", "edgecam.backends", {"x": f"{EXAMPLE}:CountingOnnxBackend"}, backends._check)
    with pytest.raises(PluginError, match="key to be its entry-point name 'x'"):
        table.load("x")


def test_unknown_names_say_which_there_are(plugged):
    with pytest.raises(ConfigError, match=r"expected one of \['broken', 'litert', 'onnx-counting', 'onnxruntime'\]"):
        backends.backend_class("hailo")
    with pytest.raises(ConfigError, match=r"sink: expected one of \['csv', 'jsonl', 'not-a-factory'\]"):
        make_sinks(["kafka"], Path("."))


def test_the_derived_tables_agree_with_the_backend_classes():
    from devices.enums import ArtifactFormat, Backend

    for key in backends.backend_keys():
        cls = backends.backend_class(key)
        assert cls.key == key and all(backends.runs_format(key, f) for f in cls.formats)
    assert [b.value for b in Backend] == backends.backend_keys()
    assert {f.value for f in ArtifactFormat} == set(backends.default_for_format())
    assert backends.DEFAULT_FOR_FORMAT["tflite-int8"] == "litert" and ArtifactFormat("onnx-int8").backend.value == "onnxruntime"


def test_the_format_table_agrees_with_the_backends_the_manifest_and_verify():
    from devices.enums import ArtifactFormat
    from edge import manifest
    from export.verify import load_gates

    assert manifest.FORMATS == tuple(format_keys()) == ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8",
                                                        "onnx-fp32", "onnx-int8")
    # every edgecam format has a backend, every backend's format is a row, and the profiles' enum is the table
    assert set(backends.default_for_format()) == set(format_keys())
    assert [f.value for f in ArtifactFormat] == format_keys()
    assert {k: g.to_dict() for k, g in load_gates(None).items()} == {k: format_spec(k).gates.to_dict() for k in format_keys()}
    assert [k for k in format_keys() if format_spec(k).needs_calibration] == ["tflite-int8", "onnx-int8"]
    # edgecam run's order for picking from a folder ranks every one of edgecam's formats, each once
    assert sorted(RUN_PREFERENCE) == sorted(format_keys()) and run_preference() == list(RUN_PREFERENCE)


def test_a_plugin_format_joins_export_verify_and_the_backends(plugged):
    from export.exporter import ExportOptions
    from export.verify import load_gates

    assert format_keys()[-2:] == ["onnx-ort-basic", "onnx-wrong-key"]
    # edgecam run picks from a folder in its own order first, then the plugins' formats: none is left out
    assert run_preference() == [*RUN_PREFERENCE, "onnx-ort-basic", "onnx-wrong-key"]
    assert ExportOptions(formats=("onnx-ort-basic",)).formats == ("onnx-ort-basic",)
    assert "onnx-ort-basic" in ExportOptions(formats=("all",), calib="unused").formats
    assert load_gates(None)["onnx-ort-basic"].max_abs_score_diff == 1e-4
    assert backends.default_backend("onnx-ort-basic") == "onnx-counting"
    with pytest.raises(PluginError, match="key to be its entry-point name 'onnx-wrong-key'"):
        format_spec("onnx-wrong-key")
    with pytest.raises(ConfigError, match=r"formats: expected some of \[.*'onnx-ort-basic'"):
        ExportOptions(formats=("onnx-fp64",))


def test_source_kinds_keep_the_order_of_the_accepted_forms(tmp_path):
    assert [k.name for k in SOURCE_KINDS] == ["synthetic", "camera", "stream", "gstreamer", "picamera2", "images",
                                              "video", "glob"]
    (tmp_path / "a.png").write_bytes(b"")
    assert type(open_source(str(tmp_path))).__name__ == "ImageFolderSource"
    assert type(open_source("rtsp://cam/1")).__name__ == "StreamSource"
    assert type(open_source("3")).__name__ == "CameraSource"


def test_run_takes_the_plugin_backend_source_and_sink_in_process(plugged, tiny_model, tmp_path):
    from edge.detector import Detector
    from edge.manifest import load_manifest
    from edge.pipeline import RunOptions, run

    cls = backends.backend_class("onnx-counting")
    cls.invocations = 0
    det = Detector(backends.create_backend(load_manifest(tiny_model), "onnx-counting"))
    with det:
        summary = run(det, open_source("ramp:8"), RunOptions(out_dir=tmp_path / "run", mode="all", write_video=False),
                      sinks=make_sinks(["csv"], tmp_path / "run"))
    assert summary["frames"] == 8 and summary["errors"] == 0 and cls.invocations >= 8
    rows = (tmp_path / "run" / "scores.csv").read_text().splitlines()
    assert rows[0] == "frame,label,score" and [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(8)]
    scores = [float(r.split(",")[2]) for r in rows[1:]]
    assert scores[-1] > scores[0], "the red square grows, and so does the tiny model's score"


def _ort_basic_artifact(tiny_model: Path, folder: Path) -> Path:
    """The tiny ONNX model as the plugin's format: optimised by the plugin's converter, with its manifest."""
    import hashlib

    from tests.plugins.extension_example import ORT_BASIC, ort_basic

    doc = json.loads(Path(tiny_model).read_text())
    content = ort_basic((Path(tiny_model).parent / doc["artifact"]).read_bytes())
    folder.mkdir()
    (folder / ORT_BASIC.filename).write_bytes(content)
    doc.update(format=ORT_BASIC.key, artifact=ORT_BASIC.filename, size_bytes=len(content),
               sha256=hashlib.sha256(content).hexdigest())
    manifest = folder / f"{ORT_BASIC.filename}.manifest.json"
    manifest.write_text(json.dumps(doc))
    return manifest


def _install_distribution(site: Path, entry_points: str) -> None:
    """What pip leaves in site-packages for a distribution, reduced to the metadata edgecam reads."""
    info = site / "edgecam_extension_example-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_edgecam_run_accepts_a_distributions_backend_source_and_sink(tiny_model, tmp_path):
    site = tmp_path / "site"
    _install_distribution(site, f"[edgecam.backends]\nonnx-counting = {EXAMPLE}:CountingOnnxBackend\n"
                                f"broken = edgecam_missing_module:Backend\n\n"
                                f"[edgecam.sources]\nramp = {EXAMPLE}:ramp_source\n\n"
                                f"[edgecam.sinks]\ncsv = {EXAMPLE}:csv_sink\n\n"
                                f"[edgecam.formats]\nonnx-ort-basic = {EXAMPLE}:ORT_BASIC\n")
    environ = env()
    environ["PYTHONPATH"] = f"{site}:{environ['PYTHONPATH']}"
    out = tmp_path / "out"
    r = subprocess.run([*edgecam_cmd(), "run", str(tiny_model), "--backend", "onnx-counting", "--source", "ramp:6",
                        "--sink", "csv", "--no-video", "--out", str(out)],
                       capture_output=True, text=True, env=environ, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "onnx-fp32 via onnx-counting" in r.stdout
    folder = (out / "latest").resolve()
    assert len((folder / "frames.jsonl").read_text().splitlines()) == 6
    assert len((folder / "scores.csv").read_text().splitlines()) == 1 + 6
    assert json.loads((folder / "summary.json").read_text())["frames"] == 6

    # a device profile names the plugin's backend and source like any other
    profile = json.loads((REPO / "devices" / "profiles" / "x86-cpu.json").read_text())
    profile.update(name="vendor-box", backend="onnx-counting", artifact_format="onnx-fp32", fallback_formats=[],
                   execution_providers=[], camera_source="ramp:4", extra=DIST, input_size=32)
    (tmp_path / "vendor-box.json").write_text(json.dumps(profile))
    r = subprocess.run([*edgecam_cmd(), "run", str(tiny_model), "--device", str(tmp_path / "vendor-box.json"),
                        "--no-video", "--out", str(tmp_path / "by-profile")],
                       capture_output=True, text=True, env=environ, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "onnx-fp32 via onnx-counting" in r.stdout and "source RampSource(n=4)" in r.stdout
    assert json.loads(((tmp_path / "by-profile" / "latest").resolve() / "summary.json").read_text())["frames"] == 4

    # an artifact of the plugin's format: its default backend is the plugin's, a profile names it, export offers it
    optimised = _ort_basic_artifact(tiny_model, tmp_path / "ort")
    r = subprocess.run([*edgecam_cmd(), "run", str(optimised), "--source", "ramp:3", "--no-video", "--out", str(out)],
                       capture_output=True, text=True, env=environ, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "onnx-ort-basic via onnx-counting" in r.stdout
    profile.update(name="vendor-box-ort", artifact_format="onnx-ort-basic")
    (tmp_path / "vendor-box-ort.json").write_text(json.dumps(profile))
    r = subprocess.run([*edgecam_cmd(), "run", str(optimised), "--device", str(tmp_path / "vendor-box-ort.json"),
                        "--no-video", "--out", str(tmp_path / "by-profile-ort")],
                       capture_output=True, text=True, env=environ, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "onnx-ort-basic via onnx-counting" in r.stdout
    r = subprocess.run([*edgecam_cmd(), "export", "-h"], capture_output=True, text=True, timeout=120,
                       env={**environ, "COLUMNS": "400"})  # one line per flag: argparse wraps at hyphens
    assert "onnx-int8, onnx-ort-basic, or all" in r.stdout
    for formats, says in (("onnx-ort-basic", "expected a trained model"), ("onnx-fp64", "'onnx-ort-basic'")):
        r = subprocess.run([*edgecam_cmd(), "export", str(tmp_path / "no-run"), "--formats", formats],
                           capture_output=True, text=True, env=environ, timeout=120, cwd=tmp_path)
        assert r.returncode == 2 and says in r.stderr and ("formats:" in r.stderr) == (formats == "onnx-fp64"), r.stderr

    r = subprocess.run([*edgecam_cmd(), "run", str(tiny_model), "--backend", "broken", "--source", "ramp:2",
                        "--out", str(out)], capture_output=True, text=True, env=environ, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"'broken' from distribution '{DIST}'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_builtin_jsonl_sink_copies_the_frame_records(tmp_path):
    from edge.pipeline import RunOptions, run
    from tests.edge.test_pipeline import FakeDetector, ShipClip

    out = tmp_path / "run"
    run(FakeDetector(), ShipClip(n=5), RunOptions(out_dir=out, mode="all", write_video=False),
        sinks=make_sinks(["jsonl:copy/frames.jsonl"], out))
    assert (out / "copy" / "frames.jsonl").read_text() == (out / "frames.jsonl").read_text()
    with pytest.raises(ConfigError, match="ending in .jsonl"):
        make_sinks(["jsonl:frames.txt"], out)


def test_an_unknown_sink_exits_2_before_the_model_loads(tmp_path, capsys):
    from edge.cli import main

    code = main(["run", str(tmp_path / "missing.manifest.json"), "--sink", "kafka", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "sink: expected one of" in err and "kafka" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_export_writes_the_plugin_format_beside_edgecams_own(plugged, tmp_path):
    """A tiny untrained MobileNetV2 run exported to onnx-fp32 and the plugin's onnx-ort-basic: same scores."""
    import numpy as np

    from edge.detector import Detector, DetectorOptions
    from export.exporter import ExportOptions, export_run
    from training.model import ModelConfig, build_classifier

    run = tmp_path / "run"
    run.mkdir()
    build_classifier(ModelConfig(input_size=(32, 32), alpha=0.35, weights=None)).save(run / "model.keras")
    (run / "run.json").write_text(json.dumps({"task": "binary", "labels": ["ship"], "negative_label": "rest",
                                              "thresholds": [0.5], "input_size": [32, 32]}))
    written = export_run(run, tmp_path / "export", ExportOptions(formats=("onnx-fp32", "onnx-ort-basic")))
    assert [p.name for p in written] == ["model-fp32.onnx.manifest.json", "model-ort-basic.onnx.manifest.json"]
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    scores = {}
    for path in written:
        with Detector.from_manifest(path, options=DetectorOptions(warmup=0)) as det:
            assert det.backend.key == ("onnx-counting" if "ort-basic" in path.name else "onnxruntime")
            scores[path.name] = det.backend.dequantize("scores", det.infer([det.prepare(f) for f in frames]).scores)
    fp32, optimised = scores.values()
    np.testing.assert_allclose(optimised, fp32, atol=1e-5)
    doc = json.loads(written[1].read_text())
    assert doc["format"] == "onnx-ort-basic" and doc["extra"]["optimised_by"] == "onnxruntime ORT_ENABLE_BASIC"
    assert doc["train_input_size"] == [32, 32] and doc["signature"] is None
