"""docs/devices/jetson.md, the Jetson profiles and their requirement files say the same thing.

The page's version table has one row per Jetson profile. Each row must agree
with the profile (JetPack, Ubuntu, Python, CUDA, TensorRT in its ``os`` and
``python``), with its requirements file (the onnxruntime-gpu pin and the index
it comes from) and with the page's own source list (every cited [n] exists and
has an address). The options table must show the profile's GPU settings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import devices
from devices import load_profile
from edge.backends.base import GpuOptions

DOC = Path(__file__).resolve().parents[2] / "docs" / "devices" / "jetson.md"
JETSONS = [n for n in devices.list_profiles() if n.startswith("jetson")]
VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?")


def table(text: str, first_header: str) -> list[dict[str, str]]:
    """The Markdown table whose first header cell is ``first_header``, as dicts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows.append(dict(zip(header, cells)))
    return rows


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def versions(doc) -> dict[str, dict[str, str]]:
    return {row["profile"].strip("`"): row for row in table(doc, "profile")}


def requirement_lines(name: str) -> list[str]:
    text = load_profile(name).requirements_text()
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_every_jetson_profile_has_a_row_and_no_row_is_stale(versions):
    assert sorted(versions) == sorted(JETSONS)


@pytest.mark.parametrize("name", JETSONS)
def test_the_row_agrees_with_the_profile(name, versions):
    row, p = versions[name], load_profile(name)
    jetpack_part = p.os.split("(")[0]
    assert jetpack_part.startswith("JetPack ")
    assert set(VERSION.findall(row["JetPack"])) == set(VERSION.findall(jetpack_part)), (row["JetPack"], p.os)
    assert row["Python"] == p.python
    assert f"Ubuntu {row['Ubuntu']}" in p.os
    assert f"CUDA {row['CUDA']}" in p.os and f"TensorRT {row['TensorRT']}" in p.os
    assert row["Jetson Linux"] in p.os  # e.g. r36.4


@pytest.mark.parametrize("name", JETSONS)
def test_the_row_agrees_with_the_requirements_file(name, versions):
    row, p = versions[name], load_profile(name)
    reqs = requirement_lines(name)
    header = p.requirements_text().splitlines()[0]
    assert f"CUDA {row['CUDA']}" in header and f"TensorRT {row['TensorRT']}" in header, header
    gpu_pins = [r for r in reqs if r.startswith("onnxruntime-gpu")]
    indexes = [r.split()[1] for r in reqs if r.startswith("--extra-index-url")]
    wants_gpu = any(e != "CPUExecutionProvider" for e in p.execution_providers)
    if wants_gpu:
        assert len(gpu_pins) == 1 and f"`{gpu_pins[0]}`" in row["onnxruntime GPU wheel"]
        assert len(indexes) == 1 and row["where it is published"] == f"`{indexes[0]}`"
        assert not any(r.startswith("onnxruntime>") or r == "onnxruntime" for r in reqs), \
            "the CPU wheel would overwrite onnxruntime-gpu's module"
    else:
        assert not gpu_pins and not indexes
        assert row["onnxruntime GPU wheel"].startswith("none") and row["where it is published"].startswith("none")


def test_every_cited_source_is_listed_with_an_address(doc, versions):
    listed = dict(re.findall(r"^- \[(\d+)\] (.+)$", doc, flags=re.M))
    cited = set(re.findall(r"\[(\d+)\]", doc))
    assert cited <= set(listed), f"cited but not listed: {sorted(cited - set(listed), key=int)}"
    for n, entry in listed.items():
        assert "https://" in entry, f"source [{n}] has no address"
    for name, row in versions.items():
        assert re.findall(r"\[(\d+)\]", row["sources"]), f"{name}: the row cites no source"


def test_the_options_table_shows_the_profiles_gpu_settings(doc):
    rows = {r["setting"].strip("`"): r for r in table(doc, "setting")}
    for name in JETSONS:
        p = load_profile(name)
        if p.onnxruntime_gpu is None:
            continue
        for key, value in p.onnxruntime_gpu.to_dict().items():
            shown = rows[key]["profile value"].strip("`")
            assert shown == (str(value).lower() if isinstance(value, bool) else str(value)), (key, shown, value)
    assert set(GpuOptions().to_dict()) <= set(rows)


def test_the_page_says_plainly_what_has_not_been_run(doc):
    assert "**Nothing in this page has been run on a Jetson yet.**" in doc
    orin = load_profile("jetson-orin-nano")
    assert any("has not been run on a Jetson" in note for note in orin.notes)
