"""``edgecam evaluate ARTIFACT DATA`` on box-labelled frames, through the runtime the device runs.

Each artifact (float and int8 side by side) runs over the same whole frames
with :class:`edge.detector.Detector`, exactly as ``edgecam run`` would: the
frame resized by the manifest's ``frame_scale`` (or ``--scale``), the score,
the heatmap peak and the boxes. :class:`edge.locmetrics.LocalisationReport`
turns them into the localisation figures; this module writes them as JSON and
Markdown, with a PR curve and a grid of frames (ground truth in green, found
boxes in red, over the heatmap).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import atomic
from edge.errors import ConfigError, DataError

log = logging.getLogger("edgecam.evaluate")


@dataclass(frozen=True)
class BoxEvalOptions:
    """What to evaluate and how.

    Attributes:
        positive: class names that count as a vessel.
        split: ``split.json`` of a box-labelled training run; only its
            ``split_name`` frames are evaluated (frames the model never saw).
        split_name: ``test`` (default), ``val`` or ``train``.
        scale: frame scale for every artifact (default: each manifest's).
        grid: frames in the picture grid (0: none).
        threshold: decision threshold for every artifact instead of the
            manifest's (another operating point of the same model).
        tolerance_px: the pointing game's tolerance around a box.
        backend: force a backend key (default: the manifest format's).
        threads: runtime threads (default: one per physical core).
        head_passes: a localisation head also runs at the manifest's extra
            scales (False: one invoke per frame).
    """

    positive: tuple[str, ...]
    split: str | None = None
    split_name: str = "test"
    scale: float | None = None
    grid: int = 12
    threshold: float | None = None
    tolerance_px: float = 15.0
    backend: str | None = None
    threads: int | None = None
    head_passes: bool = True

    def __post_init__(self) -> None:
        if not self.positive:
            raise ConfigError("evaluate: box-labelled data needs --positive CLASS[,CLASS...]; received none")
        if self.split_name not in ("train", "val", "test"):
            raise ConfigError(f"split name: expected train, val or test; received {self.split_name!r}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold: expected a value in (0, 1); received {self.threshold}")
        if self.grid < 0:
            raise ConfigError(f"grid: expected >= 0 frames; received {self.grid}")


def manifests_of(target: str | Path) -> list[Path]:
    """Manifests named by ``target``: one manifest, an export folder, or a run folder with ``export/`` inside."""
    p = Path(target)
    if p.is_file() and p.name.endswith(".manifest.json"):
        return [p]
    for folder in (p, p / "export"):
        found = sorted(folder.glob("*.manifest.json")) if folder.is_dir() else []
        if found:
            return found
    raise DataError(f"expected an artifact manifest, an export folder or a run folder with export/; "
                    f"found no *.manifest.json at {p}")


def frames_to_evaluate(data: list[str], opts: BoxEvalOptions) -> list:
    """The labelled frames of the datasets, restricted to one split of a training run when asked."""
    from edge.datasets import load_box_dataset

    frames = []
    for root in data:
        frames += list(load_box_dataset(root).frames)
    if opts.split:
        listed = json.loads(Path(opts.split).read_text()).get(opts.split_name)
        if listed is None:
            raise DataError(f"{opts.split}: expected a {opts.split_name!r} list of frames; it has none")
        keep = {str(Path(p).resolve()) for p in listed}
        frames = [f for f in frames if str(Path(f.path).resolve()) in keep]
        if not frames:
            raise DataError(f"none of the {len(listed)} {opts.split_name} frames of {opts.split} is in {data}")
    if not frames:
        raise DataError(f"no labelled frames in {data}")
    return frames


def evaluate_artifact(manifest: Path, frames: list, opts: BoxEvalOptions, keep_for_grid: set[int] = frozenset()):
    """(report, per-frame timing, grid items) of one artifact over ``frames``."""
    from edge.detector import Detector, DetectorOptions
    from edge.imageio import read_image
    from edge.locmetrics import FrameOutcome, LocalisationReport

    report = LocalisationReport(tolerance_px=opts.tolerance_px)
    head_report = None
    seconds, seconds_1080, grid = [], [], []
    det_opts = DetectorOptions(scale=opts.scale, head_passes=opts.head_passes)
    with Detector.from_manifest(manifest, backend=opts.backend, threads=opts.threads, options=det_opts) as det:
        if opts.threshold is not None:
            det.thresholds = np.full_like(det.thresholds, opts.threshold)
        if det.has_head:
            head_report = LocalisationReport(tolerance_px=opts.tolerance_px)
        for i, frame in enumerate(frames):
            image = read_image(frame.path)
            t0 = time.perf_counter()
            result = det.detect(image)
            dt = time.perf_counter() - t0
            seconds.append(dt)
            if image.shape[:2] == (1080, 1920):
                seconds_1080.append(dt)
            gt = frame.boxes_of(opts.positive)
            score = float(result.scores[0])
            report.add(FrameOutcome(frame_id=Path(frame.path).name, camera=frame.camera, gt=gt, score=score,
                                    flagged=bool(result.positive[0]), peak=result.peak, boxes=result.boxes.xyxy,
                                    box_scores=result.boxes.score))
            if head_report is not None:
                head_report.add(_head_outcome(frame, gt, result.located))
            if i in keep_for_grid:
                grid.append(_panel(image, result, gt))
        info = {"scale": det.scale, "threshold": float(det.thresholds[0]), "absolute_heatmap": det.absolute,
                "backend": det.backend.key}
        if head_report is not None:
            info["head_threshold"] = det.head_threshold
    timing = {"frames": len(seconds), "mean_s": float(np.mean(seconds)),
              "mean_s_1080p": float(np.mean(seconds_1080)) if seconds_1080 else None, "frames_1080p": len(seconds_1080)}
    return report, {**timing, **info}, grid, head_report


def _head_outcome(frame, gt: np.ndarray, located):
    """The head's boxes as a frame outcome: its best box is its peak and its score; a box at all flags the frame."""
    from edge.locmetrics import FrameOutcome

    best = int(np.argmax(located.score)) if len(located) else None
    peak = None if best is None else tuple(float(v) for v in located.xyxy[best].reshape(2, 2).mean(0))
    return FrameOutcome(frame_id=Path(frame.path).name, camera=frame.camera, gt=gt,
                        score=float(np.clip(located.score.max(), 0, 1)) if best is not None else 0.0,
                        flagged=best is not None, peak=peak, boxes=located.xyxy, box_scores=located.score)


COMPARED = (  # (row label, path into a summary's "overall")
    ("recall, vessels < 32 px, centre-hit", ("recall", "centre", "<32", "recall")),
    ("recall, vessels 32-96 px, centre-hit", ("recall", "centre", "32-96", "recall")),
    ("recall, vessels > 96 px, centre-hit", ("recall", "centre", ">96", "recall")),
    ("recall, vessels >= 32 px, centre-hit", ("recall", "centre", ">=32", "recall")),
    ("recall, vessels >= 32 px, IoU >= 0.1", ("recall", "iou", ">=32", "recall")),
    ("false boxes per frame", ("false_boxes_per_frame",)),
    ("pointing game (CAM peak / best head box centre)", ("pointing_game",)),
    ("box AP at IoU 0.3", ("box_ap_30",)),
    ("box AP at IoU 0.5", ("box_ap_50",)),
)


def comparison_markdown(columns: dict[str, dict]) -> str:
    """A table of the CAM's and the head's figures side by side; ``columns`` maps a heading to a summary."""
    def get(summary, path):
        v = summary["overall"]
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["| figure | " + " | ".join(columns) + " |", "|---|" + "--:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(get(s, path) for s in columns.values()) + " |" for label, path in COMPARED]
    return "\n".join(lines) + "\n"


def _panel(image: np.ndarray, result, gt: np.ndarray, width: int = 640) -> np.ndarray:
    """One grid cell: heatmap over the frame, ground truth green, CAM boxes red, head boxes cyan, score in the corner."""
    import cv2

    from edge.annotate import HeatmapAnnotator

    canvas = HeatmapAnnotator(alpha=0.4).annotate(image, result)
    s = width / image.shape[1]
    canvas = cv2.resize(canvas, (width, int(round(image.shape[0] * s))), interpolation=cv2.INTER_AREA)
    for x0, y0, x1, y1 in np.asarray(gt) * s:
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 0), 1)
    for x0, y0, x1, y1 in np.asarray(result.boxes.xyxy) * s:
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), (255, 40, 40), 2)
    if getattr(result, "located", None) is not None:
        for x0, y0, x1, y1 in np.asarray(result.located.xyxy) * s:
            cv2.rectangle(canvas, (int(x0) - 2, int(y0) - 2), (int(x1) + 2, int(y1) + 2), (0, 230, 255), 2)
    if result.peak is not None:
        cv2.drawMarker(canvas, (int(result.peak[0] * s), int(result.peak[1] * s)), (255, 255, 255), cv2.MARKER_CROSS, 12, 2)
    text = f"score {float(result.scores[0]):.2f} {'VESSEL' if result.positive[0] else 'clear'}"
    cv2.putText(canvas, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def write_grid(panels: list[np.ndarray], path: Path, columns: int = 3) -> None:
    """Panels (RGB) tiled row by row into one PNG, written atomically."""
    import cv2

    if not panels:
        return
    h = max(p.shape[0] for p in panels)
    w = max(p.shape[1] for p in panels)
    rows = -(-len(panels) // columns)
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, p in enumerate(panels):
        r, c = divmod(i, columns)
        sheet[r * h : r * h + p.shape[0], c * w : c * w + p.shape[1]] = p
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"could not encode the frame grid for {path}")
    atomic.write_bytes(path, buf.tobytes())


def evaluate_boxes(target: str | Path, data: list[str], opts: BoxEvalOptions, out: str | Path) -> dict:
    """Evaluate every artifact of ``target`` on the labelled frames of ``data``; write ``out/boxeval.{json,md}``.

    Example:
        >>> evaluate_boxes("runs/ships/export", ["shore_livecams"],  # doctest: +SKIP
        ...                BoxEvalOptions(positive=("sea",), split="runs/ships/split.json"), "runs/ships/eval")
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = frames_to_evaluate(data, opts)
    manifests = manifests_of(target)
    has_vessel = [len(f.boxes_of(opts.positive)) > 0 for f in frames]
    vessel = [i for i, v in enumerate(has_vessel) if v]
    empty = [i for i, v in enumerate(has_vessel) if not v]
    # the grid: up to 3 empty frames, the rest vessel frames spread evenly over the set
    n_empty = min(3, len(empty), opts.grid)
    n_vessel = opts.grid - n_empty
    step = max(1, len(vessel) // max(1, n_vessel))
    pick = set(vessel[::step][:n_vessel]) | set(empty[:n_empty])
    results, sections, compared = {}, [], {}
    for m in manifests:
        name = m.name.replace(".manifest.json", "")
        log.info("evaluate: %s on %d frames", name, len(frames))
        report, timing, panels, head_report = evaluate_artifact(m, frames, opts, pick)
        summary = report.summary()
        results[name] = {"summary": summary, "timing": timing}
        if head_report is not None:
            results[name]["head_summary"] = head_report.summary()
            compared[f"{name} CAM"] = summary
            compared[f"{name} head"] = results[name]["head_summary"]
        report.plot_pr(out / f"pr_{name}.png")
        write_grid(panels, out / f"frames_{name}.png")
        sections.append(report.to_markdown(f"{name} (scale {timing['scale']}, threshold {timing['threshold']:.3f})")
                        + f"\n\nSeconds per frame: {timing['mean_s']:.3f} mean"
                        + (f", {timing['mean_s_1080p']:.3f} on {timing['frames_1080p']} 1920x1080 frames"
                           if timing["mean_s_1080p"] else "") + f" ({timing['backend']}).\n")
    from edge.machine import machine_info

    m = machine_info()
    machine = f"{m['cpu']}, {m['cores_usable']} cores, {m['os']}, Python {m['python']}"
    doc = {"data": list(data), "split": opts.split, "split_name": opts.split_name if opts.split else None,
           "frames": len(frames), "vessel_frames": len(vessel), "positive": list(opts.positive),
           "machine": m, "artifacts": results}
    atomic.write_json(out / "boxeval.json", doc)
    header = (f"# Localisation on {len(frames)} labelled frames ({len(vessel)} with a vessel)\n\n"
              f"Data: {', '.join(data)}" + (f", the `{opts.split_name}` frames of `{opts.split}`" if opts.split else "")
              + f". Machine: {machine}.\n\n")
    if compared:
        levels = {n: r["timing"]["head_threshold"] for n, r in results.items() if "head_summary" in r}
        header += ("## CAM boxes and head boxes side by side\n\n" + comparison_markdown(compared)
                   + "\nHead boxes: peaks of the localisation head's centre heatmap above its threshold "
                   f"({', '.join(f'{n} {levels[n]:.3f}' for n in levels)}),"
                   " each sized by its size map; they do not depend on the frame decision.\n\n")
    atomic.write_text(out / "boxeval.md", header + "\n\n".join(sections))
    return doc


__all__ = ["BoxEvalOptions", "evaluate_boxes", "manifests_of", "frames_to_evaluate", "write_grid"]
