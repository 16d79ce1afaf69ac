"""``edgecam run --config``: the settings that have no flag reach the frame loop, and flags still win."""

from __future__ import annotations

import json

import edge.pipeline
from edge.capture import BackoffOptions
from edge.cli import main
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
