"""``edgecam devices --check``: each profile against what this machine offers, with faked and real runtimes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import devices
from devices import load_profile
from devices.check import RuntimeProbe, Status, check_profile, format_checks

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
X86_CPU_ONLY = RuntimeProbe("x86_64", "1.32.0", ("AzureExecutionProvider", CPU), "ai_edge_litert 2.3.0")
JETSON = RuntimeProbe("aarch64", "1.23.0", (TRT, CUDA, CPU), None)
JETSON_NO_TRT = RuntimeProbe("aarch64", "1.23.0", (CUDA, CPU), None)
BARE = RuntimeProbe("aarch64", None, (), None)


@pytest.mark.parametrize(
    "profile, probe, status, message",
    [
        ("jetson-orin-nano", X86_CPU_ONLY, Status.GPU_NOT_AVAILABLE,
         f"GPU providers configured, not available here: {TRT}, {CUDA} (onnxruntime 1.32.0 offers "
         f"AzureExecutionProvider, {CPU}); a run here falls back to {CPU}"),
        ("jetson-orin-nano", JETSON, Status.READY,
         f"GPU providers configured and available here: {TRT}, {CUDA} (onnxruntime 1.23.0 offers {TRT}, {CUDA}, {CPU})"),
        ("jetson-orin-nano", JETSON_NO_TRT, Status.GPU_PARTIAL,
         f"GPU providers configured; available here: {CUDA}; not available here: {TRT} "
         f"(onnxruntime 1.23.0 offers {CUDA}, {CPU})"),
        ("jetson-orin-nano", BARE, Status.RUNTIME_MISSING,
         "needs onnxruntime (onnxruntime-gpu, see requirements/jetson-orin-nano.txt); not installed here"),
        ("jetson-nano", X86_CPU_ONLY, Status.READY, "runs here on ai_edge_litert 2.3.0"),
        ("jetson-nano", JETSON, Status.RUNTIME_MISSING,
         "needs a TFLite interpreter (ai-edge-litert, see requirements/jetson-nano.txt); none is installed here"),
        ("x86-cpu", X86_CPU_ONLY, Status.READY, "runs here on ai_edge_litert 2.3.0"),
    ],
)
def test_check_profile_table(profile, probe, status, message):
    c = check_profile(load_profile(profile), probe)
    assert (c.status, c.message) == (status, message)
    arch_note = f"written for {load_profile(profile).arch.value}; this machine is {probe.arch}"
    assert (arch_note in c.notes) == (load_profile(profile).arch.value != probe.arch)


def test_a_cpu_only_onnxruntime_profile_is_ready_anywhere():
    data = load_profile("jetson-orin-nano").to_dict() | {"execution_providers": [CPU]}
    data.pop("onnxruntime_gpu")
    c = check_profile(devices.DeviceProfile.from_dict(data), X86_CPU_ONLY)
    assert c.status is Status.READY and c.message.startswith(f"runs here on {CPU}")


def test_format_names_the_machine_and_every_profile():
    checks = [check_profile(load_profile(n), X86_CPU_ONLY) for n in devices.list_profiles()]
    text = format_checks(checks, X86_CPU_ONLY)
    assert text.splitlines()[0] == (f"This machine: x86_64; onnxruntime 1.32.0 (AzureExecutionProvider, {CPU}); "
                                    "TFLite interpreter: ai_edge_litert 2.3.0")
    orin = next(line for line in text.splitlines() if line.startswith("jetson-orin-nano"))
    assert "onnxruntime" in orin and "GPU providers configured, not available here" in orin


def test_cli_check_on_this_machine_reports_the_jetson_profile_rather_than_failing(capsys):
    ort = pytest.importorskip("onnxruntime")
    if {TRT, CUDA} & set(ort.get_available_providers()):
        pytest.skip("this machine's onnxruntime has GPU providers")
    assert devices.cli_main(["--check"]) == 0
    out = capsys.readouterr().out
    orin = next(line for line in out.splitlines() if line.startswith("jetson-orin-nano"))
    assert f"GPU providers configured, not available here: {TRT}, {CUDA}" in orin
    assert f"onnxruntime {ort.__version__}" in orin
    # one named profile that would not run as written: exit 1, for provisioning scripts
    assert devices.cli_main(["--check", "jetson-orin-nano"]) == 1
    capsys.readouterr()
    assert devices.cli_main(["--check", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    statuses = {p["profile"]: p["status"] for p in doc["profiles"]}
    assert statuses["jetson-orin-nano"] == "gpu-not-available" and set(statuses) == set(devices.list_profiles())
    assert devices.cli_main(["--check", "nope"]) == 2


def test_the_check_never_imports_tensorflow():
    code = ("import sys; from devices import cli_main; rc = cli_main(['--check']); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "jetson-orin-nano" in r.stdout
