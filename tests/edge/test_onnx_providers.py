"""onnxruntime's GPU providers without a GPU: what edgecam asks for, checked through a faked onnxruntime.

The fake module offers whichever providers a test names, records every
argument that reaches ``InferenceSession``, starts only the providers a test
lets it start, and writes a TensorRT engine file on the first run the way
onnxruntime does for a model with free height and width. Its outputs are
computed from its input, so the values that come back are checked too.
A last group runs the real (CPU-only) onnxruntime of this machine on a tiny
real ONNX model.
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edge.backends.base import BackendOptions, GpuOptions
from edge.backends.onnxrt import OnnxRuntimeBackend, fallback_reason, provider_plan
from edge.errors import ConfigError
from edge.manifest import CamSpec, Manifest, TensorSpec, save_manifest, sha256_file

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
GPU_PROFILE = (TRT, CUDA, CPU)
K = 3  # feature channels of the fake and the tiny model
W = np.array([[0.5], [-0.25], [1.0]], np.float32)  # CAM weights (K, 1)
B = np.array([0.1], np.float32)


def expected(batch: np.ndarray) -> dict[str, np.ndarray]:
    """What the fake session (and the tiny real model) compute: features = relu(x / 255), scores = sigmoid(max-pool @ W + B)."""
    features = np.maximum(batch.astype(np.float32) / 255.0, 0.0)
    pooled = features.max(axis=(1, 2))
    scores = 1.0 / (1.0 + np.exp(-(pooled @ W + B)))
    return {"scores": scores.astype(np.float32), "features": features}


# --------------------------------------------------------------------------- the fake onnxruntime


class FakeOrtValue:
    made: list[tuple[str, int, tuple]] = []

    def __init__(self, data: np.ndarray, device: str, device_id: int) -> None:
        self.data, self.device, self.device_id = data.copy(), device, device_id  # a copy: "device memory"
        self.updates = 0

    @classmethod
    def ortvalue_from_numpy(cls, data, device_type="cpu", device_id=0):
        cls.made.append((device_type, device_id, data.shape))
        return cls(data, device_type, device_id)

    def update_inplace(self, data) -> None:
        assert data.shape == self.data.shape
        self.data[...] = data
        self.updates += 1


class FakeBinding:
    def __init__(self) -> None:
        self.inputs: dict[str, FakeOrtValue] = {}
        self.outputs: list[tuple[str, str]] = []
        self.result: dict[str, np.ndarray] = {}

    def bind_ortvalue_input(self, name, value) -> None:
        self.inputs[name] = value

    def bind_output(self, name, device_type="cpu", device_id=0) -> None:
        self.outputs.append((name, device_type))

    def copy_outputs_to_cpu(self):
        return [self.result[name].copy() for name, _ in self.outputs]


class FakeSession:
    def __init__(self, ort: "FakeOrt", path, sess_options, providers, provider_options) -> None:
        self.ort, self.path, self.sess_options = ort, path, sess_options
        self.asked, self.provider_options = list(providers), [dict(o) for o in provider_options]
        self.active = [p for p in self.asked if p in ort.starts] or [CPU]
        self.runs = self.binding_runs = 0
        self.binding: FakeBinding | None = None

    def get_providers(self):
        return list(self.active)

    def get_inputs(self):
        return [types.SimpleNamespace(name="image")]

    def get_outputs(self):
        return [types.SimpleNamespace(name="scores"), types.SimpleNamespace(name="features")]

    def _first_run(self) -> None:
        # onnxruntime builds a TensorRT engine for free input dims on the first run, and writes it to the cache
        if TRT in self.active:
            opts = self.provider_options[self.asked.index(TRT)]
            if opts.get("trt_engine_cache_enable") and not any(Path(opts["trt_engine_cache_path"]).glob("*.engine")):
                Path(opts["trt_engine_cache_path"], "TensorrtExecutionProvider_TRTKernel_graph_0.engine").write_bytes(b"e")

    def run(self, fetch, feed):
        self._first_run()
        self.runs += 1
        out = expected(feed["image"])
        return [out[name] for name in fetch]

    def io_binding(self):
        self.binding = FakeBinding()
        return self.binding

    def run_with_iobinding(self, binding) -> None:
        self._first_run()
        self.binding_runs += 1
        binding.result = expected(binding.inputs["image"].data)


class FakeOrt(types.ModuleType):
    """``import onnxruntime`` inside the backend gets this."""

    def __init__(self, available, starts=None) -> None:
        super().__init__("onnxruntime")
        self.__version__ = "9.9.9-fake"
        self.available = list(available)
        self.starts = set(self.available if starts is None else starts) | {CPU}
        self.sessions: list[FakeSession] = []
        self.OrtValue = FakeOrtValue
        FakeOrtValue.made = []

    def get_available_providers(self):
        return list(self.available)

    class SessionOptions:
        def __init__(self) -> None:
            self.config: dict[str, str] = {}

        def add_session_config_entry(self, key, value) -> None:
            self.config[key] = value

    def InferenceSession(self, path, sess_options=None, providers=None, provider_options=None):  # noqa: N802
        session = FakeSession(self, path, sess_options, providers, provider_options)
        self.sessions.append(session)
        return session


@pytest.fixture
def fake_ort(monkeypatch):
    def install(available, starts=None) -> FakeOrt:
        ort = FakeOrt(available, starts)
        monkeypatch.setitem(sys.modules, "onnxruntime", ort)
        return ort

    return install


def manifest(tmp_path: Path, fmt: str = "onnx-fp32", content: bytes = b"not read by the fake") -> Manifest:
    art = tmp_path / f"model-{fmt}.onnx"
    art.write_bytes(content)
    m = Manifest(
        format=fmt, artifact=art.name, sha256=sha256_file(art), size_bytes=art.stat().st_size, task="binary",
        labels=("ship",), negative_label="no_ship", thresholds=(0.5,), threshold_rule="youden",
        input=TensorSpec("image", "image", (1, -1, -1, 3), "float32", "image"),
        outputs=(TensorSpec("scores", "scores", (1, 1), "float32", "scores"),
                 TensorSpec("features", "features", (1, -1, -1, K), "float32", "features")),
        input_size=(32, 32), preprocessing={"color": "RGB", "range": [0, 255], "layout": "NHWC"},
        cam=CamSpec(W, B, "max"), path=tmp_path / f"{art.name}.manifest.json",
    )
    save_manifest(m, m.path)
    return m


def frame(seed: int = 0, size=(32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, *size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- order and options


def trt_opts(path, *, fp16=True, int8=False, mib=1024, device=0):
    o = {"device_id": device, "trt_fp16_enable": fp16, "trt_int8_enable": int8,
         "trt_max_workspace_size": mib * 2**20, "trt_engine_cache_enable": path is not None}
    if path is not None:
        o["trt_engine_cache_path"] = str(path)
    return o


@pytest.mark.parametrize(
    "available, fmt, gpu, names, opts",
    [
        # everything there: TensorRT, then CUDA, then CPU, each with its options
        ([TRT, CUDA, CPU], "onnx-fp32", GpuOptions(), [TRT, CUDA, CPU],
         lambda run: [trt_opts(run / "trt-engines"), {"device_id": 0}, {}]),
        # the QDQ artifact turns TensorRT's int8 on; nothing else changes
        ([TRT, CUDA, CPU], "onnx-int8", GpuOptions(), [TRT, CUDA, CPU],
         lambda run: [trt_opts(run / "trt-engines", int8=True), {"device_id": 0}, {}]),
        # the profile's values, changed
        ([TRT, CUDA, CPU], "onnx-fp32",
         GpuOptions(device_id=1, tensorrt_fp16=False, tensorrt_workspace_mib=256, tensorrt_engine_cache="cache/trt"),
         [TRT, CUDA, CPU], lambda run: [trt_opts(run / "cache" / "trt", fp16=False, mib=256, device=1), {"device_id": 1}, {}]),
        # caching off
        ([TRT, CPU], "onnx-fp32", GpuOptions(tensorrt_engine_cache=None), [TRT, CPU], lambda run: [trt_opts(None), {}]),
        # a build without TensorRT (onnxruntime-gpu from PyPI on x86): CUDA, then CPU
        ([CUDA, CPU], "onnx-fp32", GpuOptions(), [CUDA, CPU], lambda run: [{"device_id": 0}, {}]),
        # this machine: the CPU-only wheel (it also lists Azure, which edgecam never asks for)
        (["AzureExecutionProvider", CPU], "onnx-fp32", GpuOptions(), [CPU], lambda run: [{}]),
    ],
)
def test_providers_and_options_reach_the_session_value_by_value(fake_ort, tmp_path, available, fmt, gpu, names, opts):
    ort = fake_ort(available)
    run = tmp_path / "run"
    b = OnnxRuntimeBackend(manifest(tmp_path, fmt), BackendOptions(providers=GPU_PROFILE, gpu=gpu, run_dir=run, threads=2))
    (session,) = ort.sessions
    assert session.asked == names
    assert session.provider_options == opts(run)
    assert session.path == str(tmp_path / f"model-{fmt}.onnx")
    assert session.sess_options.intra_op_num_threads == 2
    assert session.sess_options.config == {"session.intra_op.allow_spinning": "0"}
    assert b.providers == names
    # the cache folder exists exactly when TensorRT was asked for with caching on
    assert (run / "trt-engines").is_dir() == (names[0] == TRT and gpu.tensorrt_engine_cache == "trt-engines")


def test_the_option_types_are_what_onnxruntimes_python_api_documents(fake_ort, tmp_path):
    """Booleans as True/False, the workspace as an int of bytes, the path as a str (onnxruntime str()s them)."""
    fake_ort([TRT, CUDA, CPU])
    b = OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(providers=GPU_PROFILE, run_dir=tmp_path / "run"))
    trt = b.plan.options[0]
    assert [type(trt[k]) for k in ("device_id", "trt_fp16_enable", "trt_int8_enable", "trt_max_workspace_size",
                                   "trt_engine_cache_enable", "trt_engine_cache_path")] == [int, bool, bool, int, bool, str]
    assert trt["trt_max_workspace_size"] == 1073741824


@pytest.mark.parametrize(
    "providers, raises",
    [
        ((CPU,), False),
        ((), False),  # the CPU provider is added anyway
        (GPU_PROFILE, False),
        ((CUDA, CPU), False),
        ((TRT,), False),
        ((CUDA, TRT, CPU), True),  # CUDA before TensorRT
        ((CPU, CUDA), True),
        ((CPU, CPU), True),
        (("OpenVINOExecutionProvider", CPU), True),
        ("CPUExecutionProvider", True),  # a string, not a list of names
    ],
)
def test_backend_options_take_providers_only_in_the_stated_order(providers, raises):
    if raises:
        with pytest.raises(ConfigError, match="expected a subsequence of TensorrtExecutionProvider, "
                                              "CUDAExecutionProvider, CPUExecutionProvider.*received"):
            BackendOptions(providers=providers)
    else:
        assert BackendOptions(providers=providers).providers == tuple(providers)


@pytest.mark.parametrize(
    "data, raises, match",
    [
        ({}, False, None),
        ({"device_id": 1, "tensorrt_fp16": False, "tensorrt_workspace_mib": 64, "tensorrt_engine_cache": None}, False, None),
        ({"tensorrt_workspace": 64}, True, "received unknown \\['tensorrt_workspace'\\]"),
        ({"device_id": -1}, True, "device_id: expected an integer from 0 to 63; received -1"),
        ({"device_id": True}, True, "device_id: expected an integer"),
        ({"tensorrt_fp16": "yes"}, True, "tensorrt_fp16: expected true or false; received 'yes'"),
        ({"tensorrt_workspace_mib": 8}, True, "tensorrt_workspace_mib: expected an integer from 16"),
        ({"tensorrt_engine_cache": ""}, True, "tensorrt_engine_cache: expected a folder path or null; received ''"),
        ([], True, "expected a JSON object; received \\[\\]"),
    ],
)
def test_gpu_options_validation_table(data, raises, match):
    if raises:
        with pytest.raises(ConfigError, match=match):
            GpuOptions.from_dict(data)
    else:
        assert GpuOptions.from_dict(data).to_dict() == GpuOptions().to_dict() | data


# --------------------------------------------------------------------------- fallback, said once and plainly


def test_a_gpu_profile_on_a_machine_without_a_gpu_says_so_once_and_runs_on_the_cpu(fake_ort, tmp_path, caplog):
    from devices import resolve_run_settings

    s = resolve_run_settings("jetson-orin-nano")
    fake_ort(["AzureExecutionProvider", CPU])
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="edgecam.backends"):
        b = OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(providers=s.execution_providers, gpu=s.gpu, run_dir=run))
    assert b.providers == [CPU] and b.io_binding is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"onnxruntime: model-onnx-fp32.onnx fell back to the CPU: this onnxruntime 9.9.9-fake offers only "
        f"AzureExecutionProvider, CPUExecutionProvider, not {TRT}, {CUDA} (the PyPI onnxruntime wheel is CPU-only; "
        "a Jetson needs NVIDIA's onnxruntime-gpu, see docs/devices/jetson.md)"
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"onnxruntime: model-onnx-fp32.onnx runs on {CPU} (asked for {TRT}, {CUDA}, {CPU})"]
    assert not run.exists(), "no TensorRT, so no engine cache folder"
    x = frame(1)
    out = b.infer(x)
    np.testing.assert_allclose(out["scores"], expected(x)["scores"], rtol=1e-6)
    np.testing.assert_allclose(out["features"], expected(x)["features"], rtol=1e-6)


def test_providers_in_the_build_that_the_session_does_not_start_are_reported(fake_ort, tmp_path, caplog):
    # onnxruntime-gpu installed, but CUDA/TensorRT libraries missing: onnxruntime itself falls back to the CPU
    ort = fake_ort([TRT, CUDA, CPU], starts=[])
    with caplog.at_level(logging.WARNING, logger="edgecam.backends"):
        b = OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(providers=GPU_PROFILE, run_dir=tmp_path / "run"))
    assert ort.sessions[0].asked == [TRT, CUDA, CPU] and b.providers == [CPU]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith("onnxruntime: model-onnx-fp32.onnx fell back to the CPU: "
                          f"{TRT}, {CUDA} are in this build but the session did not start them")
    assert b.io_binding is False


@pytest.mark.parametrize(
    "available, active, reason",
    [
        ([TRT, CUDA, CPU], [TRT, CUDA, CPU], None),
        ([CPU], [CPU], f"fell back to the CPU: this onnxruntime 1.0 offers only {CPU}, not {TRT}, {CUDA} "),
        ([TRT, CUDA, CPU], [CUDA, CPU], f"runs on {CUDA}, {CPU} without {TRT}: {TRT} is in this build but the "
                                        "session did not start them"),
        ([CUDA, CPU], [CUDA, CPU], f"runs on {CUDA}, {CPU} without {TRT}: this onnxruntime 1.0 offers only {CUDA}, {CPU}, "
                                   f"not {TRT} "),
    ],
)
def test_fallback_reason_table(available, active, reason):
    plan = provider_plan(BackendOptions(providers=GPU_PROFILE), "onnx-fp32", available)
    got = fallback_reason(plan, active, available, "1.0")
    if reason is None:
        assert got is None
    else:
        assert got.startswith(reason), got
    assert fallback_reason(provider_plan(BackendOptions(), "onnx-fp32", [CPU]), [CPU], [CPU], "1.0") is None


# --------------------------------------------------------------------------- the engine cache


def test_the_engine_cache_is_created_in_the_run_folder_and_reused_by_the_next_run(fake_ort, tmp_path):
    ort = fake_ort([TRT, CUDA, CPU])
    run = tmp_path / "runs" / "cam1"
    opts = BackendOptions(providers=GPU_PROFILE, run_dir=run)
    cache = run / "trt-engines"

    first = OnnxRuntimeBackend(manifest(tmp_path), opts)
    assert cache.is_dir() and first.engine_cache == cache
    assert first.engine_cache_state().state == "empty"
    first.infer(frame())  # the first frame builds the engine
    state = first.engine_cache_state()
    assert (state.state, state.written, state.engines_before) == (
        "built", ("TensorrtExecutionProvider_TRTKernel_graph_0.engine",), ())
    first.close()

    second = OnnxRuntimeBackend(manifest(tmp_path), opts)
    assert ort.sessions[1].provider_options[0]["trt_engine_cache_path"] == str(cache)
    second.infer(frame())
    state = second.engine_cache_state()
    assert (state.state, state.written, state.engines_before) == (
        "reused", (), ("TensorrtExecutionProvider_TRTKernel_graph_0.engine",))
    assert state.to_dict() == {"folder": str(cache), "state": "reused", "engines_before": 1, "engines_now": 1,
                               "written": []}


@pytest.mark.parametrize("available", [[TRT, CPU], [CPU]])  # refused on a machine without TensorRT too
@pytest.mark.parametrize("setting", ["../elsewhere", "a/../../elsewhere", "~/../../x/.."])
def test_a_relative_engine_cache_may_not_leave_the_run_folder(fake_ort, tmp_path, setting, available):
    fake_ort(available)
    run = tmp_path / "run"
    gpu = GpuOptions(tensorrt_engine_cache=setting)
    if setting.startswith("~"):
        # '~' expands to an absolute home: a configured folder, used as it is
        assert gpu.engine_cache_dir(run) == Path(setting).expanduser()
        return
    with pytest.raises(ConfigError) as info:
        OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(providers=(TRT, CPU), gpu=gpu, run_dir=run))
    msg = str(info.value)
    assert f"expected a folder inside the run folder {run.resolve()}" in msg and f"received {setting!r}" in msg
    assert not (tmp_path / "elsewhere").exists() and not run.exists()


def test_an_absolute_engine_cache_is_used_as_configured_and_no_run_folder_means_no_relative_cache(fake_ort, tmp_path):
    ort = fake_ort([TRT, CPU])
    shared = tmp_path / "var" / "lib" / "edgecam" / "engines"
    b = OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(
        providers=(TRT, CPU), gpu=GpuOptions(tensorrt_engine_cache=str(shared)), run_dir=tmp_path / "run"))
    assert shared.is_dir() and b.engine_cache == shared
    assert ort.sessions[0].provider_options[0]["trt_engine_cache_path"] == str(shared)
    OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(providers=(TRT, CPU)))  # library use without a run folder
    assert ort.sessions[1].provider_options[0] == trt_opts(None)


# --------------------------------------------------------------------------- IO binding


def test_io_binding_copies_each_frame_to_the_device_once_when_a_gpu_provider_runs(fake_ort, tmp_path):
    ort = fake_ort([TRT, CUDA, CPU], starts=[CUDA])  # TensorRT in the build but not started: CUDA runs
    b = OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(providers=GPU_PROFILE, gpu=GpuOptions(device_id=0),
                                                              run_dir=tmp_path / "run"))
    session = ort.sessions[0]
    assert b.providers == [CUDA, CPU] and b.io_binding is True
    assert session.binding.outputs == [("scores", "cpu"), ("features", "cpu")]
    x1, x2, x3 = frame(1), frame(2), frame(3, size=(64, 32))
    before = x1.copy()
    for x in (x1, x2, x3):
        out = b.infer(x)
        np.testing.assert_allclose(out["scores"], expected(x)["scores"], rtol=1e-6)
        np.testing.assert_allclose(out["features"], expected(x)["features"], rtol=1e-6)
        assert isinstance(out["features"], np.ndarray)
    np.testing.assert_array_equal(x1, before)  # the caller's frame is not touched
    # a device buffer per input shape; frames of the same shape reuse it (one host-to-device copy each)
    assert FakeOrtValue.made == [("cuda", 0, (1, 32, 32, 3)), ("cuda", 0, (1, 64, 32, 3))]
    assert session.runs == 0 and session.binding_runs == 3
    b.invoke_raw()  # the bench's raw loop re-runs the bound input
    assert session.binding_runs == 4


def test_no_io_binding_on_the_cpu(fake_ort, tmp_path):
    ort = fake_ort([CUDA, CPU], starts=[])
    b = OnnxRuntimeBackend(manifest(tmp_path), BackendOptions(providers=(CUDA, CPU)))
    x = frame(4)
    np.testing.assert_allclose(b.infer(x)["scores"], expected(x)["scores"], rtol=1e-6)
    assert b.io_binding is False and ort.sessions[0].binding is None and ort.sessions[0].runs == 1
    assert FakeOrtValue.made == []


# --------------------------------------------------------------------------- the bench reports the engine build apart


def test_bench_reports_the_engine_build_apart_from_steady_state(tmp_path):
    from edge import bench as Bm
    from edge.backends.onnxrt import EngineCacheState

    class Target:
        name, format, backend_key, threads = "model.onnx.manifest.json", "onnx-fp32", "onnxruntime", 4
        artifact_path = tmp_path / "model.onnx"
        providers = [TRT, CUDA, CPU]
        fallback = None

        def __init__(self, clock) -> None:
            self.clock, self.n = clock, 0

        def detect(self, frame):
            self.clock.t += 90.0 if self.n == 0 else 0.004  # the first frame builds the engine: 90 s
            self.n += 1

        def prepare(self, frame):
            return None

        def detect_prepared(self, prepared):
            self.clock.t += 0.004

        def invoke_raw(self):
            self.clock.t += 0.003

        def engine_cache_state(self):
            return EngineCacheState(tmp_path / "trt", (), ("a.engine",))

        def close(self):
            pass

    class Clock:
        t = 0.0

        def __call__(self):
            return self.t

    clock = Clock()
    report = Bm.bench([Path("m.json")], frames=4, rounds=1, source=[np.zeros((8, 8, 3), np.uint8)],
                      opener=lambda p, t: Target(clock), clock=clock, warmup=0)
    (a,) = report.artifacts
    assert a.warmup_ms == pytest.approx(90_000.0)
    assert a.raw.p50_ms == pytest.approx(3.0) and a.pipeline.p50_ms == pytest.approx(4.0)
    assert a.providers == [TRT, CUDA, CPU]
    assert a.engine_cache == {"folder": str(tmp_path / "trt"), "state": "built", "engines_before": 0,
                              "engines_now": 1, "written": ["a.engine"]}
    md = report.to_markdown()
    assert f"onnxruntime runs on {TRT}, {CUDA}, {CPU}" in md
    assert ("TensorRT engine built during load and the first frame (0 ms load + 90000 ms first frame, 1 engine file(s) "
            f"written to {tmp_path / 'trt'}); steady-state raw p50 3.00 ms") in md


def test_bench_device_flag_passes_the_profiles_providers_gpu_settings_and_run_folder(tmp_path, monkeypatch, capsys):
    from edge import bench as Bm

    seen = {}

    def opener(path, threads, **kw):
        seen.update(kw, threads=threads)
        raise ConfigError("stop here: the opener got what it needed")

    monkeypatch.setattr(Bm.DetectorTarget, "open", staticmethod(opener))
    m = manifest(tmp_path)
    rc = Bm.main([str(m.path), "--device", "jetson-orin-nano", "--frames", "2", "--out", str(tmp_path / "b"),
                  "--trt-workspace", "512", "--trt-fp16", "off"])
    assert rc == 1 and "stop here" in capsys.readouterr().out
    assert seen["providers"] == GPU_PROFILE and seen["run_dir"] == tmp_path / "b"
    assert seen["gpu"] == GpuOptions(tensorrt_workspace_mib=512, tensorrt_fp16=False)
    assert seen["threads"] == 4  # the profile's, as --threads was not given


# --------------------------------------------------------------------------- the real onnxruntime of this machine


def tiny_onnx(tmp_path: Path) -> Manifest:
    """A real ONNX model computing ``expected`` (free height and width), with its manifest."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Div", ["image", "c255"], ["scaled"]),
        helper.make_node("Relu", ["scaled"], ["features"]),
        helper.make_node("ReduceMax", ["features"], ["pooled"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logit0"]),
        helper.make_node("Add", ["logit0", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, None, None, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, None, None, K])],
        [numpy_helper.from_array(np.array(255.0, np.float32), "c255"), numpy_helper.from_array(W, "w"),
         numpy_helper.from_array(B, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return manifest(tmp_path, "onnx-fp32", model.SerializeToString())


def test_the_real_cpu_onnxruntime_runs_a_gpu_profile_on_the_cpu_and_says_so(tmp_path, caplog):
    ort = pytest.importorskip("onnxruntime")
    if {TRT, CUDA} & set(ort.get_available_providers()):
        pytest.skip("this machine's onnxruntime has GPU providers")
    from devices import resolve_run_settings

    m = tiny_onnx(tmp_path)
    s = resolve_run_settings("jetson-orin-nano")
    with caplog.at_level(logging.WARNING, logger="edgecam.backends"):
        b = OnnxRuntimeBackend(m, BackendOptions(providers=s.execution_providers, gpu=s.gpu, run_dir=tmp_path / "run"))
    assert b.providers == [CPU] and b.io_binding is False and b.engine_cache_state() is None
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith(f"onnxruntime: {m.artifact} fell back to the CPU: this onnxruntime {ort.__version__} offers only")
    x = frame(5, size=(48, 80))
    out = b.infer(x)
    np.testing.assert_allclose(out["scores"], expected(x)["scores"], rtol=1e-5)
    np.testing.assert_allclose(out["features"], expected(x)["features"], rtol=1e-6)
    assert not (tmp_path / "run").exists()


def test_edgecam_run_with_the_jetson_profile_here_falls_back_and_finishes(tmp_path, capsys, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    from edge.cli import main

    m = tiny_onnx(tmp_path)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="edgecam.backends"):
        rc = main(["run", str(m.path), "--device", "jetson-orin-nano", "--source", "synthetic", "--max-frames", "4",
                   "--out", str(out), "--no-video", "--trt-workspace", "512", "--trt-cache", "engines"])
    assert rc == 0
    assert "onnx-fp32 via onnxruntime" in capsys.readouterr().out
    assert any("fell back to the CPU" in r.getMessage() for r in caplog.records)
    assert not (out / "engines").exists()
