"""edgecam bench: statistics are right on a fake backend with known delays; TensorFlow stays out."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from edge import bench as B
from edge.errors import ArtifactError, ConfigError


class FakeClock:
    """A clock that only moves when the code under test 'spends' time."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeTarget:
    """A loaded artifact whose invoke and detect take scripted durations on the fake clock."""

    def __init__(self, clock: FakeClock, raw_ms, detect_ms, stages=None, path: Path | None = None):
        self.clock, self.raw_ms, self.detect_ms = clock, list(raw_ms), list(detect_ms)
        self.stages = stages or {}
        self.name, self.format, self.backend_key = "fake.tflite.manifest.json", "tflite-int8", "fake"
        self.artifact_path = path or Path("/nonexistent/fake.tflite")
        self.closed = 0
        self.seen: list[np.ndarray] = []
        self.prepared_on: set[str] = set()

    def invoke_raw(self) -> None:
        self.clock.advance(self.raw_ms.pop(0) / 1e3)

    def detect(self, frame):
        self.seen.append(frame)
        self.clock.advance(self.detect_ms.pop(0) / 1e3)
        return types.SimpleNamespace(timings_ms=dict(self.stages))

    def prepare(self, frame):
        # runs on the capture thread: it must not move the fake clock the main loop reads
        self.prepared_on.add(threading.current_thread().name)
        return frame

    def detect_prepared(self, prepared):
        return self.detect(prepared)

    def close(self) -> None:
        self.closed += 1


def frames(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]


# --------------------------------------------------------------------------- pure statistics


def test_time_loop_measures_each_iteration_and_the_wall_on_a_fake_clock():
    clock = FakeClock()
    delays = iter([0.010, 0.020, 0.030])
    durations, wall = B.time_loop(lambda: clock.advance(next(delays)), 3, clock)
    assert durations == pytest.approx([0.010, 0.020, 0.030], abs=1e-12)
    assert wall == pytest.approx(0.060, abs=1e-12)


def test_latency_summary_percentiles_and_throughput():
    s = B.LatencySummary.from_durations([ms / 1e3 for ms in range(1, 101)])  # 1..100 ms
    assert s.n == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p95_ms == pytest.approx(95.05)  # linear interpolation between 95 and 96
    assert s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == pytest.approx(50.5)
    assert (s.min_ms, s.max_ms) == pytest.approx((1.0, 100.0))
    assert s.fps == pytest.approx(100 / 5.050)  # 100 iterations in 5.05 s


def test_latency_summary_uses_the_wall_time_for_throughput_when_given():
    s = B.LatencySummary.from_durations([0.01] * 10, wall_s=0.5)
    assert s.p50_ms == pytest.approx(10.0) and s.fps == pytest.approx(20.0)


@pytest.mark.parametrize("durations", [[], [0.01, -0.001], [float("nan")], [[0.1, 0.2]]])
def test_latency_summary_refuses_bad_durations(durations):
    with pytest.raises(ValueError, match="durations"):
        B.LatencySummary.from_durations(durations)


def test_stage_medians_and_ratio():
    timings = [{"infer": 3.0, "cam": 1.0}, {"infer": 5.0, "cam": 2.0}, {"infer": 4.0}]
    assert B.stage_medians(timings) == {"infer": 4.0, "cam": 1.5}
    assert B.ratio(6.0, 3.0) == 2.0 and B.ratio(1.0, 0.0) is None and B.ratio(None, 1.0) is None


# --------------------------------------------------------------------------- the bench on a fake backend


def test_bench_reports_known_delays_exactly():
    clock = FakeClock()
    raw_ms = [2.0, 4.0, 6.0, 8.0]
    # cold frame 50 ms, 1 untimed warm-up frame 9 ms, then the 4 timed pipeline frames
    detect_ms = [50.0, 9.0, 10.0, 12.0, 14.0, 16.0]
    target = FakeTarget(clock, raw_ms, detect_ms, stages={"preprocess": 1.0, "infer": 7.0})

    def opener(path, threads):
        assert threads == 2
        clock.advance(0.250)  # load takes 250 ms
        return target

    report = B.bench([Path("fake.tflite.manifest.json")], frames=4, threads=2, source=frames(3),
                     opener=opener, clock=clock, warmup=1)
    (r,) = report.artifacts
    assert r.error is None and target.closed == 1
    assert r.load_ms == pytest.approx(250.0)
    assert r.warmup_ms == pytest.approx(50.0)
    assert r.raw.n == 4 and r.raw.p50_ms == pytest.approx(5.0) and r.raw.fps == pytest.approx(4 / 0.020)
    assert r.raw.p99_ms == pytest.approx(6.0 + 0.97 * 2.0)
    assert r.pipeline.p50_ms == pytest.approx(13.0) and r.pipeline.fps == pytest.approx(4 / 0.052)
    assert r.pipeline_over_raw == pytest.approx(13.0 / 5.0)
    assert r.throughput_pipeline_over_raw == pytest.approx((4 / 0.052) / (4 / 0.020))
    assert r.stages_p50_ms == pytest.approx({"wait": 0.0, "preprocess": 1.0, "infer": 7.0})
    # the pipeline loop is edgecam run's: frames were prepared on the capture thread, not the main one
    assert target.prepared_on and threading.main_thread().name not in target.prepared_on
    assert r.peak_rss_mib > 0
    assert report.settings["frames"] == 4 and report.settings["threads"] == [2] and report.settings["spin_wait"] is False
    assert "spin-wait off" in report.to_markdown()
    assert target.raw_ms == [] and target.detect_ms == [], "every scripted call happened, no more"


def test_bench_cycles_frames_and_does_not_mutate_them():
    clock = FakeClock()
    given = frames(3)
    before = [f.copy() for f in given]
    target = FakeTarget(clock, [1.0] * 5, [1.0] * 9)
    B.bench([Path("m.json")], frames=5, source=given, opener=lambda p, t: target, clock=clock, warmup=3)
    assert len(target.seen) == 9
    assert all(target.seen[i] is given[i % 3] for i in range(9))
    for f, b in zip(given, before):
        np.testing.assert_array_equal(f, b)


def test_bench_on_the_real_clock_counts_at_least_the_time_spent():
    class Sleepy(FakeTarget):
        def invoke_raw(self):
            time.sleep(0.01)

        def detect(self, frame):
            time.sleep(0.01)
            return types.SimpleNamespace(timings_ms={})

    target = Sleepy(FakeClock(), [], [])
    report = B.bench([Path("m.json")], frames=5, source=frames(1), opener=lambda p, t: target, warmup=0)
    r = report.artifacts[0]
    # lower bounds only: a sleep lasts at least its time, however busy the machine (speed belongs in the bench)
    assert r.raw.n == 5 and r.pipeline.n == 5
    assert r.raw.p50_ms >= 9.5 and r.pipeline.p50_ms >= 9.5 and r.raw.fps <= 105


def test_an_artifact_that_fails_to_load_is_reported_and_the_rest_still_run(tmp_path):
    clock = FakeClock()

    def opener(path, threads):
        if path.name == "broken.json":
            raise ArtifactError("expected a model file; none exists")
        return FakeTarget(clock, [1.0] * 2, [1.0] * 3)

    report = B.bench([Path("broken.json"), Path("ok.json")], frames=2, source=frames(1), opener=opener,
                     clock=clock, warmup=0)
    assert report.artifacts[0].error.startswith("ArtifactError")
    assert report.artifacts[1].error is None
    assert "error: ArtifactError" in report.to_markdown()


@pytest.mark.parametrize("frames_, rounds, parts", [(10, 3, [4, 3, 3]), (4, 5, [1, 1, 1, 1]), (7, 1, [7])])
def test_split_rounds(frames_, rounds, parts):
    assert B.split_rounds(frames_, rounds) == parts


def test_the_raw_and_pipeline_loops_alternate_in_rounds():
    clock = FakeClock()
    calls: list[str] = []

    class Logging(FakeTarget):
        def invoke_raw(self):
            calls.append("raw")
            super().invoke_raw()

        def detect_prepared(self, prepared):
            calls.append("pipe")
            return super().detect_prepared(prepared)

    # after a 50 ms cold frame, raw frames take 1, 1, 1, 5, 5 ms and pipeline frames 2, 2, 2, 6, 6 ms:
    # 5 frames in 2 rounds are 3 + 2, so the second round is the slow one for both loops
    target = Logging(clock, [1.0] * 3 + [5.0] * 2, [50.0] + [2.0] * 3 + [6.0] * 2)
    report = B.bench([Path("m.json")], frames=5, rounds=2, source=frames(2), opener=lambda p, t: target,
                     clock=clock, warmup=0)
    # the cold frame goes through detect, not detect_prepared, so it is not in the log
    assert calls == ["raw"] * 3 + ["pipe"] * 3 + ["raw"] * 2 + ["pipe"] * 2
    (r,) = report.artifacts
    assert r.raw.n == 5 and r.pipeline.n == 5
    assert r.raw.fps == pytest.approx(5 / 0.013) and r.pipeline.fps == pytest.approx(5 / 0.018)
    assert r.throughput_pipeline_over_raw == pytest.approx(13 / 18)
    assert report.settings["rounds"] == 2 and "alternating in 2 round(s)" in report.to_markdown()


def test_a_splitting_target_finishes_frames_on_an_output_thread_overlapping_the_next_inference():
    class Splitting(FakeTarget):
        """Finishing frame k waits for the inference of frame k + 1 to start: only an overlapping loop lets it."""

        frames = 40

        def __init__(self):
            super().__init__(FakeClock(), [], [])
            self.infer_threads, self.finish_threads, self.order = set(), set(), []
            self.inferred, self.overlapped = 0, 0
            self.progress = threading.Condition()

        def invoke_raw(self):
            pass

        def detect(self, frame):  # the cold frame and warm-up only
            return types.SimpleNamespace(timings_ms={})

        def infer(self, prepared):  # a batch of one, as Detector.infer takes
            self.infer_threads.add(threading.current_thread().name)
            with self.progress:
                self.inferred += 1
                self.progress.notify_all()
            return prepared

        def finish(self, inference):
            self.finish_threads.add(threading.current_thread().name)
            k = len(self.order)
            self.order.append(id(inference))
            if k + 1 < self.frames:
                with self.progress:  # a sequential loop would infer k + 1 only after this returns
                    if self.progress.wait_for(lambda: self.inferred >= k + 2, timeout=2.0):
                        self.overlapped += 1
            return [types.SimpleNamespace(timings_ms={"cam": 4.0})]

    target = Splitting()
    report = B.bench([Path("m.json")], frames=40, rounds=1, source=frames(3), opener=lambda p, t: target, warmup=0)
    (r,) = report.artifacts
    main = threading.main_thread().name
    assert target.infer_threads == {main} and target.finish_threads and main not in target.finish_threads
    assert r.pipeline.n == 40 and len(target.order) == 40 and r.stages_p50_ms["cam"] == 4.0
    assert target.overlapped == 39, "each frame's finishing must overlap the next frame's inference"


def test_each_thread_count_gets_its_own_row_in_one_run():
    clock = FakeClock()
    asked: list[tuple[str, int | None]] = []

    def opener(path, threads):
        asked.append((path.name, threads))
        if threads == 3:
            raise ArtifactError("expected at most 2 threads on this fake; received 3")
        return FakeTarget(clock, [1.0] * 2, [1.0] * 3)

    report = B.bench([Path("a.json"), Path("b.json")], frames=2, threads=[1, None, 3], source=frames(1),
                     opener=opener, clock=clock, warmup=0)
    assert asked == [("a.json", 1), ("a.json", None), ("a.json", 3), ("b.json", 1), ("b.json", None), ("b.json", 3)]
    assert [(r.name, r.threads, r.error is None) for r in report.artifacts] == [
        ("fake.tflite.manifest.json", 1, True), ("fake.tflite.manifest.json", None, True), ("a.json", 3, False),
        ("fake.tflite.manifest.json", 1, True), ("fake.tflite.manifest.json", None, True), ("b.json", 3, False)]
    assert report.settings["threads"] == [1, None, 3]
    md = report.to_markdown()
    assert "threads 1, default, 3," in md
    assert "| fake.tflite.manifest.json | fake | 1 |" in md and "| fake.tflite.manifest.json | fake | default |" in md
    assert "| a.json | - | 3 | error: ArtifactError" in md
    header, rule = [line for line in md.splitlines() if line.startswith("|")][:2]
    assert header.count("|") == rule.count("|"), "the header and the rule have the same columns"


@pytest.mark.parametrize("text, counts", [("2", [2]), ("1,2", [1, 2]), (" default , 1 ", [None, 1]), ("2,2", [2])])
def test_parse_threads(text, counts):
    assert B.parse_threads(text) == counts


@pytest.mark.parametrize("text", ["0", "1,-2", "two", "1,,2", ""])
def test_parse_threads_refuses_what_is_not_a_count(text):
    with pytest.raises(ConfigError, match="expected positive integers"):
        B.parse_threads(text)


@pytest.mark.parametrize("kwargs", [{"frames": 0}, {"frames": True}, {"threads": 0}, {"threads": [1, 0]},
                                    {"threads": []}, {"rounds": 0}])
def test_bench_refuses_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        B.bench([Path("m.json")], source=frames(1), **kwargs)


def test_report_json_and_markdown_carry_the_machine():
    clock = FakeClock()
    report = B.bench([Path("m.json")], frames=2, source=frames(1),
                     opener=lambda p, t: FakeTarget(clock, [1.0, 3.0], [5.0, 2.0, 4.0]), clock=clock, warmup=0)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"]
    assert "numpy" in data["machine"]["versions"]
    md = report.to_markdown()
    assert md.startswith("Machine: ") and "| fake.tflite.manifest.json | fake |" in md
    assert "2.00 / " in md  # raw p50 of 1 and 3 ms


# --------------------------------------------------------------------------- machine, paths, CLI

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni
"""

PI4_CPUINFO = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

PI5_CPUINFO = """processor\t: 0
Features\t: fp asimd evtstrm crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU part\t: 0xd0b
"""


@pytest.mark.parametrize(
    "text, model, flags",
    [
        (X86_CPUINFO, "Intel(R) Xeon(R) Processor", ["avx2", "fma", "avx512f", "avx512_vnni"]),
        (PI4_CPUINFO, "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)", []),
        (PI5_CPUINFO, "Cortex-A76", ["asimddp"]),
        ("", None, []),
    ],
)
def test_parse_cpuinfo(text, model, flags):
    assert B.parse_cpuinfo(text) == (model, flags)


def test_resolve_artifacts(tmp_path):
    (tmp_path / "a.tflite").write_bytes(b"x")
    (tmp_path / "a.tflite.manifest.json").write_text("{}")
    (tmp_path / "b.onnx.manifest.json").write_text("{}")
    folder = sorted(B.resolve_artifacts([tmp_path]))
    assert [p.name for p in folder] == ["a.tflite.manifest.json", "b.onnx.manifest.json"]
    assert B.resolve_artifacts([tmp_path / "a.tflite"]) == [tmp_path / "a.tflite.manifest.json"]
    assert len(B.resolve_artifacts([tmp_path, tmp_path / "b.onnx.manifest.json"])) == 2, "no duplicates"
    with pytest.raises(ConfigError, match="no such file"):
        B.resolve_artifacts([tmp_path / "missing.tflite"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="found none"):
        B.resolve_artifacts([tmp_path / "empty"])


def test_main_writes_json_and_markdown_atomically(tmp_path, monkeypatch, capsys):
    import cv2

    clock = FakeClock()
    (tmp_path / "m.tflite.manifest.json").write_text("{}")
    images = tmp_path / "images"
    images.mkdir()
    for i, f in enumerate(frames(2)):
        cv2.imwrite(str(images / f"{i}.png"), f)
    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"\0" * 2048)
    asked = []

    def opener(p, t):
        asked.append(t)
        return FakeTarget(clock, [1.0] * 3, [2.0] * 7, path=artifact)

    monkeypatch.setattr(B.DetectorTarget, "open", staticmethod(opener))
    # an image folder is a file source: read per frame, restarted at its end (2 images, 7 reads)
    code = B.main([str(tmp_path), "--frames", "3", "--source", str(images), "--out", str(tmp_path / "out"), "--json",
                   "--threads", "1,2"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert printed == written
    assert written["artifacts"][0]["file_size_bytes"] == 2048
    assert asked == [1, 2] and [a["threads"] for a in written["artifacts"]] == [1, 2]
    assert written["settings"]["source"] == str(images)
    assert (tmp_path / "out" / "bench.md").read_text().startswith("Machine: ")
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_main_usage_error_is_exit_2(tmp_path, capsys):
    assert B.main([str(tmp_path / "nothing-here")]) == 2
    assert "edgecam bench:" in capsys.readouterr().err
    (tmp_path / "m.tflite.manifest.json").write_text("{}")
    assert B.main([str(tmp_path), "--threads", "two"]) == 2
    assert "received 'two'" in capsys.readouterr().err


def test_bench_imports_tensorflow_only_for_keras():
    code = textwrap.dedent(
        """
        import sys, types
        from pathlib import Path
        import numpy as np
        from edge import bench as B

        class T:
            name, format, backend_key, artifact_path = "m", "tflite-int8", "fake", Path("/none")
            def invoke_raw(self): pass
            def detect(self, frame): return types.SimpleNamespace(timings_ms={})
            def prepare(self, frame): return frame
            def detect_prepared(self, prepared): return self.detect(prepared)
            def close(self): pass

        B.bench([Path("m.json")], frames=2, source=[np.zeros((8, 8, 3), np.uint8)], opener=lambda p, t: T())
        print("tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_keras_baseline_on_a_tiny_model(tmp_path):
    tf = pytest.importorskip("tensorflow")
    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, activation="softmax")(x))
    model.save(tmp_path / "tiny.keras")
    clock = FakeClock()
    report = B.bench([Path("m.json")], frames=3, source=frames(2), keras_model=tmp_path / "tiny.keras",
                     opener=lambda p, t: FakeTarget(clock, [1.0] * 3, [2.0] * 6), clock=clock, warmup=0)
    k = report.keras
    assert k.skipped is None and k.call.n == 3 and k.predict.n == 3
    # the fake clock does not move while Keras runs, so its latency reads 0: the ratio is undefined
    assert report.artifacts[0].edgecam_over_keras is None
    assert "Keras (" in report.to_markdown()


def test_an_error_on_the_output_thread_is_reported_at_once_not_after_a_timeout():
    class Failing(FakeTarget):
        def __init__(self):
            super().__init__(FakeClock(), [], [])

        def invoke_raw(self):
            pass

        def detect(self, frame):
            return types.SimpleNamespace(timings_ms={})

        def infer(self, prepared):
            return prepared

        def finish(self, inference):
            raise ValueError("CAM weights do not fit the feature map")

    report = B.bench([Path("m.json")], frames=6, rounds=1, source=frames(2), opener=lambda p, t: Failing(), warmup=0)
    (r,) = report.artifacts
    assert r.error is not None and "CAM weights do not fit the feature map" in r.error
