"""Dump the edge runtime's outputs on one machine and compare them with another's.

This is the measuring half of ``devices/ci/arm64-check.sh``: the same command
runs on x86 and, under qemu, on aarch64; ``compare`` then says which artifact
and which output moved, and by how much.

Usage:
    python devices/ci/compare_outputs.py dump MODEL_DIR OUT.npz [--frames 4] [--seed 7]
    python devices/ci/compare_outputs.py compare A.npz B.npz [--atol 1e-5] [--heatmap-atol X]
        [--scene-atol X] [--exact GLOB]

``dump`` runs every artifact in MODEL_DIR (each ``*.manifest.json``, or a
``manifest.json``) through ``edge.detector.Detector`` twice and stores, per
artifact ``NAME``, scores ``(N, C)`` and heatmaps ``(N, H, W)`` plus a
``__meta__`` JSON string describing the machine:

* ``NAME/model/...``: frames of random pixels (numpy's PCG64, the same bytes on
  every machine) already at the model's input size, so no resize runs. The
  model and the CAM see identical inputs on both machines: this is where
  bit-exactness can be asked for. ``NAME/model/features`` holds the last conv
  feature map as the runtime returns it (int8 for a quantised artifact), so
  an integer model can be held exact there, while the heatmaps, which numpy
  computes in float32 from it, may differ in the last bit between BLAS builds.
* ``NAME/scene/...``: the synthetic ship scenes, end to end. The scene
  drawing and OpenCV's resize round differently on aarch64 (one grey level
  on some pixels: its 2x2 downscale has its own NEON code), so these inputs
  differ slightly between machines and need a tolerance (``--scene-atol``).
 ``compare`` exits 0 when every array matches within tolerance, 1 when
any differs (one line per difference), 2 on bad arguments or unreadable files.

Only numpy is needed for ``compare``; ``dump`` needs the edge runtime.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

META_KEY = "__meta__"


@dataclass(frozen=True)
class Mismatch:
    """One array that differs between two dumps (or exists in only one)."""

    key: str
    reason: str
    max_abs_diff: float = float("nan")
    n_bad: int = 0
    n_total: int = 0
    first_frame: int = -1

    def describe(self, tol: float | None = None) -> str:
        if self.reason != "values":
            return f"MISMATCH {self.key}: {self.reason}"
        beyond = f"beyond atol {tol:g}" if tol is not None else "different"
        return (
            f"MISMATCH {self.key}: max |a-b| = {self.max_abs_diff:.6g}, first at frame {self.first_frame} "
            f"({self.n_bad} of {self.n_total} values {beyond})"
        )


def tolerance_for(key: str, atol: float, heatmap_atol: float | None, exact: Sequence[str],
                  scene_atol: float | None = None) -> float:
    """Absolute tolerance for one array key.

    In order: 0 for keys matching an ``exact`` glob; ``scene_atol`` for
    end-to-end ``*/scene/*`` keys; ``heatmap_atol`` for ``*/heatmaps``; else ``atol``.
    """
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in exact):
        return 0.0
    if scene_atol is not None and "/scene/" in key:
        return scene_atol
    if heatmap_atol is not None and key.endswith("/heatmaps"):
        return heatmap_atol
    return atol


def compare_arrays(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    atol: float = 1e-5,
    heatmap_atol: float | None = None,
    exact: Sequence[str] = (),
    scene_atol: float | None = None,
) -> list[Mismatch]:
    """Compare two ``{key: array}`` dumps; return the differences (empty when they agree).

    A key present on one side only, a shape change, a NaN on one side only, or
    any element with ``|a - b| > tol`` is a mismatch. ``META_KEY`` is ignored.

    Example:
        >>> x = {"m/scores": np.array([[0.1, 0.9]], np.float32)}
        >>> compare_arrays(x, {"m/scores": np.array([[0.1, 0.8]], np.float32)}, atol=0.05)[0].key
        'm/scores'
    """
    if atol < 0 or any(t is not None and t < 0 for t in (heatmap_atol, scene_atol)):
        raise ValueError(f"tolerances must be >= 0; received atol={atol}, heatmap_atol={heatmap_atol}, "
                         f"scene_atol={scene_atol}")
    out: list[Mismatch] = []
    for key in sorted((set(a) | set(b)) - {META_KEY}):
        if key not in b:
            out.append(Mismatch(key, "missing in B"))
            continue
        if key not in a:
            out.append(Mismatch(key, "missing in A"))
            continue
        x = np.asarray(a[key], dtype=np.float64)
        y = np.asarray(b[key], dtype=np.float64)
        if x.shape != y.shape:
            out.append(Mismatch(key, f"shape {x.shape} in A, {y.shape} in B"))
            continue
        tol = tolerance_for(key, atol, heatmap_atol, exact, scene_atol)
        nan_x, nan_y = np.isnan(x), np.isnan(y)
        diff = np.abs(x - y)
        diff[nan_x & nan_y] = 0.0
        bad = (diff > tol) | (nan_x != nan_y)
        if bad.any():
            finite = diff[np.isfinite(diff)]
            max_diff = float(finite.max()) if finite.size else float("nan")
            if (nan_x != nan_y).any():
                max_diff = float("inf")
            first = int(np.argwhere(bad)[0][0]) if x.ndim else 0
            out.append(Mismatch(key, "values", max_diff, int(bad.sum()), int(bad.size), first))
    return out


def load_dump(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a dump written by ``dump``: its arrays and its metadata."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta_raw = arrays.pop(META_KEY, None)
    meta = json.loads(str(meta_raw)) if meta_raw is not None else {}
    return arrays, meta


def find_manifests(model_dir: Path) -> list[Path]:
    """Manifests in a model folder: ``*.manifest.json`` files, or a single ``manifest.json``."""
    found = sorted(model_dir.glob("*.manifest.json"))
    single = model_dir / "manifest.json"
    if single.is_file() and single not in found:
        found.append(single)
    return found


def artifact_key(manifest: Path) -> str:
    name = manifest.name
    return name[: -len(".manifest.json")] if name.endswith(".manifest.json") else manifest.stem


def machine_meta() -> dict:
    """What produced a dump: architecture, Python and runtime versions, QEMU_CPU."""
    import os
    from importlib import metadata

    versions = {}
    for dist in ("numpy", "ai-edge-litert", "onnxruntime", "opencv-python-headless", "edgecam"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "qemu_cpu": os.environ.get("QEMU_CPU"),
        "versions": versions,
    }


def dump(model_dir: Path, out: Path, frames: int = 4, seed: int = 7, width: int = 320, height: int = 240,
         threads: int = 1) -> dict[str, np.ndarray]:
    """Run every artifact in ``model_dir`` on identical model inputs and on the synthetic scenes; save the outputs."""
    manifests = find_manifests(model_dir)
    if not manifests:
        raise FileNotFoundError(f"no '*.manifest.json' or 'manifest.json' in {model_dir}")
    # imported here so that `compare` works with numpy alone
    from edge.atomic import atomic_path
    from edge.detector import Detector
    from edge.synthetic import SceneClip

    clip = SceneClip(seed, frames, width, height)
    images = [np.ascontiguousarray(frame) for frame, _boxes in clip.frames()]
    arrays: dict[str, np.ndarray] = {}
    meta = machine_meta()
    meta["artifacts"] = {}
    for manifest in manifests:
        key = artifact_key(manifest)
        with Detector.from_manifest(manifest, threads=threads) as det:
            h, w = det.input_size
            rng = np.random.default_rng(seed)
            exact_inputs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(frames)]
            split = hasattr(det, "infer")
            for part, inputs in (("model", exact_inputs), ("scene", images)):
                results, features = [], []
                for image in inputs:
                    if split:  # one invoke gives the result and the feature map it came from
                        inference = det.infer([det.prepare(image)])
                        results.append(det.finish(inference)[0])
                        features.append(inference.features[0])
                    else:
                        results.append(det.detect(image))
                arrays[f"{key}/{part}/scores"] = np.stack([np.asarray(r.scores, np.float32) for r in results])
                arrays[f"{key}/{part}/heatmaps"] = np.stack([np.asarray(r.heatmap, np.float32) for r in results])
                if part == "model" and features:
                    # the feature map as the runtime gives it (int8 for a quantised artifact): the model's own
                    # output, before the CAM's float arithmetic, whose last bit depends on the BLAS
                    arrays[f"{key}/model/features"] = np.stack(features).astype(np.float32)
            meta["artifacts"][key] = {"manifest": manifest.name, "input_size": [h, w],
                                      "backend": getattr(det.backend, "key", type(det.backend).__name__)}
    meta.update(frames=frames, seed=seed, width=width, height=height, threads=threads)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays, **{META_KEY: np.array(json.dumps(meta))})
    return arrays


def _describe_meta(label: str, meta: dict) -> str:
    if not meta:
        return f"{label}: (no metadata)"
    v = meta.get("versions", {})
    runtimes = ", ".join(f"{k} {v[k]}" for k in ("ai-edge-litert", "onnxruntime", "numpy") if v.get(k))
    qemu = f", QEMU_CPU={meta['qemu_cpu']}" if meta.get("qemu_cpu") else ""
    return f"{label}: {meta.get('machine')}{qemu}, Python {meta.get('python')}, {runtimes}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compare_outputs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="run each artifact on synthetic frames and save scores + heatmaps")
    d.add_argument("model_dir", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--frames", type=int, default=4)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--width", type=int, default=320)
    d.add_argument("--height", type=int, default=240)
    d.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("compare", help="compare two dumps; exit 1 naming every mismatch")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance for every array (default 1e-5)")
    c.add_argument("--heatmap-atol", type=float, default=None, help="tolerance for */heatmaps (default: --atol)")
    c.add_argument("--scene-atol", type=float, default=None,
                   help="tolerance for the end-to-end */scene/* arrays, whose inputs differ by OpenCV's rounding "
                        "(default: the others)")
    c.add_argument("--exact", action="append", default=[], metavar="GLOB",
                   help="keys matching GLOB must be bit-exact, e.g. '*int8*' (repeatable)")
    args = parser.parse_args(argv)

    if args.command == "dump":
        if args.frames < 1:
            parser.error(f"--frames expected >= 1; received {args.frames}")
        try:
            arrays = dump(args.model_dir, args.out, args.frames, args.seed, args.width, args.height, args.threads)
        except FileNotFoundError as exc:
            print(f"compare_outputs dump: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}: {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")
        return 0

    try:
        a, meta_a = load_dump(args.a)
        b, meta_b = load_dump(args.b)
    except (OSError, ValueError) as exc:
        print(f"compare_outputs compare: cannot read dump: {exc}", file=sys.stderr)
        return 2
    print(_describe_meta(f"A {args.a}", meta_a))
    print(_describe_meta(f"B {args.b}", meta_b))
    try:
        mismatches = compare_arrays(a, b, args.atol, args.heatmap_atol, args.exact, args.scene_atol)
    except ValueError as exc:
        print(f"compare_outputs compare: {exc}", file=sys.stderr)
        return 2
    for m in mismatches:
        print(m.describe(tolerance_for(m.key, args.atol, args.heatmap_atol, args.exact, args.scene_atol)))
    n_keys = len((set(a) | set(b)) - {META_KEY})
    if mismatches:
        print(f"FAIL: {len(mismatches)} of {n_keys} arrays differ")
        return 1
    print(f"OK: {n_keys} arrays agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
