"""``edgecam run`` as a subprocess against real faults: SIGKILL at random moments, restarts into the same
--out, SIGINT/SIGTERM exit codes, and a disk that really fills (a 2 MB tmpfs, where this machine may mount one).

The model is a hand-made ONNX graph (image / 255 -> features; red minus the rest -> score), so
these tests need onnx and onnxruntime but no training. Closed video segments are checked with
ffprobe (Debian's ffmpeg; .ci/run installs it); without ffprobe that check skips with a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FFPROBE = shutil.which("ffprobe")
TIMEOUT = 120  # seconds any one edgecam run may take before the test gives up on it


# the same 3-node ONNX model as the fleet tests: scores from red pixels, the scaled image as features
from fleet_support import tiny_model  # noqa: E402,F401  (a pytest fixture)


def _edgecam() -> list[str]:
    script = Path(sys.executable).parent / "edgecam"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edge.cli"]


def _run_args(model, out, *extra):
    return [*_edgecam(), "run", str(model), "--source", "synthetic", "--out", str(out), "--segment-seconds", "1", *extra]


def _env():
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _start(args, **kw):
    """Start edgecam and wait until it says where it records (the model is loaded, the loop is starting)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO, **kw)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("edgecam run: recording into"):
            return proc, Path(line.split("recording into ", 1)[1].split(" (", 1)[0])
    proc.kill()
    raise AssertionError(f"edgecam run did not start: {proc.stderr.read()[-3000:]}")


def _records(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"{path} ends in half a line"
    return [json.loads(line) for line in raw.decode().splitlines()]  # every line parses


def _digest(folder: Path) -> dict[str, str]:
    # .space-reserve is the placeholder a killed run leaves; the next run frees it
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".space-reserve"}


def _segments(folder: Path) -> tuple[list[dict], list[Path]]:
    """(the closed segments segments.jsonl lists, the segment files in video/).

    A segment is renamed into place before its line is appended, so a kill or a full disk
    between the two leaves one whole segment that is not listed, never a listed one that is missing.
    """
    index = folder / "video" / "segments.jsonl"
    listed = _records(index) if index.exists() else []
    files = sorted((folder / "video").glob("*.mp4"))
    assert [s["file"] for s in listed] == [p.name for p in files][: len(listed)] and len(files) - len(listed) <= 1
    return listed, files


def _ffprobe_frames(path: Path) -> int:
    r = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                        "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), f"{path.name}: {r.stderr}"
    return int(r.stdout.strip())


# ---------------------------------------------------------------- SIGKILL at random moments

KILLS = 4


@pytest.fixture(scope="module")
def killed_runs(tiny_model, tmp_path_factory):
    """``KILLS`` runs into one --out, each SIGKILLed at a random moment 0.3-1.2 s into its frame loop.

    Returns [(run folder, digest of every earlier run folder taken just before this run started)].
    """
    out = tmp_path_factory.mktemp("killed") / "out"
    rng = random.Random(15)
    runs, before = [], {}
    for _ in range(KILLS):
        proc, folder = _start(_run_args(tiny_model, out))
        try:
            # the 300-frame synthetic clip takes about 2.5 s unloaded without video: kill well inside it
            time.sleep(rng.uniform(0.3, 1.2))
        finally:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == -signal.SIGKILL, f"the run ended on its own (exit {proc.returncode}) before the kill"
        runs.append((folder, dict(before)))
        before[folder] = _digest(folder)
    return out, runs, before


def test_sigkill_leaves_whole_jsonl_lines_and_closed_segments_that_match_them(killed_runs):
    out, runs, _ = killed_runs
    assert len({folder for folder, _ in runs}) == KILLS, "each run recorded into a folder of its own"
    recorded = 0
    for folder, _ in runs:
        records = _records(folder / "frames.jsonl")
        frames = [r["frame"] for r in records]
        assert frames == list(range(len(frames))) and {r["run"] for r in records} <= {folder.name}
        segments, _ = _segments(folder)
        for seg in segments:
            assert seg["last_frame"] < len(frames), "a closed segment holds only frames with a record"
            assert seg["frames"] == seg["last_frame"] - seg["first_frame"] + 1
        # what the kill cost: the open segment, at most one second (15 frames at the clip's 15 fps)
        in_video = segments[-1]["last_frame"] + 1 if segments else 0
        assert len(frames) - in_video <= 15 + 1
        recorded += len(segments)
    assert recorded > 0, "the kills came late enough for some segment to close"


def test_sigkill_every_closed_segment_plays(killed_runs):
    if FFPROBE is None:
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg); the segments were not decoded")
    _, runs, _ = killed_runs
    checked = 0
    for folder, _ in runs:
        listed, files = _segments(folder)
        frames = {s["file"]: s["frames"] for s in listed}
        for path in files:
            decoded = _ffprobe_frames(path)
            assert decoded == frames.get(path.name, decoded) and decoded > 0
            checked += 1
    assert checked > 0


def test_a_restart_after_sigkill_loses_nothing_of_the_last_run(killed_runs, tiny_model):
    out, runs, before = killed_runs
    for folder, earlier in runs:
        for old, digest in earlier.items():
            assert _digest(old) == digest, f"{old.name} changed after {folder.name} started"
    last = runs[-1][0]
    r = subprocess.run(_run_args(tiny_model, out, "--max-frames", "5"), capture_output=True, text=True, env=_env(),
                       cwd=REPO, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _digest(last) == before[last]
    assert os.readlink(out / "latest") != last.name and (out / "latest" / "summary.json").is_file()


# ---------------------------------------------------------------- restarts and exit codes


def test_a_restart_into_the_same_out_keeps_the_first_run_whole(tiny_model, tmp_path):
    out = tmp_path / "out"
    summaries = []
    for _ in range(2):
        r = subprocess.run(_run_args(tiny_model, out, "--max-frames", "20"), capture_output=True, text=True, env=_env(),
                           cwd=REPO, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr[-3000:]
        summaries.append(json.loads((out / "latest" / "summary.json").read_text()))
        if len(summaries) == 1:
            first = out / summaries[0]["run"]
            kept = _digest(first)
    second = out / summaries[1]["run"]
    assert first != second and _digest(first) == kept
    assert os.readlink(out / "latest") == second.name
    for folder in (first, second):
        records = _records(folder / "frames.jsonl")
        assert [r["frame"] for r in records] == list(range(20)) and {r["run"] for r in records} == {folder.name}
        assert {e["run"] for e in _records(folder / "events" / "events.jsonl")} <= {folder.name}
        assert {s["run"] for s in _records(folder / "video" / "segments.jsonl")} == {folder.name}


def test_a_clean_end_exits_0_and_the_printed_summary_says_how_the_run_ended(tiny_model, tmp_path):
    r = subprocess.run(_run_args(tiny_model, tmp_path / "out", "--max-frames", "6"), capture_output=True, text=True,
                       env=_env(), cwd=REPO, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    body = r.stdout[r.stdout.index("{"): r.stdout.rindex("}") + 1]
    printed = json.loads(body)
    assert (printed["ended_by"], printed["errors"], printed["sink_errors"], printed["source_error"]) == ("max_frames", 0, 0, None)
    assert (printed["exit_code"], printed["exit_reasons"], printed["recording"]["complete"]) == (0, [], True)
    assert r.stdout.rstrip().splitlines()[-1].startswith("edgecam run: reached --max-frames after 6 frames;")
    assert r.stdout.rstrip().endswith("exit 0")


def test_bad_input_exits_2(tiny_model, tmp_path):
    r = subprocess.run([*_edgecam(), "run", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=_env(), cwd=REPO, timeout=TIMEOUT)
    assert r.returncode == 2 and "edgecam: error:" in r.stderr and not (tmp_path / "out").exists()
    r = subprocess.run(_run_args(tiny_model, tmp_path / "out", "--segment-seconds", "-1"), capture_output=True, text=True,
                       env=_env(), cwd=REPO, timeout=TIMEOUT)
    assert r.returncode == 2 and "segment_s" in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("sig, code, times", [(signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 1), (signal.SIGINT, 130, 2)],
                         ids=["SIGTERM", "SIGINT", "SIGINT-twice"])
def test_a_signal_stops_the_run_cleanly_and_a_shell_sees_128_plus_the_signal(tiny_model, tmp_path, sig, code, times):
    # bash reports a child ended by signal N as 128+N: what systemd, scripts and people see
    cmd = " ".join(f"'{a}'" for a in _run_args(tiny_model, tmp_path / "out"))
    proc, folder = _start(["bash", "-c", f"{cmd}; echo EXIT=$?"], start_new_session=True)
    try:
        time.sleep(1.0)
        listing = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        children = (listing.read_text() if listing.exists() else subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout).split()
        assert len(children) == 1, children
        os.kill(int(children[0]), sig)
        if times == 2:  # lands in the frame loop (stops it at once), in the flush (ignored) or after the end
            time.sleep(0.01)
            try:
                os.kill(int(children[0]), sig)
            except ProcessLookupError:
                pass
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert f"EXIT={code}" in stdout, stderr[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["ended_by"], summary["signal"], summary["exit_code"]) == ("stopped", sig.name, code)
    assert f"stopped by {sig.name} after {summary['frames']} frames, outputs flushed" in stdout
    records = _records(folder / "frames.jsonl")
    assert len(records) == summary["frames"]
    segments = _records(folder / "video" / "segments.jsonl")
    assert sum(s["frames"] for s in segments) == summary["frames"], "the open segment was closed by the flush"
    assert not list((folder / "video" / ".writing").iterdir())


# ---------------------------------------------------------------- a disk that really fills


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs mounted for the test, or skip where this machine does not allow mounting one."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; the injected-writer tests in test_faults.py cover ENOSPC here")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _check_full_disk_run(r, folder, frames):
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    reports = [line for line in r.stderr.splitlines() if "ENOSPC" in line]
    assert len(reports) == 1 and reports[0].startswith("ERROR"), "reported once"
    last = r.stdout.rstrip().splitlines()[-1]
    assert last.startswith(f"edgecam run: reached --max-frames after {frames} frames;") and "; exit 1: " in last
    summary = json.loads((folder / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    records = _records(folder / "frames.jsonl")
    numbers = [r_["frame"] for r_ in records]
    # refused records leave gaps (space freed later lets later records in); none is repeated or out of order
    assert numbers == sorted(set(numbers)) and all(0 <= n < frames for n in numbers)
    return summary, records


def test_a_full_disk_stops_the_video_keeps_whole_records_and_exits_1(tiny_model, small_tmpfs):
    (small_tmpfs / "filler").write_bytes(b"\0" * (2 * 2**20 - 700 * 2**10))  # 700 KiB left: full after a few segments
    r = subprocess.run(_run_args(tiny_model, small_tmpfs / "out", "--min-free-mb", "0", "--max-frames", "150"),
                       capture_output=True, text=True, env=_env(), cwd=REPO, timeout=TIMEOUT)
    folder = Path(os.path.realpath(small_tmpfs / "out" / "latest"))
    summary, records = _check_full_disk_run(r, folder, 150)
    rec = summary["recording"]
    assert rec["storage_errors"]["ENOSPC"] >= 1
    assert rec["video"]["stopped"].startswith("disk full (ENOSPC)") and rec["complete"] is False
    assert len(records) + rec["frames_jsonl"]["lost"] == 150, "every frame is a record or counted as refused"
    listed, files = _segments(folder)
    assert listed and not list((folder / "video" / ".writing").iterdir()), "the refused segment was deleted"
    if FFPROBE is None:
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg); the segments were not decoded")
    frames = {s["file"]: s["frames"] for s in listed}
    for path in files:
        decoded = _ffprobe_frames(path)
        assert decoded == frames.get(path.name, decoded) and decoded > 0


def test_summary_json_is_written_when_records_alone_fill_the_disk(tiny_model, small_tmpfs):
    filler = small_tmpfs / "filler"
    # 100 KiB left: without the 64 KiB set aside at the start, records fill it and summary.json is refused too
    filler.write_bytes(b"\0" * (2 * 2**20 - 100 * 2**10))
    r = subprocess.run(_run_args(tiny_model, small_tmpfs / "out", "--no-video", "--min-free-mb", "0", "--max-frames", "300"),
                       capture_output=True, text=True, env=_env(), cwd=REPO, timeout=TIMEOUT)
    folder = Path(os.path.realpath(small_tmpfs / "out" / "latest"))
    summary, records = _check_full_disk_run(r, folder, 300)
    lost = summary["recording"]["frames_jsonl"]["lost"]
    assert lost > 0 and len(records) + lost == summary["frames"] == 300
    assert summary["exit_code"] == 1 and f"{lost} frames.jsonl records refused by the disk" in summary["exit_reasons"]
