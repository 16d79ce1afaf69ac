"""``--config FILE`` for run and train: flags win, unknown keys are refused, ``--print-config`` round-trips."""

from __future__ import annotations

import json
import tomllib
from importlib import resources

import pytest

from edge import cli
from edge.cli import build_parser, main
from edge.config import RUN_SETTINGS, apply_config, load_config_file, to_toml
from edge.errors import ConfigError


def parsed(argv: list[str]):
    """The namespace edgecam would run with (``--config`` applied), without running the command."""
    return cli._with_config(build_parser(), build_parser().parse_args(argv), argv)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_run_file_sets_flags_and_settings_without_a_flag(tmp_path):
    cfg = write(tmp_path, "cam.toml", 'model = "m.json"\nbox_threshold = 0.3\nsmoother_alpha = 0.25\nevent_label = "ship"\n'
                                       'target_fps = 5\nvideo_fps = 12.5\n[reconnect]\ninitial = 1.0\nmax = 8.0\n')
    a = parsed(["run", "--config", cfg])
    assert a.model == "m.json" and a.box_threshold == 0.3
    assert (a.smoother_alpha, a.event_label, a.target_fps, a.video_fps) == (0.25, "ship", 5, 12.5)
    assert a.reconnect == {"initial": 1.0, "max": 8.0}


def test_flags_override_the_file(tmp_path):
    cfg = write(tmp_path, "cam.json", json.dumps({"model": "file.json", "box-threshold": 0.3, "stride": 4, "no_video": True}))
    a = parsed(["run", "cli.json", "--config", cfg, "--box-threshold", "0.7"])
    assert a.model == "cli.json" and a.box_threshold == 0.7  # given on the command line
    assert a.stride == 4 and a.no_video is True  # only in the file


def test_settings_without_a_flag_default_to_none_without_a_file():
    a = parsed(["run", "m.json"])
    assert all(getattr(a, k) is None for k in RUN_SETTINGS)


def test_unknown_key_is_refused_with_the_valid_ones(tmp_path, capsys):
    cfg = write(tmp_path, "cam.toml", 'model = "m.json"\nbox_treshold = 0.3\n')
    assert main(["run", "--config", cfg]) == 2
    err = capsys.readouterr().err
    assert "'box_treshold'" in err and "box_threshold" in err and "smoother_alpha" in err and "Traceback" not in err


@pytest.mark.parametrize("text, fragment", [
    ("stride = 'four'", "stride expects an integer"),
    ("stride = true", "stride expects an integer"),
    ("no_video = 1", "no_video expects true or false"),
    ("resize = 'crop'", "resize expects one of ['stretch', 'letterbox']"),
    ("input_size = 'big'", "expected SIZE or HxW"),
    ("smoother_alpha = 'high'", "smoother_alpha expects int or float"),
    ("reconnect = 3", "reconnect expects a table"),
    ("[reconnect]\ninitial_s = 1", "[reconnect] accepts keys"),
    ("box_threshold = 0.5\nbox_threshold = 0.6", "not valid TOML"),
])
def test_bad_values_say_what_was_expected(tmp_path, text, fragment):
    cfg = write(tmp_path, "cam.toml", text + "\n")
    with pytest.raises(ConfigError) as info:
        parsed(["run", "m.json", "--config", cfg])
    assert fragment in str(info.value) and "cam.toml" in str(info.value)


def test_file_kinds_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expects a .toml or .json file"):
        load_config_file(write(tmp_path, "cam.yaml", "a: 1\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="expected a table"):
        load_config_file(write(tmp_path, "cam.json", "[1, 2]"))


def test_model_required_from_argv_or_file(capsys):
    assert main(["run"]) == 2
    assert "expected MODEL on the command line or 'model' in --config" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "expected DATA" in capsys.readouterr().err


def test_print_config_round_trips(tmp_path, capsys):
    cfg = write(tmp_path, "cam.toml", 'model = "m.json"\nsmoother_alpha = 0.25\nevent_label = "ship"\ninput_size = [352, 640]\n'
                                       '[reconnect]\ninitial = 1.0\nmax_attempts = 3\n')
    argv = ["run", "--config", cfg, "--stride", "2", "--live", "127.0.0.1:8080", "--live-auth", "bearer:s3cret"]
    assert main(argv + ["--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "s3cret" not in printed and "# live_auth is set but not printed" in printed
    assert main(argv + ["--mqtt", "mqtt://cam:pa55@broker:1883", "--mqtt-camera", "east", "--print-config"]) == 0
    printed_mqtt = capsys.readouterr().out
    assert "pa55" not in printed_mqtt and "# mqtt is set but not printed" in printed_mqtt and 'mqtt_camera = "east"' in printed_mqtt
    data = tomllib.loads(printed)
    assert data["stride"] == 2 and data["input_size"] == "352x640" and data["reconnect"] == {"initial": 1.0, "max_attempts": 3}
    again = write(tmp_path, "again.toml", printed)
    first, second = parsed(argv), parsed(["run", "--config", again, "--live-auth", "bearer:s3cret"])
    assert vars(first) | {"config": None} == vars(second) | {"config": None}


def test_train_file_round_trips_through_print_config(tmp_path, capsys):
    cfg = write(tmp_path, "train.toml", 'data = ["a", "b"]\nepochs = 2\ntime_budget = "1h30m"\naugment = "aerial"\n')
    assert main(["train", "--config", cfg, "--lr", "0.01", "--print-config"]) == 0
    data = tomllib.loads(capsys.readouterr().out)
    assert data["data"] == ["a", "b"] and data["epochs"] == 2 and data["time_budget"] == 5400.0 and data["lr"] == 0.01
    again = parsed(["train", "--config", write(tmp_path, "again.toml", to_toml(data))])
    assert (again.data, again.time_budget, again.augment, again.lr) == (["a", "b"], 5400.0, "aerial", 0.01)


def test_to_toml_round_trips_every_value_kind():
    data = {"s": 'quote " and \\ and é', "i": -3, "f": 0.1, "big": 1e-7, "t": True, "l": ["x", "y"], "n": [1, 2.5],
            "table": {"a": 1, "b": "c"}}
    assert tomllib.loads(to_toml(data, header="two\nlines")) == data


def test_shipped_example_config_is_valid_and_the_unit_reads_it():
    example = resources.files("devices").joinpath("edgecam.example.toml")
    data = tomllib.loads(example.read_text())
    parser = build_parser()
    apply_config(parser.subcommands["run"], data, "edgecam.example.toml", RUN_SETTINGS)  # raises on any bad key
    a = parser.parse_args(["run"])
    assert a.model == data["model"] and a.smoother_alpha == data["smoother_alpha"] and a.reconnect == data["reconnect"]
    from edge.capture import BackoffOptions
    from edge.pipeline import RunOptions

    RunOptions.from_dict({"out_dir": a.out, **{k: getattr(a, k) for k in RUN_SETTINGS if getattr(a, k) is not None}})
    unit = resources.files("devices").joinpath("edgecam.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "--config /etc/edgecam/%i.toml" in exec_start
    assert BackoffOptions(**data["reconnect"]).max == data["reconnect"]["max"]


def test_head_passes_is_a_flag_and_a_file_key(tmp_path):
    # on by default; --no-head-passes or head_passes = false keep one invoke per frame for a head artifact
    assert parsed(["run", "m.json"]).head_passes is True
    assert parsed(["run", "m.json", "--no-head-passes"]).head_passes is False
    cfg = write(tmp_path, "cam.toml", 'model = "m.json"\nhead_passes = false\n')
    assert parsed(["run", "--config", cfg]).head_passes is False
    assert parsed(["run", "--config", cfg, "--head-passes"]).head_passes is True  # the flag wins over the file
    with pytest.raises(ConfigError, match="head_passes expects true or false; received 'no'"):
        parsed(["run", "--config", write(tmp_path, "bad.toml", 'model = "m.json"\nhead_passes = "no"\n')])
    assert build_parser().parse_args(["evaluate", "run", "data", "--no-head-passes"]).head_passes is False
