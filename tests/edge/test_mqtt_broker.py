"""The fleet link against a real Mosquitto broker on 127.0.0.1: an outage in the middle of a run, a restart of
edgecam that replays the last run's spool, a spool that overflows, retained state, availability and the last will,
user/password and TLS. Every event is checked as a real subscriber receives it.

Skips with a reason where mosquitto or paho-mqtt is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'edgecam[fleet]')")

from fleet_support import (  # noqa: E402
    WAIT_S, Broker, Scenes, ShipDetector, Subscriber, broker, check_schema, edgecam_cmd, env, read_jsonl, schema,  # noqa: F401
    tiny_model, wait_for,
)

from edge.events import HysteresisOptions  # noqa: E402
from edge.mqtt import MqttOptions  # noqa: E402
from edge.mqtt_sink import MqttSink  # noqa: E402
from edge.pipeline import RunOptions, run  # noqa: E402
from edge.recording import RecordingOptions  # noqa: E402

HYST = HysteresisOptions(enter=0.6, leave=0.4, min_frames=2)


def _options(url, spool, camera="bow", **kw) -> MqttOptions:
    base = dict(url=url, camera=camera, prefix="test", spool_dir=spool, update_s=0.05, state_s=0.5, drain_s=10.0,
                reconnect_min_s=0.05, reconnect_max_s=0.3, keepalive_s=5)
    return MqttOptions(**{**base, **kw})


def _run(out: Path, run_id: str, mqtt: MqttOptions, source: Scenes, **kw):
    sink = MqttSink(mqtt, run_id, thresholds={"enter": HYST.enter, "leave": HYST.leave})
    opts = RunOptions(out_dir=out, mode="all", hysteresis=HYST, smoother_alpha=1.0, write_video=False,
                      recording=RecordingOptions(run_id=run_id), **kw)
    return run(ShipDetector(), source, opts, sinks=[sink])


def _expected_ids(folder: Path, summary: dict) -> tuple[set[str], int]:
    """The message ids a run must have delivered: one per event line, plus its updates (counted by the sink)."""
    lines = read_jsonl(folder / "events" / "events.jsonl")
    ids = {f"{e['run']}/{e['id']}/{e['kind']}" for e in lines}
    assert len(ids) == len(lines), "events.jsonl holds each start and end once"
    sent = summary["mqtt"]["sent"]
    assert sent["start"] + sent["end"] == len(lines)
    return ids, sent["start"] + sent["update"] + sent["end"]


def _first_arrivals(messages: list[dict]) -> tuple[list[dict], int]:
    seen, first = set(), []
    for m in messages:
        if m["message_id"] not in seen:
            seen.add(m["message_id"])
            first.append(m)
    return first, len(messages) - len(first)


def test_a_broker_outage_in_the_middle_of_a_run_loses_no_event_and_counts_none_twice(tmp_path, broker):
    sub = Subscriber(broker.port, "test/bow/events", client_id="control-room")
    source = Scenes(n=360, fps=40.0)  # 9 s, an event every 0.5 s
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(
        _run(tmp_path / "run1", "0001-run", _options(broker.url, tmp_path / "spool"), source)))
    runner.start()
    wait_for(lambda: len(sub.events()) >= 6, what="the first events")
    before = len(sub.events())
    broker.stop()  # the link drops for 3 s while the run goes on
    down = time.monotonic()
    time.sleep(3.0)
    broker.start()
    runner.join(WAIT_S * 2)
    assert not runner.is_alive()
    summary = result
    ids, total = _expected_ids(tmp_path / "run1", summary)
    wait_for(lambda: len({m["message_id"] for m in sub.events()}) >= total, what=f"{total} distinct event messages")
    time.sleep(0.5)  # anything sent twice would arrive by now
    sub.close()

    received = sub.events()
    first, duplicates = _first_arrivals(received)
    mq = summary["mqtt"]
    print(f"\noutage 3.0 s: {total} event messages ({mq['sent']}), {before} received before the outage, "
          f"peak spooled {mq['peak_spooled']}, disconnects {mq['disconnects']}, delivered {mq['delivered']}, "
          f"re-deliveries seen by the subscriber {duplicates}, offline {mq['offline_s']} s")
    assert mq["disconnects"] >= 1 and mq["peak_spooled"] >= 3, "events were spooled while the broker was down"
    assert mq["delivered"] == total and mq["spooled"] == 0 and mq["dropped"] == 0
    assert [m["seq"] for m in first] == list(range(1, total + 1)), "every message once, in the order it was made"
    assert ids <= {m["message_id"] for m in first}, "every start and end in events.jsonl arrived"
    starts = {m["event"]["id"] for m in first if m["kind"] == "start"}
    assert len(starts) == summary["events"] == len([m for m in first if m["kind"] == "end"]), "0 lost, 0 counted twice"
    assert any(m["kind"] == "update" for m in first)
    assert all(m["camera"] == "bow" and m["run"] == "0001-run" for m in received)
    for m in received:
        check_schema(m, schema("events"))
    assert down > 0


def test_a_restart_of_edgecam_replays_what_the_last_run_spooled_first_and_in_order(tmp_path):
    broker = Broker(tmp_path / "broker")  # not started: the first run cannot reach it
    spool = tmp_path / "spool"
    first = _run(tmp_path / "run1", "0001-a", _options(broker.url, spool, drain_s=0.3), Scenes(n=100, fps=200.0))
    ids1, total1 = _expected_ids(tmp_path / "run1", first)
    assert first["mqtt"]["delivered"] == 0 and first["mqtt"]["spooled"] == total1 > 0
    assert len(list(spool.glob("*.msg"))) == total1, "what the first run could not send is on disk"

    broker.start()
    try:
        sub = Subscriber(broker.port, "test/bow/events")
        second = _run(tmp_path / "run2", "0002-b", _options(broker.url, spool), Scenes(n=100, fps=200.0))
        ids2, total2 = _expected_ids(tmp_path / "run2", second)
        wait_for(lambda: len({m["message_id"] for m in sub.events()}) >= total1 + total2, what="both runs' messages")
        time.sleep(0.3)
        sub.close()
    finally:
        broker.stop()
    got, duplicates = _first_arrivals(sub.events())
    runs = [m["run"] for m in got]
    assert runs == ["0001-a"] * total1 + ["0002-b"] * total2, "the last run's spool goes first"
    assert [m["seq"] for m in got] == list(range(1, total1 + 1)) + list(range(1, total2 + 1))
    assert ids1 | ids2 <= {m["message_id"] for m in got} and duplicates == 0
    assert second["mqtt"]["found_at_start"] == total1 and second["mqtt"]["replayed"] == total1
    assert second["mqtt"]["delivered"] == total1 + total2 and not list(spool.glob("*.msg"))


def test_a_full_spool_drops_the_oldest_counts_them_and_delivers_the_newest_in_order(tmp_path):
    broker = Broker(tmp_path / "broker")
    spool = tmp_path / "spool"
    first = _run(tmp_path / "run1", "0001-a", _options(broker.url, spool, drain_s=0.2, spool_mb=0.004),
                 Scenes(n=300, fps=400.0))
    mq = first["mqtt"]
    made = sum(mq["sent"].values())
    kept = sorted(int(p.stem) for p in spool.glob("*.msg"))
    assert mq["dropped"] > 0 and mq["dropped"] + len(kept) == made, "every message is either kept or counted as dropped"
    assert sum(p.stat().st_size for p in spool.glob("*.msg")) <= 4000
    kept_seqs = [json.loads((spool / f"{n:016d}.msg").read_bytes().split(b"\n", 1)[1])["seq"] for n in kept]
    assert kept_seqs == list(range(made - len(kept) + 1, made + 1)), "the newest are kept"

    broker.start()
    try:
        sub = Subscriber(broker.port, "test/bow/events")
        second = _run(tmp_path / "run2", "0002-b", _options(broker.url, spool), Scenes(n=2, fps=100.0))
        wait_for(lambda: len(sub.events()) >= len(kept), what="the kept messages")
        time.sleep(0.3)
        sub.close()
    finally:
        broker.stop()
    got = [m["seq"] for m in sub.events() if m["run"] == "0001-a"]
    assert got == kept_seqs and second["mqtt"]["replayed"] == len(kept)


def test_state_is_retained_availability_says_online_then_offline(tmp_path, broker):
    seen: dict = {}

    def peek(item, result, record):
        if record["frame"] == 40 and not seen:  # mid-run, a newcomer subscribes and gets the retained messages
            s = Subscriber(broker.port, "test/bow/#", persistent=False)
            wait_for(lambda: s.on("/state") and s.on("/availability"), what="retained state and availability")
            seen["state"], seen["availability"] = s.on("/state")[0], s.on("/availability")[0]  # the retained copies come first
            s.close()

    sink = MqttSink(_options(broker.url, tmp_path / "spool"), "0001-s",
                    model={"format": "onnx-fp32", "labels": ["ship"]}, thresholds={"enter": 0.6, "leave": 0.4})
    opts = RunOptions(out_dir=tmp_path / "run", mode="all", hysteresis=HYST, smoother_alpha=1.0, write_video=False,
                      recording=RecordingOptions(run_id="0001-s"))
    summary = run(ShipDetector(), Scenes(n=80, fps=40.0), opts, on_frame=peek, sinks=[sink])

    payload, retained = seen["state"]
    state = json.loads(payload)
    assert retained and seen["availability"] == (b"online", True)
    assert state["status"] == "running" and state["camera"] == "bow" and state["run"] == "0001-s"
    assert state["frames"] > 0 and state["fps"] > 5 and state["stale"] is False and state["last_frame_time"].endswith("Z")
    assert state["model"] == {"format": "onnx-fp32", "labels": ["ship"]} and state["thresholds"]["enter"] == 0.6

    after = Subscriber(broker.port, "test/bow/#", persistent=False)
    wait_for(lambda: after.on("/state") and after.on("/availability"), what="retained messages after the run")
    final = json.loads(after.on("/state")[-1][0])
    after.close()
    assert after.on("/availability")[-1] == (b"offline", True), "a clean stop says offline itself"
    assert final["status"] == "stopped" and final["frames"] == summary["frames"] == 80
    for body in (state, final):
        check_schema(body, schema("state"))
    for payload, _ in after.on("/availability"):
        check_schema(payload.decode(), schema("availability"))
    with pytest.raises(AssertionError, match="unexpected keys"):  # the check is not vacuous
        check_schema({**state, "colour": "red"}, schema("state"))


_LINK_SCRIPT = textwrap.dedent("""
    import sys, time
    from edge.mqtt import MqttLink, MqttOptions
    link = MqttLink(MqttOptions(url=sys.argv[1], camera="stern", prefix="test", spool_dir=sys.argv[2], keepalive_s=5)).start()
    while not link.connected:
        time.sleep(0.02)
    print("connected", flush=True)
    time.sleep(60)
""")


def test_the_last_will_says_offline_when_edgecam_dies(tmp_path, broker):
    sub = Subscriber(broker.port, "test/stern/availability", persistent=False)
    proc = subprocess.Popen([sys.executable, "-c", _LINK_SCRIPT, broker.url, str(tmp_path / "spool")],
                            stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert proc.stdout.readline().strip() == "connected"
        wait_for(lambda: sub.on("/availability"), what="online")
        assert sub.on("/availability")[-1][0] == b"online"
        os.kill(proc.pid, signal.SIGKILL)  # no goodbye: only the broker's last will can tell
        killed = time.monotonic()
        wait_for(lambda: sub.on("/availability")[-1][0] == b"offline", what="the last will")
        print(f"\nlast will arrived {time.monotonic() - killed:.3f} s after SIGKILL")
    finally:
        proc.kill()
        proc.wait(10)
        sub.close()
    late = Subscriber(broker.port, "test/stern/availability", persistent=False)
    wait_for(lambda: late.on("/availability"), what="the retained will")
    assert late.on("/availability")[-1] == (b"offline", True), "the will is retained for late subscribers"
    late.close()


def test_user_and_password_are_used_and_a_wrong_one_is_reported(tmp_path):
    pwfile = tmp_path / "passwd"
    pwfile.write_text("")
    tool = "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([tool, "-b", str(pwfile), "cam", "s3cret"], check=True, timeout=30)
    broker = Broker(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {pwfile}").start()
    try:
        import paho.mqtt.client as paho

        watcher = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id="watcher")
        watcher.username_pw_set("cam", "s3cret")
        got: list = []
        watcher.on_connect = lambda c, *a: c.subscribe("test/#", qos=1)
        watcher.on_message = lambda c, u, m: got.append((m.topic, m.payload))
        watcher.connect("127.0.0.1", broker.port)
        watcher.loop_start()
        good = _run(tmp_path / "ok", "0001-u", _options(f"mqtt://cam:s3cret@127.0.0.1:{broker.port}", tmp_path / "s1"),
                    Scenes(n=40, fps=200.0))
        wait_for(lambda: len([t for t, _ in got if t.endswith("/events")]) >= sum(good["mqtt"]["sent"].values()),
                 what="events through an authenticated link")
        bad = _run(tmp_path / "bad", "0002-u", _options(f"mqtt://cam:wrong@127.0.0.1:{broker.port}", tmp_path / "s2",
                                                        drain_s=0.5), Scenes(n=20, fps=200.0))
        watcher.loop_stop()
        watcher.disconnect()
    finally:
        broker.stop()
    assert good["mqtt"]["delivered"] == sum(good["mqtt"]["sent"].values()) > 0
    assert bad["mqtt"]["delivered"] == 0 and "refused" in (bad["mqtt"]["last_error"] or "")
    assert bad["mqtt"]["spooled"] == sum(bad["mqtt"]["sent"].values()), "kept for a run with the right password"


def test_mqtts_delivers_over_tls_with_the_given_ca(tmp_path):
    openssl = "/usr/bin/openssl"
    if not os.access(openssl, os.X_OK):
        pytest.skip("openssl is not installed; cannot make a test certificate")
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=test-ca"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", ext],
    ):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=60)
    port = __import__("fleet_support").free_port()
    plain = Broker(tmp_path / "broker", extra=f"allow_anonymous true\nlistener {port} 127.0.0.1\n"
                                               f"cafile {ca}\ncertfile {cert}\nkeyfile {key}").start()
    try:
        sub = Subscriber(plain.port, "test/bow/events")
        summary = _run(tmp_path / "run", "0001-t", _options(f"mqtts://127.0.0.1:{port}", tmp_path / "spool", ca_file=str(ca)),
                       Scenes(n=40, fps=200.0))
        total = sum(summary["mqtt"]["sent"].values())
        wait_for(lambda: len(sub.events()) >= total, what="events sent over TLS")
        sub.close()
    finally:
        plain.stop()
    assert total > 0 and summary["mqtt"]["delivered"] == total


def test_after_sigkill_the_next_edgecam_run_delivers_what_the_killed_one_spooled(tmp_path, tiny_model):
    broker = Broker(tmp_path / "broker")  # down while the first run records
    out = tmp_path / "out"
    args = [*edgecam_cmd(), "run", str(tiny_model), "--source", "synthetic", "--out", str(out), "--no-video",
            "--mqtt", broker.url, "--mqtt-camera", "bow", "--mqtt-prefix", "test"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        wait_for(lambda: list((out / "mqtt-spool").glob("*.msg")), what="a spooled start message")
        time.sleep(0.3)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(20)
    spooled = sorted((out / "mqtt-spool").glob("*.msg"))
    killed_run = json.loads(spooled[0].read_bytes().split(b"\n", 1)[1])["run"]
    broker.start()
    try:
        sub = Subscriber(broker.port, "test/bow/events")
        r = subprocess.run([*args, "--max-frames", "30"], capture_output=True, text=True, env=env(), timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        printed = json.loads(r.stdout[r.stdout.index("{"): r.stdout.rindex("}") + 1])
        wait_for(lambda: len(sub.events()) >= len(spooled) + 2, what="the killed run's messages and the new run's")
        sub.close()
    finally:
        broker.stop()
    got = sub.events()
    assert [m["run"] for m in got[:len(spooled)]] == [killed_run] * len(spooled), "the killed run's spool goes first"
    assert got[0]["kind"] == "start" and {m["run"] for m in got[len(spooled):]} == {printed["run"]} != {killed_run}
    assert printed["mqtt"]["found_at_start"] == printed["mqtt"]["replayed"] == len(spooled)
    assert not list((out / "mqtt-spool").glob("*.msg"))

