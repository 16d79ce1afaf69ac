"""The arm64 check's comparison: equal dumps pass, any difference beyond tolerance fails by name."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
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


def test_input_path_takes_its_own_tolerance_and_exact_globs_win():
    a = {"m_int8.tflite/scene/heatmaps": np.zeros(4), "m_int8.tflite/input/prepared": np.zeros(4),
         "scene/frames": np.zeros(4)}
    b = {k: v + 1.0 for k, v in a.items()}
    # one grey level in the input path passes under --input-atol 1; the model's outputs are held to atol
    result = co.compare_arrays(a, b, atol=1e-4, input_atol=1.0)
    assert [m.key for m in result] == ["m_int8.tflite/scene/heatmaps"]
    assert len(co.compare_arrays(a, b, atol=1e-4, input_atol=0.5)) == 3
    exact = co.compare_arrays(a, b, atol=2.0, input_atol=2.0, exact=["*/input/*"])
    assert [m.key for m in exact] == ["m_int8.tflite/input/prepared"]
    assert co.tolerance_for("scene/frames", 1e-4, 1e-3, (), 1.0) == 1.0
    assert co.tolerance_for("x/scene/heatmaps", 1e-4, 1e-3, (), 1.0) == 1e-3
    assert co.tolerance_for("x/scene/scores", 1e-4, 1e-3, (), 1.0) == 1e-4


def test_input_report_counts_differences_within_tolerance():
    a = {"scene/frames": np.zeros((2, 3, 3)), "m/input/prepared": np.zeros(5), "m/scene/scores": np.zeros(2)}
    b = {k: v.copy() for k, v in a.items()}
    b["scene/frames"][1, 2, 0] = 1
    assert co.input_report(a, b) == ["input path m/input/prepared: 0 of 5 values differ, max |a-b| = 0",
                                     "input path scene/frames: 1 of 18 values differ, max |a-b| = 1"]


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        co.compare_arrays(make_dump(), make_dump(), atol=-1.0)
    with pytest.raises(ValueError, match="input_atol=-0.1"):
        co.compare_arrays(make_dump(), make_dump(), input_atol=-0.1)


def test_unreadable_dump_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert co.main(["compare", str(tmp_path / "junk.npz"), str(tmp_path / "junk.npz")]) == 2
    assert "cannot read dump" in capsys.readouterr().err


class FakeClip:
    """Scenes from a seed; ``shift`` moves every pixel, as another machine's drawing would."""

    shift = 0

    def __init__(self, seed, n_frames, width, height):
        self.rng, self.n, self.shape = np.random.default_rng(seed), n_frames, (height, width, 3)

    def frames(self):
        for _ in range(self.n):
            frame = self.rng.integers(0, 250, self.shape, dtype=np.uint8) + np.uint8(self.shift)
            yield frame, np.zeros((0, 4))


@dataclass(frozen=True)
class FakePrepared:
    """The fields of edge.detector.PreparedFrame that dump reads and replaces."""

    frame: np.ndarray
    input: np.ndarray


class FakeDetector:
    """prepare / infer / finish as edge.detector.Detector has them, on a stand-in model."""

    backend = types.SimpleNamespace()
    input_size = (12, 20)

    def __init__(self, path):
        self.path = path

    def prepare(self, frame):
        small = frame[:: max(1, frame.shape[0] // 12), :: max(1, frame.shape[1] // 20)][:12, :20]
        return FakePrepared(frame, small[None].astype(np.float32))

    def infer(self, prepared):
        x = prepared[0].input
        return types.SimpleNamespace(features=x.mean(axis=3, keepdims=True) / 255.0, frame=prepared[0].frame)

    def finish(self, inference):
        f = inference.features[0, ..., 0]
        heat = np.repeat(np.repeat(f, 2, 0), 2, 1)
        return [types.SimpleNamespace(scores=np.array([f.mean(), 1 - f.mean()], np.float32), heatmap=heat)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture
def fake_runtime(monkeypatch, tmp_path):
    import edge.detector

    monkeypatch.setattr(edge.detector.Detector, "from_manifest", classmethod(lambda cls, p, **kw: FakeDetector(p)))
    monkeypatch.setitem(sys.modules, "edge.synthetic", types.SimpleNamespace(SceneClip=FakeClip))
    models = tmp_path / "models"
    models.mkdir()
    (models / "m_int8.tflite.manifest.json").write_text("{}")
    (models / "m_fp32.onnx.manifest.json").write_text("{}")
    return models


def test_dump_round_trips_through_compare(tmp_path, fake_runtime):
    """dump with a stand-in Detector and SceneClip: the file it writes is what compare reads."""
    args = ["--frames", "2", "--width", "16", "--height", "8"]
    assert co.main(["dump", str(fake_runtime), str(tmp_path / "one.npz"), *args]) == 0
    assert co.main(["dump", str(fake_runtime), str(tmp_path / "two.npz"), *args]) == 0
    arrays, meta = co.load_dump(tmp_path / "one.npz")
    assert sorted(arrays) == sorted(["scene/frames"] +
        [f"m_{a}/input/prepared" for a in ("fp32.onnx", "int8.tflite")]
        + [f"m_{a}/{part}/{out}" for a in ("fp32.onnx", "int8.tflite")
           for part in ("model", "scene") for out in ("features", "heatmaps", "scores")])
    assert arrays["scene/frames"].shape == (2, 8, 16, 3)
    # the model part runs frames already at the input size: no resize, identical bytes on every machine
    assert arrays["m_int8.tflite/model/features"].shape == (2, 12, 20, 1)
    assert meta["frames"] == 2 and meta["machine"] and meta["inputs"] is None
    assert co.main(["compare", str(tmp_path / "one.npz"), str(tmp_path / "two.npz"), "--atol", "0"]) == 0


def test_second_machine_runs_on_the_first_ones_inputs(tmp_path, fake_runtime, monkeypatch, capsys):
    """Another machine draws its scenes one grey level off: with --inputs its model outputs still match exactly,
    and only the input path shows the difference."""
    args = ["--frames", "2", "--width", "16", "--height", "8"]
    host = tmp_path / "host.npz"
    assert co.main(["dump", str(fake_runtime), str(host), *args]) == 0
    monkeypatch.setattr(FakeClip, "shift", 1)
    assert co.main(["dump", str(fake_runtime), str(tmp_path / "own.npz"), *args]) == 0
    assert co.main(["dump", str(fake_runtime), str(tmp_path / "shared.npz"), *args, "--inputs", str(host)]) == 0
    capsys.readouterr()
    # without the shared inputs, the scenes' outputs differ
    assert co.main(["compare", str(host), str(tmp_path / "own.npz"), "--atol", "0", "--input-atol", "1"]) == 1
    assert "MISMATCH m_int8.tflite/scene/scores" in capsys.readouterr().out
    assert co.main(["compare", str(host), str(tmp_path / "shared.npz"), "--atol", "0", "--input-atol", "1"]) == 0
    out = capsys.readouterr().out
    assert "input path scene/frames: 768 of 768 values differ, max |a-b| = 1" in out
    assert "input path m_int8.tflite/input/prepared: 0 of 768 values differ" in out
    assert co.main(["compare", str(host), str(tmp_path / "shared.npz"), "--atol", "0"]) == 1


def test_inputs_from_other_scenes_are_refused(tmp_path, fake_runtime, capsys):
    host = tmp_path / "host.npz"
    assert co.main(["dump", str(fake_runtime), str(host), "--frames", "2", "--width", "16", "--height", "8"]) == 0
    assert co.main(["dump", str(fake_runtime), str(tmp_path / "x.npz"), "--frames", "3", "--width", "16",
                    "--height", "8", "--inputs", str(host)]) == 2
    assert "expected a dump of the scenes" in capsys.readouterr().err


def test_several_folders_key_artifacts_by_folder(tmp_path, fake_runtime):
    other = tmp_path / "mixed"
    other.mkdir()
    (other / "m_int8.tflite.manifest.json").write_text("{}")
    arrays = co.dump([fake_runtime, other], tmp_path / "d.npz", frames=1, width=16, height=8)
    assert "mixed/m_int8.tflite/scene/features" in arrays and "models/m_fp32.onnx/model/scores" in arrays
    twin = tmp_path / "twin" / "models"
    twin.mkdir(parents=True)
    (twin / "m_int8.tflite.manifest.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="different names"):
        co.dump([fake_runtime, twin], tmp_path / "e.npz", frames=1)


def test_dump_without_manifests_is_a_usage_error(tmp_path):
    assert co.main(["dump", str(tmp_path), str(tmp_path / "x.npz")]) == 2


def test_arm64_script_parses():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run([bash, "-n", str(CI / "arm64-check.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
