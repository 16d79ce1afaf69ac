"""What one ``edgecam bench`` run measured, as data (``bench.json``) and as a Markdown table (``bench.md``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edge.bench_stats import LatencySummary, thread_label

__all__ = ["ArtifactResult", "KerasResult", "BenchReport"]


@dataclass
class ArtifactResult:
    name: str
    format: str | None = None
    backend: str | None = None
    threads: int | None = None  # as the runtime was given them; None: unknown (a test double)
    artifact_path: str | None = None
    file_size_bytes: int | None = None
    load_ms: float | None = None
    warmup_ms: float | None = None
    raw: LatencySummary | None = None
    pipeline: LatencySummary | None = None
    stages_p50_ms: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: float | None = None
    pipeline_over_raw: float | None = None
    throughput_pipeline_over_raw: float | None = None
    edgecam_over_keras: float | None = None
    providers: list[str] | None = None  # onnxruntime: what the session runs on, in order
    fallback: str | None = None  # onnxruntime: why it runs on fewer GPU providers than asked for
    engine_cache: dict[str, Any] | None = None  # TensorRT: built or reused, where, which files
    error: str | None = None


@dataclass
class KerasResult:
    model: str
    call: LatencySummary | None = None
    predict: LatencySummary | None = None
    load_ms: float | None = None
    skipped: str | None = None


@dataclass
class BenchReport:
    """Everything one ``edgecam bench`` run measured, and where."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    artifacts: list[ArtifactResult]
    keras: KerasResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        def num(v: float | None, fmt: str = ".2f") -> str:
            return "-" if v is None else format(v, fmt)

        def lat(s: LatencySummary | None) -> str:
            return "-" if s is None else f"{s.p50_ms:.2f} / {s.p95_ms:.2f} / {s.p99_ms:.2f}"

        m = self.machine
        v = {k: val for k, val in m["versions"].items() if val}
        lines = [
            f"Machine: {m['cpu']} ({m['arch']}, {m['cores']} cores, {m['cores_usable']} usable; "
            f"flags: {', '.join(m['flags']) or 'none of interest'}), Python {m['python']}, "
            + ", ".join(f"{k} {val}" for k, val in v.items()),
            f"Settings: {self.settings['frames']} frames, threads "
            f"{', '.join(thread_label(t) for t in self.settings['threads'])}, "
            f"source {self.settings['source']}, onnxruntime spin-wait "
            f"{'on' if self.settings.get('spin_wait') else 'off'}, raw and pipeline loops alternating in "
            f"{self.settings.get('rounds', 1)} round(s)",
            "",
            "| artifact | backend | threads | size MiB | load ms | first frame ms | raw p50/p95/p99 ms | raw fps "
            "| pipeline p50/p95/p99 ms | pipeline fps | pipeline/raw fps | pipeline/raw p50 | edgecam/Keras p50 "
            "| peak RSS MiB |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for a in self.artifacts:
            if a.error:
                lines.append(f"| {a.name} | {a.backend or '-'} | {thread_label(a.threads)} | error: {a.error} |"
                             + " |" * 10)
                continue
            size = None if a.file_size_bytes is None else a.file_size_bytes / 2**20
            lines.append(
                f"| {a.name} | {a.backend} | {thread_label(a.threads)} | {num(size)} | {num(a.load_ms, '.1f')} "
                f"| {num(a.warmup_ms, '.1f')} "
                f"| {lat(a.raw)} | {num(a.raw and a.raw.fps, '.1f')} | {lat(a.pipeline)} "
                f"| {num(a.pipeline and a.pipeline.fps, '.1f')} | {num(a.throughput_pipeline_over_raw)} "
                f"| {num(a.pipeline_over_raw)} "
                f"| {num(a.edgecam_over_keras)} | {num(a.peak_rss_mib, '.0f')} |"
            )
        for a in self.artifacts:
            lines.extend(_provider_lines(a))
        for a in self.artifacts:
            if a.stages_p50_ms:
                stages = ", ".join(f"{k} {val:.2f}" for k, val in a.stages_p50_ms.items())
                lines.append(f"\nPipeline stages of {a.name}, threads {thread_label(a.threads)} (p50 ms): {stages}")
        if self.keras is not None:
            k = self.keras
            if k.skipped:
                lines.append(f"\nKeras ({k.model}): skipped, {k.skipped}")
            else:
                lines.append(f"\nKeras ({k.model}), single frames: model(x, training=False) p50/p95/p99 ms "
                             f"{lat(k.call)}, {num(k.call and k.call.fps, '.1f')} fps; model.predict(x) "
                             f"{lat(k.predict)}, {num(k.predict and k.predict.fps, '.1f')} fps")
        lines.append("\nIn the pipeline, preprocess runs on the capture thread and cam and boxes on the output "
                     "thread, both overlapping inference on the main thread; wait is how long the main loop "
                     "waited for a prepared frame.")
        lines.append("\npipeline/raw fps is the share of the raw invoke throughput the full loop keeps (1 = all). "
                     "pipeline/raw p50 and edgecam/Keras p50 are ratios of p50 latency (below 1: faster). "
                     "Peak RSS is the process high-water mark after that artifact, so it includes "
                     "what was loaded before it.")
        return "\n".join(lines) + "\n"


def _provider_lines(a: ArtifactResult) -> list[str]:
    """What the session ran on and what the TensorRT engine cost, apart from steady-state latency."""
    if not a.providers:
        return []
    out = [f"\n{a.name}, threads {thread_label(a.threads)}: onnxruntime runs on {', '.join(a.providers)}"
           + (f"; it {a.fallback}" if a.fallback else "")]
    c = a.engine_cache
    if c:
        steady = "-" if a.raw is None else f"{a.raw.p50_ms:.2f} ms"
        if c["state"] == "built":
            out.append(f"TensorRT engine built during load and the first frame ({a.load_ms or 0:.0f} ms load + "
                       f"{a.warmup_ms or 0:.0f} ms first frame, {len(c['written'])} engine file(s) written to "
                       f"{c['folder']}); steady-state raw p50 {steady}. The next run loads it from there.")
        elif c["state"] == "reused":
            out.append(f"TensorRT engine loaded from the cache {c['folder']} ({c['engines_before']} engine file(s)): "
                       f"{a.load_ms or 0:.0f} ms load + {a.warmup_ms or 0:.0f} ms first frame; steady-state raw p50 "
                       f"{steady}.")
        else:
            out.append(f"TensorRT engine cache {c['folder']} is still empty after the first frame; TensorRT may "
                       "have taken no part of the graph (see the providers above and the log).")
    return out
