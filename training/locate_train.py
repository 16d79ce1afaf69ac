"""Training the localisation head end to end: one function over :mod:`training.locate_data`'s steps.

Its own module so that training.locate_data and training.locate_scales (which both feed it) do not import each other.

``edgecam train DATA... --head locate --from-run RUN`` runs :func:`training.locate_train.train_locate`:

1. the frames of ``RUN/split.json`` (the classifier's own split, so the head
   is judged on the same held-out frames) are resized by the run's
   ``frame_scale``, as the runtime resizes them, and square crops are cut
   around vessels and anywhere else, half of them mirrored;
2. the frozen encoder runs once per crop; its three skip features are kept
   in memory (float16) with the rendered targets;
3. the decoder trains on that cache, with early stopping on validation crops
   and a wall-time budget;
4. the peak threshold is chosen on whole validation frames: the lowest that
   leaves at most ``max_false_per_frame`` false boxes per frame; then the
   extra scales of :mod:`training.locate_scales` are searched on the same
   frames (``pass_factors``), and the best of both is kept;
5. the run folder gets the classifier (``model.keras``), the head
   (``head.keras``), ``split.json`` and ``run.json`` with a ``head`` entry
   that the exporter reads.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from edge import atomic
from edge.locate import STRIDE
from training.locate_data import LocateOptions, cut_crops, encode, fit_head, frame_boxes, run_frames
from training.locate_scales import apply_choice, choose_passes, choose_threshold, decoded_passes

log = logging.getLogger("edgecam.training")

__all__ = ["train_locate"]


def train_locate(opts: LocateOptions) -> dict:
    """Train the head on the classifier run ``opts.from_run``; returns the new run's ``run.json``."""
    import keras

    from training.locate import build_head, check_channels, combined_inference, encoder
    from training.run import load_run

    t0 = time.monotonic()
    classifier, info = load_run(opts.from_run)
    scale = info.frame_scale or 1.0
    channels = check_channels(classifier)
    frames = run_frames(opts)
    rng = np.random.default_rng(opts.seed)
    enc = encoder(classifier, (opts.crop, opts.crop, 3))
    data = {}
    for split in ("train", "val"):
        crops, targets = cut_crops(frames[split], opts.positive, scale, opts, rng)
        data[split] = (encode(enc, crops), targets)
        log.info("%s: %d crops of %d px from %d frames at scale %g, %d vessel centres", split, len(crops), opts.crop,
                 len(frames[split]), scale, int(targets[..., 3].sum()))
    cached_s = time.monotonic() - t0
    keras.utils.set_random_seed(opts.seed)
    head = build_head(channels, opts.width)
    fit = fit_head(head, data["train"], data["val"], opts)
    log.info("head: %s epochs in %s s, best validation loss %.4f", fit["epochs"], fit["seconds"], fit["best_val_loss"])
    inference = combined_inference(classifier, head)
    val = frames["val"][:opts.threshold_frames]
    found, gts = [frame_boxes(inference, f, scale) for f in val], [f.boxes_of(opts.positive) for f in val]
    choice = choose_threshold(found, gts, opts.max_false_per_frame)
    log.info("peak threshold %.3f on %d validation frames: %.2f false boxes per frame, centre-hit recall %.3f",
             choice["threshold"], choice["frames"], choice["false_per_frame"], choice["recall"])
    passes = None
    if opts.pass_factors:
        decoded = {1.0: found, **decoded_passes(inference, val, scale, opts.pass_factors, base=False)}
        passes = choose_passes(decoded, gts, opts.max_false_per_frame)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    head.save(out / "head.keras")
    shutil.copyfile(Path(opts.from_run) / "model.keras", out / "model.keras")
    shutil.copyfile(Path(opts.from_run) / "split.json", out / "split.json")
    run = info.to_dict()
    run["head"] = {"kind": "locate", "stride": STRIDE, "threshold": choice["threshold"], "nms_iou": 0.3,
                   "size_encoding": "log(side / stride)", "width": opts.width, "crop": opts.crop,
                   "per_frame": opts.per_frame, "background": opts.background, "zoom_out": list(opts.zoom_out),
                   "jitter": opts.jitter, "dropout": opts.dropout, "lr": opts.lr,
                   "from_run": str(Path(opts.from_run).resolve()), "datasets": list(opts.datasets),
                   "positive": list(opts.positive), "crops": {k: int(len(v[1])) for k, v in data.items()},
                   "fit": fit, "threshold_choice": choice, "seconds_caching": round(cached_s, 1),
                   "seconds": round(time.monotonic() - t0, 1)}
    if passes is not None:
        run["head"] = apply_choice(run["head"], passes)
    atomic.write_text(out / "run.json", json.dumps(run, indent=2) + "\n")
    return run
