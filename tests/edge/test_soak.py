"""``python -m edge.soak``: a short soak through the real run loop reports frames, fps and RSS figures."""

from __future__ import annotations

import json

import pytest

from edge.errors import ConfigError


def test_a_short_soak_reports_its_frames_and_memory(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edge.soak import soak

    report = soak(tmp_path, frames=600, warmup=100, sample_every=50)
    assert (report["frames"], report["ended_by"], report["errors"]) == (600, "max_frames", 0)
    rss = report["rss_mb"]
    assert 0 < rss["before_run"] <= rss["max_sampled"] <= rss["peak_process"] + 1
    assert rss["start"] is not None and rss["end"] is not None and report["fps"] > 0
    # 11 samples after the warm-up give a slope, and the verdict against the limit is given
    assert isinstance(report["growth_mb_per_100k_frames"], float) and report["within_limit"] in (True, False)
    saved = json.loads((tmp_path / "soak.json").read_text())
    assert saved["frames"] == 600 and len(saved["samples"]) == 12 and saved["machine"]["cores_usable"] >= 1


def test_soak_refuses_a_warmup_as_long_as_the_run(tmp_path):
    from edge.soak import soak

    with pytest.raises(ConfigError, match="warmup < frames"):
        soak(tmp_path, frames=100, warmup=100)
