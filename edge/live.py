"""A tiny live view: MJPEG of the latest annotated frame and its numbers, over plain HTTP.

Standard library only (``http.server`` on a daemon thread), so a Pi needs no
web framework. It binds to loopback unless remote access is asked for by name:
the stream shows a camera, and the server has no authentication.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from edge.errors import ConfigError, FrameError

__all__ = ["LiveServer"]

log = logging.getLogger(__name__)

_BOUNDARY = "edgecamframe"
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgecam live</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:1em}
img{max-width:100%;border:1px solid #444}pre{background:#222;padding:.5em}</style></head>
<body><h1>edgecam live</h1><img src="/stream.mjpg" alt="live stream"><pre id="stats">waiting...</pre>
<script>
async function poll(){try{const r=await fetch('/stats.json',{cache:'no-store'});
document.getElementById('stats').textContent=JSON.stringify(await r.json(),null,2);}
catch(e){document.getElementById('stats').textContent='disconnected';}}
poll();setInterval(poll,1000);
</script></body></html>
"""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveServer:
    """Serve ``/`` (page), ``/stream.mjpg`` (MJPEG) and ``/stats.json`` from a daemon thread.

    Args:
        host: address to bind; loopback unless ``allow_remote``.
        port: TCP port; 0 picks a free one (see ``port``).
        allow_remote: required to bind anything but loopback (e.g. ``0.0.0.0``).
        jpeg_quality: JPEG quality of the stream, 1..100.

    Raises:
        ConfigError: a non-loopback host without ``allow_remote``, or bad options.

    Example:
        >>> with LiveServer(port=0) as live:  # doctest: +SKIP
        ...     live.publish(annotated_rgb, {"fps": 12.5})
        ...     print(live.url)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, allow_remote: bool = False, jpeg_quality: int = 80) -> None:
        if not _is_loopback(host) and not allow_remote:
            raise ConfigError(
                f"LiveServer binds to loopback (127.0.0.1, ::1, localhost) unless allow_remote=True; "
                f"received host {host!r}. The stream has no authentication."
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"LiveServer.port must be an int in [0, 65535]; received {port!r}")
        if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"LiveServer.jpeg_quality must be an int in [1, 100]; received {jpeg_quality!r}")
        self.jpeg_quality = jpeg_quality
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._version = 0
        self._jpeg: tuple[int, bytes] | None = None  # (version, bytes): encode once per frame, not per client
        self._stats: dict[str, Any] = {}
        self._closed = False

        server_cls = type("_Server", (ThreadingHTTPServer,), {
            "daemon_threads": True,
            "block_on_close": False,  # stream handlers end on their own when closing is flagged
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
        })
        self._server = server_cls((host, port), _make_handler(self))
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"live:{self.port}", daemon=True)
        self._thread.start()
        log.info("live view on %s", self.url)

    @property
    def url(self) -> str:
        """Address of the page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def publish(self, frame_rgb: np.ndarray, stats: dict[str, Any] | None = None) -> None:
        """Make ``frame_rgb`` (RGB uint8) the current frame and ``stats`` the current numbers.

        Cheap: the frame is kept by reference (callers pass a fresh array per frame)
        and only encoded when a client asks for it.
        """
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.dtype != np.uint8 or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            got = f"{frame_rgb.dtype} {frame_rgb.shape}" if isinstance(frame_rgb, np.ndarray) else type(frame_rgb).__name__
            raise FrameError(f"expected an RGB uint8 (H, W, 3) frame to publish; received {got}")
        with self._cond:
            self._frame = frame_rgb
            self._version += 1
            if stats is not None:
                self._stats = dict(stats)
            self._cond.notify_all()

    def stats_json(self) -> bytes:
        """The current numbers as JSON bytes."""
        with self._cond:
            stats = dict(self._stats)
        return json.dumps(stats, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)).encode()

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes] | None:
        """Wait for a frame newer than version ``after``; return ``(version, jpeg)``, or None on timeout/close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._version > after, timeout):
                return None
            if self._closed or self._frame is None:
                return None
            if self._jpeg is None or self._jpeg[0] != self._version:
                bgr = cv2.cvtColor(self._frame, cv2.COLOR_RGB2BGR)
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    return None
                self._jpeg = (self._version, buf.tobytes())
            return self._jpeg

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


def _make_handler(live: LiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgecam-live"

        def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
            log.debug("%s %s", self.address_string(), fmt % args)

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", _PAGE.encode())
            elif path == "/stats.json":
                self._send(200, "application/json", live.stats_json())
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /, /stream.mjpg or /stats.json\n")

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            version = 0
            try:
                while not live.closed:
                    item = live.next_jpeg(version)
                    if item is None:
                        continue
                    version, jpeg = item
                    head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(head.encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the viewer went away

    return Handler
