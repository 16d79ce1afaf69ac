"""Command-line habits: --version, -v/-q where they stand, --json alone on stdout, defaults in every --help."""

from __future__ import annotations

import argparse
import json
import logging
from importlib.metadata import version

import numpy as np
import pytest

from edge import cli
from edge.cli import DELEGATED, build_parser, main
import fleet_support

tiny_model = fleet_support.tiny_model  # the fixture, shared with the fleet tests


@pytest.fixture
def root_level():
    root = logging.getLogger()
    before = root.level
    yield root
    root.setLevel(before)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"edgecam {version('edgecam')}"


@pytest.mark.parametrize("argv, level", [
    (["-v", "run", "--print-config"], logging.DEBUG),
    (["run", "--print-config", "--verbose"], logging.DEBUG),  # a subcommand's own -v, where it stands
    (["-q", "run", "--print-config"], logging.WARNING),
    (["run", "--print-config"], logging.INFO),
])
def test_logging_flags_set_the_level(argv, level, root_level, capsys):
    assert main(argv) == 0
    assert root_level.level == level


def test_a_dash_v_that_is_a_value_is_left_alone():
    """Before, every '-v' in argv was removed, whatever it was: here it is a folder name after '--'."""
    args = build_parser().parse_args(["evaluate", "model.json", "--", "-v"])
    assert args.data == ["-v"] and not getattr(args, "verbose", False)
    cfg = build_parser().parse_args(["run", "m.json", "--mqtt-user=-v"])
    assert cfg.mqtt_user == "-v"


def test_verbose_and_quiet_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as info:
        main(["-v", "-q", "run", "--print-config"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_options_after_a_delegated_command_belong_to_it(capsys, root_level):
    assert main(["-q", "devices", "--json"]) == 0  # -q before the command: edgecam's
    assert root_level.level == logging.WARNING
    json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit) as info:
        main(["devices", "-v"])  # after it: the devices command's, which has no -v
    assert info.value.code == 2


def commands_with_defaults():
    parser = build_parser()
    for name, sub in parser.subcommands.items():
        if name in DELEGATED:
            continue
        for action in sub._actions:
            if action.option_strings and not (action.default is None or action.default is False
                                              or action.default is argparse.SUPPRESS):
                yield name, sub, action


@pytest.mark.parametrize("name, sub, action", list(commands_with_defaults()),
                         ids=lambda v: v if isinstance(v, str) else getattr(v, "dest", ""))
def test_every_option_with_a_default_shows_it_in_help(name, sub, action):
    """Rendered as --help renders it (an option without a help text shows nothing, not even its default)."""
    formatter = sub._get_formatter()
    formatter.add_argument(action)
    entry = formatter.format_help()
    compact = "".join(entry.split())  # argparse wraps lines, also at hyphens: compare without whitespace
    flag = action.option_strings[-1]
    default = action.default[0] if isinstance(action.default, tuple) else action.default
    shown = format(default, "g") if isinstance(default, float) else str(default)
    assert "default" in compact.lower() and "".join(shown.split()) in compact, f"edgecam {name} {flag}: {entry!r}"


def test_top_level_help_shows_version_and_logging_flags(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--version" in out and "-v, --verbose" in out and "-q, --quiet" in out


def labelled_folder(root):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for name, red in (("ship", 230), ("no_ship", 20)):
        (root / name).mkdir(parents=True)
        for i in range(4):
            img = rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
            img[..., 2] = red  # BGR on disk: red channel
            cv2.imwrite(str(root / name / f"{i}.png"), img)
    return root


def json_alone(capfd) -> object:
    out = capfd.readouterr().out
    return json.loads(out)  # raises if anything but the one document reached stdout


def test_evaluate_json_is_alone_on_stdout(tiny_model, tmp_path, capfd):
    data = labelled_folder(tmp_path / "data")
    assert main(["evaluate", str(tiny_model), str(data), "--json"]) == 0
    doc = json_alone(capfd)
    assert doc["n"] == 8 and doc["accuracy"] == 1.0


def test_bench_json_is_alone_on_stdout(tiny_model, tmp_path, capfd):
    assert main(["bench", str(tiny_model), "--frames", "4", "--rounds", "1", "--threads", "1", "--input-size", "32",
                 "--out", str(tmp_path / "bench"), "--json"]) == 0
    doc = json_alone(capfd)
    assert isinstance(doc, dict) and doc


@pytest.mark.parametrize("argv", [["devices", "--json"], ["devices", "rpi5", "--json"], ["devices", "--check", "--json"]])
def test_devices_json_is_alone_on_stdout(argv, capfd):
    assert main(argv) in (0, 1)
    assert json_alone(capfd)


def test_print_json_goes_to_the_real_stdout_while_text_goes_to_stderr(capfd, monkeypatch):
    """The --json switch itself: a command's print() lands on stderr, print_json on stdout."""
    from training import commands  # edgecam evaluate's handler (edge.cli.HANDLERS)

    def chatty(a):
        print("progress 50 %")
        logging.getLogger("edgecam").warning("a warning")
        cli.print_json({"ok": True})
        return 0

    monkeypatch.setattr(commands, "cmd_evaluate", chatty)
    assert main(["evaluate", "m.json", "data", "--json"]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out) == {"ok": True} and "progress 50 %" in captured.err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["verify", "robustness"])
def test_slow_commands_json_is_alone_on_stdout(command, tiny_export, scenes, tmp_path, capfd):
    val = str(scenes / "val")
    argv = {"verify": ["verify", str(tiny_export), "--data", val, "--limit", "16", "--json"],
            "robustness": ["robustness", str(tiny_export), val, "--limit", "16", "--corruptions", "fog",
                           "--severities", "1", "--eps", "1", "--formats", "tflite-fp32", "--out", str(tmp_path / "r"),
                           "--json"]}[command]
    assert main(argv) in (0, 1)  # 1: a parity gate failed, which says nothing about where the JSON went
    assert json_alone(capfd)


# modules whose job is to print: the commands themselves (their output is the product)
# (and the scripts under devices/ci/, run by hand or by CI)
COMMAND_MODULES = {"edge/cli.py", "edge/cli_args.py", "edge/cli_flags.py", "edge/commands.py", "edge/bench.py", "edge/soak.py", "devices/cli.py",
                   "training/demo.py", "training/commands.py", "training/locate_cost.py", "training/locate_scales.py",
                   "export/commands.py"}


def test_library_code_logs_instead_of_printing():
    import ast
    from pathlib import Path

    repo = Path(cli.__file__).resolve().parent.parent
    offenders = []
    for package in ("edge", "export", "training", "devices"):
        for path in sorted((repo / package).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            if rel in COMMAND_MODULES or rel.startswith("devices/ci/"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"print() in library code (use logging): {offenders}"
