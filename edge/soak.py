"""A soak run: many frames of the synthetic source through the real run loop, watching resident memory.

A camera runs for weeks, so a leak of a few bytes a frame matters. This runs
``edge.pipeline.run`` (capture thread, model, output thread, frames.jsonl,
events, optionally the segmented video) over ``--frames`` synthetic frames and
samples the process's resident set size (``VmRSS``) every ``--sample-every``
frames. It prints one JSON document: frames, seconds, fps, RSS at the start
(after ``--warmup`` frames, when caches and arenas have grown to size), at the
last sample, after the run closed and at its peak, the growth per 100,000 frames (least-squares slope of
the samples after warm-up), and the machine. ``soak.json`` in ``--out`` holds
the same plus every sample.

Without ``--model`` it builds a three-node ONNX graph (red pixels raise the
score; needs the ``onnx`` package) so the figures measure edgecam, not a
network. With ``--model`` any manifest or export folder runs.

    python -m edge.soak --frames 100000 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.checks import non_negative_int, positive_int
from edge.errors import ConfigError, EdgecamError

__all__ = ["rss_mb", "growth_per_100k", "soak", "main"]

GROWTH_LIMIT_MB = 1.0  # per 100,000 frames: the bar for a device left running for weeks


def rss_mb() -> float:
    """This process's resident set size now, in MB (10**6 bytes), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise EdgecamError("expected a VmRSS line in /proc/self/status (Linux); received none")


def growth_per_100k(samples: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of ``(frame, rss_mb)`` samples, in MB per 100,000 frames; None with fewer than 3.

    Example:
        >>> growth_per_100k([(0, 100.0), (50_000, 100.25), (100_000, 100.5)])
        0.5
    """
    if len(samples) < 3:
        return None
    frames, rss = np.array(samples, np.float64).T
    if np.ptp(frames) == 0:
        return None
    slope = np.polyfit(frames, rss, 1)[0]
    return round(float(slope) * 100_000, 4)


def tiny_onnx_model(folder: Path, name: str = "soak") -> Path:
    """Write ``NAME.onnx``, a three-node ONNX model (score from red pixels, the scaled image as CAM features), and its manifest.

    The soak runs it; the fleet and recording tests use it as their model too.
    """
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ConfigError("edge.soak without --model builds an ONNX graph and needs the onnx package; received "
                          f"ImportError: {exc}. Pass --model MANIFEST_OR_EXPORT_FOLDER instead") from None
    from edge.manifest import CamSpec, Manifest, Task, TensorSpec, save_manifest

    w, b = np.array([[4.0], [-2.0], [-2.0]], np.float32), np.array([-0.5], np.float32)
    nodes = [helper.make_node("Mul", ["image", "inv255"], ["features"]),
             helper.make_node("MatMul", ["features", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["logits"]),
             helper.make_node("ReduceMax", ["logits"], ["pooled"], axes=[1, 2], keepdims=0),
             helper.make_node("Sigmoid", ["pooled"], ["scores"])]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", "h", "w", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 1]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", "h", "w", 3])],
        [numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"), numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    content = model.SerializeToString()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.onnx").write_bytes(content)
    manifest = Manifest(
        format="onnx-fp32", artifact=f"{name}.onnx", sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content),
        task=Task.BINARY, labels=("ship",), negative_label="no_ship", thresholds=(0.5,), threshold_rule="fixed",
        input=TensorSpec("image", "image", (1, -1, -1, 3), "float32", "image"),
        outputs=(TensorSpec("scores", "scores", (1, 1), "float32", "scores"),
                 TensorSpec("features", "features", (1, -1, -1, 3), "float32", "features")),
        input_size=(32, 32), preprocessing={"color": "RGB", "range": [0, 255], "layout": "NHWC", "resize": "stretch"},
        cam=CamSpec(w, b, "max"))
    return save_manifest(manifest, folder / f"{name}.onnx.manifest.json")


def soak(out: Path, frames: int = 100_000, model: str | None = None, warmup: int = 2_000, sample_every: int = 1_000,
         video: bool = False, size: tuple[int, int] = (320, 180)) -> dict[str, Any]:
    """Run ``frames`` synthetic frames through ``edge.pipeline.run`` and return the figures (see the module docstring)."""
    from edge.backends import BackendOptions, create_backend
    from edge import atomic
    from edge.detector import Detector, DetectorOptions
    from edge.machine import machine_info, peak_rss_mib
    from edge.manifest import find_manifests, load_manifest
    from edge.pipeline import RunOptions, run
    from edge.recording import RecordingOptions
    from edge.sources import SyntheticSource

    positive_int("soak: frames", frames)
    non_negative_int("soak: warmup", warmup)
    positive_int("soak: sample_every", sample_every)
    if warmup >= frames:
        raise ConfigError(f"soak: expected warmup < frames; received warmup {warmup}, frames {frames}")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = find_manifests(model)[0] if model else tiny_onnx_model(Path(tempfile.mkdtemp(prefix="edgecam-soak-")))
    manifest = load_manifest(manifest_path)
    samples: list[tuple[int, float]] = []
    rss_before = rss_mb()

    def on_frame(item: Any, result: Any, record: dict) -> None:
        if item.index % sample_every == 0:
            samples.append((item.index, rss_mb()))

    detector = Detector(create_backend(manifest, None, BackendOptions(threads=1, input_size=manifest.input_size)),
                        DetectorOptions())
    options = RunOptions(out_dir=out / "run", mode="all", write_video=video, max_frames=frames,
                         recording=RecordingOptions(run_id="soak", segment_s=10.0, jsonl_max_mb=20.0, jsonl_keep=2))
    source = SyntheticSource(seed=0, n_frames=frames, width=size[0], height=size[1])
    started = time.monotonic()
    try:
        summary = run(detector, source, options, on_frame=on_frame)
    finally:
        detector.close()
    seconds = time.monotonic() - started
    rss_after = rss_mb()  # the run has closed its sinks and threads: not a frame sample
    after = [s for s in samples if s[0] >= warmup]
    report = {
        "frames": summary["frames"], "seconds": round(seconds, 1), "fps": round(summary["frames"] / seconds, 1),
        "ended_by": summary["ended_by"], "errors": summary["errors"], "video": video, "frame_size": list(size),
        "model": str(manifest_path), "rss_mb": {
            "before_run": round(rss_before, 1), "start": round(after[0][1], 1) if after else None,
            "end": round(samples[-1][1], 1) if samples else None, "after_run": round(rss_after, 1),
            "max_sampled": round(max((r for _, r in samples), default=rss_after), 1),
            "peak_process": round(peak_rss_mib() * 1.048576, 1)},
        "warmup_frames": warmup, "growth_mb_per_100k_frames": growth_per_100k(after),
        "growth_limit_mb_per_100k_frames": GROWTH_LIMIT_MB, "machine": machine_info(),
    }
    growth = report["growth_mb_per_100k_frames"]
    report["within_limit"] = None if growth is None else growth < GROWTH_LIMIT_MB
    atomic.write_json(out / "soak.json", {**report, "samples": samples})
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=100_000, help="frames to run (default 100000)")
    p.add_argument("--out", default="runs/soak", help="folder for the run's records and soak.json (default runs/soak)")
    p.add_argument("--model", help="a manifest or export folder (default: a three-node ONNX graph, built here)")
    p.add_argument("--warmup", type=int, default=2_000, help="frames before the start figure (default 2000)")
    p.add_argument("--sample-every", type=int, default=1_000, help="frames between RSS samples (default 1000)")
    p.add_argument("--video", action="store_true", help="also write the annotated video in 10 s segments")
    a = p.parse_args(argv)
    try:
        report = soak(Path(a.out), a.frames, a.model, a.warmup, a.sample_every, a.video)
    except EdgecamError as exc:
        print(f"edge.soak: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0 if report["within_limit"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
