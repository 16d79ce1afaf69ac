"""The operator's page in a real browser: headless Chromium (Debian's ``chromium``) driven over the DevTools
protocol on a pipe (no extra package), against a real run with ``live`` on 127.0.0.1.

It checks what a person would look at: the stream renders, the score timeline grows, an event shows with its
snapshot, and the "no frame" banner appears when the camera stops. Set EDGECAM_PAGE_SCREENSHOT=PATH to keep the
screenshot. Skips with a reason where Chromium is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fleet_support import WAIT_S, Scenes, ShipDetector, free_port, wait_for

from edge.events import HysteresisOptions
from edge.pipeline import RunOptions, run

CHROMIUM = os.environ.get("EDGECAM_CHROMIUM") or next(
    (p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium-headless-shell"), shutil.which("google-chrome"))
     if p and os.access(p, os.X_OK)), None)  # Debian's /usr/bin/chromium is a shell wrapper; the binary keeps fds 3 and 4


class DevTools:
    """Chromium with ``--remote-debugging-pipe``: JSON commands on fd 3, answers on fd 4, each ended by a NUL."""

    def __init__(self, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 and 4 (dup first: they may already be 3 or 4)
            a, b = os.dup(cmd_r), os.dup(out_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = profile.with_suffix(".log")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        os.close(cmd_r)
        os.close(out_w)
        self._buf, self._id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=860, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, timeout: float = WAIT_S, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise AssertionError(f"Chromium did not answer {method} within {timeout:.0f} s")
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise AssertionError(f"Chromium closed the pipe: {self.log.read_text(errors='replace')[-2000:]}")
            self._buf += chunk

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for fd in (self._cmd_w, self._out_r):
            os.close(fd)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_operator_page_shows_the_stream_a_growing_timeline_events_and_a_stale_banner(tmp_path):
    port = free_port()
    source = Scenes(n=100_000, fps=12.0, period=36, ship=14, size=(360, 640))
    stop = threading.Event()
    opts = RunOptions(out_dir=tmp_path / "run", mode="all", live=f"127.0.0.1:{port}", stale_s=2.0, write_video=False,
                      hysteresis=HysteresisOptions(enter=0.6, leave=0.4, min_frames=2), smoother_alpha=0.5)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run(ShipDetector(), source, opts, stop_event=stop)))
    runner.start()
    browser = None
    try:
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/healthz") == 200, what="/healthz 200")
        browser = DevTools(tmp_path / "chromium")
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        wait_for(lambda: browser.js("location.port === '%d' && !!document.getElementById('stream')" % port), what="the page")

        size = wait_for(lambda: browser.js("(() => {const i = document.getElementById('stream');"
                                           " return i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null})()"),
                        what="the MJPEG stream to render in the page")
        assert size == [640, 360]
        wait_for(lambda: browser.js("document.getElementById('pill').textContent") == "live", what="the 'live' pill")
        first = wait_for(lambda: browser.js("+document.getElementById('timeline').dataset.points"), what="timeline points")
        time.sleep(2.5)
        later = browser.js("+document.getElementById('timeline').dataset.points")
        assert later > first + 5, f"the timeline grew from {first} to {later} points in 2.5 s"
        snapshot = wait_for(lambda: browser.js(
            "(() => {const i = document.querySelector('#events li img'); return i && i.complete ? i.naturalWidth : 0})()"),
            what="an event with its snapshot")
        assert snapshot == 320
        assert browser.js("document.getElementById('banner').style.display") == "none"

        source.stall()  # the camera stops sending, without an error
        stalled = time.monotonic()
        banner = wait_for(lambda: browser.js(
            "(() => {const b = document.getElementById('banner'); return getComputedStyle(b).display !== 'none' ? b.textContent : ''})()"),
            what="the stale banner")
        print(f"\nbanner after {time.monotonic() - stalled:.1f} s: {banner!r}")
        assert banner.startswith("No frame for ") and "camera may be lost" in banner
        assert browser.js("document.getElementById('pill').textContent") == "NO FRAME"
        # the fps is measured against the clock: it says there is no frame, and falls to 0 once the 5 s window is empty
        fps = wait_for(lambda: (lambda t: t if "(no frame for" in t else "")(browser.js("document.getElementById('fps').textContent")),
                       what="the fps cell to say no frame comes")
        assert browser.js("document.getElementById('fps').className") == "hot", fps
        wait_for(lambda: browser.js("document.getElementById('fps').textContent").startswith("0.0 (no frame for"),
                 what="the fps to fall to 0")
        assert _status(f"http://127.0.0.1:{port}/healthz") == 503
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
        (tmp_path / "page.png").write_bytes(shot)
        if os.environ.get("EDGECAM_PAGE_SCREENSHOT"):
            Path(os.environ["EDGECAM_PAGE_SCREENSHOT"]).write_bytes(shot)
    finally:
        if browser is not None:
            browser.close()
        source.release.set()
        stop.set()
        runner.join(WAIT_S)
    assert result["ended_by"] == "stopped" and result["events"] >= 1


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
