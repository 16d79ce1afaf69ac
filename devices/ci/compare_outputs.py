"""Dump the edge runtime's outputs on one machine and compare them with another's.

This is the measuring half of ``devices/ci/arm64-check.sh``: the same command
runs on x86 and, under qemu, on aarch64; ``compare`` then says which artifact
and which output moved, and by how much.

Usage:
    python devices/ci/compare_outputs.py dump MODEL_DIR [MODEL_DIR ...] OUT.npz [--frames 4] [--seed 7]
        [--inputs OTHER.npz]
    python devices/ci/compare_outputs.py compare A.npz B.npz [--atol 1e-5] [--heatmap-atol X]
        [--input-atol X] [--exact GLOB]

``dump`` runs every artifact in each MODEL_DIR (each ``*.manifest.json``, or a
``manifest.json``; with several folders an artifact's key starts with its
folder's name) through ``edge.detector.Detector`` and stores, per artifact
``NAME``, scores ``(N, C)``, heatmaps ``(N, H, W)`` and the feature map as the
runtime returns it (int8 for a quantised artifact: an integer model can be held
bit-exact there, while the heatmaps, which numpy computes in float32 from it,
may differ in the last bit between BLAS builds), plus a ``__meta__`` JSON
string describing the machine:

* ``NAME/model/...``: frames of random pixels (numpy's PCG64, the same bytes on
  every machine) already at the model's input size, so no resize runs.
* ``NAME/scene/...``: the synthetic ship scenes, on identical model inputs too.
  The scene drawing and OpenCV's resize round differently on aarch64 (one grey
  level on some pixels: its 2x2 downscale has its own NEON code), so the
  second machine is given the first one's dump (``--inputs``) and runs its
  models on the first machine's prepared inputs. The heatmaps still go through
  this machine's own upsampling onto the frame.
* The input path, checked on its own: ``scene/frames`` is this machine's own
  drawing of the scenes and ``NAME/input/prepared`` its own fitting and casting
  of the (shared) scene frames to the model input. ``compare`` holds these to
  ``--input-atol`` (grey levels) and prints how many values differ even when
  they are within it.

``compare`` exits 0 when every array matches within tolerance, 1 when any
differs (one line per difference), 2 on bad arguments or unreadable files.

Only numpy is needed for ``compare``; ``dump`` needs the edge runtime.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

META_KEY = "__meta__"
SCENE_FRAMES = "scene/frames"


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


def is_input(key: str) -> bool:
    """Whether ``key`` holds a machine's own inputs (scene drawing, fitting and casting), not a model's outputs."""
    return key == SCENE_FRAMES or "/input/" in key


def tolerance_for(key: str, atol: float, heatmap_atol: float | None, exact: Sequence[str],
                  input_atol: float | None = None) -> float:
    """Absolute tolerance for one array key.

    In order: 0 for keys matching an ``exact`` glob; ``input_atol`` for the
    input-path keys (see :func:`is_input`); ``heatmap_atol`` for ``*/heatmaps``; else ``atol``.
    """
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in exact):
        return 0.0
    if input_atol is not None and is_input(key):
        return input_atol
    if heatmap_atol is not None and key.endswith("/heatmaps"):
        return heatmap_atol
    return atol


def compare_arrays(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    atol: float = 1e-5,
    heatmap_atol: float | None = None,
    exact: Sequence[str] = (),
    input_atol: float | None = None,
) -> list[Mismatch]:
    """Compare two ``{key: array}`` dumps; return the differences (empty when they agree).

    A key present on one side only, a shape change, a NaN on one side only, or
    any element with ``|a - b| > tol`` is a mismatch. ``META_KEY`` is ignored.

    Example:
        >>> x = {"m/scores": np.array([[0.1, 0.9]], np.float32)}
        >>> compare_arrays(x, {"m/scores": np.array([[0.1, 0.8]], np.float32)}, atol=0.05)[0].key
        'm/scores'
    """
    if atol < 0 or any(t is not None and t < 0 for t in (heatmap_atol, input_atol)):
        raise ValueError(f"tolerances must be >= 0; received atol={atol}, heatmap_atol={heatmap_atol}, "
                         f"input_atol={input_atol}")
    out: list[Mismatch] = []
    for key in sorted((set(a) | set(b)) - {META_KEY}):
        if key not in b or key not in a:
            out.append(Mismatch(key, f"missing in {'B' if key not in b else 'A'}"))
            continue
        x = np.asarray(a[key], dtype=np.float64)
        y = np.asarray(b[key], dtype=np.float64)
        if x.shape != y.shape:
            out.append(Mismatch(key, f"shape {x.shape} in A, {y.shape} in B"))
            continue
        m = _difference(key, x, y, tolerance_for(key, atol, heatmap_atol, exact, input_atol))
        if m is not None:
            out.append(m)
    return out


def _difference(key: str, x: np.ndarray, y: np.ndarray, tol: float) -> Mismatch | None:
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    diff = np.abs(x - y)
    diff[nan_x & nan_y] = 0.0
    bad = (diff > tol) | (nan_x != nan_y)
    if not bad.any():
        return None
    finite = diff[np.isfinite(diff)]
    max_diff = float(finite.max()) if finite.size else float("nan")
    if (nan_x != nan_y).any():
        max_diff = float("inf")
    first = int(np.argwhere(bad)[0][0]) if x.ndim else 0
    return Mismatch(key, "values", max_diff, int(bad.sum()), int(bad.size), first)


def input_report(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> list[str]:
    """One line per input-path array present in both dumps: how many values differ, and by how much at most."""
    lines = []
    for key in sorted(k for k in set(a) & set(b) if is_input(k)):
        x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
        if x.shape != y.shape:
            continue
        d = np.abs(x - y)
        lines.append(f"input path {key}: {int((d > 0).sum())} of {d.size} values differ, max |a-b| = {d.max():.6g}")
    return lines


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


def artifact_keys(model_dirs: Sequence[Path]) -> list[tuple[str, Path]]:
    """(key, manifest) for every artifact in ``model_dirs``; with several folders a key starts with the folder's name."""
    names = [d.name for d in model_dirs]
    if len(set(names)) != len(names):
        raise FileNotFoundError(f"model folders must have different names; received {[str(d) for d in model_dirs]}")
    out = []
    for d in model_dirs:
        manifests = find_manifests(d)
        if not manifests:
            raise FileNotFoundError(f"no '*.manifest.json' or 'manifest.json' in {d}")
        out += [(f"{d.name}/{artifact_key(m)}" if len(model_dirs) > 1 else artifact_key(m), m) for m in manifests]
    return out


def _outputs(det, prepared: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, heatmaps, features) of prepared frames, one invoke each; features as the runtime returns them."""
    results, features = [], []
    for p in prepared:
        inference = det.infer([p])
        results.append(det.finish(inference)[0])
        features.append(inference.features[0])
    return (np.stack([np.asarray(r.scores, np.float32) for r in results]),
            np.stack([np.asarray(r.heatmap, np.float32) for r in results]),
            np.stack(features).astype(np.float32))


def _shared_inputs(inputs: Path | None, frames: int, seed: int, width: int, height: int) -> dict[str, np.ndarray] | None:
    """The arrays of another machine's dump whose inputs this one is to reuse, checked to be for the same scenes."""
    if inputs is None:
        return None
    shared, meta = load_dump(inputs)
    asked = {"frames": frames, "seed": seed, "width": width, "height": height}
    theirs = {k: meta.get(k) for k in asked}
    if theirs != asked or SCENE_FRAMES not in shared:
        raise ValueError(f"--inputs {inputs}: expected a dump of the scenes {asked}; received one of {theirs}"
                         f"{'' if SCENE_FRAMES in shared else ' without ' + SCENE_FRAMES}")
    return shared


def dump(model_dirs: Sequence[Path], out: Path, frames: int = 4, seed: int = 7, width: int = 320, height: int = 240,
         threads: int = 1, inputs: Path | None = None) -> dict[str, np.ndarray]:
    """Run every artifact in ``model_dirs`` on identical model inputs and on the synthetic scenes; save the outputs.

    With ``inputs`` (another machine's dump), the scenes are that dump's frames
    and the models run on that dump's prepared inputs, so that the outputs
    compare on identical inputs; this machine's own rendering and preparation
    are stored beside them, for the input-path check.
    """
    artifacts = artifact_keys([Path(d) for d in model_dirs])
    shared = _shared_inputs(inputs, frames, seed, width, height)
    # imported here so that `compare` works with numpy alone
    from edge.atomic import atomic_path
    from edge.detector import Detector
    from edge.synthetic import SceneClip

    own = np.stack([np.ascontiguousarray(frame) for frame, _boxes in SceneClip(seed, frames, width, height).frames()])
    scenes = own if shared is None else shared[SCENE_FRAMES]
    arrays: dict[str, np.ndarray] = {SCENE_FRAMES: own}
    meta = machine_meta()
    meta["artifacts"] = {}
    for key, manifest in artifacts:
        with Detector.from_manifest(manifest, threads=threads) as det:
            h, w = det.input_size
            rng = np.random.default_rng(seed)
            exact = [det.prepare(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(frames)]
            prepared = [det.prepare(np.ascontiguousarray(f)) for f in scenes]
            arrays[f"{key}/input/prepared"] = np.stack([p.input[0] for p in prepared]).astype(np.float32)
            if shared is not None:
                theirs = shared.get(f"{key}/input/prepared")
                if theirs is None or theirs.shape != arrays[f"{key}/input/prepared"].shape:
                    raise ValueError(f"--inputs {inputs}: expected {key}/input/prepared of shape "
                                     f"{arrays[f'{key}/input/prepared'].shape}; received "
                                     f"{None if theirs is None else theirs.shape}")
                prepared = [replace(p, input=t[None].astype(p.input.dtype)) for p, t in zip(prepared, theirs)]
            for part, batch in (("model", exact), ("scene", prepared)):
                scores, heatmaps, features = _outputs(det, batch)
                arrays.update({f"{key}/{part}/scores": scores, f"{key}/{part}/heatmaps": heatmaps,
                               f"{key}/{part}/features": features})
            meta["artifacts"][key] = {"manifest": str(manifest), "input_size": [h, w],
                                      "backend": getattr(det.backend, "key", type(det.backend).__name__)}
    meta.update(frames=frames, seed=seed, width=width, height=height, threads=threads,
                inputs=str(inputs) if inputs else None)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compare_outputs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="run each artifact on synthetic frames and save scores, heatmaps and features")
    d.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR")
    d.add_argument("out", type=Path)
    d.add_argument("--frames", type=int, default=4)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--width", type=int, default=320)
    d.add_argument("--height", type=int, default=240)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--inputs", type=Path, default=None, metavar="OTHER.npz",
                   help="another machine's dump: run the models on its scene frames and prepared inputs")
    c = sub.add_parser("compare", help="compare two dumps; exit 1 naming every mismatch")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance for every array (default 1e-5)")
    c.add_argument("--heatmap-atol", type=float, default=None, help="tolerance for */heatmaps (default: --atol)")
    c.add_argument("--input-atol", type=float, default=None,
                   help="tolerance for the input path (scene/frames, */input/prepared), in grey levels: the "
                        "scene drawing and OpenCV's resize round differently between machines (default: --atol)")
    c.add_argument("--exact", action="append", default=[], metavar="GLOB",
                   help="keys matching GLOB must be bit-exact, e.g. '*int8*' (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dump":
        if args.frames < 1:
            parser.error(f"--frames expected >= 1; received {args.frames}")
        try:
            arrays = dump(args.model_dirs, args.out, args.frames, args.seed, args.width, args.height, args.threads,
                          args.inputs)
        except (FileNotFoundError, ValueError) as exc:
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
        mismatches = compare_arrays(a, b, args.atol, args.heatmap_atol, args.exact, args.input_atol)
    except ValueError as exc:
        print(f"compare_outputs compare: {exc}", file=sys.stderr)
        return 2
    for line in input_report(a, b):
        print(line)
    for m in mismatches:
        print(m.describe(tolerance_for(m.key, args.atol, args.heatmap_atol, args.exact, args.input_atol)))
    n_keys = len((set(a) | set(b)) - {META_KEY})
    if mismatches:
        print(f"FAIL: {len(mismatches)} of {n_keys} arrays differ")
        return 1
    print(f"OK: {n_keys} arrays agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
