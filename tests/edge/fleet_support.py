"""What the fleet-link tests share: a real Mosquitto broker on a loopback port, a real subscriber,
a scripted detector and source that open events on known frames, and the tiny ONNX model.

Imported by the test modules (``from fleet_support import ...``); pytest puts this folder on sys.path.
Everything talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.results import Boxes, FrameResult
from edge.sources import FrameSource

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)
WAIT_S = 20.0  # the longest any one wait in these tests may take


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = WAIT_S, step: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Broker:
    """Debian's mosquitto on 127.0.0.1:port, with persistence so sessions and retained messages survive a restart."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "") -> None:
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed (Debian: apt-get install mosquitto; .ci/run installs it)")
        self.folder, self.port = folder, port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"user {getpass.getuser()}\n"  # as root, mosquitto would switch to 'mosquitto' and lose the test's files
            f"listener {self.port} 127.0.0.1\n"
            f"{extra or 'allow_anonymous true'}\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
            f"log_dest file {folder}/mosquitto.log\nlog_type all\n")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited {self.proc.returncode}: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                self.starts += 1
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its sessions and retained messages), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


class Subscriber:
    """A real paho client that keeps what it receives; a persistent session, so a broker restart loses nothing."""

    def __init__(self, port: int, topic: str, client_id: str | None = None, persistent: bool = True) -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, bytes, bool, float]] = []  # topic, payload, retained, monotonic time
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-sub-{os.getpid()}-{time.monotonic_ns()}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(0.05, 0.3)
        self.topic = topic

        def on_connect(client, userdata, flags, reason, properties):
            client.subscribe(topic, qos=1)
            self.connected.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain), time.monotonic()))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(WAIT_S):
            raise AssertionError(f"the test subscriber could not connect to 127.0.0.1:{port}")
        time.sleep(0.1)  # the SUBACK

    def on(self, suffix: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r, _ in self.messages if t.endswith(suffix)]

    def events(self) -> list[dict]:
        return [json.loads(p) for p, _ in self.on("/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Scenes(FrameSource):
    """``n`` frames at ``fps``; a ship (red block) is in view ``ship`` frames of every ``period``.

    The frame number is in pixel (0, 0): (low byte, high byte) in the green and blue channels.
    With ``stall_at`` (or after ``stall()``), the source stops giving frames until ``release`` is set: a lost
    camera that neither ends nor errors.
    """

    def __init__(self, n=200, fps=40.0, period=20, ship=8, size=(72, 128), stall_at=None, corrupt=()):
        self.n, self.rate, self.period, self.ship, self.size = n, fps, period, ship, size
        self.corrupt = set(corrupt)
        self.fps = fps
        self.stall_at, self.release = stall_at, threading.Event()
        self.stalled = threading.Event()

    def stall(self) -> None:
        self.stall_at = self.i

    def _open(self):
        self.i, self.t0 = 0, time.monotonic()

    def _read(self):
        if self.i >= self.n:
            return None
        if self.stall_at is not None and self.i >= self.stall_at and not self.release.is_set():
            self.stalled.set()
            self.release.wait(WAIT_S * 3)
            self.t0 = time.monotonic() - self.i / self.rate
        i, self.i = self.i, self.i + 1
        delay = self.t0 + i / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if i in self.corrupt:
            return np.zeros(self.size, np.uint8)  # a broken frame: no colour channels
        frame = np.full((*self.size, 3), 60, np.uint8)
        frame[10:, :, 2] = 110  # sea
        frame[0, 0, 1], frame[0, 0, 2] = i % 256, i // 256
        if i % self.period < self.ship:
            frame[20:40, 40:80] = (230, 30, 30)
        return frame


class ShipDetector:
    """Score 0.95 on frames with the red ship, 0.05 without; a box around it."""

    labels = ("ship",)
    input_size = (32, 32)

    def detect(self, frame):
        heat = (frame[..., 0] > 128).astype(np.float32)
        ship = 0.95 if heat.any() else 0.05
        if ship > 0.5:
            ys, xs = np.nonzero(heat)
            boxes = Boxes(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
                          np.array([ship], np.float32), np.array([0], np.int32))
        else:
            boxes = Boxes.empty()
        return FrameResult([ship], self.labels, [ship >= 0.5], heat, boxes, {"infer": 0.4, "cam": 0.1})

    def detect_batch(self, frames):
        return [self.detect(f) for f in frames]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 3-node ONNX model with a manifest: the score rises with red pixels (the soak's model, named tiny.onnx)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edge.soak import tiny_onnx_model

    return tiny_onnx_model(tmp_path_factory.mktemp("fleet_model"), "tiny")


def edgecam_cmd() -> list[str]:
    import sys

    script = Path(sys.executable).parent / "edgecam"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edge.cli"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def check_schema(value, schema: dict, where: str = "$") -> None:
    """Check ``value`` against the JSON Schema subset docs/fleet/*.schema.json use (type, const, enum, required,
    properties, additionalProperties, items, minItems, maxItems, minimum, maximum); raise AssertionError naming the path."""
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if "const" in schema:
        assert value == schema["const"], f"{where}: expected {schema['const']!r}, received {value!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: expected one of {schema['enum']}, received {value!r}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]

        def fits(t):
            if t == "integer":
                return isinstance(value, int) and not isinstance(value, bool)
            if t == "number":
                return isinstance(value, (int, float)) and not isinstance(value, bool)
            return isinstance(value, kinds[t])
        assert any(fits(t) for t in types), f"{where}: expected {types}, received {type(value).__name__} {value!r:.80}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert value >= schema.get("minimum", value) and value <= schema.get("maximum", value), f"{where}: {value} out of range"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key!r}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(props)
            assert not extra, f"{where}: unexpected keys {sorted(extra)}"
        for key, sub in props.items():
            if key in value:
                check_schema(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        assert len(value) >= schema.get("minItems", 0) and len(value) <= schema.get("maxItems", len(value)), where
        for i, item in enumerate(value):
            check_schema(item, schema["items"], f"{where}[{i}]")


def schema(name: str) -> dict:
    return json.loads((REPO / "docs" / "fleet" / f"{name}.schema.json").read_text())
