"""Measure what each device extra installs: a fresh venv per extra, ``pip install``, then its size on disk.

Usage (from a checkout; needs PyPI or a local index):

    python devices/ci/install_size.py              # edge-litert, edge-onnx and edge
    python devices/ci/install_size.py edge-litert  # one extra

Prints a Markdown table: the extra, the installed packages' size (the venv
minus an empty venv: pip and setuptools are not counted), the largest
packages, and the Python and platform measured on. The README's install
section quotes its output.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTRAS = ("edge-litert", "edge-onnx", "edge")


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (what ``du -sb`` counts, without following links)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


# run inside the measured venv: bytes per installed distribution, from the files its RECORD lists
_BY_DISTRIBUTION = """
import importlib.metadata as m, json, os
sizes = {}
for d in m.distributions():
    paths = (str(d.locate_file(f)) for f in (d.files or ()))
    sizes[d.metadata["Name"]] = sum(os.lstat(p).st_size for p in paths if os.path.isfile(p) and not os.path.islink(p))
print(json.dumps(sizes))
"""


def measure(extra: str, work: Path, base_bytes: int) -> tuple[int, list[tuple[str, int]]]:
    """Bytes the extra adds to an empty venv, and the four largest distributions it installed."""
    venv = work / extra
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    f"{REPO}[{extra}]"], check=True)
    out = subprocess.run([str(venv / "bin" / "python"), "-c", _BY_DISTRIBUTION], check=True, capture_output=True, text=True)
    sizes = {k: v for k, v in json.loads(out.stdout).items() if k not in ("pip", "setuptools")}
    return tree_bytes(site_packages(venv)) - base_bytes, sorted(sizes.items(), key=lambda kv: -kv[1])[:4]


def main(argv: list[str]) -> int:
    extras = argv or list(EXTRAS)
    with tempfile.TemporaryDirectory(prefix="edgecam-size-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "venv", str(work / "empty")], check=True)
        base = tree_bytes(site_packages(work / "empty"))
        print(f"Measured on Python {platform.python_version()}, {platform.system()} {platform.machine()}:\n")
        print("| extra | installed | largest |")
        print("|---|---:|---|")
        for extra in extras:
            total, largest = measure(extra, work, base)
            top = ", ".join(f"{name} {size / 2**20:.0f} MB" for name, size in largest)
            print(f"| `edgecam[{extra}]` | {total / 2**20:.0f} MB | {top} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
