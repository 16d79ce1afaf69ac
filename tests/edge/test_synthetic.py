"""Tests of the synthetic sea-scene generator: determinism, box exactness, layout, atomic writes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, DataError
from edge.synthetic import DatasetInfo, SceneClip, SceneSpec, SpecError, generate_dataset, render_scene
from edge.synthetic.dataset import _n_ships, _place_ships
from edge.synthetic.geometry import _apply, _area, _clip, _clipped_area
from edge.synthetic.sea import _World
from edge.synthetic.ships import _draw_ships

SMALL = SceneSpec(height=96, width=128, ship_length=(24.0, 72.0))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetInfo]:
    root = tmp_path_factory.mktemp("ds") / "out"
    return root, generate_dataset(root, n_train=10, n_val=6, spec=SMALL, seed=7)


@pytest.fixture(scope="module")
def short_clip() -> tuple[SceneClip, list[tuple[np.ndarray, np.ndarray]]]:
    clip = SceneClip(seed=0, n_frames=75, width=320, height=180, ship_length=(30.0, 80.0))
    return clip, list(clip.frames())


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "kwargs, raises",
    [
        ({}, False),
        ({"height": 64, "width": 200, "ship_length": (10, 64)}, False),
        ({"ship_length": [40, 120]}, False),  # any (min, max) pair is accepted and stored as floats
        ({"hard_negative_rate": 0}, False),
        ({"hard_negative_rate": 1.0, "min_inside": 1.0, "max_ships": 1}, False),
        ({"height": 16}, True),
        ({"width": 160.0}, True),
        ({"height": True}, True),
        ({"ship_length": (120.0, 40.0)}, True),
        ({"ship_length": (40.0, 200.0)}, True),  # longer than the image: cannot be 70 % inside at every heading
        ({"ship_length": (4.0, 40.0)}, True),
        ({"ship_length": (40.0,)}, True),
        ({"ship_length": "ab"}, True),
        ({"max_ships": 0}, True),
        ({"hard_negative_rate": 1.5}, True),
        ({"hard_negative_rate": float("nan")}, True),
        ({"beam_ratio": (0.3, 0.1)}, True),
        ({"min_inside": 0.0}, True),
        ({"wakes": 1}, True),
    ],
)
def test_scene_spec_validation(kwargs: dict, raises: bool) -> None:
    if raises:
        with pytest.raises(ValueError) as err:
            SceneSpec(**kwargs)
        name = next(iter(kwargs))
        assert name in str(err.value) and "expected" in str(err.value) and "received" in str(err.value)
        assert isinstance(err.value, ConfigError)
    else:
        spec = SceneSpec(**kwargs)
        assert isinstance(spec.ship_length, tuple) and all(isinstance(v, float) for v in spec.ship_length)


def test_scene_spec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SceneSpec().height = 10  # type: ignore[misc]


@pytest.mark.parametrize("n_ships", [-1, 4, 1.0])
def test_render_scene_rejects_bad_ship_count(n_ships: object) -> None:
    with pytest.raises(SpecError, match="n_ships"):
        render_scene(np.random.default_rng(0), SceneSpec(), n_ships)  # type: ignore[arg-type]


def test_render_scene_rejects_legacy_random_state() -> None:
    with pytest.raises(TypeError, match="Generator"):
        render_scene(np.random.RandomState(0), SceneSpec(), 1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- stills
def test_same_seed_same_image_different_seed_differs() -> None:
    a, boxes_a = render_scene(np.random.default_rng(11), SceneSpec(), 2)
    b, boxes_b = render_scene(np.random.default_rng(11), SceneSpec(), 2)
    c, _ = render_scene(np.random.default_rng(12), SceneSpec(), 2)
    assert a.tobytes() == b.tobytes() and boxes_a.tobytes() == boxes_b.tobytes()
    assert np.mean(a != c) > 0.5
    assert a.dtype == np.uint8 and a.shape == (160, 160, 3) and boxes_a.dtype == np.float32 and boxes_a.shape == (2, 4)


def test_images_are_rgb() -> None:
    # every water colour has more blue than red; a BGR mix-up would flip this on clean sea
    clean = SceneSpec(hard_negative_rate=0.0)
    for seed in range(8):
        image, _ = render_scene(np.random.default_rng(seed), clean, 0)
        assert image[..., 2].mean() > image[..., 0].mean(), seed


@pytest.mark.parametrize("seed", range(12))
def test_boxes_inside_with_positive_area(seed: int) -> None:
    spec = SceneSpec(hard_negative_rate=0.6)
    for n in range(spec.max_ships + 1):
        _, boxes = render_scene(np.random.default_rng([seed, n]), spec, n)
        assert boxes.shape == (n, 4)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= spec.width).all() and (boxes[:, 3] <= spec.height).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert np.array_equal(boxes, np.round(boxes)), "boxes are pixel-exact"


@pytest.mark.parametrize("seed", range(20))
def test_box_is_tight_around_the_changed_pixels(seed: int) -> None:
    # without wake and shadow a ship changes exactly its own pixels: their bounding box must be the
    # reported box, touching all four of its edges
    spec = SceneSpec(wakes=False, shadows=False, hard_negative_rate=0.5)
    sea, none = render_scene(np.random.default_rng(seed), spec, 0)
    ship, boxes = render_scene(np.random.default_rng(seed), spec, 1)
    assert none.shape == (0, 4)
    changed = np.any(sea != ship, axis=2)
    ys, xs = np.nonzero(changed)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == boxes[0].astype(int).tolist()


@pytest.mark.parametrize("seed", range(10))
def test_every_box_holds_ship_pixels_that_differ_from_the_water(seed: int) -> None:
    spec = SceneSpec(wakes=False, shadows=False)
    sea, _ = render_scene(np.random.default_rng(seed), spec, 0)
    ships, boxes = render_scene(np.random.default_rng(seed), spec, 3)
    changed = np.any(sea != ships, axis=2)
    covered = np.zeros_like(changed)
    for x0, y0, x1, y1 in boxes.astype(int):
        covered[y0:y1, x0:x1] = True
        inside = np.abs(ships[y0:y1, x0:x1].astype(int) - sea[y0:y1, x0:x1]).sum(axis=2)
        # a hull fills at least ~18 % of its box (a thin diagonal ship) and differs by far more than the grain
        assert (inside > 24).mean() > 0.15
    assert not (changed & ~covered).any(), "ship pixels outside every box"


def test_wake_and_shadow_leave_hull_pixels_and_boxes_alone() -> None:
    sea, _ = render_scene(np.random.default_rng(5), SceneSpec(wakes=False, shadows=False), 0)
    plain, boxes_plain = render_scene(np.random.default_rng(5), SceneSpec(wakes=False, shadows=False), 1)
    full, boxes_full = render_scene(np.random.default_rng(5), SceneSpec(), 1)
    hull = np.any(sea != plain, axis=2)
    assert np.array_equal(boxes_plain, boxes_full)
    assert np.array_equal(plain[hull], full[hull])  # the hull is drawn over its wake and shadow
    assert (np.any(plain != full, axis=2) & ~hull).sum() > 20  # ...which are drawn around it


def test_ships_are_mostly_inside_the_image() -> None:
    spec = SceneSpec()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        world_occupied = np.zeros((spec.height, spec.width), np.uint8)
        for ship, a in _place_ships(rng, spec, 3, world_occupied):
            hull = _apply(a, ship.parts[0][0])
            assert _clipped_area(hull, spec.width, spec.height) >= spec.min_inside * ship.area - 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_box_matches_the_hull_geometry_at_the_border(seed: int) -> None:
    # OpenCV's fillPoly smears polygons that leave the image sideways into the border column; the
    # box of the drawn pixels must match the hull polygon clipped to the image, to a pixel. Geometry
    # uses OpenCV's pixel-centre coordinates, boxes pixel edges: hence the 0.5 shifts.
    spec = SceneSpec(height=64, width=64, ship_length=(30.0, 60.0))
    rng = np.random.default_rng(seed)
    placed = _place_ships(rng, spec, 3, np.zeros((64, 64), np.uint8))
    canvas = np.zeros((64, 64, 3), np.float32)
    boxes, visible = _draw_ships(canvas, placed, [], None, np.zeros(2), SceneSpec(wakes=False, shadows=False), None)
    assert len(boxes) == 3 and (visible > 0).all()
    for (ship, a), box in zip(placed, boxes):
        clipped = _clip(_apply(a, ship.parts[0][0]), -0.5, -0.5, 63.5, 63.5) + 0.5
        expect = np.concatenate([clipped.min(axis=0), clipped.max(axis=0)])
        assert np.abs(box - expect).max() <= 1.25, (box, expect)  # fill rule and 1/16 px vertices


def test_clip_boxes_at_the_border_match_the_hull() -> None:
    clip = SceneClip(seed=0, n_frames=75, width=320, height=180, ship_length=(30.0, 80.0))
    for i in range(48, 75, 3):  # ships enter over the border in these frames
        t = i / clip.fps
        cam = clip._camera(t)
        _, boxes = clip.frame(i)
        expected = []
        for p in clip._passes:
            if p.t0 <= t <= p.t_end:
                a = p.affine(t)
                hull = _apply(a, p.ship.parts[0][0]) @ cam[:, :2].T + cam[:, 2]
                clipped = _clip(hull, -0.5, -0.5, 319.5, 179.5) + 0.5
                if len(clipped) >= 3 and _area(clipped) > 2:
                    expected.append(np.concatenate([clipped.min(axis=0), clipped.max(axis=0)]))
        assert len(boxes) == len(expected)
        assert np.abs(boxes - np.asarray(expected).reshape(-1, 4)).max(initial=0.0) <= 1.25


def test_background_does_not_depend_on_ship_count() -> None:
    spec = SceneSpec(wakes=False, shadows=False)
    sea, _ = render_scene(np.random.default_rng(3), spec, 0)
    ships, boxes = render_scene(np.random.default_rng(3), spec, 2)
    outside = np.ones(sea.shape[:2], bool)
    for x0, y0, x1, y1 in boxes.astype(int):
        outside[y0:y1, x0:x1] = False
    assert np.array_equal(sea[outside], ships[outside])


@pytest.mark.parametrize("rate, lo, hi", [(0.0, 0.0, 0.0), (0.4, 0.28, 0.52), (1.0, 1.0, 1.0)])
def test_hard_negative_rate(rate: float, lo: float, hi: float) -> None:
    # the background never depends on the ship count (test above), so this rate holds in both classes
    spec = SceneSpec(height=64, width=64, ship_length=(20.0, 40.0), hard_negative_rate=rate)
    hits = [bool(w.occupied.any() or w.strays) for w in
            (_World(np.random.default_rng(seed), 64, 64, spec) for seed in range(100))]
    assert lo <= np.mean(hits) <= hi


# ----------------------------------------------------------------------------- dataset
def test_dataset_counts_layout_and_labels(dataset: tuple[Path, DatasetInfo]) -> None:
    root, info = dataset
    assert info.counts == {"train": {"no_ship": 5, "ship": 5}, "val": {"no_ship": 3, "ship": 3}}
    assert info.count("train", "ship") == 5 and info.labels_csv == root / "labels.csv"
    for split, n in (("train", 10), ("val", 6)):
        on_disk = sorted((root / split).glob("*/*.png"))
        assert sorted(info.images[split]) == on_disk and len(on_disk) == n
        for label in ("ship", "no_ship"):
            assert len(list((root / split / label).glob("*.png"))) == info.count(split, label)
    rows = _read_csv(root / "labels.csv")
    assert list(rows[0]) == ["split", "path", "label", "x0", "y0", "x1", "y1"]
    assert {r["path"] for r in rows} == {p.relative_to(root).as_posix() for s in info.images.values() for p in s}
    assert sum(r["x0"] != "" for r in rows) == info.n_boxes
    for row in rows:
        assert Path(row["path"]).parts[:2] == (row["split"], row["label"])
    by_path: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row)
    for path, group in by_path.items():
        image = cv2.imread(str(root / path), cv2.IMREAD_UNCHANGED)
        assert image.shape == (96, 128, 3)
        if group[0]["label"] == "no_ship":
            assert len(group) == 1 and [group[0][k] for k in ("x0", "y0", "x1", "y1")] == ["", "", "", ""]
        else:
            assert 1 <= len(group) <= SMALL.max_ships
            for r in group:
                x0, y0, x1, y1 = (float(r[k]) for k in ("x0", "y0", "x1", "y1"))
                assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96


def test_dataset_png_matches_render_scene_in_rgb(dataset: tuple[Path, DatasetInfo]) -> None:
    # the PNG holds the rendered RGB image (BGR only inside the file) and the CSV its exact boxes
    root, info = dataset
    rows = _read_csv(root / "labels.csv")
    for i, path in enumerate(info.images["val"]):
        rel = path.relative_to(root).as_posix()
        rng = np.random.default_rng([7, 2, 1, i])
        n = _n_ships(rng, SMALL.max_ships) if "/ship/" in rel else 0
        expected, boxes = render_scene(rng, SMALL, n)
        decoded = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(decoded, expected)
        csv_boxes = [[float(r[k]) for k in ("x0", "y0", "x1", "y1")] for r in rows if r["path"] == rel and r["x0"]]
        assert np.array_equal(np.asarray(csv_boxes, np.float32).reshape(-1, 4), boxes)


def test_dataset_bytes_are_reproducible_and_seed_dependent(tmp_path: Path, dataset: tuple[Path, DatasetInfo]) -> None:
    root, _ = dataset
    again = generate_dataset(tmp_path / "again", n_train=10, n_val=6, spec=SMALL, seed=7)
    other = generate_dataset(tmp_path / "other", n_train=10, n_val=6, spec=SMALL, seed=8)
    assert _files(again.root) == _files(root)
    pngs = {v for k, v in _files(root).items() if k.endswith(".png")}
    assert len(pngs) == 16 and not pngs & {v for k, v in _files(other.root).items() if k.endswith(".png")}


@pytest.mark.parametrize("fraction, ships", [(0.0, 0), (1.0, 5), (0.25, 1)])  # 0.25 * 5 = 1.25 -> 1
def test_ship_fraction_sets_exact_counts(tmp_path: Path, fraction: float, ships: int) -> None:
    info = generate_dataset(tmp_path, n_train=5, n_val=0, spec=SceneSpec(height=48, width=48, ship_length=(16, 40)),
                            ship_fraction=fraction)
    assert info.counts["train"] == {"ship": ships, "no_ship": 5 - ships}
    assert info.counts["val"] == {"ship": 0, "no_ship": 0} and info.images["val"] == ()


@pytest.mark.parametrize(
    "kwargs", [{"n_train": -1}, {"n_val": 2.5}, {"seed": -3}, {"ship_fraction": 1.2}, {"ship_fraction": "half"}]
)
def test_generate_dataset_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(SpecError, match=next(iter(kwargs))):
        generate_dataset(tmp_path, **{"n_train": 2, "n_val": 2, **kwargs})
    assert not any(tmp_path.iterdir())


def test_generate_dataset_refuses_foreign_images(tmp_path: Path) -> None:
    stray = tmp_path / "train" / "ship" / "holiday.png"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not ours")
    with pytest.raises(DataError, match="holiday.png"):
        generate_dataset(tmp_path, n_train=2, n_val=0, spec=SMALL)


def _interrupt_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = os.replace, []

    def flaky(src, dst):  # noqa: ANN001
        calls.append(dst)
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated Ctrl-C between write and rename")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)  # the rename of edge.synthetic.dataset._write_atomic


def _interrupt_write(monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = Path.write_bytes, []

    def half(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) == 5:
            real(self, data[: len(data) // 2])
            raise OSError(28, "simulated disk full halfway through a PNG")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", half)


@pytest.mark.parametrize("interrupt", [_interrupt_rename, _interrupt_write])
def test_interrupted_run_leaves_only_whole_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt) -> None:  # noqa: ANN001
    root = tmp_path / "ds"
    with monkeypatch.context() as patch:
        interrupt(patch)
        with pytest.raises((KeyboardInterrupt, OSError)):
            generate_dataset(root, n_train=6, n_val=2, spec=SMALL, seed=1)
    left = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in left if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert not (root / "labels.csv").exists()
    assert len(left) == 4  # the four images finished before the fifth write failed
    for p in left:
        assert cv2.imread(str(p)) is not None, f"{p} is truncated"
    # a rerun over the partial folder completes and equals a clean run
    generate_dataset(root, n_train=6, n_val=2, spec=SMALL, seed=1)
    generate_dataset(tmp_path / "clean", n_train=6, n_val=2, spec=SMALL, seed=1)
    assert _files(root) == _files(tmp_path / "clean")


# ----------------------------------------------------------------------------- clip
def test_clip_length_and_frame_format(short_clip: tuple[SceneClip, list]) -> None:
    clip, frames = short_clip
    assert len(clip) == len(frames) == 75
    for image, boxes in frames:
        assert image.shape == (180, 320, 3) and image.dtype == np.uint8
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4


def test_clip_has_frames_with_and_without_ships_and_boxes_inside(short_clip: tuple[SceneClip, list]) -> None:
    _, frames = short_clip
    counts = [len(b) for _, b in frames]
    assert min(counts) == 0 and max(counts) >= 1 and max(counts) <= 3
    for _, boxes in frames:
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 3] <= 180).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_clip_boxes_move_between_frames(short_clip: tuple[SceneClip, list]) -> None:
    _, frames = short_clip

    def interior(boxes: np.ndarray) -> np.ndarray:  # whole ships: entering/leaving boxes grow and shrink
        keep = (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < 320) & (boxes[:, 3] < 180)
        return boxes[keep]

    moves = []
    for (_, a), (_, b) in zip(frames, frames[1:]):
        a, b = interior(a), interior(b)
        if len(a) and len(a) == len(b):  # same whole ships on both frames
            nearest = np.abs(b[:, None, :] - a[None, :, :]).max(axis=2).min(axis=1)
            moves += nearest.tolist()
    moves = np.asarray(moves)
    # under 90 px/s at 15 fps plus camera shake: ships glide a few pixels a frame, never jump
    assert len(moves) > 20 and moves.max() < 12 and np.mean(moves > 0) > 0.9


def test_clip_is_deterministic(short_clip: tuple[SceneClip, list]) -> None:
    clip, frames = short_clip
    again = SceneClip(seed=0, n_frames=75, width=320, height=180, ship_length=(30.0, 80.0))
    for i in (0, 40, 74):
        image, boxes = again.frame(i)
        assert image.tobytes() == frames[i][0].tobytes() and boxes.tobytes() == frames[i][1].tobytes()
    first = next(clip.frames())  # a fresh iterator starts over
    assert first[0].tobytes() == frames[0][0].tobytes()
    other, _ = SceneClip(seed=1, n_frames=75, width=320, height=180, ship_length=(30.0, 80.0)).frame(0)
    assert np.mean(other != frames[0][0]) > 0.5


def test_clip_frames_animate_even_without_ships(short_clip: tuple[SceneClip, list]) -> None:
    _, frames = short_clip
    empty = [i for i, (_, b) in enumerate(frames) if len(b) == 0]
    a, b = frames[empty[0]][0], frames[min(empty[0] + 1, 74)][0]
    assert np.mean(a != b) > 0.3  # swell, glint and camera shake move every frame


def test_clip_write_mp4_and_jsonl(tmp_path: Path) -> None:
    clip = SceneClip(seed=2, n_frames=12, width=160, height=96, fps=10.0, ship_length=(30.0, 60.0))
    video, labels = tmp_path / "out" / "clip.mp4", tmp_path / "out" / "clip.jsonl"
    clip.write(video, labels)
    assert sorted(p.name for p in video.parent.iterdir()) == ["clip.jsonl", "clip.mp4"]
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 12
    lines = [json.loads(line) for line in labels.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(12))
    assert lines[3]["t"] == pytest.approx(0.3)
    for record, (_, boxes) in zip(lines, clip.frames()):
        assert np.array_equal(np.asarray(record["boxes"], np.float32).reshape(-1, 4), boxes)
        assert len(record["visible"]) == len(boxes) and all(0 < v <= 1 for v in record["visible"])


def test_clip_write_rejects_other_containers(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"\.mp4"):
        SceneClip(n_frames=2).write(tmp_path / "clip.avi", tmp_path / "clip.jsonl")
    assert not any(tmp_path.iterdir())


def test_clip_write_interrupted_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = SceneClip(seed=3, n_frames=6, width=96, height=64, ship_length=(20.0, 40.0))
    real = clip._render

    def failing(i: int):  # noqa: ANN202
        if i == 3:
            raise KeyboardInterrupt("simulated Ctrl-C mid-clip")
        return real(i)

    monkeypatch.setattr(clip, "_render", failing)
    with pytest.raises(KeyboardInterrupt):
        clip.write(tmp_path / "clip.mp4", tmp_path / "clip.jsonl")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs", [{"n_frames": 0}, {"fps": 0.0}, {"width": 20}, {"ship_length": (40.0, 400.0)}, {"seed": -1}]
)
def test_clip_rejects_bad_options(kwargs: dict) -> None:
    with pytest.raises(SpecError):
        SceneClip(**kwargs)


def test_same_pixel_scale_in_stills_and_clip() -> None:
    # the camera only shifts and turns, and a hull of length L, beam B <= 0.32 L at any heading has an
    # unclipped box with L <= w + h <= (L + B) * sqrt(2): a clip drawn at another scale would miss it
    length = 50.0
    clip = SceneClip(seed=4, n_frames=150, ship_length=(length, length))
    assert all(abs(np.linalg.det(clip._camera(t)[:, :2]) - 1) < 1e-9 for t in (0.0, 1.3, 2.6))
    stills = [(render_scene(np.random.default_rng(s), SceneSpec(ship_length=(length, length)), 3)[1], (160, 160))
              for s in range(6)]
    frames = [(clip.frame(i)[1], (640, 360)) for i in range(0, 150, 10)]
    checked = {"still": 0, "clip": 0}
    for source, items in (("still", stills), ("clip", frames)):
        for boxes, (w, h) in items:
            for x0, y0, x1, y1 in boxes:
                if x0 > 0 and y0 > 0 and x1 < w and y1 < h:  # whole ships only
                    assert length - 2 <= (x1 - x0) + (y1 - y0) <= 1.32 * length * np.sqrt(2) + 2, source
                    checked[source] += 1
    assert min(checked.values()) >= 3
