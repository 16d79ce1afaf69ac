"""Reading images and image folders with errors that name the path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3).

    Raises:
        DataError: the file is missing, empty, or not a decodable image.
    """
    import cv2

    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"expected a readable image file at {path}; {exc.strerror}") from exc
    if data.size == 0:
        raise DataError(f"expected an image at {path}; the file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"expected a JPEG/PNG/BMP/WebP/TIFF image at {path}; received {data.size} bytes that do not decode")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def class_folders(root: str | Path) -> dict[str, list[Path]]:
    """``{class_name: [image paths]}`` for a folder-per-class tree, sorted by name.

    Files without an image suffix are reported, not silently skipped.

    Raises:
        DataError: missing folder, no class folders, an empty class folder, or
            a file that is not an image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"expected a data folder with one sub-folder per class at {root}; it does not exist")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"expected one sub-folder per class in {root}; found none")
    out: dict[str, list[Path]] = {}
    for c in classes:
        files = sorted(p for p in c.rglob("*") if p.is_file() and not p.name.startswith("."))
        bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if bad:
            listed = ", ".join(str(p) for p in bad[:5]) + (" …" if len(bad) > 5 else "")
            raise DataError(
                f"expected only images ({', '.join(IMAGE_SUFFIXES)}) in {c}; found {len(bad)} other file(s): {listed}"
            )
        if not files:
            raise DataError(f"class folder {c} is empty; expected at least one image")
        out[c.name] = files
    return out
