"""Implementations of the ``edgecam export``, ``verify`` and ``robustness`` subcommands; edge/cli.py parses them and dispatches here by name.

Each imports what it needs when called.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edge.cli_args import print_json
from edge.errors import ConfigError


def cmd_export(a) -> int:
    from export.exporter import ExportOptions, export_run

    opts = ExportOptions(
        formats=tuple(f.strip() for f in a.formats.split(",") if f.strip()), calib=a.calib, calib_size=a.calib_size,
        io=a.io, opset=a.opset, onnx_calibration=a.onnx_calibration, per_channel=not a.no_per_channel,
        input_size=a.input_size, int8_float=a.int8_float, int8_targets=a.int8_targets, int8_holdout=a.int8_holdout,
    )
    out = a.out or str(Path(a.run) / "export")
    for m in export_run(a.run, out, opts):
        print(m)
    return 0


def cmd_verify(a) -> int:
    from export.verify import verify

    r = verify(a.dir, a.data, a.positive, a.gate, a.model, a.limit)
    if not a.json:
        from export.verify import to_markdown

        print(to_markdown(r))
        print(f"report: {Path(a.dir) / 'parity.md'}, {Path(a.dir) / 'parity.json'}")
    f = None
    if a.frames:
        from export.verify import frame_fidelity

        f = frame_fidelity(a.dir, a.frames, a.frame_size, a.frames_limit, a.model)
        if not a.json:
            print(Path(a.dir, "frames.md").read_text())
    if a.json:  # one document, so the output parses: the parity report, with the frame fidelity under a key
        print_json(r if f is None else {**r, "frame_fidelity": f})
    text = sys.stderr if a.json else sys.stdout  # the verdict is for people; with --json stdout is JSON alone
    failed = [f"{row['format']}: {'; '.join(row['failures'])}" for row in r["artifacts"] if row["failures"]]
    if failed:
        print("verify: FAILED\n  " + "\n  ".join(failed), file=text)
        return 1
    print("verify: all artifacts pass their gates", file=text)
    return 0


def cmd_robustness(a) -> int:
    """Class folders: Keras and every artifact (export.robustness); box-labelled frames: the artifacts only."""
    from edge.datasets import is_box_dataset
    from edge.robustness import RobustnessOptions

    def numbers(text: str, kind, flag: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"{flag}: expected a comma list of numbers; received {text!r}") from None

    opts = RobustnessOptions(corruptions=tuple(a.corruptions.split(",")) if a.corruptions != "all" else "all",
                             severities=numbers(a.severities, int, "--severities"), seed=a.seed, limit=a.limit,
                             eps=numbers(a.eps, float, "--eps"), pgd_steps=a.pgd_steps, grid_severity=a.grid_severity,
                             formats=tuple(f.strip() for f in a.formats.split(",") if f.strip()) if a.formats else None,
                             baseline=a.baseline, threshold=a.threshold)
    if is_box_dataset(a.data[0]):
        from edge.boxeval import BoxEvalOptions, manifests_of
        from edge.robustness import box_robustness

        if not a.positive:
            raise ConfigError("robustness: box-labelled data needs --positive CLASS[,CLASS...] (the vessel classes)")
        split = a.split
        if split is None and Path(a.model).is_dir() and (Path(a.model) / "split.json").is_file():
            split = str(Path(a.model) / "split.json")  # a run folder: its own held-out frames
        box = BoxEvalOptions(positive=tuple(p for p in a.positive.split(",") if p), split=split, split_name=a.split_name,
                             scale=a.scale, grid=0, threshold=a.threshold)
        out = a.out or str(manifests_of(a.model)[0].parent / "robustness")
        doc = box_robustness(a.model, list(a.data), box, opts, out)
    else:
        if len(a.data) > 1:
            raise ConfigError(f"robustness: several DATA folders are read only as box-labelled datasets; {a.data[0]} is not one")
        from edge.boxeval import manifests_of
        from export.robustness import robustness

        out = a.out or str(manifests_of(a.model)[0].parent / "robustness")
        doc = robustness(a.model, a.data[0], a.positive, opts, a.run, out)
    if a.json:
        print_json(doc)
        return 0
    from edge.robustreport import to_markdown

    print(to_markdown(doc))
    print(f"written: {out}/robustness.json, robustness.md, severity_*.png, adversarial.png, grid.png")
    return 0
