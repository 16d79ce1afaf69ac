"""Box-labelled detection datasets (YOLO, COCO, Pascal VOC) read into one typed structure.

Why no library: roboflow ``supervision`` reads all three well, but it requires the
non-headless ``opencv-python``, a second OpenCV beside our ``opencv-python-headless``;
``pycocotools`` reads COCO only and compiles C. The formats are small and documented,
so the stdlib parses them (``json``, ``xml.etree``, plain text) and this module needs
only numpy, on a device too. Of YOLO's ``data.yaml`` only ``names:`` and ``nc:`` are
read, by hand (no PyYAML); YOLO's normalised coordinates are scaled by the size in the
JPEG/PNG header (:mod:`edge.image_header`: no OpenCV, no decoding).

Boxes are ``x0, y0, x1, y1`` in native pixels, ``x1, y1`` exclusive. VOC's
``xmin..xmax`` are 1-based and inclusive (the VOC devkit, read so by Detectron2):
``x0 = xmin - 1``, ``x1 = xmax``.

Example:
    >>> ds = load_box_dataset("data/shore_livecams")  # doctest: +SKIP
    >>> train, val = split_frames(ds, val_fraction=0.2, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError
from edge.image_header import UnsupportedImageError, camera_of, image_size, timestamp_of
from edge.imageio import IMAGE_SUFFIXES

__all__ = ["BoxDataset", "LabeledFrame", "UnsupportedImageError", "camera_of", "detect_format", "image_size",
           "is_box_dataset", "load_box_dataset", "split_frames", "timestamp_of"]

FORMATS = ("yolo", "coco", "voc")


@dataclass(frozen=True, eq=False)  # eq=False: a generated == / hash would compare the arrays and raise
class LabeledFrame:
    """One image and its boxes (``boxes`` is read-only; ``camera`` and ``timestamp`` come from the file name)."""

    path: str  # image file, absolute or as given
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1 in native pixels, x1 and y1 exclusive
    classes: tuple[str, ...]  # class name of each box
    camera: str
    timestamp: float | None

    def __post_init__(self) -> None:
        boxes = np.array(self.boxes, dtype=np.float32)  # a copy: freezing it must not freeze the caller's array
        boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DataError(f"{self.path}: expected boxes of shape (N, 4); received {boxes.shape}")
        boxes.setflags(write=False)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(self.classes) != len(boxes):
            raise DataError(f"{self.path}: expected one class per box ({len(boxes)}); received {len(self.classes)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise DataError(f"{self.path}: expected a positive image size; received {self.width}x{self.height}")

    def boxes_of(self, names: str | Iterable[str]) -> np.ndarray:
        """``(M, 4)`` boxes of the class ``names`` (one name or several).

        Example:
            >>> f = LabeledFrame("a.jpg", 8, 8, [[0, 0, 2, 2], [1, 1, 3, 3]], ("sea", "land"), "cam", None)
            >>> f.boxes_of("land").tolist()
            [[1.0, 1.0, 3.0, 3.0]]
        """
        wanted = {names} if isinstance(names, str) else set(names)
        return self.boxes[np.array([c in wanted for c in self.classes], dtype=bool)]


@dataclass(frozen=True)
class BoxDataset:
    """The frames of one dataset, sorted by path, and its class names."""

    root: str
    format: str  # 'yolo' | 'coco' | 'voc'
    class_names: tuple[str, ...]
    frames: tuple[LabeledFrame, ...]

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"expected format one of {FORMATS}; received {self.format!r}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "frames", tuple(sorted(self.frames, key=lambda f: f.path)))  # deterministic order
        if len(known := set(self.class_names)) != len(self.class_names):
            raise DataError(f"{self.root}: expected unique class names; received {list(self.class_names)}")
        for f in self.frames:
            if unknown := set(f.classes) - known:
                raise DataError(f"{f.path}: expected classes among {list(self.class_names)}; received {sorted(unknown)}")

    def __len__(self) -> int:
        return len(self.frames)

    def cameras(self) -> dict[str, int]:
        """Frames per camera, sorted by camera id."""
        return dict(sorted(Counter(f.camera for f in self.frames).items()))

    def box_counts(self) -> dict[str, int]:
        """Boxes per class, in ``class_names`` order, zeros included."""
        counts = Counter(c for f in self.frames for c in f.classes)
        return {name: counts[name] for name in self.class_names}

    def subset(self, frames: Iterable[LabeledFrame]) -> BoxDataset:
        """This dataset restricted to ``frames``, which must be its own."""
        frames, paths = tuple(frames), {f.path for f in self.frames}
        if outside := [getattr(f, "path", f) for f in frames if not isinstance(f, LabeledFrame) or f.path not in paths]:
            raise ConfigError(f"expected frames of the dataset at {self.root}; received {len(outside)} others: {outside[0]!r}")
        return BoxDataset(self.root, self.format, self.class_names, frames)


def _coco_docs(root: Path) -> list[tuple[Path, dict]]:
    # The parsed documents are kept, so a large annotation file is read once by detection and loading.
    docs = []
    for p in sorted(root.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # another JSON file, or not JSON at all: not a COCO file
        if isinstance(data, dict) and {"images", "annotations", "categories"} <= data.keys():
            docs.append((p, data))
    return docs


def _voc_dir(root: Path) -> Path | None:
    return next((d for d in (root / "voc", root / "Annotations", root) if d.is_dir() and any(d.glob("*.xml"))), None)


def _detect(root: Path) -> tuple[str, list[tuple[Path, dict]]]:
    if not root.is_dir():
        raise DataError(f"expected a dataset folder at {root}; it does not exist")
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "yolo", []
    if docs := _coco_docs(root):
        return "coco", docs
    if _voc_dir(root) is not None:
        return "voc", []
    raise DataError(f"expected a box dataset in {root}: YOLO (images/ and labels/), COCO (a *.json with images, "
                    "annotations and categories) or Pascal VOC (*.xml in voc/, Annotations/ or the folder); found none")


def detect_format(root: str | Path) -> str:
    """``'yolo'``, ``'coco'`` or ``'voc'``, tried in that order; DataError naming what was looked for.

    Example:
        >>> detect_format("data/shore_livecams")  # doctest: +SKIP
        'yolo'
    """
    return _detect(Path(root))[0]


def is_box_dataset(root: str | Path) -> bool:
    """True when `detect_format` would succeed (False for a folder-per-class tree)."""
    try:
        _detect(Path(root))
    except DataError:
        return False
    return True


def load_box_dataset(root: str | Path, format: str | None = None) -> BoxDataset:
    """Read a YOLO, COCO or Pascal VOC dataset (``format=None``: detect it); unlabelled images get no boxes.

    ``root`` may be a COCO ``*.json`` file, to choose one when a folder holds several.
    Raises ConfigError for an unknown ``format``, DataError naming the file and line or record.

    Example:
        >>> ds = load_box_dataset("data/shore_livecams", format="voc")  # doctest: +SKIP
        >>> len(ds), ds.box_counts()  # doctest: +SKIP
        (394, {'human': 1624, 'land': 1976, 'sea': 2043})
    """
    if format is not None and format not in FORMATS:
        raise ConfigError(f"expected format one of {FORMATS} or None; received {format!r}")
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".json" and format in (None, "coco"):
        try:
            fmt, docs = "coco", [(root, json.loads(root.read_text(encoding="utf-8")))]
        except (OSError, ValueError) as exc:
            raise DataError(f"expected a readable COCO JSON file at {root}; {exc}") from exc
    elif format is None:
        fmt, docs = _detect(root)
    elif not root.is_dir():
        raise DataError(f"expected a dataset folder at {root}; it does not exist")
    else:
        fmt, docs = format, (_coco_docs(root) if format == "coco" else [])
    frames, names = _load_coco(root, docs) if fmt == "coco" else {"yolo": _load_yolo, "voc": _load_voc}[fmt](root)
    return BoxDataset(str(root), fmt, names, tuple(frames))


def _frame(path: str, w: int, h: int, boxes: list, classes: list) -> LabeledFrame:
    return LabeledFrame(path, w, h, np.array(boxes, np.float32).reshape(-1, 4), tuple(classes),
                        camera_of(path), timestamp_of(path))


def _checked(box: Iterable[float], where: str) -> tuple[float, ...]:
    b = tuple(float(v) for v in box)
    if not all(map(math.isfinite, b)) or b[2] < b[0] or b[3] < b[1]:
        raise DataError(f"{where}: expected a finite box with x1 >= x0 and y1 >= y0; received {list(b)}")
    return b


def _find_image(name: str, dirs: list[Path], where: str) -> str:
    if found := next((d / name for d in dirs if (d / name).is_file()), None):
        return str(found)
    raise DataError(f"{where}: expected the image {name!r} in {', '.join(map(str, dirs))}; not found")


def _load_yolo(root: Path) -> tuple[list[LabeledFrame], tuple[str, ...]]:
    if not (yaml := next((p for p in (root / "data.yaml", root / "data.yml") if p.is_file()), None)):
        raise DataError(f"expected the class names of the YOLO dataset {root} in {root / 'data.yaml'}; not found")
    names, img_dir, lbl_dir = _yaml_names(yaml), root / "images", root / "labels"
    frames, used = [], set()
    for img in sorted(p for p in img_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if img.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"expected only images ({', '.join(IMAGE_SUFFIXES)}) in {img_dir}; found {img}")
        (w, h), txt = image_size(img), (lbl_dir / img.relative_to(img_dir)).with_suffix(".txt")
        boxes, classes = [], []
        lines = txt.read_text(encoding="utf-8").splitlines() if txt.is_file() else []  # no .txt: a background frame
        used.add(txt)
        for n, line in enumerate(lines, 1):
            if not (fields := line.split()):
                continue
            if len(fields) != 5:
                raise DataError(f"{txt}:{n}: expected 5 fields 'class cx cy w h'; received {len(fields)}: {line.strip()!r}")
            try:
                cid, (cx, cy, bw, bh) = int(fields[0]), map(float, fields[1:])
            except ValueError:
                raise DataError(f"{txt}:{n}: expected an integer class id and 4 numbers; received {line.strip()!r}") from None
            if not 0 <= cid < len(names):
                raise DataError(f"{txt}:{n}: expected a class id in 0..{len(names) - 1} {list(names)}; received {cid}")
            boxes.append(_checked(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h), f"{txt}:{n}"))
            classes.append(names[cid])
        frames.append(_frame(str(img), w, h, boxes, classes))
    if orphans := sorted(p for p in lbl_dir.rglob("*.txt") if p not in used and p.name != "classes.txt"):
        # labels that no image will ever use mean a broken export, not something to skip quietly
        raise DataError(f"expected an image in {img_dir} for every label file; {len(orphans)} have none, e.g. {orphans[0]}")
    return frames, names


def _uncomment(s: str) -> str:
    return re.sub(r"(^|\s+)#.*$", "", s).strip()


def _yaml_names(path: Path) -> tuple[str, ...]:
    # Only what YOLO tools write: names: [a, 'b'] (may span lines), or a block of '- a' lines or of '0: a' lines.
    lines, names, nc = path.read_text(encoding="utf-8").splitlines(), None, None
    for i, line in enumerate(lines):
        if not (m := re.match(r"(names|nc)\s*:(.*)$", line)):  # at column 0: top-level keys only
            continue
        key, value, where = m.group(1), _uncomment(m.group(2)), f"{path}:{i + 1}"
        if key == "nc":
            if not value.isdigit():
                raise DataError(f"{where}: expected 'nc: <int>'; received {value!r}")
            nc = int(value)
        elif value.startswith("["):
            for more in lines[i + 1:]:
                if "]" in value:
                    break
                value += " " + _uncomment(more)
            if not value.endswith("]"):
                raise DataError(f"{where}: expected 'names: [...]' closed by ']'; received {value!r}")
            names = [s for t in re.findall(r"'([^']*)'|\"([^\"]*)\"|([^,'\"]+)", value[1:-1]) if (s := "".join(t).strip())]
        elif value == "":
            block = []
            for item in lines[i + 1:]:
                if _uncomment(item) and not (item[:1].isspace() or item.startswith("-")):
                    break  # the next top-level key
                block += [_uncomment(item)] if _uncomment(item) else []
            items = [re.fullmatch(r"(?:-|(\d+)\s*:)\s*(.+)", b) for b in block]
            keys = [it.group(1) if it else "?" for it in items]
            if not block or (keys != [None] * len(keys) and keys != [str(k) for k in range(len(keys))]):
                raise DataError(f"{where}: expected names as '- a' lines or as '0: a' lines numbered from 0; received {block}")
            names = [it.group(2).strip().strip("'\"") for it in items]  # type: ignore[union-attr]
        else:
            raise DataError(f"{where}: expected names as ['a', 'b'] or an indented block; received {value!r}")
    if not names:
        raise DataError(f"{path}: expected a non-empty 'names:' key; found none")
    if nc is not None and nc != len(names):
        raise DataError(f"{path}: expected nc equal to the number of names {names}; received nc: {nc}")
    return tuple(names)


def _load_coco(root: Path, docs: list[tuple[Path, dict]]) -> tuple[list[LabeledFrame], tuple[str, ...]]:
    if len(docs) != 1:
        raise DataError(f"expected one COCO *.json (images, annotations, categories) in {root}; found "
                        f"{[str(p) for p, _ in docs] or 'none'} (pass the file itself as root to choose)")
    (path, doc), names, images = docs[0], {}, {}
    for i, c in enumerate(doc["categories"]):  # by id: ids may start at 0 or 1, or have gaps
        if not isinstance(c, dict) or "id" not in c or "name" not in c or c["id"] in names:
            raise DataError(f"{path}: categories[{i}]: expected an object with a unique id and a name; received {c!r}")
        names[c["id"]] = str(c["name"])
    for i, im in enumerate(doc["images"]):
        try:
            images[im["id"]] = (str(im["file_name"]), int(im["width"]), int(im["height"]), f"{path}: images[{i}]", [], [])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: images[{i}]: expected id, file_name, width and height; received {im!r}") from None
    for i, a in enumerate(doc["annotations"]):
        where = f"{path}: annotations[{i}] (id {a.get('id') if isinstance(a, dict) else None!r})"
        try:
            iid, cid, (x, y, w, h) = a["image_id"], a["category_id"], a["bbox"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: expected image_id, category_id and bbox [x, y, w, h]; received {a!r}") from None
        if iid not in images:
            raise DataError(f"{where}: expected an image id listed in images; received unknown image id {iid!r}")
        if cid not in names:
            raise DataError(f"{where}: expected a category id in {sorted(names)}; received {cid!r}")
        images[iid][4].append(_checked((x, y, float(x) + float(w), float(y) + float(h)), where))
        images[iid][5].append(names[cid])
    frames = [_frame(_find_image(fn, [path.parent / "images", path.parent], where), w, h, boxes, classes)
              for fn, w, h, where, boxes, classes in images.values()]
    return frames, tuple(names[k] for k in sorted(names))


def _load_voc(root: Path) -> tuple[list[LabeledFrame], tuple[str, ...]]:
    if (xml_dir := _voc_dir(root)) is None:
        raise DataError(f"expected Pascal VOC *.xml files in {root / 'voc'}, {root / 'Annotations'} or {root}; found none")
    frames = []
    for xml in sorted(xml_dir.glob("*.xml")):
        try:
            ann = ET.parse(xml).getroot()
            w, h = (int(float(ann.findtext(f"size/{t}") or "nan")) for t in ("width", "height"))
        except ET.ParseError as exc:
            raise DataError(f"{xml}: expected Pascal VOC XML; {exc}") from exc
        except ValueError:
            raise DataError(f"{xml}: expected <size> with numeric <width> and <height>; received none") from None
        if w <= 0 or h <= 0:  # some tools write 0 when they did not know the size
            raise DataError(f"{xml}: expected a positive <size>; received {w}x{h}")
        boxes, classes = [], []
        for k, obj in enumerate(ann.findall("object")):
            try:
                x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{t}") or "x") for t in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError:
                raise DataError(f"{xml}: object {k}: expected <bndbox> with numeric xmin, ymin, xmax, ymax") from None
            if not (name := (obj.findtext("name") or "").strip()):
                raise DataError(f"{xml}: object {k}: expected a <name>; received none")
            boxes.append(_checked((x0 - 1, y0 - 1, x1, y1), f"{xml}: object {k}"))
            classes.append(name)
        if not (fn := (ann.findtext("filename") or "").strip()):
            raise DataError(f"{xml}: expected a <filename>; received none")
        path = _find_image(fn, [root / "images", root / "JPEGImages", xml.parent], str(xml))
        frames.append(_frame(path, w, h, boxes, classes))
    return frames, tuple(sorted({c for f in frames for c in f.classes}))  # VOC lists no classes: those in use


def _groups(frames: tuple[LabeledFrame, ...], burst_seconds: float) -> dict[str, list[list[int]]]:
    by_cam: dict[str, list[int]] = {}
    for i, f in enumerate(frames):
        by_cam.setdefault(f.camera, []).append(i)
    out = {}
    for cam, idx in sorted(by_cam.items()):
        groups: list[list[int]] = []
        for i in sorted((i for i in idx if frames[i].timestamp is not None), key=lambda i: (frames[i].timestamp, i)):
            if groups and frames[i].timestamp - frames[groups[-1][-1]].timestamp <= burst_seconds:  # type: ignore[operator]
                groups[-1].append(i)
            else:
                groups.append([i])
        out[cam] = groups + [[i] for i in idx if frames[i].timestamp is None]  # no time: no burst to tie it to
    return out


def split_frames(ds: BoxDataset, val_fraction: float = 0.2, seed: int = 0, by: str = "frame",
                 burst_seconds: float = 60.0) -> tuple[BoxDataset, BoxDataset]:
    """``(train, val)`` with near-duplicate frames on one side only; the same seed gives the same split.

    ``by='frame'``: whole bursts go to validation (per camera, runs of frames each within
    ``burst_seconds`` of the last; an untimed frame alone): about ``val_fraction``
    of each camera's bursts, at least one when it has two. ``by='camera'``:
    whole cameras go (at least one, at least one left for training).
    Raises ConfigError for a bad argument, DataError when nothing can go to validation.

    Example:
        >>> train, val = split_frames(ds, 0.2, seed=0, by="camera")  # doctest: +SKIP
    """
    if not isinstance(ds, BoxDataset):
        raise ConfigError(f"expected a BoxDataset; received {type(ds).__name__}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(f"expected val_fraction in (0, 1); received {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"expected seed as an int >= 0; received {seed!r}")
    if by not in ("frame", "camera"):
        raise ConfigError(f"expected by 'frame' or 'camera'; received {by!r}")
    if isinstance(burst_seconds, bool) or not isinstance(burst_seconds, (int, float)) or not 0 <= burst_seconds < math.inf:
        raise ConfigError(f"expected burst_seconds as a finite number >= 0; received {burst_seconds!r}")
    groups, val = _groups(ds.frames, float(burst_seconds)), set()
    if by == "camera":
        if len(cams := sorted(groups)) < 2:
            raise DataError(f"expected at least 2 cameras to split {ds.root} by camera; received {cams}")
        k = min(max(int(val_fraction * len(cams) + 0.5), 1), len(cams) - 1)
        for j in np.random.default_rng(seed).permutation(len(cams))[:k]:
            val.update(i for g in groups[cams[j]] for i in g)
    else:
        for cam, gs in groups.items():
            if len(gs) < 2:
                continue  # a camera's only group stays in training: validation would take the whole camera
            # Bursts can be very uneven (a PTZ camera's run of 60 frames beside
            # single stills), so groups are taken until the FRAME share is
            # reached: a group joins when it brings the count closer to it.
            target = val_fraction * sum(len(g) for g in gs)
            taken: list[int] = []
            # seeded per camera, so adding a camera leaves the other cameras' splits as they were
            for j in np.random.default_rng([seed, zlib.crc32(cam.encode())]).permutation(len(gs)):
                n = sum(len(gs[t]) for t in taken)
                if len(taken) < len(gs) - 1 and (not taken or abs(n + len(gs[j]) - target) < abs(n - target)):
                    taken.append(int(j))
            for j in taken:
                val.update(gs[j])
    if not val:
        raise DataError(f"expected a camera of {ds.root} with at least 2 groups of frames (bursts within "
                        f"{burst_seconds} s); received none: lower burst_seconds or split by='camera'")
    return (ds.subset(f for i, f in enumerate(ds.frames) if i not in val), ds.subset(ds.frames[i] for i in sorted(val)))
