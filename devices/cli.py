"""``edgecam devices``: list the profiles, show one, or check them against this machine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from devices.registry import DeviceProfile, list_profiles, load_profile
from edge.errors import ConfigError

_SHORT = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA"}


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def format_profiles_table(profiles: Sequence[DeviceProfile] | None = None) -> str:
    """Plain-text table of profiles (all shipped ones by default), for ``edgecam devices``."""
    if profiles is None:
        profiles = [load_profile(n) for n in list_profiles()]
    header = ("NAME", "ARCH", "CPU", "CORES", "BACKEND", "GPU", "FORMAT", "THREADS", "INPUT", "CAPTURE", "SOURCE")
    rows = [header]
    for p in profiles:
        rows.append((
            p.name,
            p.arch.value,
            p.cpu,
            str(p.cores),
            p.backend.value,
            ",".join(_SHORT[e] for e in p.execution_providers if e in _SHORT) or "-",
            p.artifact_format.value,
            str(p.threads),
            f"{p.input_size}x{p.input_size}",
            f"{p.capture_mode.value} {p.capture_width}x{p.capture_height}@{p.capture_fps}",
            _short(p.camera_source, 32),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)



def cli_main(argv: Sequence[str] | None = None) -> int:
    """``edgecam devices [NAME] [--json] [--check]``: list profiles, show one as JSON, or check them here.

    Returns the process exit code: 0 ok; 2 unknown or invalid profile; with
    ``--check NAME``, 1 when that profile would not run here as written (a
    provisioning script can stop on it). ``--check`` over all profiles only
    reports, so a Jetson profile on a machine without a GPU is not an error.
    """
    parser = argparse.ArgumentParser(prog="edgecam devices", description="List device profiles, show one, or check them.")
    parser.add_argument("name", nargs="?", help="profile name or path to a profile .json; shows it as JSON")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--check", action="store_true",
                        help="say what each profile (or NAME) gets on this machine: runtime and execution providers")
    args = parser.parse_args(argv)
    try:
        if args.check:
            return _check(args.name, args.json)
        if args.name:
            print(json.dumps(load_profile(args.name).to_dict(), indent=2))
        elif args.json:
            print(json.dumps([load_profile(n).to_dict() for n in list_profiles()], indent=2))
        else:
            print(format_profiles_table())
    except ConfigError as exc:
        print(f"edgecam devices: {exc}", file=sys.stderr)
        return 2
    return 0


def _check(name: str | None, as_json: bool) -> int:
    from devices.check import Status, check_profile, format_checks, probe_runtimes

    profiles = [load_profile(name)] if name else [load_profile(n) for n in list_profiles()]
    probe = probe_runtimes()
    checks = [check_profile(p, probe) for p in profiles]
    if as_json:
        print(json.dumps({"machine": probe.__dict__ | {"onnx_providers": list(probe.onnx_providers)},
                          "profiles": [c.__dict__ | {"status": c.status.value, "notes": list(c.notes)} for c in checks]},
                         indent=2))
    else:
        print(format_checks(checks, probe))
    return 1 if name and checks[0].status is not Status.READY else 0
