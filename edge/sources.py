"""Frame sources (files, cameras, streams, Pi cameras, folders, synthetic) and threaded capture.

Every source yields RGB uint8 ``(H, W, 3)`` frames; the BGR of OpenCV stays
inside this module. A corrupt frame raises :class:`FrameError` and the capture
loop skips it; a live source that fails is reopened with exponential backoff.
The capture half lives in :mod:`edge.capture` and is re-exported here.
"""

from __future__ import annotations

import glob
import importlib
import logging
import math
import re
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

# edge.capture imports FrameSource only for type checking, so this is no import cycle
from edge.capture import BackoffOptions, CapturedFrame, CaptureMode, ThreadedCapture
from edge.checks import non_negative_int, positive_int
from edge.preprocess import check_frame
from edge.errors import ConfigError, FrameError, SourceError
from edge.plugins import GROUPS, Entry, ExtensionTable
from edge.picamera2_source import Picamera2Source
from edge.source_base import FrameSource, _bgr_to_rgb, _check_fps

__all__ = [
    "FrameSource", "VideoFileSource", "CameraSource", "StreamSource", "GStreamerSource",
    "Picamera2Source", "ImageFolderSource", "SyntheticSource", "UnreadableImageError",
    "open_source", "check_frame", "CaptureMode", "BackoffOptions", "CapturedFrame", "ThreadedCapture",
]

log = logging.getLogger(__name__)


def _cv2() -> Any:
    import cv2  # imported on use: a Picamera2-only device can run without OpenCV capture

    return cv2

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
ACCEPTED_FORMS = (
    "'synthetic' or 'synthetic:SEED', a camera index like '0', '/dev/videoN', an 'rtsp://', 'http://' "
    "or 'https://' URL, a GStreamer pipeline containing '!', 'picamera2', an image folder, "
    "a glob like 'frames/*.jpg', or a video file path"
)


class UnreadableImageError(FrameError):
    """An image file in a folder source cannot be read or decoded; capture skips it."""


class _CvCaptureSource(FrameSource):
    """A source read through ``cv2.VideoCapture``."""

    _cap: Any = None

    def _capture(self, cv2: Any) -> Any:
        raise NotImplementedError

    def _open_hint(self) -> str:
        return ""

    def _open(self) -> None:
        cv2 = _cv2()
        cap = self._capture(cv2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self!r}{self._open_hint()}")
        if self.is_live:
            # drivers queue several frames; a deep buffer means showing the past
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if math.isfinite(fps) and 0 < fps < 1000 else None
        self._cap = cap

    def _read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return _bgr_to_rgb(frame) if ok and frame is not None else None

    @property
    def media_ms(self) -> float | None:  # type: ignore[override]
        """Where the last frame read sits in a file, from its decoder; None for live sources or when closed."""
        # asked of the decoder, not kept by _read, so every subclass's own _read is covered
        if self.is_live or self._cap is None:
            return None
        pos = float(self._cap.get(_cv2().CAP_PROP_POS_MSEC) or 0.0)
        return round(pos, 3) if math.isfinite(pos) and pos >= 0 else None

    def _close(self) -> None:
        self._cap.release()
        self._cap = None


class VideoFileSource(_CvCaptureSource):
    """A video file read to its end (not live: no reconnect)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"expected an existing video file; received {str(path)!r} (not found)")

    def _capture(self, cv2: Any) -> Any:
        return cv2.VideoCapture(str(self.path))

    _RETRIES = 5  # failed reads in a row before the decoder is taken to have nothing more
    _decoded = _undecoded = _missing = 0
    _after_damage: np.ndarray | None = None

    def _read(self) -> np.ndarray | None:
        if self._missing:  # frames the file lists that never decoded, counted one by one
            self._missing -= 1
            raise FrameError(f"a frame of {str(self.path)!r} did not decode (corrupt mid-file); skipped")
        ok, frame = self._cap.read()
        if ok and frame is not None:
            self._decoded += 1
            return _bgr_to_rgb(frame)
        # A failed read is not always the end: FFmpeg's decoders drop a broken packet and
        # go on with the next one. Read on without seeking (a seek after damage can land
        # on frames already given out); a frame that comes means the failure was damage.
        for _ in range(self._RETRIES):
            ok, frame = self._cap.read()
            if ok and frame is not None:
                self._decoded += 1
                self._undecoded += 1
                self._after_damage = _bgr_to_rgb(frame)
                raise FrameError(f"frame {self._decoded - 1} of {str(self.path)!r} did not decode (corrupt mid-file); "
                                 "read on past it")
        # Nothing more decodes. Before the frame count the container lists (exact in MP4
        # and AVI indexes) that is damage, not the end: the missing frames are counted.
        total = self._cap.get(_cv2().CAP_PROP_FRAME_COUNT)
        missing = int(total) - self._decoded - self._undecoded if math.isfinite(total) and total > 0 else 0
        if missing > 0:
            log.warning("%s lists %d frames; %d decoded; %d do not decode (corrupt mid-file), counted as corrupt",
                        self.path, int(total), self._decoded, missing + self._undecoded)
            self._missing, self._undecoded = missing, self._undecoded + missing
            return self._read()
        return None

    def read(self) -> np.ndarray | None:
        if self._after_damage is not None:  # the frame that showed a failed read was damage, not the end
            frame, self._after_damage = self._after_damage, None
            return check_frame(frame, f" from {self!r}")
        return super().read()

    def _open(self) -> None:
        super()._open()
        self._decoded, self._undecoded, self._missing, self._after_damage = 0, 0, 0, None

    def _open_hint(self) -> str:
        return ": OpenCV cannot decode it (unknown codec or corrupt file)"

    def __repr__(self) -> str:
        return f"VideoFileSource({str(self.path)!r})"


class CameraSource(_CvCaptureSource):
    """A local camera by index (``0``) or V4L2 device path (``/dev/videoN``).

    Args:
        device: camera index or ``/dev/videoN``.
        size: requested ``(width, height)``, or None for the driver default.
        fps: requested frame rate, or None for the driver default. The driver
            may grant less; ``self.fps`` is what it reports after opening.
    """

    is_live = True

    def __init__(self, device: int | str = 0, size: tuple[int, int] | None = None, fps: float | None = None) -> None:
        if not (isinstance(device, int) and not isinstance(device, bool) and device >= 0) and not (
            isinstance(device, str) and re.fullmatch(r"/dev/video\d+", device)
        ):
            raise SourceError(f"expected a camera index >= 0 or '/dev/videoN'; received {device!r}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ConfigError(f"expected size (width, height) of positive ints or None; received {size!r}")
        self.device, self.size, self.requested_fps = device, size, _check_fps(fps)

    def _capture(self, cv2: Any) -> Any:
        if isinstance(self.device, str):
            # V4L2 numbers /dev/videoN as index N; some OpenCV builds cannot open V4L2 by path
            cap = cv2.VideoCapture(int(self.device[len("/dev/video"):]), cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(self.device)
        if self.size and cap.isOpened():
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.requested_fps and cap.isOpened():
            cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        return cap

    def _open_hint(self) -> str:
        return ": no such camera, or it is in use by another process"

    def __repr__(self) -> str:
        return f"CameraSource({self.device!r})"


class StreamSource(_CvCaptureSource):
    """A network stream (``rtsp://``, ``rtsps://``, ``http://``, ``https://``) through FFmpeg.

    Args:
        url: stream address.
        timeout_s: open and read timeout, so a dead camera fails instead of hanging.
    """

    is_live = True

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        if not isinstance(url, str) or not re.match(r"(rtsps?|https?)://.+", url, re.IGNORECASE):
            raise SourceError(f"expected an rtsp://, rtsps://, http:// or https:// URL; received {url!r}")
        if not timeout_s > 0:
            raise ConfigError(f"expected timeout_s > 0; received {timeout_s!r}")
        self.url, self.timeout_s = url, float(timeout_s)

    def _capture(self, cv2: Any) -> Any:
        ms = int(self.timeout_s * 1000)
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])

    def __repr__(self) -> str:
        # credentials in rtsp://user:pass@host must not reach the logs
        return f"StreamSource({re.sub(r'//[^@/]*@', '//***@', self.url)!r})"


class GStreamerSource(_CvCaptureSource):
    """A GStreamer pipeline ending in ``appsink`` (Jetson CSI cameras via ``nvarguscamerasrc``).

    Example:
        >>> GStreamerSource("nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! "
        ...                 "videoconvert ! video/x-raw,format=BGR ! appsink drop=1")  # doctest: +SKIP
    """

    is_live = True

    def __init__(self, pipeline: str) -> None:
        if not isinstance(pipeline, str) or "!" not in pipeline or "appsink" not in pipeline:
            raise SourceError(f"expected a GStreamer pipeline with '!' ending in appsink; received {pipeline!r}")
        self.pipeline = pipeline

    def _capture(self, cv2: Any) -> Any:
        return cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)

    def _open_hint(self) -> str:
        return " (is OpenCV built with GStreamer? pip wheels are not: check cv2.getBuildInformation())"

    def __repr__(self) -> str:
        return f"GStreamerSource({self.pipeline!r})"


class ImageFolderSource(FrameSource):
    """Images of a folder (or matching a glob), in name order.

    An unreadable image raises :class:`UnreadableImageError` and the next
    ``read`` moves on to the following file.
    """

    def __init__(self, folder_or_glob: str | Path) -> None:
        spec = str(folder_or_glob)
        if Path(spec).is_dir():
            paths = [p for p in Path(spec).iterdir() if p.suffix.lower() in IMAGE_EXTS]
        elif Path(spec).is_file():
            paths = [Path(spec)]  # taken literally: a name may contain glob characters
        else:
            paths = [Path(p) for p in glob.glob(spec) if Path(p).is_file()]
        self.paths = sorted(paths, key=lambda p: p.name)
        if not self.paths:
            raise SourceError(f"expected a folder or glob with images ({', '.join(sorted(IMAGE_EXTS))}); received {spec!r} (no images)")
        self.spec, self._next = spec, 0

    def __len__(self) -> int:
        return len(self.paths)

    def _open(self) -> None:
        self._next = 0

    def _read(self) -> np.ndarray | None:
        if self._next >= len(self.paths):
            return None
        path = self.paths[self._next]
        self._next += 1
        self.file_name = path.name
        cv2 = _cv2()
        try:
            data = np.fromfile(path, np.uint8)
        except (OSError, ValueError) as exc:
            raise UnreadableImageError(f"cannot read image {str(path)!r}: {exc}") from exc
        if data.size == 0:
            # imdecode asserts on an empty buffer (cv2.error), which would end the whole run
            raise UnreadableImageError(f"cannot decode image {str(path)!r}; expected a readable {path.suffix} file, received 0 bytes")
        try:
            # imdecode from bytes also handles non-ASCII paths, which cv2.imread does not everywhere
            image = cv2.imdecode(data, 1)
        except cv2.error as exc:
            raise UnreadableImageError(f"cannot decode image {str(path)!r} ({data.size} bytes): {exc}") from exc
        if image is None:
            raise UnreadableImageError(f"cannot decode image {str(path)!r}; expected a readable {path.suffix} file")
        return _bgr_to_rgb(image)

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.spec!r})"


class SyntheticSource(FrameSource):
    """Frames of :class:`edge.synthetic.SceneClip`; ``true_boxes`` are those of the last frame read."""

    def __init__(self, seed: int = 0, n_frames: int = 300, width: int = 640, height: int = 360, fps: float = 15.0) -> None:
        non_negative_int("SyntheticSource.seed", seed)
        for name, v in (("n_frames", n_frames), ("width", width), ("height", height)):
            positive_int(f"SyntheticSource.{name}", v)
        self.seed, self.n_frames, self.width, self.height, self.fps = seed, n_frames, width, height, float(fps)
        self.true_boxes = np.zeros((0, 4), np.float32)
        self._frames: Iterator[Any] | None = None

    def __len__(self) -> int:
        return self.n_frames

    def _open(self) -> None:
        try:
            synthetic = importlib.import_module("edge.synthetic")
        except ImportError as exc:
            raise SourceError(f"SyntheticSource needs edge.synthetic; received ImportError: {exc}") from exc
        clip = synthetic.SceneClip(seed=self.seed, n_frames=self.n_frames, width=self.width, height=self.height, fps=self.fps)
        self._frames = iter(clip.frames())
        self._read_count = 0

    def _read(self) -> np.ndarray | None:
        try:
            frame, boxes = next(self._frames)  # type: ignore[arg-type]
        except StopIteration:
            return None
        self.true_boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.media_ms = round(self._read_count * 1000.0 / self.fps, 3)  # the clip's own time of this frame
        self._read_count += 1
        return frame

    def __repr__(self) -> str:
        return f"SyntheticSource(seed={self.seed}, n_frames={self.n_frames})"


@dataclass(frozen=True)
class SourceKind:
    """One row of the table :func:`open_source` picks from: a name, which strings it takes, and how to build one.

    ``build(spec, size, fps)`` gets the stripped string and the camera settings.
    """

    name: str
    matches: Callable[[str], bool]
    build: Callable[[str, "tuple[int, int] | None", "float | None"], FrameSource]


def _synthetic(s: str, size: tuple[int, int] | None, fps: float | None) -> FrameSource:
    if s.lower() == "synthetic":
        return SyntheticSource()
    seed = s.split(":", 1)[1]
    if not seed.isdigit():
        raise SourceError(f"expected 'synthetic:SEED' with an integer seed >= 0; received {s!r}")
    return SyntheticSource(seed=int(seed))


def _is_still(s: str) -> bool:
    path = Path(s).expanduser()
    return path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_EXTS)


# checked in this order; the first that matches builds the source
SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind("synthetic", lambda s: s.lower() == "synthetic" or s.lower().startswith("synthetic:"), _synthetic),
    SourceKind("camera", lambda s: s.isdigit() or re.fullmatch(r"/dev/video\d+", s) is not None,
               lambda s, size, fps: CameraSource(int(s) if s.isdigit() else s, size=size, fps=fps)),
    SourceKind("stream", lambda s: re.match(r"(rtsps?|https?)://", s.lower()) is not None,
               lambda s, size, fps: StreamSource(s)),
    SourceKind("gstreamer", lambda s: "!" in s, lambda s, size, fps: GStreamerSource(s)),
    SourceKind("picamera2", lambda s: s.lower() == "picamera2",
               lambda s, size, fps: Picamera2Source(size or (640, 480), fps=fps)),
    SourceKind("images", _is_still, lambda s, size, fps: ImageFolderSource(Path(s).expanduser())),
    SourceKind("video", lambda s: Path(s).expanduser().is_file(), lambda s, size, fps: VideoFileSource(Path(s).expanduser())),
    SourceKind("glob", lambda s: any(c in s for c in "*?["), lambda s, size, fps: ImageFolderSource(s)),
)


def _check_plugin(entry: Entry, obj: Any) -> str | None:
    if not callable(obj):
        return f"expected a factory callable as factory(spec, size=..., fps=...) -> FrameSource; received {obj!r}"
    if entry.name in {k.name for k in SOURCE_KINDS}:
        return f"expected a name other than edgecam's own source kinds {[k.name for k in SOURCE_KINDS]}"
    return None


# sources other distributions add (entry-point group edgecam.sources): 'NAME' or 'NAME:ARGS' picks one
PLUGIN_SOURCES = ExtensionTable("source", GROUPS["sources"], {}, _check_plugin)


def _plugin_source(s: str, size: tuple[int, int] | None, fps: float | None) -> FrameSource | None:
    name = s.split(":", 1)[0]
    if name not in PLUGIN_SOURCES.names():
        return None
    source = PLUGIN_SOURCES.load(name)(s, size=size, fps=fps)
    if not isinstance(source, FrameSource):
        raise SourceError(f"source {name!r} ({PLUGIN_SOURCES.get(name).origin}): expected its factory to return "
                          f"an edge.sources.FrameSource; received {type(source).__name__}")
    return source


def open_source(spec: str, size: tuple[int, int] | None = None, fps: float | None = None) -> FrameSource:
    """Build (not yet open) the source a string names.

    Accepted forms, checked in this order (the table :data:`SOURCE_KINDS`): ``synthetic`` /
    ``synthetic:SEED``, a camera index (``0``), ``/dev/videoN``, an ``rtsp(s)://`` or ``http(s)://``
    URL, a GStreamer pipeline (contains ``!``), ``picamera2``, an image folder,
    an image file, a video file, a glob. Before them, ``NAME`` or ``NAME:ARGS``
    where NAME is a source another distribution declares (entry-point group
    ``edgecam.sources``; its factory is called as ``factory(spec, size=, fps=)``).

    ``size`` (width, height) and ``fps`` are what to ask a camera for: they
    reach :class:`CameraSource` and :class:`Picamera2Source`. A GStreamer
    pipeline states its own caps, and files, folders, streams and synthetic
    clips have a format of their own, so those sources do not take them.

    Raises:
        SourceError: the string matches no form, or names a missing path.

    Example:
        >>> open_source("synthetic:7")
        SyntheticSource(seed=7, n_frames=300)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError(f"expected a source string: {ACCEPTED_FORMS}; received {spec!r}")
    s = spec.strip()
    plugin = _plugin_source(s, size, fps)
    if plugin is not None:
        return plugin
    for kind in SOURCE_KINDS:
        if kind.matches(s):
            return kind.build(s, size, fps)
    raise SourceError(f"expected {ACCEPTED_FORMS}; received {spec!r}, which is none of these (no such file or folder)")
