"""The run's side of the fleet link: frame records in, MQTT event and state messages out.

:class:`MqttSink` is a :class:`edge.sinks.Sink` that ``edgecam run --mqtt``
adds to the run's sinks. It watches each frame's record for an event opening
or closing (``record.event``), sends an ``update`` while one is open, and
keeps the numbers of the retained state; :class:`edge.mqtt.MqttLink` delivers.

Every event message carries a ``message_id`` (``<run>/<event id>/<kind>``, and
``/<n>`` for the n-th update) that stays the same however often the message is
sent again, and a ``seq`` that counts the run's messages in order.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
import os
import time
from typing import Any, Mapping

import cv2
import numpy as np

from edge.mqtt import MqttLink, MqttOptions
from edge.records import FrameRecord
from edge.results import FrameResult
from edge.sinks import Sink, StorageError

__all__ = ["MqttSink", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def _utc(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return _dt.datetime.fromtimestamp(epoch_s, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MqttSink(Sink):
    """Publish a run's events and state over MQTT (see :mod:`edge.mqtt` for the topics).

    Args:
        options: broker, topics, spool and timing.
        run_id: stamped on every message and part of each ``message_id``.
        spool_dir: the spool when ``options.spool_dir`` is None (``edgecam run``: ``<--out>/mqtt-spool``).
        model: what the state says about the model (format, artifact, sha256, labels).
        thresholds: what the state says about the decision and event thresholds.

    Example:
        >>> sink = MqttSink(MqttOptions(url="mqtt://127.0.0.1:1883", camera="bow"), "0001-x", "runs/run/mqtt-spool")  # doctest: +SKIP
        >>> summary = run(detector, source, options, sinks=[sink])  # doctest: +SKIP
        >>> summary["mqtt"]["delivered"], summary["mqtt"]["spooled"]  # doctest: +SKIP
    """

    name = "mqtt"

    def __init__(self, options: MqttOptions, run_id: str | None = None, spool_dir: str | os.PathLike[str] | None = None,
                 model: Mapping[str, Any] | None = None, thresholds: Mapping[str, Any] | None = None) -> None:
        self.options, self.run_id = options, run_id or "run"
        self.model, self.thresholds = dict(model or {}), dict(thresholds or {})
        self.topics = options.topics
        self.frames = 0
        self.fps = 0.0
        self.status = "starting"
        self.sent = {"start": 0, "update": 0, "end": 0}
        self.spool_refused = 0
        self._seq = 0
        self._open: dict[str, Any] | None = None  # the open event's last record, its peak and its update count
        self._last_mono: float | None = None
        self._dt: float | None = None
        self._last_wall: float | None = None
        self._last_update = 0.0
        self.link = MqttLink(options, spool_dir, state=self.state).start()

    # ---- frames in
    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: FrameRecord) -> None:
        now = time.monotonic()
        if self._last_mono is not None and now > self._last_mono:  # an average of intervals: bursts do not inflate it
            dt = now - self._last_mono
            self._dt = dt if self._dt is None else 0.9 * self._dt + 0.1 * dt
            self.fps = 1.0 / self._dt
        self._last_mono, self._last_wall = now, time.time()
        self.frames += 1
        self.status = "running"
        event = record.event
        if event:
            self._event(dict(event), record, frame_rgb)
        elif self._open is not None and self.options.update_s > 0 and now - self._last_update >= self.options.update_s:
            score = self._score(record, self._open["event"]["label"])
            self._open["peak"] = max(self._open["peak"], score)
            self._open["updates"] += 1
            event = {**self._open["event"], "peak_score": round(self._open["peak"], 5)}
            self._send("update", event, record, f"/{self._open['updates']}")

    def record_event(self, event: dict, frame_rgb: np.ndarray | None = None) -> None:
        """An event record without a frame: the event the end of the run closed."""
        self._event(event, None, frame_rgb)

    def _event(self, event: dict, record: FrameRecord | None, frame_rgb: np.ndarray | None) -> None:
        kind = event.get("kind")
        body = {k: v for k, v in event.items() if k not in ("kind", "schema_version", "source")}  # the message has its own
        if kind == "start":
            score = self._score(record, body.get("label")) if record is not None else float(body.get("peak_score") or 0.0)
            self._open = {"event": body, "peak": score, "updates": 0}
            self._send("start", body, record, "", frame_rgb)
        elif kind == "end":
            self._open = None
            self._send("end", body, record, "")
        else:
            log.warning("MQTT: an event record of unknown kind %r was not published", kind)

    @staticmethod
    def _score(record: FrameRecord | None, label: str | None) -> float:
        scores = record.scores if record is not None else {}
        if label in scores:
            return float(scores[label])
        return max((float(v) for v in scores.values()), default=0.0)

    def _send(self, kind: str, event: dict, record: FrameRecord | None, suffix: str, frame_rgb: np.ndarray | None = None) -> None:
        self._seq += 1
        self._last_update = time.monotonic()
        message: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "message_id": f"{self.run_id}/{event.get('id')}/{kind}{suffix}",
            "seq": self._seq,
            "camera": self.options.camera,
            "run": self.run_id,
            "kind": kind,
            "time": _utc(time.time()),
            "event": event,
            "frame": None if record is None else record.frame,
            "t": None if record is None else record.t,
            "score": None if record is None else round(self._score(record, event.get("label")), 5),
            "smoothed": None if record is None else record.smoothed,
            "boxes": [] if record is None else record.boxes,
            "snapshot": f"events/event_{int(event.get('id', 0)):04d}.jpg" if kind == "start" else None,
        }
        if kind == "start" and self.options.thumbnail and frame_rgb is not None:
            message["thumbnail"] = self._thumbnail(frame_rgb)
        try:
            self.link.send(self.topics.events, message)
        except OSError as exc:  # the spool's disk: the recorder's storage policy applies, as to any sink
            self.spool_refused += 1
            raise StorageError.from_os_error("cannot spool an MQTT message in", self.link.spool.folder, exc) from exc
        self.sent[kind] += 1

    def _thumbnail(self, frame_rgb: np.ndarray) -> str | None:
        h, w = frame_rgb.shape[:2]
        width = min(self.options.thumbnail_px, w)
        small = cv2.resize(frame_rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70])
        return base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else None

    # ---- state and counts out
    def state(self) -> dict[str, Any]:
        """The retained state's body (the link adds its own counts under ``mqtt``)."""
        age = None if self._last_mono is None else time.monotonic() - self._last_mono
        stale = age is None or age > self.options.stale_s
        status = self.status if self.status in ("stopped", "starting") else ("stale" if stale else "running")
        return {
            "schema": SCHEMA_VERSION, "camera": self.options.camera, "run": self.run_id, "time": _utc(time.time()),
            "status": status, "frames": self.frames, "fps": round(self.fps, 3),
            "last_frame_time": _utc(self._last_wall), "last_frame_age_s": None if age is None else round(age, 3),
            "stale": stale, "stale_after_s": self.options.stale_s,
            "events": self.sent["start"], "open_event": None if self._open is None else self._open["event"].get("id"),
            "model": self.model, "thresholds": self.thresholds,
        }

    def _close(self) -> None:
        self.status = "stopped"
        self.link.close()

    def summary(self) -> dict[str, Any]:
        """What was published and what is still waiting, for ``summary.json``."""
        return {"camera": self.options.camera, "topics": {"events": self.topics.events, "state": self.topics.state,
                                                           "availability": self.topics.availability},
                "sent": dict(self.sent), "spool_refused": self.spool_refused, **self.link.stats()}
