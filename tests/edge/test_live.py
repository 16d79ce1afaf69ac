"""Live server: page, stats and MJPEG on 127.0.0.1:0; remote binding only when asked."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, FrameError
from edge.live import LiveServer


def _get(server, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read()


@pytest.fixture
def server():
    with LiveServer("127.0.0.1", 0) as live:
        yield live


def test_binds_a_free_port_and_serves_stats(server):
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/"
    assert json.loads(_get(server, "/stats.json")[2]) == {"fps": 0.0, "age_s": None, "stale": True, "no_frame": "no frame yet"}
    server.publish(np.zeros((8, 8, 3), np.uint8), {"fps": 12.5, "frames": 3, "scores": {"ship": 0.9}})
    status, ctype, body = _get(server, "/stats.json")
    assert status == 200 and ctype == "application/json"
    stats = json.loads(body)  # the run's numbers, with fps and staleness measured at the request
    assert {k: stats[k] for k in ("frames", "scores", "stale", "no_frame")} == {
        "frames": 3, "scores": {"ship": 0.9}, "stale": False, "no_frame": None}
    assert stats["fps"] == 0.0 and 0 <= stats["age_s"] < 5  # one frame is no rate yet


def test_page_polls_stats_and_shows_the_stream(server):
    status, ctype, body = _get(server, "/")
    html = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    assert 'src="/stream.mjpg"' in html and "fetch('/stats.json'" in html and "setInterval(poll,1000)" in html


def test_unknown_path_is_404(server):
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(server, "/nope")
    assert info.value.code == 404


def _read_mjpeg_part(resp):
    boundary = resp.getheader("Content-Type").split("boundary=")[1]
    line = resp.fp.readline()
    if line == b"\r\n":  # the CRLF that ends the previous part
        line = resp.fp.readline()
    assert line.strip() == f"--{boundary}".encode()
    headers = {}
    while (line := resp.fp.readline().strip()):
        key, value = line.decode().split(":", 1)
        headers[key.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    return resp.fp.read(int(headers["content-length"]))


def test_stream_sends_jpeg_parts_of_the_latest_frame(server):
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[..., 0] = 250  # red in RGB
    server.publish(frame, {"frames": 1})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    jpeg = _read_mjpeg_part(resp)
    assert jpeg[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (40, 60, 3)
    b, g, r = decoded.reshape(-1, 3).mean(0)
    assert r > 200 and b < 40, "RGB published, shown as red"

    frame2 = np.zeros((40, 60, 3), np.uint8)
    frame2[..., 2] = 250  # blue
    server.publish(frame2)
    b, g, r = cv2.imdecode(np.frombuffer(_read_mjpeg_part(resp), np.uint8), cv2.IMREAD_COLOR).reshape(-1, 3).mean(0)
    assert b > 200 and r < 40, "the next part is the newer frame"
    conn.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_non_loopback_needs_allow_remote(host):
    with pytest.raises(ConfigError, match="allow_remote=True"):
        LiveServer(host, 0)


def test_remote_binding_when_explicitly_allowed():
    with LiveServer("0.0.0.0", 0, allow_remote=True) as live:
        assert live.port > 0
        assert _get(live, "/stats.json")[0] == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
def test_loopback_forms_are_accepted(host):
    with LiveServer(host, 0) as live:
        assert live.host == host and live.port > 0
        # it answers on the address it was given
        with urllib.request.urlopen(f"http://{host}:{live.port}/stats.json", timeout=5) as resp:
            assert resp.status == 200 and resp.headers.get("Content-Type") == "application/json"


def test_close_is_idempotent_and_frees_the_port():
    live = LiveServer("127.0.0.1", 0)
    port = live.port
    live.close()
    live.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=2)


def test_publish_rejects_bad_frames(server):
    with pytest.raises(FrameError, match="RGB uint8"):
        server.publish(np.zeros((4, 4), np.float32), {})


@pytest.mark.parametrize("kwargs", [{"port": -1}, {"port": 70000}, {"jpeg_quality": 0}])
def test_bad_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        LiveServer("127.0.0.1", **{"port": 0, **kwargs})


def test_idle_sockets_cannot_take_a_thread_each_and_refused_ones_are_counted():
    """300 idle sockets once made 204 threads; now the served ones are bounded and idle ones closed."""
    import socket
    import threading

    before = threading.active_count()
    with LiveServer(port=0, max_clients=8, idle_s=1.0) as live:
        socks = []
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", live.port), timeout=5)
            socks.append(s)
        deadline = time.monotonic() + 5
        while live.clients + live.refused < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.clients == 8 and live.refused == 52
        assert threading.active_count() <= before + 1 + 8  # the accept thread and one per served client
        time.sleep(1.6)  # past idle_s: the server closed the idle ones and freed their threads
        assert live.clients == 0 and threading.active_count() <= before + 1
        status, _, body = _get(live, "/status.json")
        assert status == 200 and json.loads(body)["clients"] == {"open": 1, "max": 8, "refused": 52, "idle_s": 1.0}
        answers = [s.recv(64) for s in socks]
        for s in socks:
            s.close()
    assert sum(a.startswith(b"HTTP/1.0 503") for a in answers) == 52  # the others were closed unanswered: b""
    assert sum(a == b"" for a in answers) == 8


@pytest.mark.parametrize("kwargs", [{"max_clients": 0}, {"max_clients": True}, {"idle_s": 0}])
def test_bad_client_limits_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        LiveServer(port=0, **kwargs)
