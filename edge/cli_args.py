"""Small helpers the ``edgecam`` subcommands share: argument types, flag groups, JSON output.

Their own module so that edge/cli.py (the dispatcher), edge/commands.py and
edge/bench.py use them without importing each other.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

from edge.errors import ConfigError

__all__ = ["MAX_SIDE", "parse_size", "add_gpu_flags", "gpu_settings", "parse_duration", "print_json"]

MAX_SIDE = 4096  # a 4096x4096 float input is 200 MB; far larger only ends in an allocation failure deep in a runtime


def parse_size(text: str) -> tuple[int, int]:
    """``SIZE`` or ``HxW`` as (h, w), for argparse (raises ArgumentTypeError)."""
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW (e.g. 96 or 352x640); received {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW (e.g. 96 or 352x640); received {text!r}")
    if max(parts) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"expected each side between 1 and {MAX_SIDE} pixels; received {text!r}")
    return parts[0], parts[1]


def add_gpu_flags(p: argparse.ArgumentParser) -> None:
    """Flags for onnxruntime's TensorRT and CUDA providers; unset ones keep the device profile's value."""
    g = p.add_argument_group("onnxruntime GPU providers (default: the device profile's onnxruntime_gpu)")
    g.add_argument("--providers", metavar="LIST",
                   help="execution providers, comma-separated, in the order TensorRT, CUDA, CPU "
                        "(e.g. CUDAExecutionProvider,CPUExecutionProvider)")
    g.add_argument("--trt-cache", metavar="DIR", help="TensorRT engine cache: relative = inside --out, absolute = as given")
    g.add_argument("--trt-workspace", type=int, metavar="MIB", help="TensorRT builder workspace limit in MiB")
    g.add_argument("--trt-fp16", choices=("on", "off"), help="let TensorRT use fp16 kernels")
    g.add_argument("--cuda-device", type=int, metavar="N", help="CUDA device id")


def gpu_settings(a: argparse.Namespace) -> dict:
    """The GPU flags of ``add_gpu_flags`` as ``resolve_run_settings`` keywords (None: not given)."""
    fp16 = None if a.trt_fp16 is None else a.trt_fp16 == "on"
    return {
        "execution_providers": [p.strip() for p in a.providers.split(",") if p.strip()] if a.providers else None,
        "gpu": {"tensorrt_engine_cache": a.trt_cache, "tensorrt_workspace_mib": a.trt_workspace,
                "tensorrt_fp16": fp16, "device_id": a.cuda_device},
    }



_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m)?(?:(?P<s>{_NUMBER})s)?")


def parse_duration(text: str) -> float:
    """Seconds in a duration written ``90m``, ``1h30m``, ``2h``, ``45s``, ``5400s`` or ``5400`` (seconds).

    Units come in the order h, m, s; a bare number is seconds. ``1h30`` is
    refused rather than guessed (30 minutes or 30 seconds?).

    Example:
        >>> parse_duration("1h30m")
        5400.0
    """
    t = str(text).strip().lower()
    if re.fullmatch(_NUMBER, t):
        seconds = float(t)
    else:
        m = _DURATION.fullmatch(t)
        if m is None or not any(m.groups()):
            seconds = math.nan
        else:
            seconds = sum(float(m[k] or 0) * f for k, f in (("h", 3600), ("m", 60), ("s", 1)))
    if not seconds > 0:
        raise ConfigError("expected a duration greater than zero such as 90m, 1h30m, 2h, 5400s or 5400 (seconds); "
                          f"received {text!r}")
    return seconds


json_out = None  # the real stdout while a --json command runs with sys.stdout pointed at stderr


def print_json(obj) -> None:
    """Print ``obj`` as JSON on stdout (the real one, also while a ``--json`` command sends its text to stderr)."""
    print(json.dumps(obj, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)),
          file=json_out or sys.stdout, flush=True)

