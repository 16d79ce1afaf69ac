"""The arm64 check's comparison: equal dumps pass, any difference beyond tolerance fails by name."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

CI = Path(__file__).resolve().parents[2] / "devices" / "ci"


def _load_compare_outputs():
    spec = importlib.util.spec_from_file_location("compare_outputs", CI / "compare_outputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


co = _load_compare_outputs()


def make_dump(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.random((3, 2), dtype=np.float32)
    heat = rng.random((3, 24, 32), dtype=np.float32)
    return {
        "model_int8.tflite/scores": scores,
        "model_int8.tflite/heatmaps": heat,
        "model_fp32.onnx/scores": scores.copy(),
        "model_fp32.onnx/heatmaps": heat.copy(),
    }


def save(path: Path, arrays: dict[str, np.ndarray], meta: str = '{"machine": "x86_64"}') -> Path:
    np.savez(path, **arrays, **{co.META_KEY: np.array(meta)})
    return path


def test_equal_dumps_agree(tmp_path, capsys):
    a = save(tmp_path / "a.npz", make_dump())
    b = save(tmp_path / "b.npz", make_dump(), '{"machine": "aarch64", "qemu_cpu": "cortex-a76"}')
    assert co.compare_arrays(make_dump(), make_dump(), atol=0.0) == []
    assert co.main(["compare", str(a), str(b), "--atol", "0"]) == 0
    out = capsys.readouterr().out
    assert "OK: 4 arrays agree" in out and "QEMU_CPU=cortex-a76" in out


def test_deliberate_mismatch_fails_naming_artifact_output_and_size(tmp_path, capsys):
    arm = make_dump()
    arm["model_int8.tflite/heatmaps"][2, 5, 7] += 0.25  # one pixel of frame 2
    a = save(tmp_path / "x86.npz", make_dump())
    b = save(tmp_path / "arm.npz", arm)
    assert co.main(["compare", str(a), str(b), "--atol", "1e-4"]) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("MISMATCH"))
    assert "model_int8.tflite/heatmaps" in line
    assert "max |a-b| = 0.25" in line and "frame 2" in line and "1 of 2304 values beyond atol 0.0001" in line
    assert "FAIL: 1 of 4 arrays differ" in out


def test_inputs_are_not_mutated():
    a, b = make_dump(), make_dump()
    b["model_fp32.onnx/scores"][0, 0] += 1.0
    before_a = {k: v.copy() for k, v in a.items()}
    before_b = {k: v.copy() for k, v in b.items()}
    co.compare_arrays(a, b)
    for k in a:
        np.testing.assert_array_equal(a[k], before_a[k])
        np.testing.assert_array_equal(b[k], before_b[k])


@pytest.mark.parametrize(
    "change, atol, heatmap_atol, exact, fails, reason",
    [
        (None, 0.0, None, (), False, None),
        (("model_fp32.onnx/scores", 1e-6), 1e-5, None, (), False, None),
        (("model_fp32.onnx/scores", 1e-3), 1e-5, None, (), True, "values"),
        (("model_fp32.onnx/heatmaps", 1e-3), 1e-5, 1e-2, (), False, None),
        (("model_fp32.onnx/heatmaps", 1e-3), 1e-2, 1e-5, (), True, "values"),
        (("model_int8.tflite/scores", 1e-7), 1e-4, None, ("*int8*",), True, "values"),
        (("model_fp32.onnx/scores", np.nan), 1.0, None, (), True, "values"),
        ("drop", 1.0, None, (), True, "missing in B"),
        ("reshape", 1.0, None, (), True, "shape"),
    ],
)
def test_compare_table(change, atol, heatmap_atol, exact, fails, reason):
    a, b = make_dump(), make_dump()
    if change == "drop":
        del b["model_fp32.onnx/heatmaps"]
    elif change == "reshape":
        b["model_fp32.onnx/heatmaps"] = b["model_fp32.onnx/heatmaps"][:2]
    elif change is not None:
        key, delta = change
        b[key][1, 0] = b[key][1, 0] + delta if not np.isnan(delta) else np.nan
    result = co.compare_arrays(a, b, atol=atol, heatmap_atol=heatmap_atol, exact=exact)
    assert bool(result) == fails
    if fails:
        assert len(result) == 1 and result[0].reason.startswith(reason)


def test_scene_arrays_take_their_own_tolerance_and_exact_globs_win():
    a = {"m_int8.tflite/model/heatmaps": np.zeros(4), "m_int8.tflite/scene/heatmaps": np.zeros(4),
         "m_fp32.onnx/scene/scores": np.zeros(4)}
    b = {k: v + 0.03 for k, v in a.items()}
    # the scenes' inputs differ by OpenCV's rounding: 0.03 passes there, not on identical model inputs
    result = co.compare_arrays(a, b, atol=1e-4, scene_atol=0.05)
    assert [m.key for m in result] == ["m_int8.tflite/model/heatmaps"]
    assert co.compare_arrays(a, b, atol=1e-4, scene_atol=0.01) and len(co.compare_arrays(a, b, atol=1e-4, scene_atol=0.01)) == 3
    exact = co.compare_arrays(a, b, atol=1.0, scene_atol=1.0, exact=["*int8.tflite/scene/*"])
    assert [m.key for m in exact] == ["m_int8.tflite/scene/heatmaps"]
    assert co.tolerance_for("x/scene/scores", 1e-4, 1e-3, (), 0.1) == 0.1
    assert co.tolerance_for("x/model/heatmaps", 1e-4, 1e-3, (), 0.1) == 1e-3


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        co.compare_arrays(make_dump(), make_dump(), atol=-1.0)
    with pytest.raises(ValueError, match="scene_atol=-0.1"):
        co.compare_arrays(make_dump(), make_dump(), scene_atol=-0.1)


def test_unreadable_dump_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert co.main(["compare", str(tmp_path / "junk.npz"), str(tmp_path / "junk.npz")]) == 2
    assert "cannot read dump" in capsys.readouterr().err


def test_dump_round_trips_through_compare(tmp_path, monkeypatch):
    """dump with a stand-in Detector and SceneClip: the file it writes is what compare reads."""
    import edge.detector

    class FakeClip:
        def __init__(self, seed, n_frames, width, height):
            self.rng, self.n, self.shape = np.random.default_rng(seed), n_frames, (height, width, 3)

        def frames(self):
            for _ in range(self.n):
                yield self.rng.integers(0, 256, self.shape, dtype=np.uint8), np.zeros((0, 4))

    class FakeDetector:
        backend = types.SimpleNamespace()
        input_size = (12, 20)

        def __init__(self, path):
            self.path = path

        def detect(self, frame):
            mean = frame.mean(axis=2, dtype=np.float32) / 255.0
            return types.SimpleNamespace(scores=np.array([mean.mean(), 1 - mean.mean()], np.float32), heatmap=mean)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(edge.detector.Detector, "from_manifest", classmethod(lambda cls, p, **kw: FakeDetector(p)))
    monkeypatch.setitem(sys.modules, "edge.synthetic", types.SimpleNamespace(SceneClip=FakeClip))
    models = tmp_path / "models"
    models.mkdir()
    (models / "m_int8.tflite.manifest.json").write_text("{}")
    (models / "m_fp32.onnx.manifest.json").write_text("{}")
    assert co.main(["dump", str(models), str(tmp_path / "one.npz"), "--frames", "2", "--width", "16", "--height", "8"]) == 0
    assert co.main(["dump", str(models), str(tmp_path / "two.npz"), "--frames", "2", "--width", "16", "--height", "8"]) == 0
    arrays, meta = co.load_dump(tmp_path / "one.npz")
    assert sorted(arrays) == [f"m_{a}/{part}/{out}" for a in ("fp32.onnx", "int8.tflite")
                              for part in ("model", "scene") for out in ("heatmaps", "scores")]
    assert arrays["m_int8.tflite/scene/heatmaps"].shape == (2, 8, 16)
    # the model part runs frames already at the input size: no resize, identical bytes on every machine
    assert arrays["m_int8.tflite/model/heatmaps"].shape == (2, 12, 20)
    assert meta["frames"] == 2 and meta["machine"]
    assert co.main(["compare", str(tmp_path / "one.npz"), str(tmp_path / "two.npz"), "--atol", "0"]) == 0


def test_dump_without_manifests_is_a_usage_error(tmp_path):
    assert co.main(["dump", str(tmp_path), str(tmp_path / "x.npz")]) == 2


def test_arm64_script_parses():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run([bash, "-n", str(CI / "arm64-check.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
