"""systemd's notify protocol against a fake $NOTIFY_SOCKET: READY after the model is warm, WATCHDOG only while frames
flow, none while the camera is stalled, STOPPING at the end; and the drop-in unit that asks for it parses."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fleet_support import REPO, Scenes, ShipDetector, wait_for

from edge.pipeline import RunOptions, run
from edge.watchdog import Notifier, Watchdog


class FakeSystemd:
    """A datagram socket where systemd's would be; keeps (time, message) pairs."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    def messages(self) -> list[str]:
        return [m for _, m in self.got]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    address = str(tmp_path / "notify")
    fake = FakeSystemd(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4: a ping every 0.2 s
    yield fake
    fake.close()


def test_ready_then_pings_while_frames_flow_none_while_stalled_then_stopping(tmp_path, systemd):
    source = Scenes(n=10_000, fps=50.0, stall_at=40)
    stop = threading.Event()
    done: list[float] = []  # when each frame was finished
    runner = threading.Thread(target=lambda: run(ShipDetector(), source, RunOptions(out_dir=tmp_path / "run", mode="all",
                                                                                   write_video=False), stop_event=stop,
                                                 on_frame=lambda *a: done.append(time.monotonic())))
    runner.start()
    try:
        assert source.stalled.wait(10)
        wait_for(lambda: len(done) == 40, what="the 40 frames before the stall")
        time.sleep(1.2)  # three WatchdogSec: systemd would have restarted the unit
        stalled, resumed = done[-1], time.monotonic()
        source.release.set()
        wait_for(lambda: sum(m == "WATCHDOG=1" for t, m in systemd.got if t > resumed) >= 2, what="pings again")
    finally:
        source.release.set()
        stop.set()
        runner.join(20)
    time.sleep(0.2)
    got = systemd.got
    messages = [m for _, m in got]
    assert messages[0].startswith("READY=1\nSTATUS=running Scenes") and messages[-1].startswith("STOPPING=1\nSTATUS=stopping: stopped")
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    before = [t for t in pings if t < stalled]
    assert len(before) >= 2, "pinged while the first 40 frames flowed (0.8 s)"
    # the first check after the last frame still pings for it (late, if this busy machine starves the thread);
    # a pinger that ignored progress would send about six in the 1.2 s stall
    during = [t for t in pings if stalled < t < resumed]
    assert len(during) <= 1, f"{len(during)} pings while no frame came: systemd could not restart a stuck run"
    assert max(b - a for a, b in zip(pings, pings[1:])) > 0.8, "a gap longer than WatchdogSec=0.4"


def test_an_abstract_socket_and_a_watchdog_meant_for_another_process(monkeypatch):
    name = f"edgecam-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.enabled and n.watchdog_s == 2.0 and n.notify("READY=1") and server.recv(100) == b"READY=1"
        n.close()
    finally:
        server.close()
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.enabled and other.watchdog_s is None, "WATCHDOG_PID names another process: no pings from this one"
    dog = Watchdog(lambda: 0, other)
    assert dog.interval is None
    quiet = Notifier({})
    assert not quiet.enabled and quiet.notify("READY=1") is False


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("bogus", [False, True], ids=["as-shipped", "with-a-bad-key"])
def test_the_watchdog_drop_in_parses_with_the_unit(tmp_path, bogus):
    unit_dir = tmp_path / "units"
    drop_in = unit_dir / "edgecam@.service.d"
    drop_in.mkdir(parents=True)
    shutil.copy(REPO / "devices" / "edgecam.service", unit_dir / "edgecam@.service")
    text = (REPO / "docs" / "fleet" / "watchdog.conf").read_text()
    (drop_in / "watchdog.conf").write_text(text + ("Bogus=1\n" if bogus else ""))
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "edgecam@rpi5.service"], capture_output=True, text=True,
                       env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}, cwd=tmp_path, timeout=60)
    complaints = [line for line in r.stderr.splitlines() if "watchdog.conf" in line]
    if bogus:  # proves the drop-in is read at all
        assert any("Unknown key 'Bogus'" in line for line in complaints)
    else:
        assert complaints == [], complaints
    assert "Type=notify" in text and "WatchdogSec=60" in text and "NotifyAccess=main" in text
