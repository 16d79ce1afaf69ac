"""Device profiles: shipped data validates, bad data is refused by key, flags override as documented."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

import devices
from devices import ArtifactFormat, Backend, CaptureMode, DeviceProfile, load_profile, resolve_run_settings
from edge.errors import ConfigError

SHIPPED = devices.list_profiles()
REQUIRED = {"rpi4", "rpi5", "jetson-orin-nano", "jetson-nano", "x86-cpu"}


def base_dict() -> dict:
    return load_profile("rpi4").to_dict()


def test_required_profiles_are_shipped():
    assert REQUIRED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_validates_and_round_trips(name):
    profile = load_profile(name)
    assert profile.name == name
    assert DeviceProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    assert len(profile.rationale) > 80, "the rationale should say why, with numbers"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_requirements_are_pinned_ranges(name):
    text = load_profile(name).requirements_text()
    reqs = [line.split("#")[0].strip() for line in text.splitlines()]
    # pip options (--extra-index-url of the Jetson GPU wheels) are not requirements
    reqs = [r for r in reqs if r and not r.startswith("--")]
    assert reqs, f"{name}: empty requirements"
    for req in reqs:
        assert re.search(r">=[\d.]+,<[\d.]+", req), f"{name}: {req!r} is not a pinned range"
    runtimes = {"litert": "ai-edge-litert", "onnxruntime": "onnxruntime"}
    assert any(r.startswith(runtimes[load_profile(name).backend.value]) for r in reqs)


def test_published_pi4_numbers_and_dotprod_facts_are_in_the_rationales():
    rpi4, rpi5 = load_profile("rpi4"), load_profile("rpi5")
    assert "46 ms" in rpi4.rationale and "17 ms" in rpi4.rationale
    assert "without the dot-product" in rpi4.rationale
    assert "with the dot-product" in rpi5.rationale


def test_camera_defaults_per_device_kind():
    assert load_profile("rpi4").camera_source == "picamera2"
    assert load_profile("rpi5").camera_source == "picamera2"
    assert load_profile("jetson-orin-nano").camera_source.startswith("nvarguscamerasrc")
    assert load_profile("x86-cpu").camera_source == "0"
    orin = load_profile("jetson-orin-nano")
    assert orin.execution_providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize(
    "key, value, raises",
    [
        ("threads", 2, False),
        ("capture_mode", "all", False),
        ("artifact_format", "tflite-fp16", False),
        ("fallback_formats", [], False),
        ("notes", None, False),  # None here means: key left out
        ("frobnicate", 1, True),
        ("threads", 0, True),
        ("threads", 5, True),  # more than the 4 cores
        ("threads", True, True),
        ("threads", "4", True),
        ("backend", "tensorrt", True),
        ("artifact_format", "onnx-fp32", True),  # litert cannot run it
        ("artifact_format", "tflite-int4", True),
        ("fallback_formats", ["tflite-int8"], True),  # same as preferred
        ("execution_providers", ["CPUExecutionProvider"], True),  # litert takes none
        ("capture_mode", "every", True),
        ("arch", "armv7l", True),
        ("requirements", "../../etc/passwd", True),
        ("input_size", 8, True),
        ("camera_source", "", True),
        ("schema_version", 2, True),
        ("rationale", None, True),  # key left out
        ("onnxruntime_gpu", {"device_id": 0}, True),  # a litert profile names no GPU provider
    ],
)
def test_profile_validation_table(key, value, raises):
    data = base_dict()
    if value is None:
        data.pop(key)
    else:
        data[key] = value
    if raises:
        with pytest.raises(ConfigError) as info:
            DeviceProfile.from_dict(data, "test")
        assert repr(key) in str(info.value), f"error should name {key!r}: {info.value}"
        if value is not None and key != "frobnicate":
            assert "received" in str(info.value) and "expected" in str(info.value)
    else:
        assert DeviceProfile.from_dict(data, "test").name == "rpi4"


def test_onnxruntime_profile_needs_cpu_provider_last():
    data = load_profile("jetson-orin-nano").to_dict()
    data["execution_providers"] = ["CPUExecutionProvider", "CUDAExecutionProvider"]
    with pytest.raises(ConfigError, match="execution_providers"):
        DeviceProfile.from_dict(data)
    data["execution_providers"] = []
    with pytest.raises(ConfigError, match="execution_providers"):
        DeviceProfile.from_dict(data)


@pytest.mark.parametrize(
    "key, value, raises, match",
    [
        ("onnxruntime_gpu", None, False, None),
        ("onnxruntime_gpu", {"tensorrt_workspace_mib": 2048}, False, None),
        ("onnxruntime_gpu", {"tensorrt_engine_cache": "/var/lib/edgecam/engines"}, False, None),
        ("onnxruntime_gpu", {"tensorrt_workspace": 2048}, True, "received unknown \\['tensorrt_workspace'\\]"),
        ("onnxruntime_gpu", {"tensorrt_fp16": 1}, True, "tensorrt_fp16: expected true or false; received 1"),
        ("onnxruntime_gpu", "fp16", True, "expected a JSON object; received 'fp16'"),
        ("execution_providers", ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"], True,
         "expected the order TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider"),
        ("execution_providers", ["CUDAExecutionProvider", "CPUExecutionProvider"], False, None),
    ],
)
def test_gpu_profile_validation_table(key, value, raises, match):
    data = load_profile("jetson-orin-nano").to_dict()
    if value is None:
        data.pop(key)
    else:
        data[key] = value
    if raises:
        with pytest.raises(ConfigError, match=match) as info:
            DeviceProfile.from_dict(data, "test")
        assert repr(key) in str(info.value)
    else:
        profile = DeviceProfile.from_dict(data, "test")
        assert DeviceProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def test_gpu_profile_without_gpu_providers_is_refused():
    data = load_profile("jetson-orin-nano").to_dict() | {"execution_providers": ["CPUExecutionProvider"]}
    with pytest.raises(ConfigError, match="'onnxruntime_gpu' expected only with TensorrtExecutionProvider or "
                                          "CUDAExecutionProvider.*received providers \\['CPUExecutionProvider'\\]"):
        DeviceProfile.from_dict(data, "test")


def test_resolve_lays_gpu_flags_over_the_profile_value_by_value():
    s = resolve_run_settings("jetson-orin-nano")
    assert s.gpu.to_dict() == {"device_id": 0, "tensorrt_fp16": True, "tensorrt_workspace_mib": 1024,
                               "tensorrt_engine_cache": "trt-engines"}
    assert s.origin["gpu"] == "profile:jetson-orin-nano"
    s = resolve_run_settings("jetson-orin-nano", gpu={"tensorrt_fp16": False, "tensorrt_workspace_mib": None,
                                                      "tensorrt_engine_cache": "/srv/engines", "device_id": None})
    assert s.gpu.to_dict() == {"device_id": 0, "tensorrt_fp16": False, "tensorrt_workspace_mib": 1024,
                               "tensorrt_engine_cache": "/srv/engines"}
    assert s.origin["gpu"] == "flag"
    assert resolve_run_settings("rpi4").origin["gpu"] == "default"
    assert resolve_run_settings(None, gpu={"device_id": 2}).gpu.device_id == 2
    with pytest.raises(ConfigError, match="device_id: expected an integer from 0 to 63; received -1"):
        resolve_run_settings("jetson-orin-nano", gpu={"device_id": -1})
    with pytest.raises(ConfigError, match="received unknown \\['fp16'\\]"):
        resolve_run_settings("jetson-orin-nano", gpu={"fp16": True})


def test_load_profile_from_path_and_errors(tmp_path):
    path = tmp_path / "mine.json"
    data = base_dict() | {"name": "mine", "threads": 3}
    path.write_text(json.dumps(data))
    assert load_profile(path).threads == 3
    assert load_profile(str(path)).name == "mine"
    with pytest.raises(ConfigError, match="unknown device profile 'rpi3'.*rpi4"):
        load_profile("rpi3")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_profile(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_profile(tmp_path / "missing.json")


def test_resolve_flags_override_profile_and_none_means_not_given():
    s = resolve_run_settings("rpi5", threads=2, source="synthetic", backend=None, capture_mode=None)
    assert s.threads == 2 and s.origin["threads"] == "flag"
    assert s.source == "synthetic" and s.origin["source"] == "flag"
    assert s.backend is Backend.LITERT and s.origin["backend"] == "profile:rpi5"
    assert s.capture_mode is CaptureMode.LATEST and s.origin["capture_mode"] == "profile:rpi5"
    assert s.artifact_format is ArtifactFormat.TFLITE_INT8
    assert s.input_size == 224


def test_resolve_backend_switch_drops_backend_specific_profile_values():
    profile = load_profile("rpi4")
    s = resolve_run_settings(profile, backend="onnxruntime")
    assert s.backend is Backend.ONNXRUNTIME
    assert s.artifact_format is ArtifactFormat.ONNX_FP32 and s.origin["artifact_format"] == "default"
    assert s.execution_providers == ("CPUExecutionProvider",)
    orin = resolve_run_settings("jetson-orin-nano", backend="litert")
    assert orin.execution_providers == () and orin.artifact_format is ArtifactFormat.TFLITE_FP32
    explicit = resolve_run_settings(profile, backend="onnxruntime", artifact_format="onnx-int8")
    assert explicit.artifact_format is ArtifactFormat.ONNX_INT8
    assert profile == load_profile("rpi4"), "resolving must not change the profile"


@pytest.mark.parametrize(
    "flags, match",
    [
        ({"thread": 2}, "unknown flag 'thread'"),
        ({"threads": 0}, "threads"),
        ({"threads": 8}, "at most the 4 cores"),
        ({"artifact_format": "onnx-fp32"}, "artifact_format"),
        ({"execution_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, "execution_providers"),
        ({"capture_mode": "sometimes"}, "capture_mode"),
    ],
)
def test_resolve_refuses_bad_flags(flags, match):
    with pytest.raises(ConfigError, match=match):
        resolve_run_settings("rpi4", **flags)


def test_resolve_without_profile_uses_flags_only():
    s = resolve_run_settings(None, threads=3, source=0)
    assert s.threads == 3 and s.source == "0"
    assert s.backend is None and s.origin["backend"] == "unset"


def test_table_and_cli(capsys):
    table = devices.format_profiles_table()
    for name in SHIPPED:
        assert name in table
    assert devices.cli_main([]) == 0
    assert "jetson-orin-nano" in capsys.readouterr().out
    assert devices.cli_main(["rpi5"]) == 0
    assert json.loads(capsys.readouterr().out)["cpu"] == "Cortex-A76"
    assert devices.cli_main(["--json"]) == 0
    assert {p["name"] for p in json.loads(capsys.readouterr().out)} == set(SHIPPED)
    assert devices.cli_main(["nope"]) == 2
    assert "unknown device profile" in capsys.readouterr().err


def test_service_unit_template_has_the_essentials():
    unit = resources.files("devices").joinpath("edgecam.service").read_text()
    for directive in (
        "User=edgecam",
        "Restart=on-failure",
        "RestartSec=",
        "StartLimitIntervalSec=",
        "StartLimitBurst=",
        "StateDirectory=edgecam",
        "WorkingDirectory=",
        "EnvironmentFile=",
        "StandardOutput=journal",
    ):
        assert directive in unit, directive
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith("ExecStart=/opt/edgecam/.venv/bin/edgecam run ") and "--device %i" in exec_start
