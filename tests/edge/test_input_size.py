"""The model's trained input size wins over a device profile's (issue 15, item 14), and a profile that disagrees
says so once."""

from __future__ import annotations

import subprocess

import pytest

from edge.commands import run_input_size
from edge.errors import ConfigError

import fleet_support
from fleet_support import edgecam_cmd, env, REPO

tiny_model = fleet_support.tiny_model  # the 3-node ONNX model, a pytest fixture


def test_the_trained_size_wins_and_the_profile_is_named():
    size, note = run_input_size((64, 64), None, False, 224, False, "rpi5")
    assert size == (64, 64)
    assert note == ("the rpi5 profile suggests 224x224; running at the model's trained 64x64 "
                    "(--profile-size for the profile's, --input-size HxW for another)")


@pytest.mark.parametrize(("args", "expected"), [
    (((64, 64), (96, 128), False, 224, True, "rpi5"), ((96, 128), None)),  # --input-size wins over everything
    (((64, 64), None, True, 224, True, "rpi5"), (None, None)),  # a model run by frame scale has no fixed size
    (((64, 96), None, False, 224, True, "rpi5"), ((224, 320), None)),  # asked: the profile's, in the trained aspect
    (((224, 224), None, False, 224, False, "rpi5"), ((224, 224), None)),  # they agree: nothing to say
    (((64, 64), None, False, None, False, None), ((64, 64), None)),  # no profile
])
def test_who_decides_the_size(args, expected):
    assert run_input_size(*args) == expected


def test_profile_size_without_a_profile_is_refused():
    with pytest.raises(ConfigError, match="--profile-size expects a --device profile"):
        run_input_size((64, 64), None, False, None, True, None)


def test_edgecam_run_on_a_profile_runs_at_the_trained_size_and_says_so_once(tiny_model, tmp_path):
    proc = subprocess.run([*edgecam_cmd(), "run", str(tiny_model), "--device", "rpi5", "--source", "synthetic",
                           "--max-frames", "3", "--no-video", "--out", str(tmp_path / "out"), "--backend", "onnxruntime"],
                          capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert " at 32x32, " in proc.stdout
    assert proc.stderr.count("the rpi5 profile suggests 224x224; running at the model's trained 32x32") == 1
