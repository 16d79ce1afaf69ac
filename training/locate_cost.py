"""What the localisation head costs: MACs and parameters, and seconds per 1080p frame against the classifier.

``python -m training.locate_cost CLASSIFIER_RUN HEAD_RUN [--frames N]`` prints

* parameters and multiply-accumulates of the classifier alone and of the
  combined model (classifier + head) at a 1080p frame resized by the run's
  ``frame_scale``, plus the whole combined model again at each of the head's
  extra scales (``head.scales`` in ``run.json``);
* for each format both runs exported (``model-fp32.tflite``,
  ``model-int8.tflite``, ...), the median seconds per 1920x1080 held-out frame
  through :class:`edge.detector.Detector` (scores, CAM, CAM boxes and, for
  the combined artifact, the head's boxes), the two artifacts alternating
  frame by frame in one process so they share the machine's load.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge.errors import DataError


def model_cost(classifier_run: Path, head_run: Path, frame_hw: tuple[int, int] = (1080, 1920)) -> dict:
    """Parameters and MACs of the classifier and of the combined model at ``frame_hw`` scaled by ``frame_scale``."""
    from edge.preprocess import scaled_input_size
    from export.precision import layer_inventory
    from training.locate import head_macs
    from training.locate_data import load_head
    from training.run import load_run

    model, info = load_run(classifier_run)
    head = load_head(head_run)
    if head is None:
        raise DataError(f"{head_run}: expected head.keras (a run of edgecam train --head locate); none")
    scale = float(info.frame_scale or 1.0)
    size = scaled_input_size(frame_hw, scale)
    classifier_macs = sum(layer.macs for layer in layer_inventory(model, info.task, size))
    extra = head_macs(head, size)
    passes = 0
    for p in json.loads((Path(head_run) / "run.json").read_text())["head"].get("scales", []):
        # the whole artifact runs again on the frame downscaled: its classifier part too
        small = scaled_input_size(frame_hw, scale * float(p["factor"]))
        passes += sum(layer.macs for layer in layer_inventory(model, info.task, small)) + head_macs(head, small)
    return {"input": list(size), "classifier_params": int(model.count_params()), "head_params": int(head.count_params()),
            "classifier_macs": int(classifier_macs), "head_macs": int(extra), "pass_macs": int(passes),
            "combined_over_classifier_macs": (classifier_macs + extra + passes) / classifier_macs}


def time_pair(classifier: Path, combined: Path, frames: list, repeats: int = 1) -> dict:
    """Median seconds per frame of two artifacts, alternating on the same frames."""
    from edge.detector import Detector
    from edge.imageio import read_image

    images = [read_image(f) for f in frames]
    seconds: dict[str, list[float]] = {"classifier": [], "combined": []}
    with Detector.from_manifest(classifier) as a, Detector.from_manifest(combined) as b:
        for _ in range(repeats):
            for image in images:
                for key, det in (("classifier", a), ("combined", b)):
                    t0 = time.perf_counter()
                    det.detect(image)
                    seconds[key].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in seconds.items()}
    return {"frames": len(images) * repeats, "classifier_s": med["classifier"], "combined_s": med["combined"],
            "ratio": med["combined"] / med["classifier"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.locate_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("classifier_run")
    p.add_argument("head_run")
    p.add_argument("--frames", type=int, default=8, help="held-out 1920x1080 frames to time (default 8)")
    a = p.parse_args(argv)
    from edge.datasets import image_size

    c_run, h_run = Path(a.classifier_run), Path(a.head_run)
    cost = model_cost(c_run, h_run)
    print(f"input {cost['input'][1]}x{cost['input'][0]} (1080p at the run's scale): classifier "
          f"{cost['classifier_params'] / 1e6:.2f} M parameters, {cost['classifier_macs'] / 1e9:.2f} GMAC; head "
          f"+{cost['head_params'] / 1e3:.0f} k parameters, +{cost['head_macs'] / 1e9:.2f} GMAC; extra head scales "
          f"+{cost['pass_macs'] / 1e9:.2f} GMAC; combined / classifier "
          f"MACs {cost['combined_over_classifier_macs']:.3f}")
    test = json.loads((h_run / "split.json").read_text())["test"]
    frames = [f for f in test if image_size(f) == (1920, 1080)][: a.frames]
    if not frames:
        raise DataError(f"no 1920x1080 frame among the held-out frames of {h_run / 'split.json'}")
    rows = {}
    for man in sorted((h_run / "export").glob("*.manifest.json")):
        twin = c_run / "export" / man.name
        if not twin.is_file():
            continue
        r = time_pair(twin, man, frames)
        rows[man.name.replace(".manifest.json", "")] = r
        print(f"{man.name.replace('.manifest.json', '')}: classifier {r['classifier_s']:.3f} s, combined "
              f"{r['combined_s']:.3f} s per 1080p frame (median of {r['frames']}), ratio {r['ratio']:.2f}")
    from edge import atomic

    atomic.write_json(h_run / "cost.json", {"model": cost, "seconds_1080p": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
