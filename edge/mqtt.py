"""The fleet link: events, state and availability over MQTT, with nothing lost when the link drops.

Topics (``prefix`` defaults to ``edgecam``, ``camera`` to this machine's host name)::

    <prefix>/<camera>/events        QoS 1, not retained: one message per event opened, updated, closed
    <prefix>/<camera>/state         QoS 1, retained: fps, last frame time, staleness, model, thresholds
    <prefix>/<camera>/availability  QoS 1, retained: "online"; the broker's last will says "offline"

Their JSON schemas are in ``docs/fleet/``. Event messages go through a
:class:`edge.spool.Spool` on disk first and are deleted only when the broker
acknowledges them, so a broker outage or a restart of edgecam loses none; a
message sent again after a reconnect carries the same ``message_id``, so a
consumer that keys on it never counts one event twice.

paho-mqtt does the protocol; it is imported only when ``--mqtt`` is given
(``pip install 'edgecam[fleet]'``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import queue
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from edge.errors import ConfigError, reject_unknown_keys
from edge.spool import Spool

__all__ = ["MqttUrl", "MqttOptions", "Topics", "MqttLink", "parse_mqtt_url", "load_mqtt_config"]

log = logging.getLogger(__name__)

_URL_FORM = "mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://... (TLS)"
_TOPIC_PART = re.compile(r"[^+#\x00/]+")
_PREFIX = re.compile(r"[^+#\x00]+")


@dataclass(frozen=True)
class MqttUrl:
    """A parsed ``mqtt://`` or ``mqtts://`` URL (the password is kept out of ``repr``)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse ``mqtt://[user[:password]@]host[:port]`` (port 1883) or ``mqtts://`` (TLS, port 8883).

    Raises:
        ConfigError: anything else, saying what was expected and what was received
            (with any password in it masked).

    Example:
        >>> parse_mqtt_url("mqtts://cam:secret@broker.example:8884")
        MqttUrl(host='broker.example', port=8884, tls=True, username='cam')
    """
    if not isinstance(url, str):
        raise ConfigError(f"--mqtt expects {_URL_FORM}; received {type(url).__name__}")
    shown = re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)  # never echo a password
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--mqtt expects {_URL_FORM}; received {shown!r} ({exc})") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"--mqtt expects {_URL_FORM}; received {shown!r} (scheme {parts.scheme or 'missing'!r})")
    if not parts.hostname:
        raise ConfigError(f"--mqtt expects {_URL_FORM}; received {shown!r} (no host)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"--mqtt expects {_URL_FORM} with nothing after the port; received {shown!r} "
                          f"(topics are set with --mqtt-prefix and --mqtt-camera)")
    if port == 0:
        raise ConfigError(f"--mqtt expects a port in 1..65535; received {shown!r}")
    tls = parts.scheme == "mqtts"
    unquote = urllib.parse.unquote
    return MqttUrl(parts.hostname, port or (8883 if tls else 1883), tls,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password is not None else None)


def _default_camera() -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-")
    return name or "camera"


@dataclass(frozen=True)
class MqttOptions:
    """Where and how a run publishes.

    Attributes:
        url: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://`` (see :func:`parse_mqtt_url`).
        camera: the camera's topic level (default: the host name); no ``/``, ``+`` or ``#``.
        prefix: the first topic level(s) (default ``edgecam``); no ``+`` or ``#``.
        client_id: MQTT client id (default ``edgecam-<camera>``).
        username, password: override the URL's (the password is also read from ``$EDGECAM_MQTT_PASSWORD``).
        ca_file: CA bundle for ``mqtts://`` (default: the system's).
        keepalive_s: MQTT keepalive; the broker sends the last will after 1.5 times this without a word.
        spool_dir: the on-disk spool (default: ``mqtt-spool`` beside the run folders).
        spool_mb: the spool's size bound; the oldest messages are dropped beyond it.
        thumbnail: put a small JPEG (base64) of the annotated frame in each ``start`` message.
        thumbnail_px: the thumbnail's width in pixels.
        update_s: while an event is open, an ``update`` message at most this often (0: none).
        state_s: republish the retained state this often.
        stale_s: the state says ``stale`` when no frame came for this long.
        drain_s: at the end of a run, wait this long at most for the spool to empty.
        window: event messages in flight at once (unacknowledged).
        reconnect_min_s, reconnect_max_s: the client's reconnect backoff.

    Example:
        >>> MqttOptions.from_dict({"url": "mqtt://127.0.0.1", "camera": "bow"}).topics.events
        'edgecam/bow/events'
    """

    url: str
    camera: str = dataclasses.field(default_factory=_default_camera)
    prefix: str = "edgecam"
    client_id: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ca_file: str | None = None
    keepalive_s: int = 30
    spool_dir: Path | None = None
    spool_mb: float = 64.0
    thumbnail: bool = False
    thumbnail_px: int = 160
    update_s: float = 1.0
    state_s: float = 10.0
    stale_s: float = 10.0
    drain_s: float = 5.0
    window: int = 16
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0

    def __post_init__(self) -> None:
        broker = parse_mqtt_url(self.url)  # raises with the expected form
        if self.spool_dir is not None:
            object.__setattr__(self, "spool_dir", Path(self.spool_dir))

        def number(v: Any, low: float) -> bool:
            return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v >= low

        def integer(v: Any, low: int) -> bool:
            return not isinstance(v, bool) and isinstance(v, int) and v >= low

        checks = (
            ("camera", isinstance(self.camera, str) and _TOPIC_PART.fullmatch(self.camera) is not None
             and not self.camera.startswith("$"), "a topic level without '/', '+', '#' or a leading '$'"),
            ("prefix", isinstance(self.prefix, str) and _PREFIX.fullmatch(self.prefix) is not None
             and not self.prefix.startswith(("$", "/")) and not self.prefix.endswith("/"),
             "topic levels without '+', '#', a leading '$' or '/' or a trailing '/'"),
            ("client_id", self.client_id is None or (isinstance(self.client_id, str) and 0 < len(self.client_id) <= 128),
             "None or 1-128 characters"),
            ("ca_file", self.ca_file is None or (broker.tls and Path(self.ca_file).is_file()),
             "None, or an existing file with an mqtts:// URL"),
            ("keepalive_s", integer(self.keepalive_s, 5), "an int >= 5"),
            ("spool_mb", number(self.spool_mb, 0.002), "a number >= 0.002 (2 kB)"),
            ("thumbnail", isinstance(self.thumbnail, bool), "true or false"),
            ("thumbnail_px", integer(self.thumbnail_px, 16) and self.thumbnail_px <= 1024, "an int in [16, 1024]"),
            ("update_s", number(self.update_s, 0.0), "a number >= 0 (0: no update messages)"),
            ("state_s", number(self.state_s, 0.1), "a number >= 0.1"),
            ("stale_s", number(self.stale_s, 0.1), "a number >= 0.1"),
            ("drain_s", number(self.drain_s, 0.0), "a number >= 0"),
            ("window", integer(self.window, 1) and self.window <= 1000, "an int in [1, 1000]"),
            ("reconnect_min_s", number(self.reconnect_min_s, 0.01), "a number >= 0.01"),
            ("reconnect_max_s", number(self.reconnect_max_s, 0.01) and self.reconnect_max_s >= self.reconnect_min_s,
             "a number >= reconnect_min_s"),
        )
        for name, ok, expected in checks:
            if not ok:
                value = getattr(self, name)
                raise ConfigError(f"MqttOptions.{name} must be {expected}; received {value!r}")

    def __repr__(self) -> str:  # the URL may hold a password: never print it
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        shown["url"] = re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", self.url)
        return f"MqttOptions({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def broker(self) -> MqttUrl:
        """The parsed URL, with ``username``/``password`` overrides and ``$EDGECAM_MQTT_PASSWORD`` applied."""
        url = parse_mqtt_url(self.url)
        password = self.password if self.password is not None else (url.password or os.environ.get("EDGECAM_MQTT_PASSWORD"))
        return dataclasses.replace(url, username=self.username or url.username, password=password)

    @property
    def topics(self) -> "Topics":
        return Topics(self.prefix, self.camera)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MqttOptions":
        """Build from plain data (a config file's JSON), rejecting unknown keys by name."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"MQTT options must be a JSON object; received {type(data).__name__}")
        reject_unknown_keys(cls, data, "MQTT options")
        if "url" not in data:
            raise ConfigError(f"MQTT options need 'url' ({_URL_FORM}); received keys {sorted(data)}")
        return cls(**dict(data))


def load_mqtt_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object of :class:`MqttOptions` keys (checked when the options are built)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--mqtt-config expects a readable JSON file; cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--mqtt-config expects a JSON object; {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--mqtt-config expects a JSON object; {path} holds a {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Topics:
    """The three topics of one camera."""

    prefix: str
    camera: str

    @property
    def events(self) -> str:
        return f"{self.prefix}/{self.camera}/events"

    @property
    def state(self) -> str:
        return f"{self.prefix}/{self.camera}/state"

    @property
    def availability(self) -> str:
        return f"{self.prefix}/{self.camera}/availability"


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)).encode()


class MqttLink:
    """A connection to the broker that delivers every spooled message once acknowledged, in order.

    A thread of its own hands spooled messages to paho (at most ``window``
    unacknowledged at a time) and deletes each from the spool when its PUBACK
    arrives. After a reconnect, paho first sends again what was in flight
    (same message, so the same ``message_id``); new messages follow only once
    those are acknowledged, so order holds across outages. The retained state
    is republished every ``state_s`` and on every (re)connect.

    Args:
        options: broker, topics, spool and timing.
        spool_dir: the spool folder when ``options.spool_dir`` is None.
        state: returns the retained state's body; called on the link's thread.

    Raises:
        ConfigError: paho-mqtt is not installed, or the spool is in use by another process.
    """

    def __init__(self, options: MqttOptions, spool_dir: str | os.PathLike[str] | None = None,
                 state: Callable[[], dict[str, Any]] | None = None) -> None:
        try:
            import paho.mqtt.client as paho  # only a run that publishes needs it
        except ImportError:
            raise ConfigError("--mqtt needs paho-mqtt, which is not installed; expected it from "
                              "pip install 'edgecam[fleet]'") from None
        self._paho = paho
        self.options, self.topics = options, options.topics
        folder = options.spool_dir or spool_dir
        if folder is None:
            raise ConfigError("MqttLink needs a spool folder: MqttOptions.spool_dir or spool_dir")
        self.spool = Spool(folder, max_bytes=max(1024, int(options.spool_mb * 1e6)))
        self._found_upto = self.spool.found_upto
        self._state = state or (lambda: {})
        self._cond = threading.Condition()
        self._mutex = threading.Lock()  # guards _inflight; never held while calling paho
        # held while handing messages to paho and while a connect starts a new epoch (never by paho's own locks'
        # holders: on_connect runs without them), so a message is never tagged with an epoch it was not sent in
        self._handover = threading.Lock()
        self._inflight: dict[int, tuple[int, int]] = {}  # seq -> (mid, epoch it was handed in)
        self._mid_seq: dict[int, int] = {}
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._handed_upto = 0
        self._epoch = 0
        self._connected = False
        self._stop = threading.Event()
        self._state_due = 0.0
        self._down_since: float | None = time.monotonic()
        self.counts = dict.fromkeys(("handed", "delivered", "replayed", "connects", "disconnects", "state_published"), 0)
        self.offline_s = 0.0
        self.peak_spooled = self.spool.depth  # the most messages waiting at once
        self.last_error: str | None = None
        self._closed = False
        self._leaving = False

        broker = options.broker
        client_id = options.client_id or f"edgecam-{options.camera}"
        self._client = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=paho.MQTTv311, clean_session=True)
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self._client.tls_set(ca_certs=options.ca_file)
        self._client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
        self._client.max_inflight_messages_set(max(20, options.window))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._broker = broker
        self._thread = threading.Thread(target=self._serve, name="mqtt", daemon=True)

    # ---- lifecycle
    def start(self) -> "MqttLink":
        """Connect in the background (a broker that is down is retried with backoff) and start sending."""
        self._client.connect_async(self._broker.host, self._broker.port, self.options.keepalive_s)
        self._client.loop_start()
        self._thread.start()
        log.info("MQTT: publishing to %s:%d as %s/%s (%s)", self._broker.host, self._broker.port, self.options.prefix,
                 self.options.camera, "TLS" if self._broker.tls else "no TLS")
        return self

    @property
    def connected(self) -> bool:
        return self._connected

    def send(self, topic: str, message: Mapping[str, Any]) -> int:
        """Spool one message for delivery (durable before this returns); returns its spool number."""
        with self._mutex:
            keep = set(self._inflight)
        seq = self.spool.put(topic, _compact(message), keep=keep)
        self.peak_spooled = max(self.peak_spooled, self.spool.depth)
        with self._cond:
            self._cond.notify_all()
        return seq

    def close(self, drain_s: float | None = None) -> None:
        """Wait up to ``drain_s`` for the spool to empty, say ``offline``, disconnect. Safe to call twice.

        What is still spooled stays on disk for the next run.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + (self.options.drain_s if drain_s is None else drain_s)
        with self._cond:
            self._cond.wait_for(lambda: self.spool.depth == 0 and not self._inflight or time.monotonic() >= deadline,
                                max(0.0, deadline - time.monotonic()))
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._connected:  # the last state ("stopped"), then offline: retained for whoever looks next
            try:
                last = [self._publish_state(force=True),
                        self._client.publish(self.topics.availability, "offline", qos=1, retain=True)]
                for info in last:
                    info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError) as exc:
                log.debug("could not publish the last state and offline before disconnecting: %s", exc)
        self._leaving = True  # the disconnect below is ours, not an outage
        self._client.disconnect()
        self._client.loop_stop()
        self._note_up()  # freezes offline_s: time after the end of the run is no outage
        left = self.spool.depth
        if left:
            log.warning("MQTT: %d messages not yet delivered stay in %s for the next run", left, self.spool.folder)
        self.spool.close()

    def stats(self) -> dict[str, Any]:
        """Counts for the summary and /metrics."""
        offline = self.offline_s + (time.monotonic() - self._down_since if self._down_since is not None else 0.0)
        return {"connected": self._connected, **self.counts, "spooled": self.spool.depth, "spool_bytes": self.spool.bytes,
                "peak_spooled": self.peak_spooled, "dropped": self.spool.dropped, "found_at_start": self.spool.found,
                "offline_s": round(offline, 3),
                "last_error": self.last_error}

    # ---- paho callbacks (paho's thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            error = f"broker refused the connection: {reason}"
            if error != self.last_error:  # paho retries with backoff: say it once, not at every attempt
                log.error("MQTT: %s; events stay spooled on disk", error)
            self.last_error = error
            return
        with self._handover:
            self._connected = True
            self._epoch += 1
        with self._cond:
            self.counts["connects"] += 1
            self._state_due = 0.0
            self._cond.notify_all()
        self._note_up()
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        log.info("MQTT: connected to %s:%d (%d messages spooled)", self._broker.host, self._broker.port, self.spool.depth)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was = self._connected
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        if was and not self._leaving:
            self.counts["disconnects"] += 1
            self._note_down()
            log.warning("MQTT: lost the broker (%s); events are spooled on disk until it is back", reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._acks.put(mid)  # matched on the link's thread: no lock shared with paho's
        with self._cond:
            self._cond.notify_all()

    def _note_up(self) -> None:
        if self._down_since is not None:
            self.offline_s += time.monotonic() - self._down_since
            self._down_since = None

    def _note_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()

    # ---- the link's thread
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._reap()
                self._hand_over()
                self._publish_state()
            except Exception:  # the link must outlive a bad message or a paho surprise
                log.exception("MQTT link: unexpected error; going on")
            with self._cond:
                if self._acks.empty():
                    self._cond.wait(0.1)
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                return
            seq = self._mid_seq.pop(mid, None)
            if seq is None:
                continue  # the state or availability, which are not spooled
            with self._mutex:
                self._inflight.pop(seq, None)
            self.spool.ack(seq)
            self.counts["delivered"] += 1
            if seq <= self._found_upto:
                self.counts["replayed"] += 1
            with self._cond:
                self._cond.notify_all()

    def _hand_over(self) -> None:
        with self._handover:
            self._hand_over_locked()

    def _hand_over_locked(self) -> None:
        epoch = self._epoch
        if not self._connected:
            return
        with self._mutex:
            if any(e != epoch for _, e in self._inflight.values()):
                return  # paho is sending again what was in flight before the reconnect: keep the order
            room = self.options.window - len(self._inflight)
        if room <= 0:
            return
        for entry in self.spool.pending(after=self._handed_upto, limit=room):
            info = self._client.publish(entry.topic, entry.payload, qos=1)
            if info.rc == self._paho.MQTT_ERR_QUEUE_SIZE:
                break
            with self._mutex:
                self._inflight[entry.seq] = (info.mid, epoch)
            self._mid_seq[info.mid] = entry.seq
            self._handed_upto = entry.seq
            self.counts["handed"] += 1

    def _publish_state(self, force: bool = False) -> Any:
        now = time.monotonic()
        if not force and (not self._connected or now < self._state_due):
            return None
        self._state_due = now + self.options.state_s
        body = {**self._state(), "mqtt": {k: v for k, v in self.stats().items() if k != "last_error"}}
        self.counts["state_published"] += 1
        return self._client.publish(self.topics.state, _compact(body), qos=1, retain=True)
