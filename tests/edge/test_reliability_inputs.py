"""Faults at the boundaries of ``edgecam run`` and the artifacts it loads (issue 15, items 4, 5, 8, 9, 12, 16).

Each test first builds the faulty input that ended or fooled the run before the fix
(a 0-byte still, a manifest pointing outside its folder, a umask, a busy port, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from fleet_support import edgecam_cmd, env, tiny_model  # noqa: F401  (tiny_model is a fixture)

from edge.events import HysteresisOptions
from edge.manifest import ArtifactPathError, load_manifest
from edge.pipeline import RunOptions, run
from edge.recording import RecordingOptions
from edge.sources import ImageFolderSource, VideoFileSource
from test_faults import Det  # the red-pixel detector of the fault tests


def _run_options(tmp_path):
    return RunOptions(out_dir=tmp_path / "run", mode="all", hysteresis=HysteresisOptions(0.6, 0.4, 2),
                      smoother_alpha=1.0, event_label="ship", write_video=False,
                      recording=RecordingOptions(run_id="0001-test"))


def _records(folder):
    return [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]


# -- item 5: a 0-byte or corrupt still is skipped and counted; the run goes on ------------------

def test_zero_byte_and_corrupt_stills_are_skipped_counted_and_the_run_goes_on(tmp_path):
    stills = tmp_path / "stills"
    stills.mkdir()
    for i in range(16):
        cv2.imwrite(str(stills / f"{i:02d}.png"), np.full((24, 32, 3), 10 * i, np.uint8))
    (stills / "07.png").write_bytes(b"")  # before the fix: cv2.error from imdecode ended the run at 7 of 16
    (stills / "11.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (stills / "12.jpg").write_bytes(b"")
    summary = run(Det(), ImageFolderSource(stills), _run_options(tmp_path))
    assert summary["corrupt"] == 3
    assert summary["frames"] == 14
    assert summary["ended_by"] == "source ended"
    records = _records(tmp_path / "run")
    assert len(records) == 14


# -- item 8: the artifact a manifest names must resolve inside the manifest's folder ---------------

def _copy_model(tiny_model, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in tiny_model.parent.iterdir():
        shutil.copy(f, folder / f.name)
    return folder / tiny_model.name


def _point_artifact(manifest: Path, artifact: str) -> None:
    data = json.loads(manifest.read_text())
    data["artifact"] = artifact
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize("artifact, why", [
    ("../outside/tiny.onnx", "'..'"),
    ("sub/../../outside/tiny.onnx", "'..'"),
    ("/etc/passwd", "absolute"),
    ("", "relative"),
])
def test_artifact_named_outside_the_manifest_folder_is_refused_before_it_is_opened(tiny_model, tmp_path, artifact, why):
    """Before the fix '../../../../../etc/passwd' and absolute paths were opened, sized and hashed."""
    manifest = _copy_model(tiny_model, tmp_path / "model")
    _copy_model(tiny_model, tmp_path / "outside")
    if artifact.startswith("/"):
        artifact = str(tmp_path / "outside" / "tiny.onnx")  # a real, matching model elsewhere on disk
    _point_artifact(manifest, artifact)
    with pytest.raises(ArtifactPathError, match=why):
        load_manifest(manifest, verify=True)
    with pytest.raises(ArtifactPathError):
        load_manifest(manifest, verify=False)


def test_artifact_symlinked_out_of_the_manifest_folder_is_refused(tiny_model, tmp_path):
    manifest = _copy_model(tiny_model, tmp_path / "model")
    outside = _copy_model(tiny_model, tmp_path / "outside").parent
    (manifest.parent / "tiny.onnx").unlink()
    (manifest.parent / "tiny.onnx").symlink_to(outside / "tiny.onnx")
    with pytest.raises(ArtifactPathError, match="symlink"):
        load_manifest(manifest)
    (manifest.parent / "tiny.onnx").unlink()
    (manifest.parent / "linked").symlink_to(outside, target_is_directory=True)
    _point_artifact(manifest, "linked/tiny.onnx")
    with pytest.raises(ArtifactPathError, match="symlink"):
        load_manifest(manifest)


def test_artifact_inside_the_folder_still_loads_also_through_a_symlinked_folder(tiny_model, tmp_path):
    manifest = _copy_model(tiny_model, tmp_path / "real")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert load_manifest(tmp_path / "alias" / manifest.name).artifact_path.name == "tiny.onnx"
    sub = tmp_path / "nested"
    sub.mkdir()
    (sub / "models").mkdir()
    shutil.copy(tiny_model.parent / "tiny.onnx", sub / "models" / "tiny.onnx")
    shutil.copy(manifest, sub / manifest.name)
    _point_artifact(sub / manifest.name, "models/tiny.onnx")
    assert load_manifest(sub / manifest.name).artifact_path == sub / "models" / "tiny.onnx"


def test_edgecam_run_with_an_escaping_artifact_is_a_one_line_error_exit_2(tiny_model, tmp_path):
    manifest = _copy_model(tiny_model, tmp_path / "model")
    _copy_model(tiny_model, tmp_path / "outside")
    _point_artifact(manifest, "../outside/tiny.onnx")
    done = subprocess.run([*edgecam_cmd(), "run", str(manifest), "--source", "synthetic", "--max-frames", "3",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env(), timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "climbs out with '..'" in done.stderr


# -- item 9: atomic writes give the mode the process umask asks for, not mkstemp's 0600 ------------

@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o000, 0o666)])
def test_atomic_writes_honour_the_umask(tiny_model, tmp_path, umask, mask, mode):
    from edge import atomic
    from edge.manifest import save_manifest

    umask(mask)
    assert atomic.current_umask() == mask
    written = [atomic.write_bytes(tmp_path / "model.tflite", b"x"), atomic.write_json(tmp_path / "summary.json", {"a": 1})]
    with atomic.atomic_path(tmp_path / "plot.png") as tmp:
        tmp.write_bytes(b"png")
    written.append(tmp_path / "plot.png")
    written.append(save_manifest(load_manifest(_copy_model(tiny_model, tmp_path / "m"), verify=False),
                                 tmp_path / "m" / "again.manifest.json"))
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}
    # the same as a plain open() under that umask
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "plain").stat().st_mode & 0o777 == mode


def test_atomic_write_over_an_existing_file_takes_the_umask_mode(tmp_path, umask):
    from edge import atomic

    umask(0o022)
    target = tmp_path / "summary.json"
    atomic.write_json(target, {"run": 1})
    atomic.write_json(target, {"run": 2})
    assert target.stat().st_mode & 0o777 == 0o644
    assert json.loads(target.read_text()) == {"run": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left behind


# -- item 12: what used to end in a traceback is one line saying what was expected and received ----

def _edgecam(*args, timeout=120, **kw):
    return subprocess.run([*edgecam_cmd(), *args], capture_output=True, text=True, env=env(), timeout=timeout, **kw)


def test_huge_input_size_is_refused_in_one_line_exit_2(tiny_model, tmp_path):
    """Before: a 27.9 GiB allocation (or XNNPack's reshape failure) as a traceback, exit 1."""
    done = _edgecam("run", str(tiny_model), "--source", "synthetic", "--max-frames", "2", "--out", str(tmp_path / "out"),
                    "--input-size", "100000")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "expected each side between 1 and 4096 pixels; received '100000'" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_a_runtime_that_cannot_run_the_model_at_the_size_is_a_config_error():
    from edge.commands import _load_detector
    from edge.errors import ConfigError

    def failing_backend():
        raise RuntimeError("tensorflow/lite/kernels/conv.cc:351 Node number 3 (CONV_2D) failed to prepare.\n"
                           "Failed to apply XNNPACK delegate")

    with pytest.raises(ConfigError, match=r"at 3000x3000; received RuntimeError: tensorflow/lite/kernels/conv.cc:351 "
                                          r"Node number 3 \(CONV_2D\) failed to prepare. \(try a smaller --input-size"):
        _load_detector(None, failing_backend, None, (3000, 3000))


def test_live_on_a_busy_port_is_one_line_exit_2(tiny_model, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _edgecam("run", str(tiny_model), "--source", "synthetic", "--max-frames", "2", "--out", str(tmp_path / "out"),
                        "--live", f"127.0.0.1:{port}")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"edgecam: error: live view: expected a free port on 127.0.0.1; received port {port}, which another process "
        "is listening on (address already in use); choose another with --live")


def test_live_server_on_a_busy_port_raises_config_error():
    import socket

    from edge.errors import ConfigError
    from edge.live import LiveServer

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="address already in use"):
            LiveServer("127.0.0.1", busy.getsockname()[1])


@pytest.mark.parametrize("args", [["devices"], ["devices", "--check"], ["--help"]])
def test_stdout_closed_by_its_reader_ends_quietly(args):
    """``edgecam devices | head``: before, a BrokenPipeError traceback and exit 1."""
    proc = subprocess.Popen([*edgecam_cmd(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    proc.stdout.close()  # the reader is gone before the first line is written
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert code in (0, 141), (code, stderr)  # --help is printed by argparse, which exits 0 on its own


# -- item 16: with --json, stdout is one JSON document and nothing else --------------------------

def _fake_module(monkeypatch, name, **functions):
    import sys
    import types

    module = types.ModuleType(name)
    for key, value in functions.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def _noisy(doc):
    def function(*args, **kwargs):
        print("a library's progress line on stdout")  # what a Keras progress bar or a stray print does
        return doc
    return function


REPORT = {"artifacts": [{"format": "tflite-int8", "failures": ["agreement 0.91 < 0.98"]},
                        {"format": "onnx-fp32", "failures": []}]}


@pytest.mark.parametrize("frames", [False, True])
def test_verify_json_is_one_parseable_document_and_the_verdict_goes_to_stderr(monkeypatch, capsys, tmp_path, frames):
    """Before: "verify: FAILED ..." followed the JSON on stdout, and --frames added a second document."""
    from edge.cli import main

    _fake_module(monkeypatch, "export.verify", verify=_noisy(REPORT),
                 frame_fidelity=_noisy({"frames": 3, "cam_r": 0.99}), to_markdown=lambda r: "| table |")
    argv = ["verify", str(tmp_path), "--data", str(tmp_path), "--json"] + (["--frames", str(tmp_path)] if frames else [])
    assert main(argv) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["artifacts"] == REPORT["artifacts"]
    assert ("frame_fidelity" in doc) == frames
    assert "verify: FAILED" in err and "agreement 0.91" in err
    assert "progress line" in err


def test_verify_without_json_keeps_its_text_on_stdout(monkeypatch, capsys, tmp_path):
    from edge.cli import main

    _fake_module(monkeypatch, "export.verify", verify=lambda *a: {"artifacts": [{"format": "onnx-fp32", "failures": []}]},
                 to_markdown=lambda r: "| table |")
    assert main(["verify", str(tmp_path), "--data", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "| table |"
    assert out.splitlines()[-1] == "verify: all artifacts pass their gates"


def test_evaluate_and_robustness_json_print_pure_json(monkeypatch, capsys, tmp_path):
    from edge.cli import main

    (tmp_path / "ship").mkdir()
    _fake_module(monkeypatch, "training.evaluate", evaluate_path=_noisy({"accuracy": 0.9, "n": 10}))
    assert main(["evaluate", str(tmp_path), str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"accuracy": 0.9, "n": 10}
    assert "progress line" in err

    import edge.boxeval

    monkeypatch.setattr(edge.boxeval, "manifests_of", lambda model: [tmp_path / "m.manifest.json"])
    _fake_module(monkeypatch, "export.robustness", robustness=_noisy({"clean": {"accuracy": 0.9}}))
    assert main(["robustness", str(tmp_path), str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"clean": {"accuracy": 0.9}}
    assert "progress line" in err


# -- item 4: a video corrupt mid-file: a decode failure is not the end of the file ---------------

def _video(path, fourcc, n=120):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 15, (64, 48))
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 1] = 2 * i  # the frame's number, readable after decoding (BGR green = RGB green)
        frame[10:20, i % 60:i % 60 + 4] = 255
        writer.write(frame)
    writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        pytest.skip(f"this OpenCV cannot write {fourcc}")
    return path


def _damage_middle(path, length=4096):
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at:at + length] = bytes(min(length, len(data) - at))
    path.write_bytes(bytes(data))


def _decodes(path):
    cap, n = cv2.VideoCapture(str(path)), 0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, total


def test_mjpeg_corrupt_mid_file_is_skipped_counted_and_read_to_the_end(tmp_path):
    """Before: the run stopped at the first bad frame, 'source ended', corrupt 0, exit 0."""
    video = _video(tmp_path / "clip.avi", "MJPG")
    _damage_middle(video)
    first_stop, listed = _decodes(video)
    assert first_stop < listed - 5, "the damage did not stop a plain read; nothing to test"
    green = []
    summary = run(Det(), VideoFileSource(video), _run_options(tmp_path),
                  on_frame=lambda captured, result, record: green.append(int(captured.frame[0, 0, 1])))
    assert summary["ended_by"] == "source ended"
    assert summary["corrupt"] >= 1
    assert summary["frames"] > first_stop + 30  # read on past the damage, not stopped at it
    assert summary["frames"] + summary["corrupt"] == listed  # every listed frame is either processed or counted
    assert max(green) >= 2 * (listed - 3)  # the last frames of the file were reached
    assert all(b >= a - 6 for a, b in zip(green, green[1:]))  # never sent back to frames already given (no seek)


def test_mpeg4_corrupt_mid_file_counts_every_frame_that_does_not_decode(tmp_path, caplog):
    video = _video(tmp_path / "clip.mp4", "mp4v")
    _damage_middle(video)
    first_stop, listed = _decodes(video)
    assert first_stop < listed - 5, "the damage did not stop a plain read; nothing to test"
    summary = run(Det(), VideoFileSource(video), _run_options(tmp_path))
    assert summary["frames"] >= first_stop
    assert summary["corrupt"] == listed - summary["frames"] > 0
    assert f"lists {listed} frames; {summary['frames']} decoded; {summary['corrupt']} do not decode" in caplog.text


def test_a_whole_video_is_not_mistaken_for_a_corrupt_one(tmp_path):
    for name, fourcc in (("ok.avi", "MJPG"), ("ok.mp4", "mp4v")):
        summary = run(Det(), VideoFileSource(_video(tmp_path / name, fourcc)), _run_options(tmp_path / name[:-4]))
        assert (summary["frames"], summary["corrupt"], summary["ended_by"]) == (120, 0, "source ended")


def test_the_last_line_of_edgecam_run_says_how_many_corrupt_frames_were_skipped(tiny_model, tmp_path):
    video = _video(tmp_path / "clip.avi", "MJPG")
    _damage_middle(video)
    done = _edgecam("run", str(tiny_model), "--source", str(video), "--out", str(tmp_path / "out"), "--no-video")
    summary = json.loads((tmp_path / "out" / "latest" / "summary.json").read_text())
    assert summary["corrupt"] >= 1 and summary["ended_by"] == "source ended", done.stderr[-2000:]
    last = done.stdout.rstrip().splitlines()[-1]
    assert last.startswith(f"edgecam run: the source ended after {summary['frames']} frames "
                           f"({summary['corrupt']} corrupt frames skipped); recorded in "), last
    assert done.returncode == 0
