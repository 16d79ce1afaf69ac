"""The flags of each ``edgecam`` subcommand, one function per command (and per flag group).

``edge.cli.build_parser`` calls them; only argparse and edge's own option tables are imported here, so
``edgecam run --help`` imports neither training/ nor export/.
"""

from __future__ import annotations

import argparse

from edge.backends import backend_keys
from edge.cli_args import add_gpu_flags, parse_duration
from edge.cli_args import parse_size as _size
from edge.errors import EdgecamError
from edge.formats import format_keys
from edge.sink_kinds import SINKS


def add_demo_flags(d: argparse.ArgumentParser) -> None:
    """``edgecam demo``: the folder, the seed and how small a run (training/demo.py)."""
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--seed", type=int, default=0, help="seed of the scenes, the clip and the training")
    d.add_argument("--weights", default="none", help="'none' (default), 'imagenet' or PATH to a MobileNetV2 no-top .h5")
    d.add_argument("--epochs", type=int, default=None, help="training epochs (default: 12, or 1 with --quick)")
    d.add_argument("--frames", type=int, default=None, help="clip length (default 300)")
    d.add_argument("--quick", action="store_true", help="tiny configuration for tests: few images, small input, short clip")


def add_train_flags(t: argparse.ArgumentParser) -> None:
    """``edgecam train``: the data, the model and where the run goes (training/)."""
    t.add_argument("data", nargs="*",
                   help="folder with one sub-folder per class (or train/ and val/ inside), image root for --csv, "
                        "or one or more box-labelled datasets (YOLO, COCO or VOC; detected from the files); "
                        "required here or as 'data' in --config")
    add_config_flags(t)
    t.add_argument("--val", help="validation folder (default: --val-split of DATA, stratified)")
    t.add_argument("--val-split", type=float, default=0.2, help="share of DATA held out for validation when no --val is given")
    t.add_argument("--positive", help="one-vs-rest: this class is positive, the rest negative; "
                                      "with box-labelled data, CLASS[,CLASS...] are the vessel classes")
    _add_train_box_flags(t)
    _add_train_head_flags(t)
    t.add_argument("--csv", help="multi-label CSV: path,<class>,<class>... with 0/1 values")
    t.add_argument("--out", default="runs/train", help="run folder: model.keras, run.json, plots")
    t.add_argument("--input-size", type=_size, default=(96, 96), help="SIZE or HxW (default 96)")
    t.add_argument("--alpha", type=float, default=None,
                   help="MobileNetV2 width (default: read from a weights file name such as ..._1.0_224_no_top.h5, else 0.35)")
    t.add_argument("--weights", default="imagenet", help="imagenet (default; downloads), none, or PATH to a no-top .h5")
    t.add_argument("--pooling", choices=("max", "avg", "cell"), default=None,
                   help="max or avg: pool then dense; cell: dense per feature cell, score = best cell "
                        "(the same meaning at any input size; default for box-labelled data, else max)")
    _add_train_schedule_flags(t)


def _add_train_box_flags(t: argparse.ArgumentParser) -> None:
    """``edgecam train``'s flags for box-labelled data (crops cut from whole frames)."""
    b = t.add_argument_group("box-labelled data (crops cut from whole frames)")
    b.add_argument("--scale", type=float, default=1.5,
                   help="model pixels per frame pixel for the crops; edgecam run resizes frames by the same (default 1.5)")
    b.add_argument("--split-file", help="reuse the split.json of an earlier run (the same held-out frames)")
    b.add_argument("--split-by", choices=("frame", "camera"), default="frame",
                   help="hold out frames (bursts kept whole) or whole cameras (default frame)")
    b.add_argument("--test-fraction", type=float, default=0.2,
                   help="frames held out from training and validation, listed in split.json (default 0.2)")
    b.add_argument("--mine-frames", type=int, default=150,
                   help="training frames a round-one model is run over to mine hard negatives (0: none; default 150)")
    b.add_argument("--label", help="name of the positive class in the model (default: the first --positive)")


def _add_train_head_flags(t: argparse.ArgumentParser) -> None:
    """``edgecam train``'s localisation-head flags (``--head locate --from-run RUN``)."""
    h = t.add_argument_group("localisation head (edgecam train DATA... --head locate --from-run RUN)")
    h.add_argument("--head", choices=("locate",),
                   help="locate: train a vessel-centre and box-size head on the frozen encoder of --from-run")
    h.add_argument("--from-run", help="the classifier run (box-labelled) whose encoder, scale and split.json the head reuses")
    h.add_argument("--head-epochs", type=int, default=60, help="decoder epochs at most (early stopping; default 60)")
    h.add_argument("--head-crops", type=int, default=6, help="vessel-centred crops per training frame (default 6)")
    h.add_argument("--head-crop", type=int, default=384,
                   help="crop side in model pixels, a multiple of 32; larger crops hold large vessels whole (default 384)")
    h.add_argument("--head-background", type=int, default=4,
                   help="crops anywhere per training frame, mostly shore and sea without vessels (default 4)")


def _add_train_schedule_flags(t: argparse.ArgumentParser) -> None:
    """``edgecam train``'s optimisation, augmentation, stopping and run-control flags."""
    t.add_argument("--dropout", type=float, default=0.2, help="dropout before the dense layer")
    t.add_argument("--batch-size", type=int, default=64, help="default 64")
    t.add_argument("--epochs", type=int, default=3, help="phase 1 epochs (head only when pretrained; default 3)")
    t.add_argument("--lr", type=float, default=1e-3, help="phase 1 learning rate")
    t.add_argument("--schedule", choices=("constant", "cyclic", "cosine"), default="cosine",
                   help="constant; cyclic (triangular, phase 1); cosine (each phase decays to zero over its epochs)")
    t.add_argument("--finetune-epochs", type=int, default=18,
                   help="phase 2 epochs with the last blocks unfrozen (default 18; early stopping ends it sooner)")
    t.add_argument("--finetune-blocks", type=int, default=17, help="blocks unfrozen in phase 2 (default 17: all)")
    t.add_argument("--finetune-lr", type=float, default=1e-4, help="phase 2 learning rate")
    t.add_argument("--class-weight", choices=("auto", "balanced", "none"), default="auto",
                   help="auto: balanced when the classes are imbalanced")
    t.add_argument("--augment", choices=("aerial", "upright", "none"), default="upright",
                   help="upright: side views from a shore or a deck, small tilts (default); aerial: top-down views from drones or masts, any rotation; none")
    t.add_argument("--weather", choices=("none", "maritime"), default="none",
                   help="maritime: also give half the training images one random camera condition (noise, blur, haze, "
                        "dark or glaring exposure, low contrast, JPEG); see edgecam robustness (default none)")
    t.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0 = off)")
    t.add_argument("--patience", type=int, default=8, help="epochs without a better val metric before stopping (default 8)")
    t.add_argument("--monitor", choices=("val_auc", "val_loss", "val_accuracy"), default="val_auc",
                   help="validation metric for early stopping and the best checkpoint")
    t.add_argument("--threshold-rule", choices=("youden", "recall", "fixed"), default="youden",
                   help="decision threshold: Youden's J, the highest that reaches --target-recall, or 0.5")
    t.add_argument("--target-recall", type=float, default=0.95, help="recall the threshold must reach with --threshold-rule recall")
    t.add_argument("--seed", type=int, default=0, help="seed of the split, the augmentation and the initial weights")
    t.add_argument("--skip-bad", action="store_true", help="skip corrupt images (listed) instead of stopping")
    t.add_argument("--max-images", type=int, help="use at most N training images (quick runs)")

    def duration(text: str) -> float:
        try:
            return parse_duration(text)
        except EdgecamError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    t.add_argument("--time-budget", type=duration, metavar="DURATION",
                   help="wall time for the whole run, both phases and every --resume: 90m, 1h30m, 2h, 5400s or 5400; "
                        "training stops at the epoch end after which one more would overrun it, then evaluates")
    t.add_argument("--sanity", action="store_true", help="first check that the model can overfit one batch")
    t.add_argument("--find-lr", action="store_true", help="run the LR range test, write the plot, and stop")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    t.add_argument("--strategy", choices=("auto", "none", "mirrored", "multiworker"), default="auto",
                   help="TensorFlow distribution strategy; auto: multi-worker with TF_CONFIG, mirrored over several GPUs, else none")


def add_evaluate_flags(e: argparse.ArgumentParser) -> None:
    """``edgecam evaluate``: the model, the data and the box-labelled options."""
    e.add_argument("model", help="run directory, model.keras, or an artifact's manifest")
    e.add_argument("data", nargs="+", help="labelled folder (one sub-folder per class), or one or more "
                                          "box-labelled datasets (YOLO, COCO or VOC) for the localisation figures")
    e.add_argument("--positive", help="positive class; with box-labelled data CLASS[,CLASS...], the vessel classes")
    e.add_argument("--split", help="box-labelled data: split.json of a training run; evaluate only its --split-name "
                                   "frames (default: the run folder's own split.json when MODEL is a run folder)")
    e.add_argument("--split-name", choices=("test", "val", "train"), default="test", help="box-labelled data: which part of --split")
    e.add_argument("--skip-bad", action="store_true",
                   help="labelled folder: leave out images that do not decode (listed and counted) instead of stopping")
    e.add_argument("--scale", type=float, default=None, help="box-labelled data: frame scale (default: the manifest's)")
    e.add_argument("--head-passes", action=argparse.BooleanOptionalAction, default=True,
                   help="box-labelled data: a localisation head also runs at the manifest's extra scales")
    e.add_argument("--grid", type=int, default=12, help="box-labelled data: frames in the picture grid (default 12)")
    e.add_argument("--threshold", type=float, default=None,
                   help="box-labelled data: decision threshold instead of the manifest's (another operating point)")
    e.add_argument("--out", help="box-labelled data: report folder (default MODEL/boxeval)")
    e.add_argument("--tta", action="store_true",
                   help="also average over flipped copies: left-right, and up-down for a run trained with --augment aerial")
    e.add_argument("--json", action="store_true")


def add_export_flags(x: argparse.ArgumentParser) -> None:
    """``edgecam export``: the formats, calibration and mixed precision."""
    x.add_argument("run", help="training run directory (with model.keras and run.json)")
    x.add_argument("--formats", default="tflite-int8,onnx-fp32", help=f"comma list of {', '.join(format_keys())}, or all")
    x.add_argument("--calib", help="folder of real images for int8 calibration")
    x.add_argument("--calib-size", type=int, default=300, help="calibration images for the int8 formats")
    x.add_argument("--out", help="output folder (default RUN/export)")
    x.add_argument("--io", choices=("uint8", "int8", "float"), default="uint8", help="tflite-int8 input/output type")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset")
    x.add_argument("--onnx-calibration", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="onnx-int8 activation range method")
    x.add_argument("--no-per-channel", action="store_true")
    x.add_argument("--input-size", type=_size, help="size the manifest declares for the runtime (default: training size)")
    x.add_argument("--int8-float", default="none", metavar="none|auto|LAYER,...",
                   help="int8 layers kept in float: none (full int8, default), auto (returned to float by sensitivity "
                        "until --int8-targets hold or the float cap is reached), or Keras layer names such as Conv_1")
    x.add_argument("--int8-targets", metavar="KEY=V,...",
                   help="for auto: agreement=0.995,cam_r=0.97,max_float=0.25 (share of MACs),margin=1 (any subset)")
    x.add_argument("--int8-holdout", type=int, default=300,
                   help="calibration-folder images held out to measure mixed precision (default 300)")


def add_verify_flags(v: argparse.ArgumentParser) -> None:
    """``edgecam verify``: the artifacts, the data and the gates."""
    v.add_argument("dir", help="export folder with *.manifest.json")
    v.add_argument("--data", required=True, help="labelled validation folder")
    v.add_argument("--positive")
    v.add_argument("--gate", help="JSON file of per-format gates")
    v.add_argument("--model", help="Keras run directory (default: the one named in the manifests)")
    v.add_argument("--limit", type=int, help="at most N images")
    v.add_argument("--frames", help="also: CAM fidelity on the camera images under this folder, at --frame-size")
    v.add_argument("--frame-size", type=_size, default=(352, 640), help="HxW the --frames run at (default 352x640)")
    v.add_argument("--frames-limit", type=int, default=40, help="at most N frames (default 40)")
    v.add_argument("--json", action="store_true")


def add_run_flags(r: argparse.ArgumentParser) -> None:
    """``edgecam run``: the model, the source, the runtime, events, recording, the fleet link and GPUs."""
    r.add_argument("model", nargs="?",
                   help="an artifact's manifest (or the artifact beside it); required here or as 'model' in --config")
    add_config_flags(r)
    from edge.config import RUN_SETTINGS

    r.set_defaults(**dict.fromkeys(RUN_SETTINGS))  # settings with no flag: from --config only (None: RunOptions' default)
    r.add_argument("--source", default=None,
                   help="video file, camera index or /dev/videoN, rtsp:// or http:// URL, GStreamer pipeline, picamera2, "
                        "folder or glob of stills, synthetic[:SEED] (default: the device profile's camera, else synthetic)")
    r.add_argument("--out", default="runs/run",
                   help="output root: each run records into OUT/NNNN-<UTC time>/ (its run id, in every record) and "
                        "OUT/latest points at the newest; an earlier run is never touched (default runs/run)")
    r.add_argument("--device", help="device profile (edgecam devices); explicit flags override it")
    r.add_argument("--backend", choices=backend_keys(),
                   help="inference runtime (default: the one for the artifact's format; plugins add more)")
    r.add_argument("--threads", type=int,
                   help="inference threads (default: the device profile's, else one per physical core)")
    r.add_argument("--input-size", type=_size, help="HxW the model runs at (default: the size it was trained at)")
    r.add_argument("--profile-size", action="store_true",
                   help="run at the --device profile's input size instead of the model's trained size")
    r.add_argument("--scale", type=float, default=None,
                   help="resize each frame by this factor instead of to one input size (default: the manifest's "
                        "frame_scale for models trained on box-labelled frames)")
    r.add_argument("--resize", choices=("stretch", "letterbox"))
    r.add_argument("--head-passes", action=argparse.BooleanOptionalAction, default=True,
                   help="a localisation head also runs at the manifest's extra scales (extra.head.scales); "
                        "--no-head-passes keeps one invoke per frame")
    r.add_argument("--tile", action="store_true", help="overlapping tiles for frames much larger than the model input")
    r.add_argument("--live", metavar="HOST:PORT", help="serve a live view, e.g. 127.0.0.1:8080")
    r.add_argument("--allow-remote", action="store_true", help="allow --live on a non-loopback address")
    r.add_argument("--mode", choices=("latest", "all"), help="latest (default for live sources) or all (default for files)")
    r.add_argument("--stride", type=int, default=1, help="process every Nth frame")
    r.add_argument("--max-frames", type=int)
    r.add_argument("--box-threshold", type=float, default=0.5, help="heatmap level that outlines a box")
    r.add_argument("--enter", type=float, default=None, help="event start threshold on the smoothed score")
    r.add_argument("--leave", type=float, default=None, help="event end threshold")
    r.add_argument("--min-frames", type=int, default=3, help="frames above --enter before an event starts")
    r.add_argument("--no-video", action="store_true", help="no annotated video: frames.jsonl, events and summary.json only")
    r.add_argument("--sink", action="append", default=[], metavar="NAME[:ARG]",
                   help=f"another output besides frames.jsonl, events and video, repeatable; one of {sink_names()} "
                        "(plugins add more), e.g. jsonl:/mnt/usb/frames.jsonl")
    add_recording_flags(r)
    add_fleet_flags(r)
    add_gpu_flags(r)


def sink_names() -> str:
    return ", ".join(SINKS.names())


def add_recording_flags(r: argparse.ArgumentParser) -> None:
    """``edgecam run``'s recording flags and its exit codes (edge.recording)."""
    g = r.add_argument_group("recording (README: Reliability)")
    g.add_argument("--segment-seconds", type=float, default=10.0,
                   help="video in closed, playable segments of at most this long; a kill loses only the open one "
                        "(default 10; 0: one video.mp4, playable only if the run closes it)")
    g.add_argument("--min-free-mb", type=float, default=64.0,
                   help="stop the video when less than this is free under --out; records and events go on "
                        "(default 64; 0: only when the disk is full)")
    g.add_argument("--jsonl-max-mb", type=float, default=50.0,
                   help="rotate frames.jsonl at this size into frames.000001.jsonl, ... (default 50; 0: never)")
    g.add_argument("--jsonl-keep", type=int, default=20,
                   help="rotated frames.jsonl parts kept per run, the oldest deleted first (default 20; 0: all)")
    g.add_argument("--stills", choices=("all", "flagged", "none"), default="all",
                   help="a folder of stills: an annotated copy of every still, of flagged ones, or none, in stills/ "
                        "(default all)")
    g.add_argument("--retain", metavar="LIMIT",
                   help="keep the video of all runs under --out within SIZE and/or AGE, deleting the oldest closed "
                        "segments first, e.g. 8GB, 7d or 8GB,7d (default: no limit)")
    g.add_argument("--progress-seconds", type=float, default=None, metavar="S",
                   help="a status line (frames, fps, events, drops, share done) every S seconds on stderr: refreshed in "
                        "place on a terminal (default 2), one line each time in a log or journal (default 60); 0: none")
    g.add_argument("--outage-seconds", type=float, default=5.0, metavar="S",
                   help="a live source silent for longer than this is an outage, written to frames.jsonl with its start, "
                        "end and duration (default 5; 0: never)")
    g.add_argument("--event-timeout", type=float, default=10.0, metavar="S",
                   help="an open event is closed, marked interrupted, after a live source gives no frame for this long "
                        "(default 10; 0: never)")
    r.epilog = ("exit codes: 0 ran to the end and recorded everything; 1 ran but lost data or hit errors (failed frames "
                "or writes, full disk, failed source); 2 bad input or configuration; 130 / 143 stopped by SIGINT / "
                "SIGTERM after a clean flush")


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--print-config`` (edge.config)."""
    g = p.add_argument_group("configuration file (README: Configuration)")
    g.add_argument("--config", metavar="FILE",
                   help="TOML or JSON file whose keys are this command's flag names (box_threshold for --box-threshold); "
                        "flags given here override it; unknown keys are refused")
    g.add_argument("--print-config", action="store_true",
                   help="print the effective configuration (file + flags + defaults) as TOML, loadable by --config, and stop")


def add_robustness_flags(b: argparse.ArgumentParser) -> None:
    """``edgecam robustness``: corruptions, severities, FGSM and the data (edge.robustness, README: Robustness)."""
    b.add_argument("model", help="run folder with export/, export folder, or one artifact's manifest")
    b.add_argument("data", nargs="+", help="labelled folder (one sub-folder per class), or one or more box-labelled "
                                          "datasets (YOLO, COCO or VOC): then the artifacts only, with localisation figures")
    b.add_argument("--positive", help="positive class; with box-labelled data CLASS[,CLASS...], the vessel classes")
    b.add_argument("--model-run", dest="run", help="class folders: the Keras run (default: the one the manifests name)")
    b.add_argument("--corruptions", default="all", help="comma list, or all (default): gaussian_noise, shot_noise, "
                   "defocus_blur, motion_blur, fog, rain, droplets, glare, low_light, contrast, jpeg")
    b.add_argument("--severities", default="1,2,3,4,5", help="comma list of 1..5 (default 1,2,3,4,5: all five)")
    b.add_argument("--limit", type=int, default=1000,
                   help="at most N images or frames, keeping the class shares (default 1000)")
    b.add_argument("--eps", default="1,2,4,8", help="class folders: FGSM steps in grey levels of 0..255 (default 1,2,4,8)")
    b.add_argument("--pgd-steps", type=int, default=0, help="class folders: also PGD with this many steps (default 0: off)")
    b.add_argument("--grid-severity", type=int, default=3, help="severity the picture grid shows (default 3)")
    b.add_argument("--formats", help="only these artifact formats, comma-separated (default: every manifest found)")
    b.add_argument("--threshold", type=float, default=None,
                   help="decision threshold for every model instead of its manifest's (another operating point)")
    b.add_argument("--baseline", metavar="REPORT.json",
                   help="an earlier robustness.json (e.g. of the model trained without --weather) to compare with")
    b.add_argument("--seed", type=int, default=0, help="seed of the corruptions and the image pick")
    b.add_argument("--split", help="box-labelled data: split.json of a training run (default: the run folder's own)")
    b.add_argument("--split-name", choices=("test", "val", "train"), default="test", help="box-labelled data: which part of --split")
    b.add_argument("--scale", type=float, default=None, help="box-labelled data: frame scale (default: the manifest's)")
    b.add_argument("--out", help="report folder (default: robustness/ beside the artifacts)")
    b.add_argument("--json", action="store_true")


def add_fleet_flags(r: argparse.ArgumentParser) -> None:
    """``edgecam run``'s MQTT and live-view access flags (README: The fleet link)."""
    g = r.add_argument_group("fleet link: MQTT, /metrics, /healthz (README: The fleet link)")
    g.add_argument("--mqtt", metavar="URL", help="publish events, state and availability to mqtt://[USER[:PASSWORD]@]HOST[:PORT] "
                                                 "or mqtts://... (TLS); the password may also come from $EDGECAM_MQTT_PASSWORD")
    g.add_argument("--mqtt-config", metavar="FILE", help="JSON object of MQTT options (url, camera, prefix, client_id, "
                                                          "username, password, ca_file, spool_mb, thumbnail, ...); flags override it")
    g.add_argument("--mqtt-camera", metavar="NAME", help="the camera's topic level (default: the host name)")
    g.add_argument("--mqtt-prefix", metavar="PREFIX", help="first topic level(s) (default edgecam)")
    g.add_argument("--mqtt-client-id", metavar="ID", help="MQTT client id (default edgecam-<camera>)")
    g.add_argument("--mqtt-user", metavar="USER", help="broker user (instead of the URL's)")
    g.add_argument("--mqtt-ca", metavar="FILE", help="CA bundle for mqtts:// (default: the system's)")
    g.add_argument("--mqtt-spool", metavar="DIR", help="store-and-forward spool (default OUT/mqtt-spool, shared by runs)")
    g.add_argument("--mqtt-spool-mb", type=float, metavar="MB", help="spool bound; the oldest messages are dropped beyond it (default 64)")
    g.add_argument("--mqtt-thumbnail", action="store_true", help="a small base64 JPEG in each event start message")
    g.add_argument("--stale-seconds", type=float, metavar="S",
                   help="no frame for this long: the page's banner, /healthz 503, state 'stale' over MQTT (default 10)")
    g.add_argument("--live-auth", metavar="SPEC", help="bearer:TOKEN or basic:USER:PASSWORD for the page, the stream and "
                                                       "/metrics (default $EDGECAM_LIVE_AUTH; /healthz stays open)")
    g.add_argument("--live-max-clients", type=int, default=16, metavar="N",
                   help="connections the live view serves at once; more get 503 and are counted (default 16)")
    g.add_argument("--live-idle-seconds", type=float, default=30.0, metavar="S",
                   help="close a live-view connection idle this long, or a stream nobody reads (default 30)")
