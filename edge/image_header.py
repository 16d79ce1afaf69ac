"""What an image file says without decoding it: its size from the PNG/JPEG header, its camera and time from its name.

Box datasets (:mod:`edge.datasets`) scale YOLO's normalised boxes by the header's size and split frames by
camera and time; no OpenCV, no decoding.
"""

from __future__ import annotations

import re
import struct
from datetime import datetime, timezone
from pathlib import Path

from edge.errors import DataError

__all__ = ["UnsupportedImageError", "camera_of", "image_size", "timestamp_of"]

# A plausible date (19xx/20xx, month 01-12, day 01-31), so digits of a camera id are not taken for one.
_DATE = re.compile(r"(?<!\d)(?:19|20)\d\d(?:-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
                   r"|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?!\d)")
_STAMP = re.compile(r"(?<!\d)((?:19|20)\d\d)-(\d\d)-(\d\d)[_ T](\d\d)[-:](\d\d)(?:[-:](\d\d))?(?!\d)")
_OTHER_SOF = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic


class UnsupportedImageError(DataError):
    """An image's size cannot be read from its header: not a PNG, or not a baseline/extended/progressive JPEG."""


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of a PNG or JPEG (SOF0/1/2) from its header, without decoding.

    Raises:
        UnsupportedImageError: another image format, or another JPEG coding.
        DataError: the file is unreadable or truncated.

    Example:
        >>> image_size("frame.jpg")  # doctest: +SKIP
        (1920, 1080)
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
            elif head[:2] == b"\xff\xd8":
                w, h = _jpeg_size(fh, path)
            else:
                raise UnsupportedImageError(f"expected a JPEG or PNG at {path} to read its size from the header; received a "
                                f"file starting {head[:8]!r} (convert it, or label it as COCO/VOC, which store sizes)")
    except OSError as exc:
        raise DataError(f"expected a readable image at {path}; {exc.strerror}") from exc
    except struct.error as exc:
        raise DataError(f"expected a complete image header in {path}; the file is truncated") from exc
    return w, h


def _jpeg_size(fh, path) -> tuple[int, int]:
    fh.seek(2)
    while fh.read(1) == b"\xff":
        while (marker := fh.read(1)) == b"\xff":  # fill bytes may pad a marker
            pass
        if not marker or marker[0] in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        if 0xD0 <= marker[0] <= 0xD7 or marker[0] == 0x01:  # the markers without a length
            continue
        (length,) = struct.unpack(">H", fh.read(2))
        if marker[0] in (0xC0, 0xC1, 0xC2):
            _, h, w = struct.unpack(">BHH", fh.read(5))
            return w, h
        if marker[0] in _OTHER_SOF:
            raise UnsupportedImageError(f"expected a baseline, extended or progressive JPEG (SOF0/1/2) at {path}; "
                            f"received SOF 0x{marker[0]:02X}")
        fh.seek(length - 2, 1)
    raise DataError(f"expected a JPEG frame header (SOF0/1/2) in {path}; found none (truncated or corrupt)")


def camera_of(path: str | Path) -> str:
    """The file stem up to its first date (``YYYY-MM-DD`` or ``YYYYMMDD``) without trailing ``_-``, else the folder.

    Example:
        >>> camera_of("images/2ux5cw8z_1080_2022-07-17_02-54_output_0.jpeg")
        '2ux5cw8z_1080'
        >>> camera_of("cams/north/img_0001.jpg")
        'north'
    """
    p = Path(path)
    m = _DATE.search(p.stem)
    return (p.stem[: m.start()].rstrip("_-") if m else "") or p.parent.name


def timestamp_of(path: str | Path) -> float | None:
    """UTC seconds since the epoch from ``YYYY-MM-DD[_ T]HH-MM[-SS]`` (``-`` or ``:``) in the file name, or None.

    Example:
        >>> timestamp_of("sooke1_ptz_capture_2019-08-18_13-38-10.jpg")
        1566135490.0
    """
    if not (m := _STAMP.search(Path(path).stem)):
        return None
    try:
        return datetime(*(int(g or 0) for g in m.groups()), tzinfo=timezone.utc).timestamp()  # type: ignore[misc]
    except ValueError:  # e.g. month 13: digits that only look like a time
        return None
