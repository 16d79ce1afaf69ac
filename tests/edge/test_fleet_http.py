"""The live server's fleet paths: /metrics scraped from a real run, /healthz going stale with the camera, the page's
/status.json and event snapshots, and bearer or basic auth in front of everything but /healthz."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from fleet_support import Broker, Scenes, ShipDetector, free_port, wait_for

from edge.errors import ConfigError
from edge.events import HysteresisOptions
from edge.fleet_metrics import RunMetrics, soc_temperatures
from edge.live import LiveAuth, LiveServer
from edge.pipeline import RunOptions, run

prometheus = pytest.importorskip("prometheus_client", reason="prometheus-client is not installed (pip install 'edgecam[fleet]')")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _code(url: str) -> int:
    """The HTTP status, or 0 while the server is not listening yet."""
    try:
        return _get(url)[0]
    except OSError:
        return 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _samples(body: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_and_health_of_a_real_run(tmp_path):
    port = free_port()
    source = Scenes(n=10_000, fps=100.0, stall_at=60, corrupt={5, 17})
    stop = threading.Event()
    records: list[dict] = []
    sinks = []
    try:
        import paho.mqtt.client  # noqa: F401  (the spool gauges need a link)
    except ImportError:
        pass
    else:
        from edge.mqtt import MqttOptions
        from edge.mqtt_sink import MqttSink

        down = Broker(tmp_path / "broker")  # never started: events wait in the spool
        sinks.append(MqttSink(MqttOptions(url=down.url, camera="bow", spool_dir=tmp_path / "spool", drain_s=0.1,
                                          update_s=0), "0001-m"))
    opts = RunOptions(out_dir=tmp_path / "run", mode="all", live=f"127.0.0.1:{port}", stale_s=1.0, write_video=False,
                      hysteresis=HysteresisOptions(enter=0.6, leave=0.4, min_frames=2), smoother_alpha=1.0)
    runner = threading.Thread(target=lambda: run(ShipDetector(), source, opts, stop_event=stop, sinks=sinks,
                                                 on_frame=lambda i, r, rec: records.append(rec)))
    runner.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _code(base + "/healthz") == 200, what="/healthz 200 while frames flow")
        code, _, body = _get(base + "/healthz")
        assert json.loads(body)["status"] == "ok"
        assert source.stalled.wait(10)
        wait_for(lambda: len(records) == 58, what="58 good frames")
        code, headers, body = _get(base + "/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain; version=")
        m = _samples(body)
        events = sum(1 for r in records if (r.get("event") or {}).get("kind") == "start")
        assert m[("edgecam_frames_total", ())] == 58 and m[("edgecam_corrupt_frames_total", ())] == 2
        assert m[("edgecam_events_total", ())] == events >= 2
        assert m[("edgecam_dropped_frames_total", ())] == 0 and m[("edgecam_source_reconnects_total", ())] == 0
        for stage in ("detect", "infer", "annotate", "sinks"):
            assert m[("edgecam_stage_latency_seconds_count", (("stage", stage),))] == 58
        assert m[("edgecam_stage_latency_seconds_sum", (("stage", "infer"),))] == pytest.approx(58 * 0.0004)
        assert m[("edgecam_fps", ())] > 20 and m[("process_resident_memory_bytes", ())] > 20e6
        if sinks:  # the broker is down: every start and end made so far waits in the spool
            assert m[("edgecam_mqtt_connected", ())] == 0
            assert m[("edgecam_mqtt_spool_messages", ())] == 2 * events - m[("edgecam_event_open", ())]
        wait_for(lambda: _get(base + "/healthz")[0] == 503, what="/healthz 503 once no frame came for 1 s")
        status = json.loads(_get(base + "/healthz")[2])
        assert status["status"] == "stale" and status["last_frame_age_s"] > 1.0
        assert _samples(_get(base + "/metrics")[2])[("edgecam_last_frame_age_seconds", ())] > 1.0
    finally:
        source.release.set()
        stop.set()
        runner.join(20)


def test_soc_temperature_comes_from_the_thermal_zones(tmp_path):
    for n, (kind, milli) in enumerate((("cpu-thermal", "48312"), ("gpu-thermal", "45100"), ("broken", "n/a"))):
        zone = tmp_path / f"thermal_zone{n}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert soc_temperatures(tmp_path) == {"cpu-thermal": 48.312, "gpu-thermal": 45.1}
    body, _ = RunMetrics(lambda: {"frames": 3}, thermal_root=tmp_path).render()
    m = _samples(body)
    assert m[("edgecam_soc_temperature_celsius", (("zone", "cpu-thermal"),))] == 48.312
    assert m[("edgecam_frames_total", ())] == 3
    assert soc_temperatures(tmp_path / "none") == {}


def test_status_json_gives_new_points_and_events_with_their_snapshot():
    with LiveServer("127.0.0.1", 0, stale_s=5) as live:
        base = f"http://127.0.0.1:{live.port}"
        assert json.loads(_get(base + "/status.json")[2])["age_s"] is None
        frame = np.zeros((360, 640, 3), np.uint8)
        live.publish(frame, {"score": 0.2, "smoothed": 0.2, "enter": 0.6, "leave": 0.4})
        time.sleep(0.25)
        live.publish(frame, {"score": 0.9, "smoothed": 0.7, "event": {"kind": "start", "id": 1, "label": "ship", "peak_score": 0.9}})
        st = json.loads(_get(base + "/status.json")[2])
        assert st["stale"] is False and st["enter"] == 0.6 and st["leave"] == 0.4 and st["seq"] == 2
        assert [p[2:] for p in st["points"]] == [[0.2, 0.2, False], [0.9, 0.7, True]]
        assert st["events"][0]["open"] and st["events"][0]["snapshot"] == "/events/1.jpg"
        assert [p[0] for p in json.loads(_get(base + "/status.json?after=1")[2])["points"]] == [2]
        code, headers, jpeg = _get(base + "/events/1.jpg")
        assert code == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        assert _get(base + "/events/2.jpg")[0] == 404
        live.publish(frame, {"score": 0.95, "smoothed": 0.3, "event": {"kind": "end", "id": 1, "label": "ship", "peak_score": 0.95}})
        ended = json.loads(_get(base + "/status.json")[2])["events"][0]
        assert not ended["open"] and ended["peak"] == 0.95 and ended["end_time"] >= ended["start_time"]
        assert _get(base + "/metrics")[0] == 404, "no metrics callable given: /metrics says so"


@pytest.mark.parametrize("path", ["/", "/stream.mjpg", "/stats.json", "/status.json", "/metrics", "/events/1.jpg"])
def test_bearer_auth_guards_every_path_but_healthz(path):
    with LiveServer("127.0.0.1", 0, auth="bearer:tok-1234567", metrics=lambda: (b"edgecam_frames_total 1\n", "text/plain")) as live:
        base = f"http://127.0.0.1:{live.port}"
        code, headers, body = _get(base + path)
        assert code == 401 and headers["WWW-Authenticate"] == 'Bearer realm="edgecam"' and b"/?token=TOKEN" in body
        assert _get(base + path, {"Authorization": "Bearer wrong-token"})[0] == 401
        assert _get(base + "/healthz")[0] == 503, "a supervisor polls /healthz without credentials"
        if path not in ("/stream.mjpg", "/events/1.jpg"):
            assert _get(base + path, {"Authorization": "Bearer tok-1234567"})[0] == 200


def test_a_browser_trades_the_token_in_the_url_for_a_cookie():
    with LiveServer("127.0.0.1", 0, auth=LiveAuth.parse("bearer:tok-1234567")) as live:
        base = f"http://127.0.0.1:{live.port}"
        code, headers, _ = _get(base + "/?token=tok-1234567")
        assert code == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("edgecam_token=tok-1234567;") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert _get(base + "/stats.json", {"Cookie": "edgecam_token=tok-1234567"})[0] == 200
        assert _get(base + "/stats.json", {"Cookie": "edgecam_token=nope"})[0] == 401
        assert _get(base + "/?token=wrong")[0] == 401


def test_basic_auth():
    with LiveServer("127.0.0.1", 0, auth="basic:operator:s3cret:with:colons") as live:
        base = f"http://127.0.0.1:{live.port}"
        good = base64.b64encode(b"operator:s3cret:with:colons").decode()
        bad = base64.b64encode(b"operator:guess").decode()
        code, headers, _ = _get(base + "/")
        assert code == 401 and headers["WWW-Authenticate"].startswith('Basic realm="edgecam"')
        assert _get(base + "/", {"Authorization": f"Basic {good}"})[0] == 200
        assert _get(base + "/", {"Authorization": f"Basic {bad}"})[0] == 401
        assert _get(base + "/", {"Authorization": "Basic !!notbase64"})[0] == 401


@pytest.mark.parametrize("spec, message", [
    ("bearer:short", "received a bearer value that does not fit"),
    ("bearer:has space inside", "received a bearer value"),
    ("basic:nopassword", "received a basic value"),
    ("basic::pw", "received a basic value"),
    ("token:abcdefgh", "received kind 'token'"),
    ("abcdefghij", "received a value without 'bearer:' or 'basic:'"),
])
def test_bad_auth_specs_say_what_was_expected_without_the_secret(spec, message):
    with pytest.raises(ConfigError) as info:
        LiveAuth.parse(spec)
    assert message in str(info.value) and "expects 'bearer:TOKEN'" in str(info.value)
    secret = spec.partition(":")[2] or spec
    assert secret not in str(info.value)
    assert "secret" not in repr(LiveAuth.parse("basic:u:secret"))
