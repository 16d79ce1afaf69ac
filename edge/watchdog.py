"""systemd's notify protocol: READY when the model is warm, WATCHDOG while frames flow.

Under a unit with ``Type=notify`` and ``WatchdogSec=`` (see
``docs/fleet/watchdog.conf``), systemd sets ``$NOTIFY_SOCKET`` and
``$WATCHDOG_USEC``. :class:`Notifier` sends datagrams to that socket with the
standard library alone; :class:`Watchdog` pings only while the run makes
progress (a frame finished, or the capture tried to reopen a lost source), so a
frame loop that hangs (a wedged camera driver, a runtime that never returns)
stops pinging and systemd restarts the unit. Without ``$NOTIFY_SOCKET``
(a shell, a test, no systemd) every call does nothing.

When the watchdog is on, :mod:`faulthandler` is enabled: systemd stops a hung
unit with SIGABRT, and the journal then shows where every thread was stuck.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import socket
import threading
from typing import Callable, Hashable, Mapping

__all__ = ["Notifier", "Watchdog"]

log = logging.getLogger(__name__)


class Notifier:
    """Send ``KEY=VALUE`` datagrams to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace).

    Args:
        environ: where to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (default ``os.environ``).

    Example:
        >>> Notifier({}).notify("READY=1")  # no systemd: nothing is sent
        False
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or (pid.isdigit() and int(pid) == os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and ours else None
        self._sock: socket.socket | None = None
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram of ``fields`` (``"READY=1"``, ``"STATUS=..."``); True if it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.warning("could not notify systemd at %r: %s", self.address.replace("\0", "@"), exc)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


class Watchdog:
    """Ping systemd's watchdog every ``interval`` while ``progress()`` changes; READY and STOPPING around it.

    Args:
        progress: returns anything that changes while the run is alive (frame and reconnect counters).
        notifier: where to send (default: from the environment).
        interval: seconds between checks; default half of ``$WATCHDOG_USEC``, as systemd advises.

    Example:
        >>> with Watchdog(lambda: 0, Notifier({})) as dog:  # no systemd: a no-op
        ...     dog.ready("model warm")
    """

    def __init__(self, progress: Callable[[], Hashable], notifier: Notifier | None = None,
                 interval: float | None = None) -> None:
        self.progress, self.notifier = progress, notifier or Notifier()
        wd = self.notifier.watchdog_s
        self.interval = interval if interval is not None else (wd / 2 if wd else None)
        self.pings = 0
        self.missed = 0  # checks at which nothing had moved, so no ping was sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.notifier.enabled and self.interval:
            faulthandler.enable()  # a watchdog SIGABRT then prints every thread's stack to the journal

    def ready(self, status: str = "") -> None:
        """Tell systemd the service is up (the model is warm) and start pinging."""
        self.notifier.notify("READY=1", *([f"STATUS={status}"] if status else []))
        if self.notifier.enabled and self.interval and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
            self._thread.start()
            log.info("systemd watchdog: pinging every %.1f s while frames flow", self.interval)

    def _loop(self) -> None:
        last, stalled = self.progress(), 0
        while not self._stop.wait(self.interval):
            now = self.progress()
            if now != last:
                self.notifier.notify("WATCHDOG=1")
                self.pings += 1
            else:
                self.missed += 1
                if stalled == 0:  # once per stall: systemd restarts the unit if it lasts WatchdogSec
                    log.warning("no frame and no reconnect attempt for %.1f s: not pinging the systemd watchdog",
                                self.interval)
            stalled = 0 if now != last else stalled + 1
            last = now

    def close(self, status: str = "") -> None:
        """Say STOPPING and stop pinging; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.notifier.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
        self.notifier.close()

    def __enter__(self) -> "Watchdog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
