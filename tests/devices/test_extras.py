"""Install what the device runs: one extra per runtime, one OpenCV bound, requirement files that agree.

The static half reads ``pyproject.toml`` and every profile's requirements file
with ``packaging`` and checks that each file asks only for what its profile's
extra holds (or a named stand-in), inside the project's bounds. The slow half
asks pip to resolve each file together with the extra's requirements
(``pip install --dry-run``) and skips without network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import devices
from devices import load_profile
from devices.registry import EXTRA_OF_BACKEND

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
SHIPPED = devices.list_profiles()
RUNTIMES = {"ai-edge-litert", "onnxruntime"}

# a package a file may name instead of the extra's, and why
STAND_INS = {"onnxruntime-gpu": "onnxruntime"}  # NVIDIA's Jetson build provides the same 'onnxruntime' module
# packages of the extra a device takes from its OS instead of pip
FROM_THE_OS = {"jetson-orin-nano": {"opencv-python-headless"}}  # JetPack's OpenCV has GStreamer, PyPI's has not


def extra_requirements(name: str) -> dict[str, Requirement]:
    """The extra's requirements by canonical name, with ``edgecam[...]`` self-references expanded."""
    out: dict[str, Requirement] = {}
    for line in EXTRAS[name]:
        req = Requirement(line)
        if canonicalize_name(req.name) == "edgecam":
            for inner in sorted(req.extras):
                out.update(extra_requirements(inner))
        else:
            out[canonicalize_name(req.name)] = req
    return out


def file_requirements(profile_name: str) -> dict[str, Requirement]:
    text = load_profile(profile_name).requirements_text()
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    reqs = [Requirement(line) for line in lines if line and not line.startswith("--")]
    return {canonicalize_name(r.name): r for r in reqs}


def declared_extra(profile_name: str) -> str:
    """The ``# edgecam extra: NAME`` line of the requirements file."""
    text = load_profile(profile_name).requirements_text()
    found = [line.split("edgecam extra:", 1)[1].split()[0].rstrip(".(") for line in text.splitlines()
             if line.startswith("#") and "edgecam extra:" in line]
    assert len(found) == 1, f"{profile_name}: expected one '# edgecam extra: NAME' line; found {found}"
    return found[0]


def candidates(*specs: SpecifierSet) -> list[Version]:
    """Every version a specifier names, and versions just above and just below it."""
    out = set()
    for spec in specs:
        for s in spec:
            v = Version(s.version.replace(".*", ""))
            rel = list(v.release)
            out.add(v)
            out.add(Version(".".join(map(str, rel + [0, 1]))))
            if rel[-1] > 0:
                out.add(Version(".".join(map(str, rel[:-1] + [rel[-1] - 1, 999]))))
    return sorted(out)


def within(inner: SpecifierSet, outer: SpecifierSet) -> bool:
    """True if ``inner`` admits some version and every version it admits, ``outer`` admits too.

    Judged on the versions at and next to every bound of either set: enough for
    ranges made of ``>=``, ``<``, ``==`` and ``!=`` as these files use.
    """
    vs = candidates(inner, outer)
    admitted = [v for v in vs if inner.contains(v, prereleases=False)]
    return bool(admitted) and all(outer.contains(v, prereleases=False) for v in admitted)


def test_one_extra_per_runtime_and_edge_keeps_both():
    litert, onnx, edge = (set(extra_requirements(n)) for n in ("edge-litert", "edge-onnx", "edge"))
    assert litert & RUNTIMES == {"ai-edge-litert"}
    assert onnx & RUNTIMES == {"onnxruntime"}
    assert edge == litert | onnx
    for name in ("edge-litert", "edge-onnx"):
        assert not any(n.startswith(("tensorflow", "tf2onnx", "onnx")) and n != "onnxruntime"
                       for n in extra_requirements(name)), f"{name} must not pull TensorFlow or the exporters"
    assert set(EXTRAS) >= {"edge", "edge-litert", "edge-onnx", "train", "export", "fleet", "all", "dev"}
    assert EXTRA_OF_BACKEND[devices.Backend.LITERT] == "edge-litert" and EXTRA_OF_BACKEND[devices.Backend.ONNXRUNTIME] == "edge-onnx"


def test_the_project_has_one_opencv_bound_and_it_keeps_numpy_1():
    bounds = {str(extra_requirements(n)["opencv-python-headless"].specifier) for n in EXTRAS
              if "opencv-python-headless" in extra_requirements(n)}
    files = {str(file_requirements(p)["opencv-python-headless"].specifier) for p in SHIPPED
             if "opencv-python-headless" in file_requirements(p)}
    assert len(bounds) == 1, f"expected one OpenCV bound in pyproject.toml; found {bounds}"
    assert files == bounds, f"requirement files {files} disagree with pyproject.toml {bounds}"
    (bound,) = bounds
    spec = SpecifierSet(bound)
    # 4.12 and later require numpy >= 2, which a Pi venv beside apt's Picamera2 cannot take
    assert not spec.contains("4.12.0.88") and not spec.contains("5.0.0.93")
    assert spec.contains("4.11.0.86") and spec.contains("4.10.0.84")
    assert not spec.contains("4.9.0.80"), "before 4.10 the wheels were built against numpy 1.x and break on numpy 2"


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_names_its_extra_and_its_file_says_the_same(name):
    profile = load_profile(name)
    assert profile.extra == EXTRA_OF_BACKEND[profile.backend]
    assert profile.extra in EXTRAS
    assert declared_extra(name) == profile.extra


@pytest.mark.parametrize("name", SHIPPED)
def test_requirements_file_resolves_inside_pyproject(name):
    """Static resolver check: every pin of the file lies inside the project's bound for that package."""
    profile = load_profile(name)
    extra = extra_requirements(profile.extra)
    allowed = extra | {"numpy": Requirement(PYPROJECT["project"]["dependencies"][0])}
    reqs = file_requirements(name)
    other_runtimes = RUNTIMES - set(extra)
    assert not set(reqs) & other_runtimes, f"{name} installs a runtime its profile does not use: {set(reqs) & other_runtimes}"
    for pkg, req in reqs.items():
        project_name = STAND_INS.get(pkg, pkg)
        assert project_name in allowed, f"{name}: {pkg} is in the file but not in '{profile.extra}' or the dependencies"
        outer = allowed[project_name].specifier
        assert within(req.specifier, outer), f"{name}: {pkg}{req.specifier} is not inside pyproject's {project_name}{outer}"
    provided = {STAND_INS.get(p, p) for p in reqs} | FROM_THE_OS.get(name, set())
    assert set(extra) <= provided, f"{name}: the file leaves out {set(extra) - provided} of '{profile.extra}'"


@pytest.mark.parametrize(("inner", "outer", "ok"), [
    (">=4.10,<4.12", ">=4.10,<4.12", True),
    (">=1.26,<2", ">=1.26,<3", True),
    (">=2.0,<3", ">=1.2,<3", True),
    (">=4.8,<4.12", ">=4.10,<4.12", False),  # admits 4.8, which the project refuses
    (">=4.10,<6", ">=4.10,<4.12", False),
    (">=3", "<2", False),  # empty intersection
])
def test_within_judges_ranges(inner, outer, ok):
    assert within(SpecifierSet(inner), SpecifierSet(outer)) is ok


def _pip_resolves(args: list[str]) -> subprocess.CompletedProcess:
    # the host's pip constraints pin this machine's own environment, not the device's: left out
    env = {**os.environ, "PIP_CONSTRAINT": ""}
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=600, env=env)


# glibc of each aarch64 device's OS (the requirement files' headers): Ubuntu 18.04 2.27, bookworm 2.36
GLIBC_MINOR = {"jetson-nano": 27, "rpi4": 36, "rpi5": 36}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "jetson-orin-nano"])  # its GPU wheels live on NVIDIA's index
def test_pip_resolves_the_file_with_the_extra(name, tmp_path):
    """pip resolves the file together with the extra's bounds: for this machine when x86-64, else for
    Linux aarch64 wheels of the device's glibc (Python 3.11 where the device's own Python is too old)."""
    probe = _pip_resolves(["--no-deps", "packaging"])
    if probe.returncode != 0:
        pytest.skip(f"no package index reachable: {probe.stderr.strip()[-200:]}")
    profile = load_profile(name)
    extra = tmp_path / "extra.txt"
    extra.write_text("\n".join(str(r) for r in extra_requirements(profile.extra).values()) + "\n")
    args = ["-r", str(ROOT / "devices" / profile.requirements), "-r", str(extra)]
    if profile.arch.value == "aarch64":
        platforms = [f"manylinux_2_{g}_aarch64" for g in range(GLIBC_MINOR[name], 16, -1)] + ["manylinux2014_aarch64"]
        py = profile.python if Version(profile.python) >= Version("3.10") else "3.11"
        args += ["--only-binary=:all:", "--python-version", py, "--target", str(tmp_path / "t")]
        args += [a for p in platforms for a in ("--platform", p)]
    r = _pip_resolves(args)
    assert r.returncode == 0, f"{name}: pip cannot resolve the file with '{profile.extra}':\n{r.stderr[-2000:]}"
