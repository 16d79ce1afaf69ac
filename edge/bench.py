"""``edgecam bench``: how fast each artifact runs here, and what the pipeline costs on top.

For every artifact (a manifest) the bench measures, in one process and one run:

* load time (interpreter/session creation) and the first, cold frame; with
  onnxruntime, the providers the session really runs on, and whether the
  TensorRT engine was built during load and that first frame or loaded from
  its cache (so a build of minutes is never mistaken for steady-state latency);
* **raw**: ``backend.invoke_raw()`` repeated on a prepared input, the ceiling;
* **pipeline**: the core loop of ``edgecam run`` over frames from a source:
  a capture thread reads each frame and fits it to the model input
  (``detector.prepare``), the main thread runs the model (``infer``) and an
  output thread takes the CAM and boxes (``finish``) while the next frame is
  inferred, which is what a camera loop gets;
* with ``--threads 1,2``: each artifact at each thread count, one row each,
  so giving the runtime every core can be weighed against leaving one to
  the capture and output threads;
* with ``--keras model.keras`` (and only then is TensorFlow imported): the
  naive way, the Keras model called on single frames, for the ratio
  edgecam/Keras.

The pipeline loop is :class:`edge.loop.FrameLoop`, the one ``edgecam run``
drives; the bench adds only timing. Each result carries the machine it was
measured on (:mod:`edge.machine`). Statistics live in pure functions
(:mod:`edge.bench_stats`) that take a clock, so they are tested with a fake
clock, not with ``sleep``; the report is :mod:`edge.bench_report`.

Example:
    >>> report = bench([Path("export/model_int8.tflite.manifest.json")], frames=50)  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from edge.atomic import write_json, write_text
from edge.checks import positive_int
from edge.errors import ConfigError, EdgecamError, SourceError
from edge.bench_report import ArtifactResult, BenchReport, KerasResult
from edge.bench_stats import (Clock, LatencySummary, parse_threads, ratio, split_rounds, stage_medians, thread_label,
                               time_loop)
from edge.bench_feed import SYNTHETIC_POOL, FeedSource, FrameFeed
from edge.capture import CaptureMode, ThreadedCapture
from edge.loop import FrameDone, FrameLoop
from edge.stage import splits
from edge.machine import machine_info, parse_cpuinfo, peak_rss_mib
from edge.manifest import MANIFEST_SUFFIX

__all__ = ["bench", "bench_artifact", "main", "BenchReport", "ArtifactResult", "KerasResult", "LatencySummary",
           "FrameFeed", "FeedSource", "SYNTHETIC_POOL", "DetectorTarget", "time_loop", "stage_medians", "split_rounds", "parse_threads",
           "resolve_artifacts", "thread_label", "ratio", "machine_info", "parse_cpuinfo", "peak_rss_mib"]
# statistics live in edge.bench_stats, the report in edge.bench_report, the machine in edge.machine

# the Keras baseline of --keras, in training/ (it needs TensorFlow)
KERAS_BASELINE = "training.keras_bench"



# --------------------------------------------------------------------------- adapter over the detector


class BenchTarget(Protocol):
    """What the bench needs from a loaded artifact; :class:`DetectorTarget` adapts the real Detector."""

    name: str
    format: str
    backend_key: str
    artifact_path: Path

    def detect(self, frame: np.ndarray) -> Any: ...

    def prepare(self, frame: np.ndarray) -> Any: ...

    def detect_prepared(self, prepared: Any) -> Any: ...

    # optional, as edge.detector.Detector has them: ``infer([prepared])`` and
    # ``finish(inference) -> [result]``; the pipeline loop (edge.loop.FrameLoop)
    # then finishes frames on an output thread, as ``edgecam run`` does

    def invoke_raw(self) -> None: ...

    def close(self) -> None: ...


class DetectorTarget:
    """The one place the bench touches ``edge.detector.Detector``.

    The Detector warms up at load by default; the bench loads with
    ``warmup=0`` so that load time and the cold first frame are measured apart.
    ``invoke_raw`` re-runs the input the last ``detect`` set.
    """

    def __init__(self, detector: Any, manifest_path: Path) -> None:
        self._det = detector
        self.name = manifest_path.name
        self.format = str(detector.manifest.format)
        self.backend_key = str(getattr(detector.backend, "key", type(detector.backend).__name__))
        self.artifact_path = Path(detector.manifest.artifact_path)
        self.threads = getattr(detector.backend, "threads", None)
        # onnxruntime only: the providers the session really runs on, and why fewer than asked
        self.providers = getattr(detector.backend, "providers", None)
        self.fallback = getattr(detector.backend, "fallback", None)

    @classmethod
    def open(cls, manifest_path: Path, threads: int | None, input_size: tuple[int, int] | None = None,
             spin_wait: bool = False, providers: Sequence[str] | None = None, gpu: Any = None,
             run_dir: Path | None = None) -> "DetectorTarget":
        from edge.backends import BackendOptions, create_backend
        from edge.detector import Detector, DetectorOptions
        from edge.manifest import load_manifest

        extra = {"gpu": gpu} if gpu is not None else {}
        opts = BackendOptions(threads=threads, providers=tuple(providers or ("CPUExecutionProvider",)),
                              input_size=input_size, spin_wait=spin_wait, run_dir=run_dir, **extra)
        det = Detector(create_backend(load_manifest(manifest_path, verify=True), None, opts), DetectorOptions(warmup=0))
        return cls(det, Path(manifest_path))

    def engine_cache_state(self) -> Any:
        """The TensorRT engine cache before load and now (onnxruntime with TensorRT only), else None."""
        state = getattr(self._det.backend, "engine_cache_state", None)
        return state() if state is not None else None

    def detect(self, frame: np.ndarray) -> Any:
        return self._det.detect(frame)

    def prepare(self, frame: np.ndarray) -> Any:
        return self._det.prepare(frame)

    def detect_prepared(self, prepared: Any) -> Any:
        return self._det.detect_prepared(prepared)

    def infer(self, prepared: list[Any]) -> Any:
        return self._det.infer(prepared)

    def finish(self, inference: Any) -> list[Any]:
        return self._det.finish(inference)

    def invoke_raw(self) -> None:
        self._det.backend.invoke_raw()

    def close(self) -> None:
        self._det.close()


Opener = Callable[[Path, "int | None"], BenchTarget]


# --------------------------------------------------------------------------- measuring


def _cold_start(target: BenchTarget, feed: FrameFeed, threads: int | None, load_s: float, warmup: int,
                clock: Clock) -> ArtifactResult:
    """The artifact's result so far: what it is, its load time and cold first frame; then ``warmup`` untimed frames."""
    result = ArtifactResult(name=target.name, format=target.format, backend=target.backend_key,
                            threads=getattr(target, "threads", threads),
                            artifact_path=str(target.artifact_path), load_ms=load_s * 1e3)
    try:
        result.file_size_bytes = target.artifact_path.stat().st_size
    except OSError:
        result.file_size_bytes = None
    t0 = clock()
    target.detect(feed.next())  # cold: first allocation, caches; also sets the input invoke_raw reuses
    result.warmup_ms = (clock() - t0) * 1e3
    # a TensorRT engine for a model with free height and width is built on the first frame
    result.providers = list(target.providers) if getattr(target, "providers", None) else None
    result.fallback = getattr(target, "fallback", None)
    state = target.engine_cache_state() if hasattr(target, "engine_cache_state") else None
    result.engine_cache = state.to_dict() if state is not None else None
    for _ in range(warmup):
        target.detect(feed.next())
    return result


def bench_artifact(manifest: Path, feed: FrameFeed, frames: int, threads: int | None, *,
                   opener: Opener | None = None, clock: Clock = time.perf_counter,
                   warmup: int = 3, rounds: int = 1) -> ArtifactResult:
    """Load one artifact, time its cold frame, then its raw and pipeline loops, alternating in ``rounds``."""
    opener = opener or DetectorTarget.open  # looked up per call so tests can patch it
    t0 = clock()
    target = opener(manifest, threads)
    load_s = clock() - t0
    try:
        result = _cold_start(target, feed, threads, load_s, warmup, clock)
        timings: list[dict[str, float]] = []
        finished: list[float] = []

        def handle(done: FrameDone) -> None:  # the bench's only addition to the loop: timing
            timings.append({"wait": done.wait_ms, **dict(getattr(done.result, "timings_ms", {}) or {})})
            finished.append(done.finished_at)

        # the loop of ``edgecam run``: every frame (ALL), fitted on the capture thread; a detector that
        # splits ``infer`` from ``finish`` has its frames finished on an output thread while the next is inferred
        capture = ThreadedCapture(feed.as_source(), CaptureMode.ALL, queue_size=4, prepare=target.prepare)
        loop = FrameLoop(target, capture, handle, threaded=splits(target), clock=clock)

        def step() -> None:
            if not loop.step(timeout=30.0):
                raise SourceError(f"bench: the capture of {feed.description!r} stopped giving frames"
                                  + (f" ({capture.error})" if capture.error else ""))

        def threaded_round(n: int) -> tuple[list[float], float]:
            """``n`` frames through the three-stage loop; durations run from one finished frame to the next."""
            first, start = len(finished), clock()
            for _ in range(n):
                step()
            loop.wait_handled(loop.submitted, 30.0)
            done = finished[first:first + n]
            return list(np.diff([start, *done])), done[-1] - start

        raw_d: list[float] = []
        pipe_d: list[float] = []
        raw_wall = pipe_wall = 0.0
        with loop:
            # alternate the two loops in rounds, so that a slow spell of the
            # machine falls on both rather than on whichever ran then; the
            # capture thread idles on its full queue during the raw rounds
            for n in split_rounds(frames, rounds):
                d, w = time_loop(target.invoke_raw, n, clock)
                raw_d += d
                raw_wall += w
                d, w = threaded_round(n) if loop.output is not None else time_loop(step, n, clock)
                pipe_d += d
                pipe_wall += w
        result.raw = LatencySummary.from_durations(raw_d, raw_wall)
        result.pipeline = LatencySummary.from_durations(pipe_d, pipe_wall)
        result.stages_p50_ms = stage_medians(timings)
        result.pipeline_over_raw = ratio(result.pipeline.p50_ms, result.raw.p50_ms)
        result.throughput_pipeline_over_raw = ratio(result.pipeline.fps, result.raw.fps)
        result.peak_rss_mib = peak_rss_mib()
        return result
    finally:
        target.close()


def bench_keras(model_path: Path, feed: FrameFeed, frames: int, clock: Clock = time.perf_counter,
                input_size: tuple[int, int] | None = None) -> KerasResult:
    """The naive baseline, the Keras model on single frames: :func:`training.keras_bench.bench_keras`.

    Named by module, imported only here: the bench runs on a device without training/ or TensorFlow,
    and says so in the report instead of failing.
    """
    import importlib

    try:
        module = importlib.import_module(KERAS_BASELINE)
    except ImportError as exc:
        return KerasResult(model=str(model_path), skipped=f"{KERAS_BASELINE} is not importable ({exc})")
    return module.bench_keras(model_path, feed, frames, clock, input_size)


def resolve_artifacts(paths: Sequence[str | Path]) -> list[Path]:
    """Manifest paths from CLI arguments: a manifest, an artifact with a manifest beside it, or a folder of them."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(p.glob(f"*{MANIFEST_SUFFIX}"))
            if not found:
                raise ConfigError(f"bench: expected '*{MANIFEST_SUFFIX}' manifests in folder {p}; found none")
            out.extend(found)
        elif p.is_file() and p.name.endswith(".json"):
            out.append(p)
        elif p.is_file() and Path(f"{p}{MANIFEST_SUFFIX}").is_file():
            out.append(Path(f"{p}{MANIFEST_SUFFIX}"))
        else:
            raise ConfigError(
                f"bench: expected a manifest (*{MANIFEST_SUFFIX}), an artifact with its manifest beside it, "
                f"or a folder of manifests; received {str(p)!r}"
                + ("" if p.exists() else " (no such file or folder)")
            )
    return list(dict.fromkeys(out))


def _checked_counts(frames: Any, threads: Any, rounds: Any) -> list[int | None]:
    """The thread counts to measure, after refusing a bad frames, threads or rounds."""
    positive_int("bench: frames", frames)
    counts = list(threads) if isinstance(threads, (list, tuple)) else [threads]
    for t in counts:
        positive_int("bench: threads", t, allow_none=True)
    if not counts:
        raise ConfigError("bench: threads expected at least one count; received none")
    positive_int("bench: rounds", rounds)
    return counts


def _detector_opener(input_size: tuple[int, int] | None, spin_wait: bool, providers: Sequence[str] | None,
                     gpu: Any, run_dir: Path | None) -> Opener:
    """:meth:`DetectorTarget.open` with the settings every artifact of this bench shares."""
    import functools

    kw: dict[str, Any] = {"input_size": tuple(input_size) if input_size else None, "spin_wait": spin_wait}
    if providers:
        kw["providers"] = tuple(providers)
    if any(p != "CPUExecutionProvider" for p in providers or ()):
        kw.update(gpu=gpu, run_dir=run_dir)
    return functools.partial(DetectorTarget.open, **kw)


def bench(
    artifacts: Sequence[Path],
    frames: int = 200,
    threads: int | None | Sequence[int | None] = None,
    source: str | Sequence[np.ndarray] | None = None,
    keras_model: Path | None = None,
    *,
    opener: Opener | None = None,
    clock: Clock = time.perf_counter,
    warmup: int = 3,
    input_size: tuple[int, int] | None = None,
    spin_wait: bool = False,
    rounds: int = 5,
    providers: Sequence[str] | None = None,
    gpu: Any = None,
    run_dir: Path | None = None,
) -> BenchReport:
    """Benchmark manifests side by side: raw invoke loop, full pipeline, and optionally Keras.

    Args:
        artifacts: manifest paths (see :func:`resolve_artifacts` for CLI forms).
        frames: timed iterations per loop.
        threads: interpreter threads (None: one per physical core), or several counts: each artifact is
            then measured at each, one row per count, so that they compare in one run.
        source: None for synthetic frames pre-generated in memory, a source
            string as accepted by ``edge.sources.open_source``, or a list of
            RGB uint8 frames.
        keras_model: a ``model.keras`` to compare with; TensorFlow is imported only then.
        opener, clock, warmup: injection points for tests, and untimed frames after the cold one.
        input_size: (h, w) to run every artifact (and the Keras model) at, instead of the manifest's.
        spin_wait: let onnxruntime's idle threads spin (see ``BackendOptions``); both loops use it.
        rounds: the raw and pipeline loops alternate this many times, ``frames`` split among them.
        providers, gpu: onnxruntime execution providers and their :class:`~edge.backends.base.GpuOptions`
            (from ``--device`` and the GPU flags); run_dir: where a relative TensorRT engine cache lives.

    An artifact that fails to load is reported with its error; the others still run.
    """
    counts = _checked_counts(frames, threads, rounds)
    feed = FrameFeed(source)
    if opener is None and (input_size is not None or spin_wait or providers):
        opener = _detector_opener(input_size, spin_wait, providers, gpu, run_dir)
    try:
        keras = bench_keras(Path(keras_model), feed, frames, clock, input_size) if keras_model is not None else None
        results = [_bench_or_error(Path(manifest), feed, frames, t, opener=opener, clock=clock, warmup=warmup, rounds=rounds)
                   for manifest in artifacts for t in counts]
    finally:
        feed.close()
    if keras is not None and keras.call is not None:
        for r in results:
            r.edgecam_over_keras = ratio(r.pipeline and r.pipeline.p50_ms, keras.call.p50_ms)
    settings = {"frames": frames, "threads": counts, "source": feed.description, "warmup": warmup,
                "input_size": list(input_size) if input_size else "manifest", "spin_wait": spin_wait,
                "rounds": min(rounds, frames), "providers": list(providers) if providers else None}
    return BenchReport(machine_info(), settings, results, keras)


def _bench_or_error(manifest: Path, feed: FrameFeed, frames: int, threads: int | None, **kw: Any) -> ArtifactResult:
    """:func:`bench_artifact`, or a row carrying the error of an artifact that fails to load or run."""
    try:
        return bench_artifact(manifest, feed, frames, threads, **kw)
    except EdgecamError as exc:
        return ArtifactResult(name=manifest.name, threads=threads, error=f"{type(exc).__name__}: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    """``edgecam bench ARTIFACT_OR_DIR... [--frames N] [--threads T[,T...]] [--source SRC] [--keras PATH] [--json] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="edgecam bench", description="Time artifacts: raw invoke, full pipeline, Keras.")
    parser.add_argument("artifacts", nargs="+", help="manifest, artifact with its manifest beside it, or folder of manifests")
    parser.add_argument("--frames", type=int, default=200, help="timed iterations per loop (default 200)")
    parser.add_argument("--threads", default=None, metavar="T[,T...]",
                        help="interpreter threads, or several to compare, e.g. 1,2 (default: one per physical core)")
    parser.add_argument("--source", default=None, help="frame source (default: synthetic frames in memory)")
    parser.add_argument("--keras", type=Path, default=None, metavar="PATH", help="model.keras to compare with (imports TensorFlow)")
    parser.add_argument("--input-size", default=None, metavar="HxW", help="run every artifact at this size (e.g. 224 or 352x640)")
    parser.add_argument("--spin-wait", action="store_true",
                        help="let onnxruntime's idle threads spin between runs (faster raw loop, slower pipeline)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternate the raw and pipeline loops this many times, splitting --frames (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="also write bench.json and bench.md there (and keep a TensorRT engine cache; default runs/bench)")
    parser.add_argument("--device", metavar="NAME", help="device profile: its onnxruntime providers, GPU settings and threads")
    from edge.cli_args import add_gpu_flags, gpu_settings, parse_size

    add_gpu_flags(parser)
    args = parser.parse_args(argv)
    try:
        from devices import resolve_run_settings

        s = resolve_run_settings(args.device, **gpu_settings(args))
        if args.threads is None and s.threads is not None:
            args.threads = str(s.threads)
        size = None
        if args.input_size:
            try:
                size = parse_size(args.input_size)
            except argparse.ArgumentTypeError as exc:
                raise ConfigError(f"bench --input-size: {exc}") from None
        threads = parse_threads(args.threads) if args.threads is not None else [None]
        report = bench(resolve_artifacts(args.artifacts), args.frames, threads, args.source, args.keras,
                       input_size=size, spin_wait=args.spin_wait, rounds=args.rounds,
                       providers=s.execution_providers or None, gpu=s.gpu, run_dir=args.out or Path("runs/bench"))
    except EdgecamError as exc:
        print(f"edgecam bench: {exc}", file=sys.stderr)
        return 2
    data = report.to_dict()
    markdown = report.to_markdown()
    if args.out is not None:
        write_json(args.out / "bench.json", data)
        write_text(args.out / "bench.md", markdown)
    if args.json:
        import json

        print(json.dumps(data, indent=2, default=str))
    else:
        print(markdown, end="")
    if report.keras is not None and report.keras.skipped:
        print(f"edgecam bench: Keras comparison skipped: {report.keras.skipped}", file=sys.stderr)
    return 1 if any(a.error for a in report.artifacts) else 0

