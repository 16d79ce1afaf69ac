"""Time budgets, run wall time across --resume, and the quiet onnxruntime quantiser."""

from __future__ import annotations

import json
import logging

import pytest

from edge.errors import ConfigError
from training.config import TrainConfig, parse_duration
from training.train import Progress, RunClock, TimeBudget, _read_state


class FakeClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.mark.parametrize("text, seconds, raises", [
    ("90m", 5400.0, False),
    ("1h30m", 5400.0, False),
    ("5400", 5400.0, False),
    ("5400s", 5400.0, False),
    ("2h", 7200.0, False),
    ("1h30m15s", 5415.0, False),
    (" 2H ", 7200.0, False),
    ("1.5h", 5400.0, False),
    ("0.5", 0.5, False),
    ("", None, True),
    ("0", None, True),
    ("0m", None, True),
    ("-5", None, True),
    ("90x", None, True),
    ("1h30", None, True),  # 30 minutes or 30 seconds? refused, not guessed
    ("30m1h", None, True),
    ("h", None, True),
    ("1e3", None, True),
    ("inf", None, True),
])
def test_parse_duration(text, seconds, raises):
    if raises:
        with pytest.raises(ConfigError, match=r"expected a duration .*received"):
            parse_duration(text)
    else:
        assert parse_duration(text) == seconds


def test_cli_time_budget_is_parsed_and_a_bad_one_is_an_argparse_error(capsys):
    from edge.cli import build_parser

    assert build_parser().parse_args(["train", "d", "--time-budget", "1h30m"]).time_budget == 5400.0
    assert build_parser().parse_args(["train", "d"]).time_budget is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "d", "--time-budget", "90x"])
    err = capsys.readouterr().err
    assert "argument --time-budget: expected a duration" in err and "received '90x'" in err


@pytest.mark.parametrize("budget, raises", [(None, False), (60, False), (5400.0, False), (0, True), (-1.0, True),
                                            ("90m", True), (float("inf"), True), (True, True)])
def test_train_config_time_budget(budget, raises):
    if raises:
        with pytest.raises(ConfigError, match="time_budget: expected seconds > 0"):
            TrainConfig(data="d", time_budget=budget)
    else:
        cfg = TrainConfig(data="d", time_budget=budget)
        assert cfg.time_budget == budget and TrainConfig.from_dict(cfg.to_dict()) == cfg


def _budget(seconds, prior_s=0.0):
    wall = FakeClock(1000.0)  # a process's monotonic clock does not start at zero
    return TimeBudget(seconds, RunClock(prior_s=prior_s, wall=wall, cpu=FakeClock())), wall


def test_budget_stops_when_the_next_epoch_would_overflow_not_before(caplog):
    budget, wall = _budget(90.0)
    assert budget.may_start("head", 1, 10)
    decisions = []
    for epoch in range(1, 6):
        wall.advance(20.0)
        decisions.append(budget.epoch_ended("head", epoch, 10))
        if decisions[-1]:
            break
    # after epoch 3 (60 s) a fourth ends at 80 s <= 90 s; after epoch 4 (80 s) a fifth would end at 100 s
    assert decisions == [False, False, False, True]
    assert budget.stopped
    assert "time budget: stopping phase head after epoch 4 of 10: 80.0 s elapsed + ~20.0 s per epoch " \
           "would exceed the budget of 90 s" in caplog.text
    assert not budget.may_start("finetune", 1, 3)  # phase 2 does not start once the budget stopped phase 1
    assert "phase finetune not started" in caplog.text


def test_budget_an_epoch_that_ends_exactly_on_the_budget_still_runs():
    budget, wall = _budget(100.0)
    budget.may_start("head", 1, 10)
    stops = []
    for epoch in range(1, 6):
        wall.advance(20.0)
        stops.append(budget.epoch_ended("head", epoch, 10))
    assert stops == [False, False, False, False, True]  # epoch 5 ends at exactly 100 s


def test_budget_uses_the_mean_epoch_and_the_phase_pace():
    budget, wall = _budget(100.0)
    budget.may_start("head", 1, 3)
    for epoch, seconds in ((1, 40.0), (2, 10.0)):  # mean 25 s: 50 + 25 <= 100
        wall.advance(seconds)
        assert not budget.epoch_ended("head", epoch, 3)
    wall.advance(10.0)
    assert not budget.epoch_ended("head", 3, 3)  # the phase's last epoch: nothing left to stop
    assert not budget.stopped
    # 60 s elapsed + phase 1's mean (20 s) fits: phase 2 starts, and its own epochs set the pace
    assert budget.may_start("finetune", 1, 5)
    wall.advance(30.0)
    assert budget.epoch_ended("finetune", 1, 5)  # 90 s + ~30 s > 100 s
    assert budget.stopped


def test_budget_counts_earlier_sessions_and_none_means_no_limit():
    spent, _ = _budget(600.0, prior_s=590.0)
    assert spent.may_start("head", 4, 10)  # 590 s < 600 s: one epoch of unknown length may start
    spent, _ = _budget(600.0, prior_s=600.0)
    assert not spent.may_start("head", 4, 10) and spent.stopped
    unlimited, wall = _budget(None, prior_s=1e9)
    assert unlimited.may_start("head", 1, 2)
    wall.advance(1e6)
    assert not unlimited.epoch_ended("head", 1, 2) and not unlimited.stopped


def test_state_json_elapsed_accumulates_across_sessions(tmp_path):
    wall, cpu = FakeClock(5000.0), FakeClock(3.0)
    first = Progress.from_state(tmp_path, None, "val_auc", wall=wall, cpu=cpu)
    for epoch, best in ((1, 0.6), (2, 0.7)):
        wall.advance(100.0)
        cpu.advance(350.0)
        first.epoch_done("head", epoch, best)
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["elapsed_s"], state["cpu_s"], state["sessions"]) == (200.0, 700.0, 1)

    # the second process: its monotonic and CPU clocks start elsewhere
    wall, cpu = FakeClock(42.0), FakeClock(0.5)
    second = Progress.from_state(tmp_path, _read_state(tmp_path), "val_auc", wall=wall, cpu=cpu)
    assert (second.phase, second.epoch, second.best) == ("head", 2, 0.7)
    wall.advance(60.0)
    cpu.advance(100.0)
    second.epoch_done("finetune", 1, 0.75)
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["elapsed_s"], state["cpu_s"], state["sessions"]) == (260.0, 800.0, 2)
    assert state["epochs_run"] == {"head": 2, "finetune": 1}
    assert (state["phase"], state["epoch"], state["best"]) == ("finetune", 1, 0.75)
    assert second.clock.session_s() == 60.0


def test_state_from_before_the_run_clock_counts_the_last_run_json(tmp_path, caplog):
    (tmp_path / "state.json").write_text(json.dumps({"phase": "head", "epoch": 9, "best": 0.9, "monitor": "val_auc"}))
    (tmp_path / "run.json").write_text(json.dumps({"seconds": 396.0}))
    progress = Progress.from_state(tmp_path, _read_state(tmp_path), "val_auc", wall=FakeClock(), cpu=FakeClock())
    assert progress.clock.elapsed_s() == 396.0 and progress.clock.sessions == 2
    assert progress.epochs_run == {"head": 9}
    assert "no elapsed time" in caplog.text


def test_scale_note_filter_drops_and_counts_only_the_scale_notes(caplog):
    from export.onnx_format import ScaleNoteFilter, _scale_notes_summarised

    caplog.set_level(logging.INFO)
    with _scale_notes_summarised() as notes:
        # onnxruntime's own wording (qdq_quantizer.py / onnx_quantizer.py), through the root logger
        logging.info("Increased scale[0] for weight `conv/W` by ratio 1.7 to ensure bias input `conv/b` has a valid scale.")
        logging.info("Increased scale[1] for weight `conv/W` by ratio 2.1 to ensure bias input `conv/b` has a valid scale.")
        logging.info("Increasing scale for weight `fc/W` by the ratio 1.2 to ensure bias `fc/b` has a valid scale.")
        logging.info("Calibrated %d tensors", 12)
        logging.warning("Expected bias 'b' to be an initializer")
        logging.getLogger("edgecam.other").info("Increased scale is also a phrase others may log")
    assert notes.count == 3
    assert notes not in logging.getLogger().filters  # removed afterwards
    messages = [r.getMessage() for r in caplog.records]
    assert not any("conv/W" in m or "fc/W" in m for m in messages)
    assert "Calibrated 12 tensors" in messages and "Expected bias 'b' to be an initializer" in messages
    assert "Increased scale is also a phrase others may log" in messages  # another logger's records pass
    assert "onnxruntime raised 3 weight scales so that each bias fits its int32 scale" in messages

    f = ScaleNoteFilter()
    record = logging.LogRecord("root", logging.INFO, __file__, 1, "Increased scale[%d] for weight", (4,), None)
    assert f.filter(record) is False and f.count == 1
    assert f.filter(logging.LogRecord("root", logging.INFO, __file__, 1, "Quantized %s", ("x",), None)) is True
    assert f.count == 1


@pytest.mark.slow
def test_budget_skips_phase_2_and_resume_adds_up_the_wall_time(scenes, tmp_path):
    """A run whose budget ends phase 1 early, then a --resume with the same (spent) budget: it evaluates only."""
    pytest.importorskip("tensorflow")
    import keras

    from training.train import train

    # phase 2 needs a pretrained backbone; random weights saved to a file stand in for ImageNet's
    weights = tmp_path / "mobilenet_v2_0.35_no_top.weights.h5"
    keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None).save_weights(weights)
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(scenes), out=str(out), input_size=(32, 32), alpha=0.35, weights=str(weights),
                      batch_size=16, max_images=32, augment="none", epochs=500, patience=500, finetune_epochs=3,
                      verbose=0, time_budget=12.0)
    train(cfg)
    first = json.loads((out / "run.json").read_text())
    assert first["stopped_by_budget"] is True and first["time_budget_s"] == 12.0
    assert 1 <= first["epochs_run"]["head"] < 500 and first["epochs_run"]["finetune"] == 0
    assert not (out / "history_finetune.csv").exists()
    assert first["sessions"] == 1 and first["seconds"] == pytest.approx(first["seconds_this_session"], abs=0.1)
    assert first["cpu_seconds"] > 0
    state = json.loads((out / "state.json").read_text())
    assert state["elapsed_s"] >= first["seconds"] - 0.05 and state["epochs_run"]["head"] == first["epochs_run"]["head"]

    # a budget below what the first session already spent: whatever the machine's load made of the
    # first session's last epoch, the resumed one must start no epoch and only evaluate
    from dataclasses import replace

    train(replace(cfg, time_budget=state["elapsed_s"] / 2), resume=True)
    second = json.loads((out / "run.json").read_text())
    assert second["sessions"] == 2 and second["stopped_by_budget"] is True
    assert second["epochs_run"] == first["epochs_run"]  # the budget was spent: no epoch ran, evaluation did
    assert second["seconds"] > first["seconds"]
    assert second["seconds"] == pytest.approx(state["elapsed_s"] + second["seconds_this_session"], abs=0.2)
    assert second["cpu_seconds"] > first["cpu_seconds"]
