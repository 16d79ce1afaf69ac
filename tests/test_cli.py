"""The command line: every subcommand answers --help; errors are specific and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.cli import COMMANDS, main
from edge.recording import latest_run


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_top_level_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_run_help_does_not_import_tensorflow():
    code = "import sys\nfrom edge.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\nprint('TF', 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TF False" in out.stdout


def test_missing_manifest_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nothing.tflite"), "--max-frames", "1"]) == 2
    err = capsys.readouterr().err
    assert "manifest" in err and "nothing.tflite" in err


def test_train_missing_data_folder(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    assert main(["train", str(tmp_path / "nope"), "--weights", "none", "--epochs", "1"]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_bad_size_argument(capsys):
    with pytest.raises(SystemExit):
        main(["export", "run", "--input-size", "big"])
    assert "expected SIZE or HxW" in capsys.readouterr().err


@pytest.mark.slow
def test_run_with_a_device_profile_on_a_file_source(tiny_export, tmp_path, capsys):
    """A profile picks the artifact format; a non-live source still gets mode 'all' (nothing dropped)."""
    import json

    out = tmp_path / "run"
    rc = main(["run", str(tiny_export), "--device", "rpi5", "--source", "synthetic:2", "--max-frames", "15",
               "--out", str(out), "--no-video"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tflite-int8 via litert" in printed and "mode all" in printed
    summary = json.loads((latest_run(out) / "summary.json").read_text())
    assert summary["frames"] == 15 and summary["dropped"] == 0
