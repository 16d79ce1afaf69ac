"""Frame sources and threaded capture: parsing, RGB order, drops, reconnects, corrupt frames."""

from __future__ import annotations

import sys
import threading
import time
import types

import cv2
import numpy as np
import pytest

import edge.capture as capture_module
from edge.errors import FrameError, SourceError
from edge.sources import (
    BackoffOptions,
    CameraSource,
    CaptureMode,
    FrameSource,
    GStreamerSource,
    ImageFolderSource,
    Picamera2Source,
    StreamSource,
    SyntheticSource,
    ThreadedCapture,
    UnreadableImageError,
    VideoFileSource,
    open_source,
)


class ListSource(FrameSource):
    """``n`` frames whose pixels hold their position; chosen positions are corrupt."""

    def __init__(self, n, corrupt=(), live=False):
        self.n, self.corrupt, self.is_live = n, set(corrupt), live
        self.pos, self.opens, self.closes = 0, 0, 0

    def _open(self):
        self.opens += 1

    def _read(self):
        if self.pos >= self.n:
            return None
        i, self.pos = self.pos, self.pos + 1
        if i in self.corrupt:
            return np.zeros((8, 8), np.float32)  # wrong dtype and shape
        return np.full((8, 8, 3), i, np.uint8)

    def _close(self):
        self.closes += 1


class FlakyLiveSource(ListSource):
    """A camera that drops out: raises at some positions, returns None at others (once each),
    and cannot be reopened once its frames are used up."""

    def __init__(self, n, raise_at=(), none_at=()):
        super().__init__(n, live=True)
        self.raise_at, self.none_at = set(raise_at), set(none_at)

    def _open(self):
        if self.pos >= self.n:
            raise OSError("device gone")
        super()._open()

    def _read(self):
        if self.pos in self.raise_at:
            self.raise_at.discard(self.pos)
            raise OSError("USB camera unplugged")
        if self.pos in self.none_at:
            self.none_at.discard(self.pos)
            return None
        return super()._read()


def _drain(cap, per_frame_s=0.0, timeout=3.0):
    items = []
    while (item := cap.get(timeout=timeout)) is not None:
        time.sleep(per_frame_s)  # a slow detector
        items.append(item)
    return items


# ---------------------------------------------------------------- open_source


@pytest.fixture
def media(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((6, 5, 3), i, np.uint8))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")  # the factory only checks existence
    return {"folder": folder, "video": video}


@pytest.mark.parametrize(
    "spec, cls",
    [
        ("scene", None),
        ("0", CameraSource),
        ("2", CameraSource),
        ("/dev/video1", CameraSource),
        ("rtsp://user:pw@cam.local:554/stream1", StreamSource),
        ("RTSPS://cam/x", StreamSource),
        ("http://10.0.0.5:8080/video", StreamSource),
        ("https://example.com/live.m3u8", StreamSource),
        ("nvarguscamerasrc ! nvvidconv ! appsink", GStreamerSource),
        ("picamera2", Picamera2Source),
        ("{folder}", ImageFolderSource),
        ("{folder}/*.png", ImageFolderSource),
        ("{folder}/f1.png", ImageFolderSource),
        ("{video}", VideoFileSource),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", str(v)),
)
def test_open_source_parses_each_form(spec, cls, media):
    if spec == "scene":
        assert isinstance(open_source("SYNTHETIC"), SyntheticSource)  # the kind's name in any case
        assert type(open_source("PiCamera2")) is Picamera2Source and open_source("RTSP://cam/1").url == "RTSP://cam/1"
        src = open_source("Synthetic:12")
        assert isinstance(src, SyntheticSource) and src.seed == 12
        return
    src = open_source(spec.format(**media))
    assert type(src) is cls
    assert src.is_live is (cls in (CameraSource, StreamSource, GStreamerSource, Picamera2Source))


def test_existing_names_with_glob_characters_are_taken_literally(tmp_path):
    video = tmp_path / "cam[1].mp4"
    video.write_bytes(b"x")
    image = tmp_path / "shot[2].png"
    cv2.imwrite(str(image), np.zeros((4, 4, 3), np.uint8))
    assert isinstance(open_source(str(video)), VideoFileSource)
    assert [p.name for p in open_source(str(image)).paths] == ["shot[2].png"]


def test_image_suffixes_are_recognised_in_any_case(tmp_path):
    for name in ("a.PNG", "b.JpG", "c.jpeg"):  # written lower-case, then renamed: the file names under test are mixed
        cv2.imwrite(str(tmp_path / name.lower()), np.zeros((4, 6, 3), np.uint8))
        (tmp_path / name.lower()).rename(tmp_path / name)
    (tmp_path / "notes.TXT").write_text("not an image")
    assert [p.name for p in open_source(str(tmp_path)).paths] == ["a.PNG", "b.JpG", "c.jpeg"]
    single = open_source(str(tmp_path / "b.JpG"))
    assert type(single) is ImageFolderSource and [p.name for p in single.paths] == ["b.JpG"]


def test_open_source_glob_and_single_file_select_images(media):
    assert len(open_source(f"{media['folder']}/*.png")) == 3
    assert [p.name for p in open_source(f"{media['folder']}/f1.png").paths] == ["f1.png"]


@pytest.mark.parametrize(
    "spec",
    ["", "   ", "no/such/file.mp4", "synthetic:abc", "/dev/videoX", "ftp://host/x"],
    ids=["empty", "blank", "missing-file", "scene-bad-seed", "bad-device", "ftp"],
)
def test_open_source_rejects_unknown_forms_saying_what_is_accepted(spec):
    with pytest.raises(SourceError) as info:
        open_source(spec)
    msg = str(info.value)
    assert "expected" in msg and repr(spec) in msg


def test_stream_repr_hides_credentials():
    assert "pw" not in repr(StreamSource("rtsp://user:pw@cam/x"))


@pytest.mark.parametrize("make", [
    lambda: CameraSource("/dev/video99"),
    lambda: StreamSource("rtsp://127.0.0.1:9/none", timeout_s=1.0),
    lambda: GStreamerSource("videotestsrc num-buffers=1 ! appsink"),
], ids=["camera", "stream", "gstreamer"])
def test_unavailable_devices_raise_source_error(make):
    with pytest.raises(SourceError, match="cannot open"):
        make().open()


def test_picamera2_missing_says_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # makes the import fail
    with pytest.raises(SourceError, match="not installed"):
        Picamera2Source().open()


# ---------------------------------------------------------------- concrete sources


def test_image_folder_is_rgb_sorted_and_skips_unreadable(tmp_path):
    red_rgb = np.zeros((4, 6, 3), np.uint8)
    red_rgb[..., 0] = 255
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(red_rgb, cv2.COLOR_RGB2BGR))
    (tmp_path / "b.png").write_bytes(b"\x89PNG garbage")
    cv2.imwrite(str(tmp_path / "c.jpg"), np.zeros((4, 6, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    with ImageFolderSource(tmp_path) as src:
        assert [p.name for p in src.paths] == ["a.png", "b.png", "c.jpg"]
        first = src.read()
        assert first.shape == (4, 6, 3) and first[0, 0].tolist() == [255, 0, 0]
        with pytest.raises(UnreadableImageError, match="b.png"):
            src.read()
        assert src.read().shape == (4, 6, 3)
        assert src.read() is None


def test_empty_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path)


def test_video_file_round_trip_is_rgb(tmp_path):
    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(5):
        writer.write(np.dstack([np.zeros((48, 64)), np.zeros((48, 64)), np.full((48, 64), 255)]).astype(np.uint8))
    writer.release()
    with VideoFileSource(path) as src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
        assert src.fps == pytest.approx(10.0)
    assert len(frames) == 5
    r, g, b = frames[0].reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60, "BGR from OpenCV must arrive as RGB"


def test_missing_video_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        VideoFileSource(tmp_path / "none.mp4")


def test_read_validates_frames_and_close_is_idempotent():
    src = ListSource(3, corrupt={1})
    with pytest.raises(SourceError, match="not open"):
        src.read()
    with src:
        assert src.read()[0, 0, 0] == 0
        with pytest.raises(FrameError, match="expected an RGB uint8 \\(H, W, 3\\) frame .*received float32 \\(8, 8\\)"):
            src.read()
    src.close()
    assert src.closes == 1


def test_scene_clip_source_wraps_the_clip_api(monkeypatch):
    seen = {}

    class FakeClip:
        def __init__(self, seed, n_frames, width, height, fps):
            seen.update(seed=seed, n_frames=n_frames, width=width, height=height, fps=fps)

        def __len__(self):
            return seen["n_frames"]

        def frames(self):
            for i in range(seen["n_frames"]):
                yield np.full((seen["height"], seen["width"], 3), i, np.uint8), np.array([[i, 1, i + 4, 5]], np.float32)

    monkeypatch.setitem(sys.modules, "edge.synthetic", types.SimpleNamespace(SceneClip=FakeClip))
    with SyntheticSource(seed=4, n_frames=3, width=32, height=16, fps=10.0) as src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
            assert src.true_boxes.tolist() == [[len(frames) - 1, 1, len(frames) + 3, 5]]
    assert seen == {"seed": 4, "n_frames": 3, "width": 32, "height": 16, "fps": 10.0}
    assert [f[0, 0, 0] for f in frames] == [0, 1, 2] and frames[0].shape == (16, 32, 3)
    assert len(src) == 3 and src.fps == 10.0


def test_synthetic_source_real_clip():
    synthetic = pytest.importorskip("edge.synthetic")
    if not hasattr(synthetic, "SceneClip"):
        pytest.skip("edge.synthetic has no SceneClip yet")
    with SyntheticSource(seed=1, n_frames=5) as src:
        frame = src.read()
        assert frame.dtype == np.uint8 and frame.shape == (360, 640, 3)
        assert src.true_boxes.ndim == 2 and src.true_boxes.shape[1] == 4


# ---------------------------------------------------------------- threaded capture


def test_latest_mode_drops_frames_under_a_slow_consumer():
    src = ListSource(200)
    with ThreadedCapture(src, CaptureMode.LATEST) as cap:
        items = _drain(cap, per_frame_s=0.005)
        stats = cap.stats()
    indices = [it.index for it in items]
    assert stats["dropped"] > 0 and len(items) < 200
    assert stats["read"] == 200 and stats["dropped"] + len(items) == 200
    assert indices == sorted(indices) and indices[-1] == 199, "LATEST always ends on the newest frame"
    assert all(it.frame[0, 0, 0] == it.index for it in items)


def test_all_mode_drops_nothing_under_a_slow_consumer():
    src = ListSource(60)
    with ThreadedCapture(src, "all", queue_size=2) as cap:
        items = _drain(cap, per_frame_s=0.003)
        stats = cap.stats()
    assert [it.index for it in items] == list(range(60))
    assert [int(it.frame[0, 0, 0]) for it in items] == list(range(60))
    assert stats["dropped"] == 0 and stats["delivered"] == 60
    times = [it.t_monotonic for it in items]
    assert times == sorted(times)


def test_live_source_that_raises_is_reopened_and_frames_continue(caplog):
    src = FlakyLiveSource(30, raise_at={10}, none_at={20})
    backoff = BackoffOptions(initial=0.01, max=0.02, max_attempts=2)
    with ThreadedCapture(src, CaptureMode.ALL, reconnect=backoff) as cap:
        items = _drain(cap)
        stats = cap.stats()
    assert [int(it.frame[0, 0, 0]) for it in items] == list(range(30))
    assert stats["reconnects"] == 2, "one after the exception, one after the empty read"
    # at the end the device is gone: two failed attempts, then capture gives up with an error
    assert stats["reconnect_failures"] == 2
    assert isinstance(cap.error, SourceError) and "could not be reopened after 2 attempts" in str(cap.error)
    assert src.opens == 3
    assert "reconnect" in caplog.text


def test_corrupt_frames_are_skipped_and_counted():
    with ThreadedCapture(ListSource(20, corrupt={3, 7, 8}), CaptureMode.ALL) as cap:
        items = _drain(cap)
        stats = cap.stats()
    expected = [i for i in range(20) if i not in {3, 7, 8}]
    assert [it.index for it in items] == expected
    assert stats["corrupt"] == 3 and stats["read"] == 17


def test_prepare_runs_on_the_capture_thread_and_travels_with_the_frame():
    import threading

    threads = set()

    def prepare(frame):
        threads.add(threading.current_thread().name)
        return int(frame[0, 0, 0]) * 10

    with ThreadedCapture(ListSource(12), CaptureMode.ALL, prepare=prepare) as cap:
        items = _drain(cap)
    assert [it.prepared for it in items] == [i * 10 for i in range(12)]
    assert threads and threading.current_thread().name not in threads


def test_prepare_frame_error_skips_the_frame_and_other_errors_pass_it_on_unprepared(caplog):
    def prepare(frame):
        i = int(frame[0, 0, 0])
        if i == 2:
            raise FrameError("frame 2 is 1x1")
        if i == 4:
            raise RuntimeError("bug in prepare")
        return i

    with ThreadedCapture(ListSource(6), CaptureMode.ALL, prepare=prepare) as cap:
        items = _drain(cap)
        stats = cap.stats()
    assert [(it.index, it.prepared) for it in items] == [(0, 0), (1, 1), (3, 3), (4, None), (5, 5)]
    assert stats["corrupt"] == 1 and cap.error is None
    assert "cannot be prepared" in caplog.text and "bug in prepare" in caplog.text


def test_unreadable_image_in_folder_is_counted_as_corrupt(tmp_path):
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"broken")
    with ThreadedCapture(ImageFolderSource(tmp_path), CaptureMode.ALL) as cap:
        items = _drain(cap)
        assert cap.stats()["corrupt"] == 1
    assert [it.index for it in items] == [0, 2]


def test_file_source_ends_cleanly():
    src = ListSource(5)
    with ThreadedCapture(src, CaptureMode.ALL) as cap:
        assert len(_drain(cap)) == 5
        assert cap.done and cap.error is None and cap.stats()["reconnects"] == 0
    assert src.closes == 1


def test_stride_keeps_every_nth_frame():
    with ThreadedCapture(ListSource(10), CaptureMode.ALL, stride=3) as cap:
        assert [it.index for it in _drain(cap)] == [0, 3, 6, 9]
        assert cap.stats()["skipped"] == 6


def test_target_fps_paces_a_file_source(monkeypatch):
    # a clock that moves only when the capture waits: each frame after the first waits one period for its slot
    clock = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr(capture_module, "time", types.SimpleNamespace(monotonic=lambda: clock.now, time=time.time))
    waits = []

    class RecordingStop(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            clock.now += timeout
            return self.is_set()

    cap = ThreadedCapture(ListSource(6), CaptureMode.ALL, target_fps=50.0)
    cap._stop = RecordingStop()
    with cap:
        items = _drain(cap)
    assert len(items) == 6 and waits == pytest.approx([0.02] * 5)
    assert [it.t_monotonic for it in items] == pytest.approx([100.0 + 0.02 * i for i in range(6)])


def test_stop_unblocks_a_full_queue_and_close_is_idempotent():
    src = ListSource(1000)
    cap = ThreadedCapture(src, CaptureMode.ALL, queue_size=2).start()
    for _ in range(500):  # until the producer holds a third frame it cannot put: blocked on the full queue
        if cap.stats()["holding"] and cap.stats()["queued"] == 2:
            break
        time.sleep(0.01)
    cap.close()
    cap.close()
    # close() waits for the thread only up to its timeout: a thread still alive would mean the stop did not unblock it
    assert not cap._thread.is_alive() and src.closes == 1


@pytest.mark.parametrize("kwargs", [{"mode": "newest"}, {"queue_size": 0}, {"stride": 0}, {"target_fps": 0}])
def test_capture_rejects_bad_options(kwargs):
    from edge.errors import ConfigError

    with pytest.raises(ConfigError):
        ThreadedCapture(ListSource(1), **kwargs)


def test_get_before_start_is_an_error():
    with pytest.raises(SourceError, match="not started"):
        ThreadedCapture(ListSource(1)).get(0.01)


def test_backoff_delays_grow_and_cap():
    assert list(BackoffOptions(initial=0.5, max=3.0, factor=2.0, max_attempts=5).delays()) == [0.5, 1.0, 2.0, 3.0, 3.0]
