"""The live view's HTTP side: one request handler class, its routes, authorisation and the MJPEG stream.

:class:`edge.live.LiveServer` serves it (``make_handler(server)``); everything the handler shows it reads
from that server (the page, the latest JPEG, stats, status, snapshots, /metrics, /healthz).
"""

from __future__ import annotations

import hmac
import json
import logging
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from edge.live_auth import COOKIE
from edge.live_page import PAGE

__all__ = ["LiveHandler", "make_handler"]

log = logging.getLogger("edge.live")

_BOUNDARY = "edgecamframe"
_TEXT = "text/plain; charset=utf-8"


def make_handler(live: Any) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to ``live`` (an :class:`edge.live.LiveServer`); idle connections time out after its ``idle_s``."""
    return type("Handler", (LiveHandler,), {"live": live, "timeout": live.idle_s})


class LiveHandler(BaseHTTPRequestHandler):
    """GET routes of the live view; ``live`` is the serving :class:`edge.live.LiveServer` (see :func:`make_handler`)."""

    server_version = "edgecam-live"
    live: Any = None
    # path -> method name; /events/N.jpg and the stream are matched in do_GET
    ROUTES = {"/": "_page", "/index.html": "_page", "/stats.json": "_stats", "/status.json": "_status",
              "/metrics": "_metrics", "/stream.mjpg": "_stream"}

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, "application/json", json.dumps(obj).encode())

    def _authorised(self, path: str, query: dict[str, list[str]]) -> bool:
        auth = self.live.auth
        if auth is None or auth.allows(self.headers.get("Authorization"), self.headers.get("Cookie")):
            return True
        token = (query.get("token") or [None])[0]
        if auth.kind == "bearer" and token is not None and hmac.compare_digest(token.encode(), auth.secret.encode()):
            # a browser cannot add a header to <img src>: the token becomes a cookie, and leaves the address bar
            rest = urllib.parse.urlencode({k: v for k, v in query.items() if k != "token"}, doseq=True)
            self._send(303, _TEXT, b"authorised\n", {
                "Location": path + (f"?{rest}" if rest else ""),
                "Set-Cookie": f"{COOKIE}={urllib.parse.quote(token)}; HttpOnly; SameSite=Strict; Path=/"})
            return False
        challenge = 'Basic realm="edgecam", charset="UTF-8"' if auth.kind == "basic" else 'Bearer realm="edgecam"'
        how = ("a user and password" if auth.kind == "basic"
               else "'Authorization: Bearer TOKEN', or open /?token=TOKEN once in a browser")
        self._send(401, _TEXT, f"edgecam: this view needs {how}\n".encode(), {"WWW-Authenticate": challenge})
        return False

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        path, query = parts.path, urllib.parse.parse_qs(parts.query)
        if path == "/healthz":  # a supervisor polls it without credentials; it shows no picture
            code, body = self.live.health()
            self._json(code, body)
            return
        if not self._authorised(path, query):
            return
        if path in self.ROUTES:
            getattr(self, self.ROUTES[path])(query)
        elif path.startswith("/events/") and path.endswith(".jpg") and path[8:-4].isdigit():
            self._snapshot(int(path[8:-4]))
        else:
            self._send(404, _TEXT, b"not found: try /, /stream.mjpg, /stats.json, /status.json, /metrics or /healthz\n")

    def _page(self, _query: dict) -> None:
        self._send(200, "text/html; charset=utf-8", PAGE.encode())

    def _stats(self, _query: dict) -> None:
        self._send(200, "application/json", self.live.stats_json())

    def _status(self, query: dict) -> None:
        after = (query.get("after") or ["0"])[0]
        self._json(200, self.live.status(int(after) if after.isdigit() else 0))

    def _snapshot(self, event_id: int) -> None:
        jpeg = self.live.snapshot(event_id)
        if jpeg is None:
            self._send(404, _TEXT, b"no snapshot of that event is kept\n")
        else:
            self._send(200, "image/jpeg", jpeg)

    def _metrics(self, _query: dict) -> None:
        if self.live.metrics is None:
            self._send(404, _TEXT, b"/metrics is off: it needs prometheus-client (pip install 'edgecam[fleet]')\n")
        else:
            body, ctype = self.live.metrics()
            self._send(200, ctype, body)

    def _stream(self, _query: dict) -> None:
        live = self.live
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        version = 0
        live._viewer(+1)
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
        finally:
            live._viewer(-1)
