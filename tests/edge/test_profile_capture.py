"""The profile means what it says: every shipped profile, run through ``edgecam run`` against a fake
camera, asks that camera for the profile's capture width, height and frame rate.

The sources are the real ones (``CameraSource``, ``Picamera2Source``, ``GStreamerSource``); only the
device underneath is faked: a ``picamera2`` module in ``sys.modules`` and a ``cv2.VideoCapture`` that
records every property set on it. The model is the tiny real ONNX model of ``test_onnx_providers``.
"""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

import devices
import edge.sources as S
from devices import load_profile
from edge.errors import ConfigError
from test_onnx_providers import tiny_onnx

SHIPPED = devices.list_profiles()


class FakeVideoCapture:
    opened: list["FakeVideoCapture"] = []

    def __init__(self, target, api=None, params=None) -> None:
        self.target, self.api, self.props, self.frames = target, api, {}, 0
        FakeVideoCapture.opened.append(self)

    def isOpened(self) -> bool:
        return True

    def set(self, prop, value) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def read(self):
        self.frames += 1
        w = int(self.props.get(S._cv2().CAP_PROP_FRAME_WIDTH, 64))
        h = int(self.props.get(S._cv2().CAP_PROP_FRAME_HEIGHT, 48))
        return True, np.full((h, w, 3), self.frames % 255, np.uint8)

    def release(self) -> None:
        pass


class FakePicamera2:
    made: list["FakePicamera2"] = []

    def __init__(self) -> None:
        self.config = None
        FakePicamera2.made.append(self)

    def create_video_configuration(self, main, controls=None):
        return {"main": dict(main), "controls": dict(controls or {})}

    def configure(self, config) -> None:
        self.config = config

    def start(self) -> None:
        pass

    def capture_array(self, name):
        w, h = self.config["main"]["size"]
        return np.zeros((h, w, 3), np.uint8)

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def fake_devices(monkeypatch):
    cv2 = pytest.importorskip("cv2")
    FakeVideoCapture.opened, FakePicamera2.made = [], []
    # the real cv2 for colour conversion and constants, a fake camera underneath
    proxy = types.SimpleNamespace(**{k: getattr(cv2, k) for k in dir(cv2) if k.isupper() or k == "cvtColor"})
    proxy.VideoCapture = FakeVideoCapture
    monkeypatch.setattr(S, "_cv2", lambda: proxy)
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    return cv2


@pytest.mark.parametrize("name", SHIPPED)
def test_run_asks_the_camera_for_the_profiles_capture_format(name, fake_devices, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from edge.cli import main

    cv2 = fake_devices
    profile = load_profile(name)
    model = tiny_onnx(tmp_path)
    rc = main(["run", str(model.path), "--device", name, "--max-frames", "3", "--out", str(tmp_path / "out"), "--no-video"])
    assert rc == 0, capsys.readouterr()
    want = (profile.capture_width, profile.capture_height, profile.capture_fps)
    if profile.camera_source == "picamera2":
        (cam,) = FakePicamera2.made
        us = round(1_000_000 / profile.capture_fps)
        assert tuple(cam.config["main"]["size"]) == want[:2]
        assert cam.config["controls"] == {"FrameDurationLimits": (us, us)}
    elif "!" in profile.camera_source:
        (cap,) = FakeVideoCapture.opened
        assert cap.target == profile.camera_source and cap.api == cv2.CAP_GSTREAMER
        caps = re.search(r"width=(\d+), height=(\d+), framerate=(\d+)/1", cap.target).groups()
        assert tuple(map(int, caps)) == want
    else:
        (cap,) = FakeVideoCapture.opened
        assert cap.target == int(profile.camera_source)
        got = (cap.props[cv2.CAP_PROP_FRAME_WIDTH], cap.props[cv2.CAP_PROP_FRAME_HEIGHT], cap.props[cv2.CAP_PROP_FPS])
        assert got == want
    assert f"mode {profile.capture_mode.value}" in capsys.readouterr().out


def test_a_flag_source_on_a_profile_still_gets_the_profiles_format(fake_devices, tmp_path):
    pytest.importorskip("onnxruntime")
    from edge.cli import main

    cv2 = fake_devices
    rc = main(["run", str(tiny_onnx(tmp_path).path), "--device", "rpi4", "--source", "/dev/video2", "--max-frames", "2",
               "--out", str(tmp_path / "out"), "--no-video"])
    assert rc == 0
    (cap,) = FakeVideoCapture.opened
    assert cap.target == 2 and cap.api == cv2.CAP_V4L2
    assert (cap.props[cv2.CAP_PROP_FRAME_WIDTH], cap.props[cv2.CAP_PROP_FRAME_HEIGHT], cap.props[cv2.CAP_PROP_FPS]) == (1280, 720, 15)


def test_without_a_profile_the_camera_keeps_its_defaults(fake_devices, tmp_path):
    pytest.importorskip("onnxruntime")
    from edge.cli import main

    rc = main(["run", str(tiny_onnx(tmp_path).path), "--source", "0", "--max-frames", "2", "--out", str(tmp_path / "out"),
               "--no-video"])
    assert rc == 0
    (cap,) = FakeVideoCapture.opened
    cv2 = fake_devices
    assert not {cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS} & set(cap.props)


@pytest.mark.parametrize(("spec", "kind", "takes_format"), [
    ("0", S.CameraSource, True),
    ("/dev/video1", S.CameraSource, True),
    ("picamera2", S.Picamera2Source, True),
    ("synthetic:3", S.SyntheticSource, False),
    ("rtsp://cam/stream", S.StreamSource, False),
    ("nvarguscamerasrc ! appsink", S.GStreamerSource, False),
])
def test_open_source_hands_the_format_to_cameras_only(spec, kind, takes_format):
    src = S.open_source(spec, size=(320, 240), fps=12)
    assert type(src) is kind
    if takes_format:
        assert src.size == (320, 240) and src.requested_fps == 12.0


@pytest.mark.parametrize(("fps", "raises"), [(30, False), (7.5, False), (None, False), (0, True), (-1, True), (True, True), ("30", True)])
def test_camera_fps_is_checked(fps, raises):
    for make in (lambda: S.CameraSource(0, fps=fps), lambda: S.Picamera2Source((640, 480), fps=fps)):
        if raises:
            with pytest.raises(ConfigError, match="expected fps"):
                make()
        else:
            make()


def test_a_pipeline_profile_whose_caps_disagree_is_refused():
    data = load_profile("jetson-orin-nano").to_dict()
    data["capture_fps"] = 60
    with pytest.raises(ConfigError, match=r"key 'capture_fps' expected the value the 'camera_source' pipeline asks for; "
                                          r"received 60 against framerate=30/1"):
        devices.DeviceProfile.from_dict(data, "test")
