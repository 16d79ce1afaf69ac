"""Choosing the localisation head's extra scales on validation frames (test-time multi-scale).

The head learned vessels at the size a 384-px training crop shows them, so a
ferry at the frame scale is too large for it. Running the same artifact on
the frame downscaled (:class:`edge.locate.HeadPass`) makes it head-sized. This
module decodes each validation frame at the frame scale and at each candidate
factor once, at a low floor, then searches the frame-scale threshold, the
pass's threshold and its smallest box side for the best recall at the false
boxes per frame the run allows. The choice is written into the run's
``run.json`` (``head.scales``), which the exporter copies into each
manifest's ``extra.head``.

``python -m training.locate_scales HEAD_RUN [--factors 0.5,0.375] [--write]``
prints the table and the choice; ``edgecam train --head locate`` runs the same
search at its end.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError
from edge.locate import HeadPass, keep_larger, merge_passes

log = logging.getLogger("edgecam.training")

FACTORS = (0.5, 0.375)  # a quarter and a seventh of the frame-scale pixels: within the 1.5x time allowance
MIN_SIDES = (0.0, 32.0, 64.0, 96.0)
BASE_LEVELS = tuple(np.round(np.arange(0.05, 0.951, 0.025), 3))  # frame-scale peak thresholds tried
PASS_LEVELS = tuple(np.round(np.arange(0.2, 0.951, 0.05), 3))
FLOOR = 0.05


def decoded_passes(inference, frames, scale: float, factors: tuple[float, ...], base: bool = True) -> dict[float, list]:
    """Per factor (and 1.0, the frame scale, when ``base``), each frame's (boxes in native pixels, scores) at ``FLOOR``."""
    from training.locate_data import frame_boxes

    wanted = (1.0, *factors) if base else tuple(factors)
    return {f: [frame_boxes(inference, fr, scale * f, FLOOR) for fr in frames] for f in wanted}


def figures(found: list, gts: list) -> dict:
    """Centre-hit recall by width (< 32, >= 32 px) and overall, and false boxes per frame, of boxes per frame."""
    from edge.locmetrics import match

    hit = np.zeros(2, int)
    total = np.zeros(2, int)
    false = 0
    for (boxes, scores), gt in zip(found, gts):
        m = match(boxes, gt, 0.1, scores)
        wide = (gt[:, 2] - gt[:, 0]) >= 32 if len(gt) else np.zeros(0, bool)
        for k, sel in enumerate((~wide, wide)):
            hit[k] += int(m["gt_found_centre"][sel].sum())
            total[k] += int(sel.sum())
        false += int(m["pred_false"].sum())
    return {"recall_small": hit[0] / max(total[0], 1), "recall_wide": hit[1] / max(total[1], 1),
            "recall": hit.sum() / max(total.sum(), 1), "false_per_frame": false / max(len(gts), 1)}


def _above(found: list, level: float, min_side: float = 0.0) -> list:
    out = []
    for boxes, scores in found:
        keep = scores >= level
        out.append(keep_larger(boxes[keep], scores[keep], min_side) if min_side else (boxes[keep], scores[keep]))
    return out


def _merged(base: list, extra: list, iou: float) -> list:
    return [merge_passes([a, b], iou) if len(b[0]) else a for a, b in zip(base, extra)]


def _objective(row: dict) -> float:
    """Recall of small and of wide vessels, equally weighted: the head must keep the one while it gains the other."""
    return row["recall_small"] + row["recall_wide"]


def choose_threshold(found, gts, max_false_per_frame: float) -> dict:
    """The lowest peak threshold with at most ``max_false_per_frame`` false boxes per frame (centre-hit or IoU 0.1).

    ``found`` is each frame's (boxes, scores) at a low floor; the levels tried are ``BASE_LEVELS``.
    """
    rows = []
    for t in BASE_LEVELS:
        f = figures(_above(found, t), gts)
        rows.append({"threshold": float(t), "false_per_frame": float(f["false_per_frame"]), "recall": float(f["recall"])})
    ok = [r for r in rows if r["false_per_frame"] <= max_false_per_frame]
    best = ok[0] if ok else rows[-1]
    return {**best, "frames": len(gts), "max_false_per_frame": max_false_per_frame, "met": bool(ok), "levels": rows}


def choose_passes(decoded: dict[float, list], gts: list, max_false_per_frame: float, iou: float = 0.3) -> dict:
    """The best frame-scale threshold alone, and with each candidate pass, at <= ``max_false_per_frame``.

    Returns ``{"single": row, "rows": [best row per factor], "choice": row}``
    where a row holds the figures, ``threshold`` and, for a pass, ``pass``
    (:meth:`HeadPass.to_dict`); ``choice`` is the best objective of all.
    """
    if not gts:
        raise DataError("choosing head scales: expected validation frames; received none")
    base_at = {t: _above(decoded[1.0], t) for t in BASE_LEVELS}
    singles = [{**figures(base_at[t], gts), "threshold": float(t)} for t in BASE_LEVELS]
    single = _best(singles, max_false_per_frame)
    rows = []
    for factor in sorted(f for f in decoded if f != 1.0):
        tried = []
        for min_side in MIN_SIDES:
            for tp in PASS_LEVELS:
                extra = _above(decoded[factor], tp, min_side)
                for t in BASE_LEVELS:
                    if t < single["threshold"]:
                        continue  # a lower frame-scale threshold only adds false boxes to the pass's own
                    row = figures(_merged(base_at[t], extra, iou), gts)
                    tried.append({**row, "threshold": float(t), "pass": HeadPass(factor, float(tp), min_side).to_dict()})
        rows.append(_best(tried, max_false_per_frame))
        log.info("head pass x%g: %s", factor, _describe(rows[-1]))
    choice = max([single, *rows], key=lambda r: (r["false_per_frame"] <= max_false_per_frame, _objective(r)))
    return {"single": single, "rows": rows, "choice": choice, "max_false_per_frame": max_false_per_frame,
            "frames": len(gts), "objective": "recall < 32 px + recall >= 32 px, centre-hit"}


def _best(rows: list, max_false: float) -> dict:
    ok = [r for r in rows if r["false_per_frame"] <= max_false]
    if not ok:
        return min(rows, key=lambda r: r["false_per_frame"])
    return max(ok, key=lambda r: (_objective(r), -r["false_per_frame"]))


def _describe(row: dict) -> str:
    p = row.get("pass")
    how = f"threshold {row['threshold']:.3f}" + (
        f" + pass x{p['factor']:g} at {p['threshold']:.2f}, boxes >= {p['min_side']:g} px" if p else " alone")
    return (f"{how}: recall < 32 px {row['recall_small']:.3f}, >= 32 px {row['recall_wide']:.3f}, "
            f"all {row['recall']:.3f}; {row['false_per_frame']:.2f} false boxes per frame")


def search_run(run: Path, factors: tuple[float, ...] = FACTORS, frames_at_most: int | None = None) -> dict:
    """Decode the validation frames of a head run with its Keras model and choose its passes."""
    from training.locate import combined_inference
    from training.locate_data import LocateOptions, load_head, run_frames
    from training.run import load_run

    classifier, info = load_run(run)
    if info.head is None:
        raise DataError(f"{run}: expected a run of edgecam train --head locate (run.json with head); none")
    head = load_head(run)
    spec = info.head
    opts = LocateOptions(from_run=str(run), datasets=tuple(spec["datasets"]), positive=tuple(spec["positive"]),
                         out=str(run))
    val = run_frames(opts)["val"][:frames_at_most or spec["threshold_choice"]["frames"]]
    decoded = decoded_passes(combined_inference(classifier, head), val, info.frame_scale or 1.0, factors)
    return choose_passes(decoded, [f.boxes_of(opts.positive) for f in val], float(spec["threshold_choice"]
                                                                                 ["max_false_per_frame"]),
                         float(spec.get("nms_iou", 0.3)))


def apply_choice(head_spec: dict, result: dict) -> dict:
    """``run.json``'s head entry with the chosen threshold and ``scales`` (empty when one scale won)."""
    choice = result["choice"]
    p = choice.get("pass")
    return {**head_spec, "threshold": choice["threshold"], "scales": [p] if p else [],
            "scales_choice": {k: v for k, v in result.items() if k != "choice"} | {"chosen": choice}}


def _factors(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--factors: expected numbers such as 0.5,0.375; received {text!r}") from None
    for v in values:
        HeadPass(v, 0.5)  # checks the factor's range
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.locate_scales", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a head run (edgecam train --head locate)")
    p.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS),
                   help="shares of the frame scale to try for the extra pass (default 0.5,0.375)")
    p.add_argument("--write", action="store_true", help="write the choice into the run's run.json (then export again)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run = Path(a.run)
    result = search_run(run, _factors(a.factors))
    print(f"frame scale alone: {_describe(result['single'])}")
    for row in result["rows"]:
        print(f"with a pass: {_describe(row)}")
    print(f"chosen: {_describe(result['choice'])}")
    if a.write:
        from edge import atomic

        info = json.loads((run / "run.json").read_text())
        info["head"] = apply_choice(info["head"], result)
        atomic.write_text(run / "run.json", json.dumps(info, indent=2, default=float) + "\n")
        print(f"written to {run / 'run.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
