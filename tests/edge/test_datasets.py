"""Box datasets: one set of boxes written as YOLO, COCO and VOC reads back the same; bad files fail by name; splits."""

from __future__ import annotations

import doctest
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import edge.datasets
from edge.datasets import (
    BoxDataset,
    LabeledFrame,
    UnsupportedImageError,
    camera_of,
    detect_format,
    image_size,
    is_box_dataset,
    load_box_dataset,
    split_frames,
    timestamp_of,
)
from edge.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared"))
CLASSES = ("boat", "person")
FRAMES = [  # file name, (width, height), [(class, x0, y0, x1, y1)] in native pixels, x1 and y1 exclusive
    ("camA_2022-07-17_10-00-00.png", (40, 30), [("boat", 2, 3, 12, 9), ("person", 20, 10, 25, 28)]),
    ("camA_2022-07-17_10-00-05.png", (40, 30), [("boat", 4, 4, 14, 10)]),
    ("camA_2022-07-17_10-00-10.png", (40, 30), []),  # no labels at all: a frame without boxes
    ("camB_2022-07-18_08-30.png", (64, 48), [("person", 0, 0, 64, 48), ("boat", 30, 5, 41, 17)]),
]


def png_bytes(w: int, h: int) -> bytes:
    """A minimal grey PNG, written without any imaging library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(w) for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_header(w: int, h: int, sof: int = 0xC0) -> bytes:
    """SOI, APP0, DQT, a fill byte, then a frame header: all a header reader may look at."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + bytes(65)
    frame = b"\xff\xff" + bytes([sof]) + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + dqt + frame + b"\xff\xd9"


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, h), _ in FRAMES:
        (folder / name).write_bytes(png_bytes(w, h))


def write_yolo(root: Path) -> None:
    write_images(root / "images")
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("path: .\ntrain: images\nnc: 2  # two classes\nnames: ['boat', 'person']\n")
    for name, (w, h), boxes in FRAMES:
        if boxes:  # the empty frame gets no .txt at all
            lines = [f"{CLASSES.index(c)} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}"
                     for c, x0, y0, x1, y1 in boxes]
            (root / "labels" / name).with_suffix(".txt").write_text("\n".join(lines) + "\n\n")


def write_coco(root: Path, name: str = "coco.json") -> None:
    write_images(root / "images")
    cats = [{"id": 2, "name": "person"}, {"id": 1, "name": "boat"}]  # ids from 1, listed out of order
    images = [{"id": 10 + i, "file_name": n, "width": w, "height": h} for i, (n, (w, h), _) in enumerate(FRAMES)]
    boxes = [(10 + i, box) for i, (_, _, frame_boxes) in enumerate(FRAMES) for box in frame_boxes]
    anns = [{"id": 100 + k, "image_id": iid, "category_id": 1 + CLASSES.index(c), "bbox": [x0, y0, x1 - x0, y1 - y0]}
            for k, (iid, (c, x0, y0, x1, y1)) in enumerate(boxes)]
    (root / name).write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def voc_xml(name: str, w: int | None, h: int | None, boxes) -> str:
    size = "" if w is None else f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
    objs = "".join(f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                   f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for c, x0, y0, x1, y1 in boxes)  # 1-based
    return f"<annotation><folder>images</folder><filename>{name}</filename>{size}{objs}</annotation>"


def write_voc(root: Path, folder: str = "voc", images: str = "images") -> None:
    write_images(root / images)
    (root / folder).mkdir(parents=True, exist_ok=True)
    for name, (w, h), boxes in FRAMES:
        (root / folder / name).with_suffix(".xml").write_text(voc_xml(name, w, h, boxes))


WRITERS = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc}


@pytest.fixture
def all_three(tmp_path) -> Path:
    for write in WRITERS.values():
        write(tmp_path)
    return tmp_path


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_each_format_reads_back_the_boxes_it_was_written_with(all_three, fmt):
    ds = load_box_dataset(all_three, format=fmt)
    assert ds.format == fmt and ds.class_names == CLASSES and len(ds) == len(FRAMES)
    for frame, (name, (w, h), boxes) in zip(ds.frames, FRAMES):
        assert frame.path == str(all_three / "images" / name)
        assert (frame.width, frame.height) == (w, h)
        assert frame.classes == tuple(c for c, *_ in boxes)
        assert frame.boxes.dtype == np.float32 and frame.boxes.shape == (len(boxes), 4)
        np.testing.assert_allclose(frame.boxes, np.array([b[1:] for b in boxes], np.float32).reshape(-1, 4), atol=1e-4)
    assert ds.box_counts() == {"boat": 3, "person": 2}
    assert ds.cameras() == {"camA": 3, "camB": 1}
    assert [f.timestamp is None for f in ds.frames] == [False] * 4
    assert ds.frames[1].timestamp - ds.frames[0].timestamp == 5.0


@pytest.mark.parametrize(
    "parts, expected",
    [
        (["yolo"], "yolo"),
        (["coco"], "coco"),
        (["voc"], "voc"),
        (["voc:Annotations:JPEGImages"], "voc"),
        (["voc:.:images"], "voc"),  # *.xml at the root
        (["voc", "coco", "yolo"], "yolo"),
        (["voc", "coco"], "coco"),
    ],
)
def test_detect_format_finds_each_layout_and_prefers_yolo_then_coco(tmp_path, parts, expected):
    for part in parts:
        fmt, *where = part.split(":")
        WRITERS[fmt](tmp_path, *where)
    assert detect_format(tmp_path) == expected and is_box_dataset(tmp_path)
    ds = load_box_dataset(tmp_path)
    assert ds.format == expected and ds.box_counts() == {"boat": 3, "person": 2}


def test_a_folder_per_class_tree_is_not_a_box_dataset(tmp_path):
    for cls in ("ship", "background"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "a.png").write_bytes(png_bytes(4, 4))
    assert not is_box_dataset(tmp_path) and not is_box_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match=r"YOLO \(images/ and labels/\), COCO .* Pascal VOC"):
        detect_format(tmp_path)


def test_a_coco_file_can_be_chosen_when_a_folder_holds_several(tmp_path):
    write_coco(tmp_path, "train.json")
    write_coco(tmp_path, "val.json")
    (tmp_path / "notes.json").write_text('{"images": []}')  # not COCO: ignored
    with pytest.raises(DataError, match=r"expected one COCO .*train.json.*val.json.*pass the file"):
        load_box_dataset(tmp_path)
    assert len(load_box_dataset(tmp_path / "val.json")) == len(FRAMES)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new, 1))


def _coco_edit(root: Path, change) -> None:
    doc = json.loads((root / "coco.json").read_text())
    change(doc)
    (root / "coco.json").write_text(json.dumps(doc))


L0, L1 = "labels/camA_2022-07-17_10-00-00.txt", "labels/camB_2022-07-18_08-30.txt"
X0 = "voc/camA_2022-07-17_10-00-00.xml"
BAD = [
    # id, format, edit(root), error raised (None: loads), message
    ("blank-lines-and-comments-ok", "yolo", lambda r: _edit(r / L0, "\n", "\n\n  \n"), None, None),
    ("field-count", "yolo", lambda r: _edit(r / L1, "\n", " 0.5\n"), DataError, r"camB_2022-07-18_08-30.txt:1: expected 5 fields"),
    ("class-out-of-range", "yolo", lambda r: _edit(r / L0, "1 ", "2 "), DataError, r"10-00-00.txt:2: expected a class id in 0..1"),
    ("not-a-number", "yolo", lambda r: _edit(r / L0, "0 ", "boat "), DataError, r"10-00-00.txt:1: expected an integer class id"),
    ("negative-width", "yolo", lambda r: _edit(r / L1, " 1.0 1.0", " -1.0 1.0"), DataError, r"08-30.txt:1: expected a finite box"),
    ("orphan-label", "yolo", lambda r: (r / "labels" / "gone.txt").write_text("0 .5 .5 .1 .1\n"), DataError, r"gone.txt"),
    ("nc-mismatch", "yolo", lambda r: _edit(r / "data.yaml", "nc: 2", "nc: 3"), DataError, r"data.yaml: expected nc equal"),
    ("bmp-image", "yolo", lambda r: (r / "images" / "x.bmp").write_bytes(b"BM" + bytes(60)), UnsupportedImageError,
     r"x.bmp to read its size"),
    ("coco-unknown-image", "coco", lambda r: _coco_edit(r, lambda d: d["annotations"][2].update(image_id=99)), DataError,
     r"coco.json: annotations\[2\] \(id 102\): expected an image id .* unknown image id 99"),
    ("coco-unknown-category", "coco", lambda r: _coco_edit(r, lambda d: d["annotations"][0].update(category_id=0)),
     DataError, r"annotations\[0\] .*category id in \[1, 2\]; received 0"),
    ("coco-no-bbox", "coco", lambda r: _coco_edit(r, lambda d: d["annotations"][1].pop("bbox")), DataError,
     r"annotations\[1\] .*bbox \[x, y, w, h\]"),
    ("coco-image-without-size", "coco", lambda r: _coco_edit(r, lambda d: d["images"][3].pop("width")), DataError,
     r"images\[3\]: expected id, file_name, width and height"),
    ("voc-no-size", "voc", lambda r: (r / X0).write_text(voc_xml(FRAMES[0][0], None, None, FRAMES[0][2])), DataError,
     r"10-00-00.xml: expected <size>"),
    ("voc-zero-size", "voc", lambda r: _edit(r / X0, "<width>40<", "<width>0<"), DataError, r"10-00-00.xml: expected a positive"),
    ("voc-bad-coordinate", "voc", lambda r: _edit(r / X0, "<xmin>3<", "<xmin>three<"), DataError, r"10-00-00.xml: object 0"),
    ("voc-missing-image", "voc", lambda r: (r / "images" / FRAMES[0][0]).unlink(), DataError,
     r"10-00-00.xml: expected the image 'camA_2022-07-17_10-00-00.png'"),
    ("voc-not-xml", "voc", lambda r: (r / X0).write_text("<annotation>"), DataError, r"10-00-00.xml: expected Pascal VOC XML"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_files_fail_naming_the_file_and_line_or_record(tmp_path, case):
    _, fmt, edit, error, message = case
    WRITERS[fmt](tmp_path)
    edit(tmp_path)
    if error is None:
        assert len(load_box_dataset(tmp_path, fmt)) == len(FRAMES)
    else:
        with pytest.raises(error, match=message):
            load_box_dataset(tmp_path, fmt)


@pytest.mark.parametrize(
    "yaml, names",
    [
        ("names: ['a', 'b']\nnc: 2\n", ("a", "b")),
        ('names: [a, "b c"]  # comment\n', ("a", "b c")),
        ("names: ['a',\n  'b',\n  'c']\nnc: 3\n", ("a", "b", "c")),
        ("nc: 2\nnames:\n  - a\n  - 'b'\ntrain: images\n", ("a", "b")),
        ("names:\n- a\n- b\n", ("a", "b")),
        ("names:\n  0: a\n  # a comment\n  1: b  # trailing\nval: images\n", ("a", "b")),
        ("names:\n  1: a\n  2: b\n", DataError),  # numbered from 1
        ("names: a\n", DataError),
        ("names: ['a', 'b'\n", DataError),
        ("train: images\n", DataError),
        ("names: [a]\nnc: two\n", DataError),
    ],
)
def test_data_yaml_names_forms(tmp_path, yaml, names):
    write_yolo(tmp_path)
    for p in (tmp_path / "labels").iterdir():
        p.unlink()  # so class ids of the fixture never exceed the names under test
    (tmp_path / "data.yaml").write_text(yaml)
    if names is DataError:
        with pytest.raises(DataError, match="data.yaml"):
            load_box_dataset(tmp_path, "yolo")
    else:
        assert load_box_dataset(tmp_path, "yolo").class_names == names


@pytest.mark.parametrize(
    "data, expected",
    [
        (png_bytes(37, 21), (37, 21)),
        (jpeg_header(1920, 1080), (1920, 1080)),
        (jpeg_header(640, 480, sof=0xC2), (640, 480)),  # progressive
        (jpeg_header(64, 48, sof=0xC3), UnsupportedImageError),  # lossless
        (b"BM" + bytes(60), UnsupportedImageError),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(30), UnsupportedImageError),
        (png_bytes(37, 21)[:20], DataError),  # truncated inside IHDR
        (jpeg_header(64, 48)[:90], DataError),  # truncated before the frame header ends
        (jpeg_header(64, 48)[:40], DataError),
        (b"", UnsupportedImageError),
    ],
)
def test_image_size_reads_png_and_jpeg_headers(tmp_path, data, expected):
    path = tmp_path / "img"
    path.write_bytes(data)
    if isinstance(expected, tuple):
        assert image_size(path) == expected
    else:
        with pytest.raises(expected):
            image_size(path)


def test_image_size_agrees_with_opencv_on_encoded_files(tmp_path):
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(0).integers(0, 255, (45, 70, 3), np.uint8)
    for name, params in [("base.jpg", []), ("prog.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), ("a.png", [])]:
        assert cv2.imwrite(str(tmp_path / name), img, params)
        assert image_size(tmp_path / name) == (70, 45)
    assert b"\xff\xc2" in (tmp_path / "prog.jpg").read_bytes()
    (tmp_path / "own.png").write_bytes(png_bytes(9, 5))
    assert cv2.imread(str(tmp_path / "own.png")).shape == (5, 9, 3)  # the test's own PNG writer is a real PNG


@pytest.mark.parametrize(
    "path, camera, timestamp",
    [
        ("images/2ux5cw8z_1080_2022-07-17_02-54_output_0.jpeg", "2ux5cw8z_1080", "2022-07-17T02:54:00"),
        ("sooke1_ptz_capture_2019-08-18_13-38-10.jpg", "sooke1_ptz_capture", "2019-08-18T13:38:10"),
        ("/x/cam-3-20230105_101500.jpg", "cam-3", None),  # compact date: a camera boundary, not a parsed time
        ("cam_2023-01-05T10:15:30.png", "cam", "2023-01-05T10:15:30"),
        ("cam_2023-01-05 10-15.png", "cam", "2023-01-05T10:15:00"),
        ("cams/north/img_0001.jpg", "north", None),
        ("cams/north/2023-01-05_10-15.jpg", "north", "2023-01-05T10:15:00"),  # the date starts the stem
        ("site/cam_1080_12345678.jpg", "site", None),  # 8 digits that are no date
        ("site/cam_2023-13-05_10-15.jpg", "site", None),  # month 13
        ("cam_2023-02-30_10-15.jpg", "cam", None),  # a date-shaped token that is no real day
    ],
)
def test_camera_and_timestamp_from_file_names(path, camera, timestamp):
    from datetime import datetime, timezone

    assert camera_of(path) == camera
    expected = None if timestamp is None else datetime.fromisoformat(timestamp).replace(tzinfo=timezone.utc).timestamp()
    assert timestamp_of(path) == expected


def test_frames_check_their_shapes_own_their_boxes_and_select_by_class():
    src = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [2, 2, 4, 4]], np.float64)
    f = LabeledFrame("a.jpg", 8, 8, src, ["sea", "land", "sea"], "cam", None)
    assert f.classes == ("sea", "land", "sea") and f.boxes.dtype == np.float32 and not f.boxes.flags.writeable
    assert src.flags.writeable  # the caller's array is not frozen with the frame's copy
    assert f.boxes_of("sea").tolist() == [[0, 0, 2, 2], [2, 2, 4, 4]]
    assert f.boxes_of(["sea", "land"]).shape == (3, 4) and f.boxes_of("human").shape == (0, 4)
    assert LabeledFrame("b.jpg", 8, 8, [], (), "cam", None).boxes.shape == (0, 4)
    with pytest.raises(DataError, match=r"expected boxes of shape \(N, 4\); received \(4,\)"):
        LabeledFrame("a.jpg", 8, 8, [0, 0, 1, 1], ("sea",), "cam", None)
    with pytest.raises(DataError, match="one class per box"):
        LabeledFrame("a.jpg", 8, 8, src, ("sea",), "cam", None)
    ds = BoxDataset("r", "voc", ("land", "sea", "human"), (f,))
    assert ds.box_counts() == {"land": 1, "sea": 2, "human": 0}
    with pytest.raises(DataError, match=r"expected classes among \['sea'\]"):
        BoxDataset("r", "voc", ("sea",), (f,))
    with pytest.raises(ConfigError, match="expected format one of"):
        BoxDataset("r", "pascal", ("land", "sea"), (f,))
    with pytest.raises(ConfigError, match="expected frames of the dataset"):
        ds.subset([LabeledFrame("other.jpg", 8, 8, [], (), "cam", None)])


def _frame(path: str) -> LabeledFrame:
    return LabeledFrame(path, 64, 48, np.zeros((0, 4)), (), camera_of(path), timestamp_of(path))


def _split_set(n_cams: int = 5) -> tuple[BoxDataset, dict[str, int]]:
    """Cameras with bursts of 1-3 frames 5 s apart, bursts 10 min apart, and two frames without a time."""
    frames, burst_of, burst = [], {}, 0
    for c in range(n_cams):
        for b in range(12):
            for k in range(1 + (b + c) % 3):
                t = b * 600 + k * 5
                path = f"d/c{c}_2023-05-01_{8 + t // 3600:02d}-{t // 60 % 60:02d}-{t % 60:02d}.jpg"
                frames.append(_frame(path))
                burst_of[path] = burst
            burst += 1
        for k in range(2):
            path = f"d/c{c}/still_{k}.jpg"  # no time: each is its own group
            frames.append(_frame(path))
            burst_of[path], burst = burst, burst + 1
    return BoxDataset("d", "yolo", (), tuple(sorted(frames, key=lambda f: f.path))), burst_of


def test_split_by_frame_keeps_bursts_whole_per_camera_and_is_deterministic():
    ds, burst_of = _split_set()
    train, val = split_frames(ds, 0.2, seed=0)
    tr, va = {f.path for f in train.frames}, {f.path for f in val.frames}
    assert not tr & va and tr | va == {f.path for f in ds.frames}
    assert not {burst_of[p] for p in tr} & {burst_of[p] for p in va}  # no burst on both sides
    assert set(val.cameras()) == set(ds.cameras())  # every camera gives some validation
    for cam in ds.cameras():
        n_val = len({burst_of[p] for p in va if camera_of(p) == cam})
        assert n_val == 3  # round(0.2 * 14 groups)
    again = split_frames(ds, 0.2, seed=0)[1]
    assert [f.path for f in again.frames] == [f.path for f in val.frames]
    assert len({tuple(f.path for f in split_frames(ds, 0.2, seed=s)[1].frames) for s in range(6)}) > 1
    assert val.format == ds.format and list(val.frames) == sorted(val.frames, key=lambda f: f.path)


def test_adding_a_camera_leaves_the_other_cameras_split_unchanged():
    small, _ = _split_set(4)
    large, _ = _split_set(5)
    in_small = {f.path for f in split_frames(small, 0.2, seed=3)[1].frames}
    in_large = {f.path for f in split_frames(large, 0.2, seed=3)[1].frames if f.camera != "c4"}
    assert in_small == in_large


def test_a_burst_of_frames_within_burst_seconds_is_one_group():
    burst = {f"c_2023-05-01_10-00-{s:02d}.jpg" for s in (0, 5, 10)}
    alone = ["c_2023-05-01_10-01-11.jpg", "c_2023-05-01_11-00-00.jpg"]  # 61 s after the burst, then an hour
    ds = BoxDataset("d", "coco", (), tuple(_frame(p) for p in sorted(burst | set(alone))))
    seen = set()
    for seed in range(24):
        val = frozenset(f.path for f in split_frames(ds, 0.2, seed=seed)[1].frames)
        assert val in (burst, {alone[0]}, {alone[1]})  # one whole group of the three
        seen.add(val)
    assert len(seen) == 3
    together = BoxDataset("d", "coco", (), tuple(_frame(p) for p in sorted(burst | {alone[0]})))
    train, val = split_frames(together, 0.95)  # two groups: one goes, one stays, however large the fraction
    assert {len(train), len(val)} == {1, 3}
    with pytest.raises(DataError, match="at least 2 groups"):  # 61 s apart with burst_seconds=61: one group
        split_frames(together, 0.2, burst_seconds=61)


def test_split_by_camera_keeps_cameras_whole():
    ds, _ = _split_set()
    for fraction, n_val in [(0.2, 1), (0.5, 3), (0.95, 4)]:
        train, val = split_frames(ds, fraction, seed=1, by="camera")
        assert len(val.cameras()) == n_val and not set(train.cameras()) & set(val.cameras())
        assert len(train) + len(val) == len(ds)
    assert split_frames(ds, 0.5, 7, "camera")[1].cameras() == split_frames(ds, 0.5, 7, "camera")[1].cameras()
    one = BoxDataset("d", "yolo", (), tuple(f for f in ds.frames if f.camera == "c0"))
    with pytest.raises(DataError, match=r"at least 2 cameras .*received \['c0'\]"):
        split_frames(one, by="camera")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": 0.0}, r"val_fraction in \(0, 1\); received 0.0"),
        ({"val_fraction": 1}, "val_fraction"),
        ({"val_fraction": "0.2"}, "val_fraction"),
        ({"val_fraction": True}, "val_fraction"),
        ({"seed": -1}, r"seed as an int >= 0; received -1"),
        ({"seed": 1.5}, "seed"),
        ({"by": "time"}, r"by 'frame' or 'camera'; received 'time'"),
        ({"burst_seconds": -1.0}, "burst_seconds"),
        ({"burst_seconds": float("nan")}, "burst_seconds"),
        ({"burst_seconds": float("inf")}, "burst_seconds"),
    ],
)
def test_split_rejects_bad_arguments(kwargs, match):
    ds, _ = _split_set(2)
    with pytest.raises(ConfigError, match=match):
        split_frames(ds, **kwargs)


def test_split_rejects_a_non_dataset():
    with pytest.raises(ConfigError, match="expected a BoxDataset; received list"):
        split_frames([])


def test_docstring_examples_run():
    assert doctest.testmod(edge.datasets, optionflags=doctest.ELLIPSIS).failed == 0


def test_imports_without_opencv_or_tensorflow():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('cv2', 'tensorflow', 'yaml', 'PIL', 'onnxruntime'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import edge.datasets\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr


REAL = [  # name, frames, boxes per class, cameras
    ("shore_livecams", 394, {"human": 1624, "land": 1976, "sea": 2043}, 8),
    ("uvic_sooke", 273, {"vessel": 519}, 1),
]


@pytest.mark.shared
@pytest.mark.parametrize("name, n_frames, counts, n_cams", REAL, ids=[r[0] for r in REAL])
def test_real_datasets_read_the_same_in_all_three_formats(name, n_frames, counts, n_cams):
    root = SHARED / "data" / "maritime" / name
    if not root.is_dir():
        pytest.skip(f"needs {root} (../shared is not beside this checkout)")
    assert detect_format(root) == "yolo"
    yolo, coco, voc = (load_box_dataset(root, fmt) for fmt in ("yolo", "coco", "voc"))
    for ds in (yolo, coco, voc):
        assert len(ds) == n_frames and ds.box_counts() == counts and len(ds.cameras()) == n_cams
    for frames in zip(yolo.frames, coco.frames, voc.frames):
        assert len({(f.path, f.width, f.height, f.classes) for f in frames}) == 1
        for other in frames[1:]:
            # within 1 px: COCO there is rounded to integers, YOLO to 6 decimals (1.001 px at 1920)
            np.testing.assert_allclose(other.boxes, frames[0].boxes, atol=1.01)
