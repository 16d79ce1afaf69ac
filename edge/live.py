"""The live view: an operator's page, the MJPEG stream, ``/metrics`` and ``/healthz``, over plain HTTP.

Standard library only (``http.server`` on a daemon thread), so a Pi needs no
web framework. Paths:

    /                 the operator's page (:mod:`edge.live_page`): stream, score timeline, events, numbers, a stale banner
    /stream.mjpg      MJPEG of the latest annotated frame
    /stats.json       the latest frame's numbers, as the run published them, with ``age_s``, ``stale``,
                      ``no_frame`` and ``fps`` measured now (so a lost camera shows as one, with fps falling to 0)
    /status.json      staleness, timeline points (``?after=SEQ``: only newer ones), recent events
    /events/ID.jpg    the snapshot of a recent event
    /metrics          Prometheus text format (see :mod:`edge.fleet_metrics`), when the run provides it
    /healthz          200 while frames flow, 503 before the first one or once none came for ``stale_s``

At most ``max_clients`` connections are served at once (each has a thread);
one more is answered ``503`` at once, without a thread, and counted as
refused. A connection that sends nothing, or does not read the stream, for
``idle_s`` seconds is closed. ``/status.json`` shows ``clients`` (open, max,
refused, idle_s).

It binds to loopback unless remote access is asked for by name. With
``auth`` (``bearer:TOKEN`` or ``basic:USER:PASSWORD``) every path but
``/healthz`` needs it: an ``Authorization`` header, or for a bearer token in a
browser, ``/?token=TOKEN`` once (it becomes an HttpOnly cookie and leaves the
address bar).
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import json
import logging
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Callable

import cv2
import numpy as np

from edge.errors import ConfigError, FrameError
from edge.live_auth import LiveAuth
from edge.live_http import make_handler
from edge.stats import RateWindow

__all__ = ["LiveServer", "LiveAuth"]

log = logging.getLogger(__name__)

_POINT_S = 0.2  # the timeline keeps at most one point per this many seconds
_EVENTS_KEPT = 20


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveServer:
    """Serve the operator's page, the stream and the run's numbers from a daemon thread.

    Args:
        host: address to bind; loopback unless ``allow_remote``.
        port: TCP port; 0 picks a free one (see ``port``).
        allow_remote: required to bind anything but loopback (e.g. ``0.0.0.0``).
        jpeg_quality: JPEG quality of the stream, 1..100.
        auth: who may see the page, the stream and ``/metrics`` (a LiveAuth or its spec); None: anyone who can connect.
        metrics: returns ``(body, content_type)`` for ``/metrics``; None: 404.
        stale_s: no frame for this long makes ``/healthz`` 503 and the page show its banner.
        history_s: seconds of score timeline kept for the page.
        fps_window_s: ``fps`` in ``/stats.json`` counts the frames published in this many seconds before the request.
        max_clients: connections served at once (one thread each); more are refused with 503 and counted.
        idle_s: a connection idle this long (no request, or a stream nobody reads) is closed.

    Raises:
        ConfigError: a non-loopback host without ``allow_remote``, or bad options.

    Example:
        >>> with LiveServer(port=0) as live:  # doctest: +SKIP
        ...     live.publish(annotated_rgb, {"fps": 12.5, "score": 0.7, "smoothed": 0.6})
        ...     print(live.url)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, allow_remote: bool = False, jpeg_quality: int = 80,
                 auth: LiveAuth | str | None = None, metrics: Callable[[], tuple[bytes, str]] | None = None,
                 stale_s: float = 5.0, history_s: float = 300.0, fps_window_s: float = 5.0, max_clients: int = 16,
                 idle_s: float = 30.0) -> None:
        if not _is_loopback(host) and not allow_remote:
            raise ConfigError(
                f"LiveServer binds to loopback (127.0.0.1, ::1, localhost) unless allow_remote=True; "
                f"received host {host!r}. Give --live-auth too, or anyone on the network sees the camera."
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"LiveServer.port must be an int in [0, 65535]; received {port!r}")
        if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"LiveServer.jpeg_quality must be an int in [1, 100]; received {jpeg_quality!r}")
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or not 1 <= max_clients <= 1024:
            raise ConfigError(f"LiveServer.max_clients must be an int in [1, 1024]; received {max_clients!r}")
        for name, value in (("stale_s", stale_s), ("history_s", history_s), ("fps_window_s", fps_window_s), ("idle_s", idle_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"LiveServer.{name} must be a number > 0; received {value!r}")
        self.auth = LiveAuth.parse(auth) if isinstance(auth, str) else auth
        if not _is_loopback(host) and self.auth is None:
            log.warning("the live view on %s has no --live-auth: anyone who can reach it sees the camera and /metrics", host)
        self.jpeg_quality, self.metrics, self.stale_s = jpeg_quality, metrics, float(stale_s)
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._version = 0
        self._jpeg: tuple[int, bytes] | None = None  # (version, bytes): encode once per frame, not per client
        self._stats: dict[str, Any] = {}
        self._closed = False
        self._last_publish: float | None = None
        self._rate = RateWindow(fps_window_s)
        self._points: collections.deque = collections.deque(maxlen=max(10, int(history_s / _POINT_S)))
        self._seq = 0
        self._events: collections.OrderedDict[int, dict] = collections.OrderedDict()
        self._snapshots: dict[int, bytes] = {}
        self._thresholds: tuple[Any, Any] = (None, None)
        self._viewers = 0
        self.max_clients, self.idle_s = max_clients, float(idle_s)
        self.clients = 0  # connections being served now
        self.refused = 0  # connections turned away because max_clients were being served

        server_cls = type("_Server", (_BoundedServer,), {
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
            "live": self,
        })
        try:
            self._server = server_cls((host, port), make_handler(self))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"live view: expected a free port on {host}; received port {port}, which another "
                                  "process is listening on (address already in use); choose another with --live") from None
            raise ConfigError(f"live view: expected an address this machine can listen on; received {host}:{port} "
                              f"({exc.strerror or exc})") from None
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"live:{self.port}", daemon=True)
        self._thread.start()
        log.info("live view on %s%s", self.url, " (auth required)" if self.auth else "")

    @property
    def url(self) -> str:
        """Address of the page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def watching(self) -> bool:
        """Someone has the stream open (worth drawing the annotation for)."""
        return self._viewers > 0

    def publish(self, frame_rgb: np.ndarray, stats: dict[str, Any] | None = None) -> None:
        """Make ``frame_rgb`` (RGB uint8) the current frame and ``stats`` the current numbers.

        Cheap: the frame is kept by reference (callers pass a fresh array per frame)
        and only encoded when a client asks for it. ``stats`` keys the page reads:
        ``score``, ``smoothed``, ``enter``, ``leave`` (the timeline) and ``event``
        (an event record: ``kind`` start or end, ``id``, ``label``, ``peak_score``).
        """
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.dtype != np.uint8 or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            got = f"{frame_rgb.dtype} {frame_rgb.shape}" if isinstance(frame_rgb, np.ndarray) else type(frame_rgb).__name__
            raise FrameError(f"expected an RGB uint8 (H, W, 3) frame to publish; received {got}")
        now = time.monotonic()
        snapshot = None
        if stats and isinstance(stats.get("event"), dict) and stats["event"].get("kind") == "start":
            snapshot = self._encode(frame_rgb, width=320)
        with self._cond:
            self._frame = frame_rgb
            self._version += 1
            self._last_publish = now
            self._rate.add(now)
            if stats is not None:
                self._stats = dict(stats)
                self._track(now, stats, snapshot)
            self._cond.notify_all()

    def _track(self, now: float, stats: dict[str, Any], snapshot: bytes | None) -> None:
        """Timeline points and recent events (under ``_cond``)."""
        if "enter" in stats or "leave" in stats:
            self._thresholds = (stats.get("enter"), stats.get("leave"))
        event = stats.get("event") if isinstance(stats.get("event"), dict) else None
        open_events = [e for e in self._events.values() if e["open"]]
        if event is not None and isinstance(event.get("id"), int):
            eid = event["id"]
            if event.get("kind") == "start":
                self._events[eid] = {"id": eid, "label": str(event.get("label", "")), "start_time": time.time(),
                                     "end_time": None, "peak": event.get("peak_score"), "open": True,
                                     "snapshot": f"/events/{eid}.jpg" if snapshot else None}
                if snapshot:
                    self._snapshots[eid] = snapshot
                while len(self._events) > _EVENTS_KEPT:
                    old, _ = self._events.popitem(last=False)
                    self._snapshots.pop(old, None)
            elif event.get("kind") == "end" and eid in self._events:
                self._events[eid].update(open=False, end_time=time.time(), peak=event.get("peak_score", self._events[eid]["peak"]))
        score = stats.get("score")
        for e in open_events:
            if isinstance(score, (int, float)) and (e["peak"] is None or score > e["peak"]):
                e["peak"] = score
        is_open = any(e["open"] for e in self._events.values())
        last = self._points[-1] if self._points else None
        if last is None or now - last[1] >= _POINT_S or event is not None:
            self._seq += 1
            self._points.append((self._seq, now, _num(score), _num(stats.get("smoothed")), is_open))

    def close_events(self) -> None:
        """Mark every open event ended (the run ended); the page then shows them as past."""
        with self._cond:
            for e in self._events.values():
                if e["open"]:
                    e.update(open=False, end_time=time.time())

    def stats_json(self) -> bytes:
        """The current numbers as JSON bytes, with staleness and fps measured against the clock now.

        ``age_s`` is the time since the last frame (None before the first),
        ``stale`` is true once it passes ``stale_s`` (or before the first
        frame), ``no_frame`` says so in words ("no frame for 31 s"), and
        ``fps`` is the published rate over the last ``fps_window_s`` seconds:
        it falls to 0 during an outage instead of repeating the last figure.
        The other numbers are the last frame's (``frame``, ``frames``, ...).
        """
        now = time.monotonic()
        with self._cond:
            stats = dict(self._stats)
            fps = self._rate.per_second(now)
            last = self._last_publish
        age = None if last is None else now - last
        stale = age is None or age > self.stale_s
        stats.update(fps=fps, age_s=None if age is None else round(age, 3), stale=stale,
                     no_frame=None if not stale else ("no frame yet" if age is None else f"no frame for {age:.0f} s"))
        return json.dumps(stats, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)).encode()

    def age_s(self) -> float | None:
        """Seconds since the last frame was published; None before the first."""
        last = self._last_publish
        return None if last is None else time.monotonic() - last

    def status(self, after: int = 0) -> dict[str, Any]:
        """What ``/status.json`` serves: staleness, timeline points newer than ``after``, recent events."""
        age = self.age_s()
        with self._cond:
            points = [list(p) for p in self._points if p[0] > after]
            events = [dict(e) for e in self._events.values()]
            enter, leave = self._thresholds
            seq = self._seq
        return {"now": time.monotonic(), "epoch": time.time(), "age_s": None if age is None else round(age, 3),
                "stale": age is None or age > self.stale_s, "stale_after_s": self.stale_s, "seq": seq,
                "enter": enter, "leave": leave, "points": points, "events": events,
                "clients": {"open": self.clients, "max": self.max_clients, "refused": self.refused, "idle_s": self.idle_s}}

    def _admit(self) -> bool:
        """Take a client slot (on the server's thread); False, counted as refused, when all are taken."""
        with self._cond:
            if self.clients >= self.max_clients:
                self.refused += 1
                refused = self.refused
            else:
                self.clients += 1
                return True
        if refused == 1 or refused % 100 == 0:
            log.warning("live view: %d clients already served (max_clients); refused a connection (%d so far)",
                        self.max_clients, refused)
        return False

    def _release(self) -> None:
        with self._cond:
            self.clients -= 1

    def snapshot(self, event_id: int) -> bytes | None:
        with self._cond:
            return self._snapshots.get(event_id)

    def health(self) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, body)`` for ``/healthz``: 200 while frames come, 503 otherwise."""
        age = self.age_s()
        if age is None:
            return 503, {"status": "starting", "last_frame_age_s": None, "stale_after_s": self.stale_s}
        ok = age <= self.stale_s
        return (200 if ok else 503), {"status": "ok" if ok else "stale", "last_frame_age_s": round(age, 3),
                                      "stale_after_s": self.stale_s}

    def _encode(self, frame_rgb: np.ndarray, width: int | None = None) -> bytes | None:
        if width is not None and frame_rgb.shape[1] > width:
            h = max(1, round(frame_rgb.shape[0] * width / frame_rgb.shape[1]))
            frame_rgb = cv2.resize(frame_rgb, (width, h), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return buf.tobytes() if ok else None

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes] | None:
        """Wait for a frame newer than version ``after``; return ``(version, jpeg)``, or None on timeout/close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._version > after, timeout):
                return None
            if self._closed or self._frame is None:
                return None
            if self._jpeg is None or self._jpeg[0] != self._version:
                jpeg = self._encode(self._frame)
                if jpeg is None:
                    return None
                self._jpeg = (self._version, jpeg)
            return self._jpeg

    def _viewer(self, delta: int) -> None:
        with self._cond:
            self._viewers += delta

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _num(v: Any) -> float | None:
    return round(float(v), 4) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else None


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, but at most ``live.max_clients`` of them; the rest get a 503 from the accept thread."""

    daemon_threads = True
    block_on_close = False  # stream handlers end on their own when closing is flagged
    request_queue_size = 64  # a burst of connections waits in the backlog to be served or refused, not dropped
    live: LiveServer

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.live._admit():
            try:
                super().process_request(request, client_address)
            except Exception:  # no thread could be started: give the slot back
                self.live._release()
                raise
            return
        body = f"edgecam: the live view serves {self.live.max_clients} connections at once; try again shortly\n".encode()
        try:
            request.setblocking(False)  # never wait on a refused client
            request.send(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"
                         b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\n\r\n" + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.live._release()
