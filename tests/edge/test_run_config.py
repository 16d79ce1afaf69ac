"""``edgecam run --config``: the settings that have no flag reach the frame loop, and flags still win; the
event threshold follows the label that drives events."""

from __future__ import annotations

import json
import types

import pytest

import edge.pipeline
from edge.capture import BackoffOptions
from edge.cli import build_parser, main
from edge.commands import _check_run_inputs, event_threshold
from edge.errors import ConfigError
from edge.recording import latest_run
import fleet_support

tiny_model = fleet_support.tiny_model  # the fixture, shared with the fleet tests


def test_file_settings_reach_run_options(tiny_model, tmp_path, monkeypatch):
    seen = {}
    real_run = edge.pipeline.run

    def spy(detector, source, options, **kw):
        seen["options"] = options
        return real_run(detector, source, options, **kw)

    monkeypatch.setattr(edge.pipeline, "run", spy)
    cfg = tmp_path / "cam.toml"
    cfg.write_text(f'model = "{tiny_model}"\nsource = "synthetic:3"\nmax_frames = 50\nno_video = true\n'
                   f'out = "{tmp_path / "runs"}"\nsmoother_alpha = 0.2\nevent_label = "ship"\nvideo_fps = 7.5\n'
                   'target_fps = 1000\nqueue_size = 2\n[reconnect]\ninitial = 0.25\nmax = 4.0\n')
    assert main(["run", "--config", str(cfg), "--max-frames", "6"]) == 0
    o = seen["options"]
    assert (o.smoother_alpha, o.event_label, o.video_fps, o.target_fps, o.queue_size) == (0.2, "ship", 7.5, 1000, 2)
    assert o.reconnect == BackoffOptions(initial=0.25, max=4.0) and o.write_video is False
    assert json.loads((latest_run(tmp_path / "runs") / "summary.json").read_text())["frames"] == 6  # the flag won


def test_a_bad_setting_is_refused_before_anything_is_recorded(tiny_model, tmp_path, capsys):
    cfg = tmp_path / "cam.json"
    cfg.write_text(json.dumps({"model": str(tiny_model), "source": "synthetic:3", "out": str(tmp_path / "runs"),
                               "smoother_alpha": 1.5}))
    assert main(["run", "--config", str(cfg)]) == 2
    assert "smoother_alpha must be a number in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---- the event threshold follows the label that drives events (manifest thresholds, one per label)
LABELS, THRESHOLDS = ("ship", "buoy", "kayak"), (0.4, 0.7, 0.55)


@pytest.mark.parametrize(("task", "event_label", "expected"), [
    ("multilabel", "buoy", 0.7), ("multilabel", "kayak", 0.55), ("multilabel", None, 0.4),
    ("binary", None, 0.4), ("multiclass", "kayak", 0.55),
])
def test_event_threshold_is_the_event_labels_own(task, event_label, expected):
    assert event_threshold(LABELS, THRESHOLDS, task, event_label) == expected


def test_event_threshold_refuses_a_label_the_model_lacks():
    with pytest.raises(ConfigError, match=r"event_label: expected one of the model's labels .*received 'whale'"):
        event_threshold(LABELS, THRESHOLDS, "multilabel", "whale")


def test_run_enters_and_leaves_at_the_event_labels_threshold(tmp_path):
    manifest = types.SimpleNamespace(labels=LABELS, thresholds=THRESHOLDS, task="multilabel")
    a = build_parser().parse_args(["run", "m.json", "--out", str(tmp_path)])
    a.event_label = "buoy"  # a setting with no flag: from --config
    checked = _check_run_inputs(a, manifest)
    assert (checked.decision, checked.enter, checked.leave) == (0.7, 0.7, pytest.approx(0.42))
    assert checked.settings["event_label"] == "buoy"
    a = build_parser().parse_args(["run", "m.json", "--out", str(tmp_path), "--enter", "0.8"])
    a.event_label = "kayak"
    assert (_check_run_inputs(a, manifest).decision, _check_run_inputs(a, manifest).enter) == (0.55, 0.8)  # --enter wins
