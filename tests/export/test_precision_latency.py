"""The latency cap of ``--int8-float auto``: the meter times through a backend, alternating; the search skips slow steps.

The meter is checked with stand-in backends on a fake clock (every invoke
advances it by a known time), the search with a timer that returns a known
ratio per plan, so the expected figures are exact.
"""

from __future__ import annotations

import pytest

from edge.errors import ConfigError
from export import precision as P
from export.precision_latency import LatencyMeter
from tests.export.test_precision import LAYERS, FakeQuantizer, _setup


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeBackend:
    """An artifact whose invokes take the times in ``durations`` (seconds), cycling; it logs each invoke."""

    def __init__(self, name, durations, clock, log):
        self.name, self.durations, self.clock, self.log, self.n = name, durations, clock, log, 0
        self.closed = False

    def prepare(self, images):
        assert images.dtype.name == "uint8" and images.shape == (1, 8, 12, 3)
        return images

    def set_input(self, batch):
        self.log.append((self.name, "input"))

    def invoke_raw(self):
        self.clock.now += self.durations[self.n % len(self.durations)]
        self.n += 1
        self.log.append((self.name, "invoke"))

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _meter(times: dict[bytes, list[float]], **kw):
    clock, log, opened = Clock(), [], []

    def open_backend(content):
        be = FakeBackend(content.decode(), times[content], clock, log)
        opened.append(be)
        return be

    return LatencyMeter(open_backend, b"int8", (8, 12), clock=clock, **kw), log, opened


def test_ratio_is_the_median_over_the_full_int8_median():
    # the full int8 artifact takes 10 ms (one outlier of 50), the mixed one 12 ms (one of 40): medians 10 and 12
    meter, log, opened = _meter({b"int8": [0.010, 0.010, 0.050, 0.010, 0.010], b"mixed": [0.012, 0.040, 0.012, 0.012, 0.012]},
                                invokes=5, warmup=0)
    assert meter.ratio(b"mixed") == pytest.approx(1.2)
    assert opened[1].closed and not opened[0].closed  # each candidate is closed; the reference is kept for the next
    meter.close()
    assert opened[0].closed


def test_invokes_alternate_which_artifact_goes_first_after_warming_both():
    meter, log, _ = _meter({b"int8": [0.01], b"mixed": [0.01]}, invokes=4, warmup=1)
    log.clear()
    meter.ratio(b"mixed")
    invokes = [name for name, what in log if what == "invoke"]
    assert invokes == ["int8", "mixed"] + ["int8", "mixed", "mixed", "int8", "int8", "mixed", "mixed", "int8"]
    assert ("mixed", "input") in log  # the candidate was given the image before it ran


def test_a_drifting_machine_slows_both_alike():
    """Every invoke is 1 % slower than the one before: alternating, two identical artifacts still time alike."""
    clock = Clock()
    durations = [0.01 * 1.01 ** i for i in range(40)]
    state = {"i": 0}

    class Drifting(FakeBackend):
        def invoke_raw(self):
            clock.now += durations[state["i"]]
            state["i"] += 1

    meter = LatencyMeter(lambda c: Drifting(c.decode(), [0], clock, []), b"int8", (8, 12), invokes=8, warmup=0, clock=clock)
    assert meter.ratio(b"same") == pytest.approx(1.0, abs=0.011)


def test_bad_meter_settings_are_refused():
    with pytest.raises(ConfigError, match="invokes >= 1"):
        _meter({b"int8": [0.01]}, invokes=0)


def _timer(ratios: dict[frozenset, float]):
    """Latency per plan, read from the fake quantiser's content (its float layers, comma separated)."""
    def latency(content: bytes) -> float:
        return ratios.get(frozenset(n for n in content.decode().split(",") if n), 1.0)
    return latency


def test_auto_skips_a_step_over_the_latency_cap_and_records_the_ratio():
    scores, feats, cam = _setup()
    q = FakeQuantizer(feats, scores, feats)
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    targets = P.Targets(agreement=0.99, cam_r=0.9, max_float_share=0.6, max_latency=1.2, latency_size=(1088, 1920))
    # every float layer adds 5 % to the time, except block_1_expand (high resolution), which makes it 1.5 x
    def latency(content: bytes) -> float:
        names = [n for n in content.decode().split(",") if n]
        return 1.5 if "block_1_expand" in names else 1.0 + 0.05 * len(names)

    said = []
    plan = P.search(q, LAYERS, ref, cam, feats, targets, say=said.append, latency=latency)
    # block_1_expand was ranked second: not taken, and the search went on with the cheaper layers;
    # a step exactly at the cap (1.2) is taken
    assert [s.added for s in plan.steps] == [None, "Conv_1", "Conv1", "logits", "block_1_project"]
    assert [s.latency for s in plan.steps] == pytest.approx([1.0, 1.05, 1.1, 1.15, 1.2])
    assert plan.rejected == (("block_1_expand", 1.5),)
    assert "fake-int8: - block_1_expand: not taken, latency 1.50 x full int8 > 1.2" in said
    assert said[1].endswith("latency 1.05 x full int8")
    # the best step: the targets' shortfall ties from Conv1 on, so the least float wins
    assert plan.float_layers == ("Conv1", "Conv_1") and plan.latency == pytest.approx(1.1)
    assert not plan.met and "and 1.2 x full int8's latency" in said[-1]
    record = plan.to_manifest()
    assert record["targets"]["max_latency"] == 1.2
    assert record["measured_on"]["latency"]["ratio_to_full_int8"] == 1.1
    assert record["measured_on"]["latency"]["input_size"] == [1088, 1920]
    assert "| latency × full int8 |" in plan.frontier() and plan.frontier().count(" |\n") == 5
    assert plan.frontier().splitlines()[4].endswith("| Conv1 | 55.0 % | 0.9900 | 0.9900 | 0.8980 | 0.8975 | 1.10 |")
    report = P.report_markdown(plan)
    assert "- not taken: block_1_expand, 1.50 x full int8" in report and "at 1088x1920" in report


def test_without_a_latency_cap_the_same_search_takes_the_slow_step():
    scores, feats, cam = _setup()
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    targets = P.Targets(agreement=0.99, cam_r=0.9, max_float_share=0.6)
    plan = P.search(FakeQuantizer(feats, scores, feats), LAYERS, ref, cam, feats, targets, say=lambda s: None)
    assert plan.met and plan.float_layers == ("block_1_expand", "Conv_1") and plan.rejected == ()
    assert "max_latency" not in plan.to_manifest()["targets"] and "latency" not in plan.to_manifest()["measured_on"]


def test_a_latency_cap_needs_a_timer():
    scores, feats, cam = _setup(20)
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    with pytest.raises(ConfigError, match="max_latency: expected a timer"):
        P.search(FakeQuantizer(feats, scores, feats), LAYERS, ref, cam, feats, P.Targets(max_latency=1.2))


def test_explicit_plans_are_timed_and_held_to_the_cap():
    scores, feats, cam = _setup()
    ref = P.reference(cam, scores, feats, [0.5], "binary")
    targets = P.Targets(agreement=0.99, cam_r=0.9, max_latency=1.2)
    q = FakeQuantizer(feats, scores, feats)
    slow = P.explicit(q, LAYERS, ("block_1_expand", "Conv_1"), ref, cam, feats, targets,
                      _timer({frozenset({"block_1_expand", "Conv_1"}): 1.3}))
    assert slow.latency == 1.3 and slow.fidelity.meets(targets) and not slow.met
    fast = P.explicit(q, LAYERS, ("block_1_expand", "Conv_1"), ref, cam, feats, targets, _timer({}))
    assert fast.latency == 1.0 and fast.met


@pytest.mark.parametrize(
    "text, expected",
    [
        ("max_latency=1.2", P.Targets(max_latency=1.2)),
        ("max_latency=1.2,latency_size=1088x1920", P.Targets(max_latency=1.2, latency_size=(1088, 1920))),
        ("latency_size=96X160", P.Targets(latency_size=(96, 160))),
        ("max_latency=0", "expected a ratio > 0"),
        ("latency_size=1088", "expects HxW"),
        ("latency_size=0x10", "both >= 1"),
    ],
)
def test_parse_latency_targets(text, expected):
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            P.parse_targets(text)
    else:
        assert P.parse_targets(text) == expected
