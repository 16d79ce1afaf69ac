"""``edgecam run --mqtt``: what the URL and options accept, the error for what they do not (exit 2, nothing made),
that a run without --mqtt never imports paho (nor TensorFlow or Keras), and one real run publishing to Mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fleet_support import (  # noqa: F401
    REPO, Subscriber, broker, check_schema, edgecam_cmd, env, read_jsonl, schema, tiny_model, wait_for,
)

from edge.cli import _main
from edge.errors import ConfigError
from edge.mqtt import MqttOptions, MqttUrl, parse_mqtt_url

TIMEOUT = 120


@pytest.mark.parametrize("url, expected", [
    ("mqtt://127.0.0.1", MqttUrl("127.0.0.1", 1883, False)),
    ("mqtts://broker.example", MqttUrl("broker.example", 8883, True)),
    ("mqtt://cam:p%40ss@[::1]:1884", MqttUrl("::1", 1884, False, "cam", "p@ss")),
    ("mqtt://h:1883/", MqttUrl("h", 1883, False)),
    ("http://h", "scheme 'http'"),
    ("h:1883", "scheme 'h'"),
    ("mqtt://", "no host"),
    ("mqtt://h:99999", "Port out of range"),
    ("mqtt://h:0", "a port in 1..65535"),
    ("mqtt://h:port", "Port could not be cast"),
    ("mqtt://h/ships", "nothing after the port"),
    ("mqtt://h?x=1", "nothing after the port"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_urls_parse_or_say_what_was_expected(url, expected):
    if isinstance(expected, MqttUrl):
        assert parse_mqtt_url(url) == expected
        assert parse_mqtt_url(url).password == expected.password
    else:
        with pytest.raises(ConfigError) as info:
            parse_mqtt_url(url)
        assert "expects mqtt://[USER[:PASSWORD]@]HOST[:PORT]" in str(info.value) or "port in 1..65535" in str(info.value)
        assert expected in str(info.value) and "received" in str(info.value)


def test_a_password_is_never_echoed():
    with pytest.raises(ConfigError) as info:
        parse_mqtt_url("mqtt://cam:hunter2@h/x")
    assert "hunter2" not in str(info.value) and "cam:***@h/x" in str(info.value)
    assert "hunter2" not in repr(MqttOptions(url="mqtt://cam:hunter2@h")) + repr(parse_mqtt_url("mqtt://cam:hunter2@h"))


@pytest.mark.parametrize("data, message", [
    ({"url": "mqtt://h", "camera": "a/b"}, "MqttOptions.camera must be a topic level"),
    ({"url": "mqtt://h", "camera": "+"}, "MqttOptions.camera"),
    ({"url": "mqtt://h", "prefix": "fleet/#"}, "MqttOptions.prefix"),
    ({"url": "mqtt://h", "prefix": "fleet/"}, "MqttOptions.prefix"),
    ({"url": "mqtt://h", "ca_file": "/etc/hostname"}, "with an mqtts:// URL"),
    ({"url": "mqtt://h", "spool_mb": 0}, "spool_mb must be a number >= 0.002"),
    ({"url": "mqtt://h", "window": 0}, "window must be an int in [1, 1000]"),
    ({"url": "mqtt://h", "thumbnail": "yes"}, "thumbnail must be true or false"),
    ({"url": "mqtt://h", "reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_max_s"),
    ({"url": "mqtt://h", "qos": 2}, "received unknown ['qos']"),
    ({"camera": "bow"}, "need 'url'"),
    ({"url": "tcp://h"}, "scheme 'tcp'"),
])
def test_options_refuse_bad_values_by_name(data, message):
    with pytest.raises(ConfigError) as info:
        MqttOptions.from_dict(data)
    assert message in str(info.value)


def test_topics_defaults_and_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("EDGECAM_MQTT_PASSWORD", "from-env")
    o = MqttOptions(url="mqtts://cam@b.example", camera="bow", prefix="fleet/harbour")
    assert (o.topics.events, o.topics.state, o.topics.availability) == (
        "fleet/harbour/bow/events", "fleet/harbour/bow/state", "fleet/harbour/bow/availability")
    assert o.broker == MqttUrl("b.example", 8883, True, "cam", "from-env")
    assert MqttOptions(url="mqtt://u:inurl@h").broker.password == "inurl"
    assert MqttOptions(url="mqtt://h").camera  # the host name, made topic-safe


def _exit(argv, capsys) -> tuple[int, str]:
    try:
        code = _main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--mqtt", "http://broker"], "received 'http://broker' (scheme 'http')"),
    (["--mqtt", "mqtt://broker:70000"], "Port out of range"),
    (["--mqtt", "mqtt://broker", "--mqtt-camera", "bow/1"], "MqttOptions.camera must be a topic level"),
    (["--mqtt-camera", "bow", "--mqtt-thumbnail"], "--mqtt-camera, --mqtt-thumbnail need --mqtt URL or --mqtt-config FILE"),
    (["--mqtt-frobnicate", "1"], "unrecognized arguments: --mqtt-frobnicate"),
    (["--live", "127.0.0.1:0", "--live-auth", "bearer:short"], "--live-auth expects 'bearer:TOKEN'"),
    (["--live", "127.0.0.1:0", "--live-auth", "digest:u:s3cret"], "received kind 'digest'"),
])
def test_bad_fleet_flags_exit_2_before_anything_is_made(tiny_model, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code, err = _exit(["run", str(tiny_model), "--source", "synthetic", "--out", str(out), *extra], capsys)
    assert code == 2 and message in err, err
    assert not out.exists() and "s3cret" not in err


def test_a_config_file_with_an_unknown_key_or_bad_json_exits_2(tiny_model, tmp_path, capsys):
    cfg = tmp_path / "mqtt.json"
    cfg.write_text(json.dumps({"url": "mqtt://127.0.0.1", "camera": "bow", "retain_events": True}))
    code, err = _exit(["run", str(tiny_model), "--out", str(tmp_path / "o"), "--mqtt-config", str(cfg)], capsys)
    assert code == 2 and "MQTT options accepts keys" in err and "received unknown ['retain_events']" in err
    cfg.write_text("{url: nope}")
    code, err = _exit(["run", str(tiny_model), "--out", str(tmp_path / "o"), "--mqtt-config", str(cfg)], capsys)
    assert code == 2 and "is not valid JSON" in err
    code, err = _exit(["run", str(tiny_model), "--out", str(tmp_path / "o"), "--mqtt-config", str(tmp_path / "none.json")], capsys)
    assert code == 2 and "cannot read" in err and not (tmp_path / "o").exists()


_PROBE = textwrap.dedent("""
    import json, sys
    from edge.cli import _main
    code = _main(sys.argv[1:])
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("paho", "tensorflow", "keras", "prometheus_client"))
    print(json.dumps({"code": code, "heavy": heavy}))
""")


def test_a_run_without_mqtt_imports_neither_paho_nor_tensorflow(tiny_model, tmp_path):
    r = subprocess.run([sys.executable, "-c", _PROBE, "run", str(tiny_model), "--source", "synthetic", "--out",
                        str(tmp_path / "out"), "--max-frames", "5", "--no-video"],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=TIMEOUT)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}, r.stderr[-2000:]


def test_edgecam_run_publishes_to_a_real_broker_and_prints_the_counts(tiny_model, tmp_path, broker):
    sub = Subscriber(broker.port, "fleet/deck/#")
    r = subprocess.run([*edgecam_cmd(), "run", str(tiny_model), "--source", "synthetic", "--out", str(tmp_path / "out"),
                        "--max-frames", "60", "--no-video", "--mqtt", broker.url, "--mqtt-camera", "deck",
                        "--mqtt-prefix", "fleet", "--mqtt-thumbnail"],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = json.loads(r.stdout[r.stdout.index("{"): r.stdout.rindex("}") + 1])
    lines = read_jsonl(next((tmp_path / "out").glob("0001-*")) / "events" / "events.jsonl")
    wait_for(lambda: len([m for m in sub.events() if m["kind"] != "update"]) >= len(lines), what="the run's events")
    wait_for(lambda: sub.on("/availability") and sub.on("/availability")[-1][0] == b"offline", what="offline")
    sub.close()
    mq = printed["mqtt"]
    assert lines and mq["delivered"] == sum(mq["sent"].values()) and mq["spooled"] == 0
    assert mq["topics"]["events"] == "fleet/deck/events"
    got = {(m["event"]["id"], m["kind"]) for m in sub.events() if m["kind"] != "update"}
    assert got == {(e["id"], e["kind"]) for e in lines}
    start = next(m for m in sub.events() if m["kind"] == "start")
    assert start["thumbnail"] and start["snapshot"] == "events/event_0001.jpg" and start["run"] == printed["run"]
    assert [p for p, _ in sub.on("/availability")][0] == b"online"
    state = json.loads(sub.on("/state")[-1][0])
    assert state["status"] == "stopped" and state["model"]["format"] == "onnx-fp32" and state["frames"] == 60
    check_schema(state, schema("state"))
    for m in sub.events():
        check_schema(m, schema("events"))
