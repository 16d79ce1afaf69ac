"""How a run captures, decides and records: :class:`RunOptions`, the options of :func:`edge.pipeline.run`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge.capture import BackoffOptions, CaptureMode
from edge.checks import positive_int
from edge.errors import ConfigError, reject_unknown_keys
from edge.events import HysteresisOptions
from edge.live import LiveAuth
from edge.recording import RecordingOptions
from edge.tiling import TileSpec

__all__ = ["RunOptions"]


def _parse_live(address: str) -> tuple[str, int]:
    m = re.fullmatch(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]*)):?(?P<port>\d+)", address.strip())
    if not m:
        raise ConfigError(f"RunOptions.live expects 'PORT', 'HOST:PORT' or '[IPv6]:PORT'; received {address!r}")
    host = m.group("v6") or m.group("host") or "127.0.0.1"
    return host, int(m.group("port"))


@dataclass(frozen=True)
class RunOptions:
    """How a run captures, decides and records.

    Attributes:
        out_dir: folder for ``frames.jsonl``, ``video.mp4``, ``events/`` and ``summary.json``.
        mode: ``LATEST`` (live: skip to the newest frame) or ``ALL`` (files: every frame).
        stride: process every ``stride``-th source frame.
        tile: tile the frame (large frames, small ships), or None for one inference per frame.
        threshold: heatmap level that outlines a box, in (0, 1]; None: the detector's own
            (``DetectorOptions.box_threshold``). The run has one box threshold: a value here must
            equal the detector's, or :func:`edge.pipeline.run` refuses the pair.
        hysteresis: event thresholds.
        smoother_alpha: EMA weight of the newest score for events.
        event_label: label whose score drives events; None = top positive label (0 when none).
        live: ``"PORT"`` / ``"HOST:PORT"`` for the live view, or None.
        allow_remote: allow the live view on a non-loopback address.
        live_auth: ``bearer:TOKEN`` or ``basic:USER:PASSWORD`` for the page, the stream and ``/metrics``; None: none.
        stale_s: no frame for this long: the live page shows its banner and ``/healthz`` answers 503.
        live_clients: connections the live view serves at once (more are refused and counted).
        live_idle_s: a live-view connection idle this long is closed.
        write_video: write the annotated ``video.mp4``.
        video_fps: frame rate of the video; None = the source's / stride, else 15.
        max_frames: stop after this many frames taken from the capture (a frame
            that fails counts); None = until the source ends.
        target_fps: cap the processed frame rate (see ThreadedCapture); None = no cap.
        queue_size: capture queue bound in ALL mode.
        reconnect: backoff for live sources.
        recording: run id, video segments, free-space floor and ``frames.jsonl`` rotation.
        source_id: names the source in every frame and event record; None: the source's
            description (``repr``, credentials removed).

    Example:
        >>> RunOptions.from_dict({"out_dir": "runs/x", "mode": "all", "hysteresis": {"enter": 0.7}}).mode
        <CaptureMode.ALL: 'all'>
    """

    out_dir: Path = Path("runs/live")
    mode: CaptureMode = CaptureMode.LATEST
    stride: int = 1
    tile: TileSpec | None = None
    threshold: float | None = None
    hysteresis: HysteresisOptions = HysteresisOptions()
    smoother_alpha: float = 0.5
    event_label: str | None = None
    live: str | None = None
    allow_remote: bool = False
    live_auth: str | None = field(default=None, repr=False)
    stale_s: float = 10.0
    live_clients: int = 16
    live_idle_s: float = 30.0
    write_video: bool = True
    video_fps: float | None = None
    max_frames: int | None = None
    target_fps: float | None = None
    queue_size: int = 4
    reconnect: BackoffOptions = BackoffOptions()
    recording: RecordingOptions = RecordingOptions()
    source_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        try:
            object.__setattr__(self, "mode", CaptureMode(self.mode))
        except ValueError:
            raise ConfigError(f"RunOptions.mode expects one of {[m.value for m in CaptureMode]}; received {self.mode!r}") from None
        positive_int("RunOptions.stride", self.stride)
        positive_int("RunOptions.queue_size", self.queue_size)
        positive_int("RunOptions.max_frames", self.max_frames, allow_none=True)
        checks = (
            ("tile", self.tile is None or isinstance(self.tile, TileSpec), "a TileSpec or None"),
            ("threshold", self.threshold is None or (isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool)
                           and 0.0 < self.threshold <= 1.0), "None or a number in (0, 1]"),
            ("hysteresis", isinstance(self.hysteresis, HysteresisOptions), "HysteresisOptions"),
            ("smoother_alpha", isinstance(self.smoother_alpha, (int, float)) and 0.0 < self.smoother_alpha <= 1.0, "a number in (0, 1]"),
            ("reconnect", isinstance(self.reconnect, BackoffOptions), "BackoffOptions"),
            ("recording", isinstance(self.recording, RecordingOptions), "RecordingOptions"),
            ("video_fps", self.video_fps is None or (isinstance(self.video_fps, (int, float)) and self.video_fps > 0), "None or > 0"),
            ("stale_s", isinstance(self.stale_s, (int, float)) and not isinstance(self.stale_s, bool) and self.stale_s > 0, "> 0"),
            ("target_fps", self.target_fps is None or (isinstance(self.target_fps, (int, float)) and self.target_fps > 0), "None or > 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"RunOptions.{name} must be {expected}; received {getattr(self, name)!r}")
        if self.live_auth is not None:
            LiveAuth.parse(self.live_auth)  # raises on a malformed spec, without echoing the secret
        if self.live is not None:
            host, port = _parse_live(str(self.live))
            if not 0 <= port <= 65535:
                raise ConfigError(f"RunOptions.live port must be in [0, 65535]; received {self.live!r}")

    @property
    def live_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the live view, or None."""
        return None if self.live is None else _parse_live(str(self.live))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunOptions":
        """Build from plain data (JSON/CLI), rejecting unknown keys and converting nested options."""
        reject_unknown_keys(cls, data)
        values = dict(data)
        if isinstance(values.get("hysteresis"), Mapping):
            values["hysteresis"] = HysteresisOptions.from_dict(values["hysteresis"])
        if isinstance(values.get("tile"), Mapping):
            values["tile"] = TileSpec(**values["tile"])
        if isinstance(values.get("reconnect"), Mapping):
            values["reconnect"] = BackoffOptions(**values["reconnect"])
        if isinstance(values.get("recording"), Mapping):
            values["recording"] = RecordingOptions.from_dict(values["recording"])
        return cls(**values)
