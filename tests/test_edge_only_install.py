"""A device installs only ``edgecam[edge]``: the runtime works there and never needs TensorFlow.

Building that environment downloads the edge wheels, so it runs in CI
(``CI=true``) or when ``EDGECAM_TEST_EDGE_VENV=1``; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.recording import latest_run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.environ.get("CI") == "true" or os.environ.get("EDGECAM_TEST_EDGE_VENV") == "1"),
        reason="builds a fresh edge-only virtualenv (set CI=true or EDGECAM_TEST_EDGE_VENV=1)",
    ),
]


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("edge-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"{ROOT}[edge]"],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-4000:]
    return venv


def test_tensorflow_is_not_installed(edge_venv):
    r = subprocess.run([str(edge_venv / "bin" / "python"), "-c", "import tensorflow"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'tensorflow'" in r.stderr


@pytest.mark.parametrize("name", ["model-int8.tflite", "model-fp32.onnx"])
def test_edgecam_run_in_edge_only_env(edge_venv, tiny_export, tmp_path, name):
    out = tmp_path / "run"
    r = subprocess.run(
        [str(edge_venv / "bin" / "edgecam"), "run", str(tiny_export / (name + ".manifest.json")), "--source", "synthetic",
         "--max-frames", "12", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    summary = json.loads((latest_run(out) / "summary.json").read_text())
    assert summary["frames"] == 12
    assert len((latest_run(out) / "frames.jsonl").read_text().splitlines()) == 12


def test_device_profiles_are_found_after_a_wheel_install(edge_venv, tmp_path):
    r = subprocess.run([str(edge_venv / "bin" / "edgecam"), "devices"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("rpi4", "rpi5", "jetson-orin-nano", "jetson-nano", "x86-cpu"):
        assert name in r.stdout
