"""Sources and sinks: round trips, bad sources, live-source semantics, side-files."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from privsdk import SourceError
from privsdk.io import (CallbackSink, ImageFolderSink, SideFile, VideoFileSink, gstreamer_available, open_sink,
                        open_source, parse_source)
from privsdk.io.sources import CaptureSource
from privsdk.regions import Region

cv2 = pytest.importorskip("cv2")


def synthetic(n=25, size=(96, 128)):
    frames = []
    for i in range(n):
        f = np.zeros((*size, 3), np.uint8)
        f[:, :, 1] = 40
        cv2.rectangle(f, (4 * i % 100, 20), (4 * i % 100 + 20, 60), (255, 255, 255), -1)
        frames.append(f)
    return frames


def test_video_file_round_trip_keeps_frame_count_fps_and_size(tmp_path):
    path = tmp_path / "clip.mp4"
    sink = open_sink(str(path), fps=12.5)
    assert isinstance(sink, VideoFileSink) and sink.fourcc == "mp4v"
    with sink:
        for f in synthetic():
            sink.write(f)
    with open_source(str(path)) as src:
        assert not src.live and src.fps == pytest.approx(12.5) and src.frame_count == 25
        frames = list(src)
    assert len(frames) == 25 and frames[0].shape == (96, 128, 3)
    assert abs(float(frames[10].mean()) - float(synthetic()[10].mean())) < 3
    with open_source(f"file://{path}") as src:
        assert sum(1 for _ in src) == 25


def test_image_folder_round_trip_with_predictable_names(tmp_path):
    frames = synthetic(5)
    sink = open_sink(str(tmp_path / "out"))
    assert isinstance(sink, ImageFolderSink)
    for f in frames:
        sink.write(f)
    sink.write(frames[0], name="named")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["000000.png", "000001.png", "000002.png", "000003.png", "000004.png", "named.png"]
    src = open_source(str(tmp_path / "out" / "0*.png"))
    read = list(src)
    assert len(read) == 5 and all(np.array_equal(a, b) for a, b in zip(read, frames))
    assert src.current_name == "000004"
    assert len(list(open_source(str(tmp_path / "out")))) == 6


@pytest.mark.parametrize("spec, words", [
    ("/no/such/video.mp4", "no such file"),
    ("foo://bar", "unknown scheme 'foo'"),
    (9, r"camera 9 .*could not be opened"),
    ("/dev/video77", "no such device"),
    ("", "expected a camera index"),
    ("/tmp/*.no-such-ext-xyz", "matches no image"),
    ("csi://x", "sensor number"),
])
def test_bad_sources_raise_clear_source_errors(spec, words):
    with pytest.raises(SourceError, match=words):
        open_source(spec)


def test_csi_off_a_jetson_says_why():
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer (and may be on a Jetson)")
    with pytest.raises(SourceError, match="GStreamer") as info:
        open_source("csi://0?width=1280&height=720&fps=30")
    assert "without GStreamer" in str(info.value) or "nvarguscamerasrc" in str(info.value)


def test_parse_source_spellings():
    assert parse_source("csi://1?width=640&fps=15").options == {"width": 640, "fps": 15}
    assert parse_source("v4l2://2").target == 2 and parse_source("3").kind == "camera"
    assert parse_source("/dev/video0").kind == "camera"
    assert parse_source("rtsp://cam.local/stream").kind == "stream"


class FlakyCapture:
    """A live camera stand-in: delivers ``frames`` frames, then the link drops."""

    def __init__(self, frames, start):
        self.left, self.value = frames, start

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        self.value += 1
        time.sleep(0.002)
        return True, np.full((8, 8, 3), self.value % 256, np.uint8)

    def get(self, prop):
        return 30.0

    def release(self):
        pass


def test_live_source_reconnects_with_backoff_then_gives_up():
    opens = {"n": 0}

    def opener():
        opens["n"] += 1
        if opens["n"] == 2:
            raise SourceError("camera busy")  # the first reconnect attempt fails
        return FlakyCapture(3 if opens["n"] < 3 else 0, 100 * opens["n"])

    src = CaptureSource(opener, "flaky camera", live=True, reconnects=3, backoff=0.01)
    got = []
    with pytest.raises(SourceError, match="could not be reopened after 3 attempts"):
        while True:
            f = src.read(timeout=5)
            if f is None:
                break
            got.append(int(f[0, 0, 0]))
    src.close()
    assert src.reconnect_count >= 1 and opens["n"] >= 3
    assert got and got[-1] == 103


def test_live_source_keeps_only_the_latest_frame():
    src = CaptureSource(lambda: FlakyCapture(200, 0), "fast camera", live=True, reconnects=0, backoff=0.01)
    first = src.read(timeout=5)
    time.sleep(0.2)
    later = src.read(timeout=5)
    src.close()
    assert int(later[0, 0, 0]) - int(first[0, 0, 0]) > 5, "a slow consumer must get the newest frame"
    assert src.dropped > 0


def test_callback_sink_and_side_file(tmp_path):
    seen = []
    sink = open_sink(seen.append)
    assert isinstance(sink, CallbackSink)
    sink.write(np.zeros((2, 2, 3), np.uint8))
    assert len(seen) == 1
    side = SideFile(tmp_path / "s.json", {"filter": "x"})
    side.add(0, [Region(1, 2, 3, 4, 0.5)], False, name="a")
    side.add(1, [], True, error="boom")
    side.close({"frames": 2})
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["filter"] == "x" and data["frames"][0]["regions"][0]["w"] == 3
    assert data["frames"][1] == {"index": 1, "blanked": True, "regions": [], "error": "boom"}


def test_window_sink_headless_error_is_clear():
    from privsdk import DependencyError

    sink = open_sink("window")
    try:
        sink.write(np.zeros((8, 8, 3), np.uint8))
    except DependencyError as exc:
        assert "display" in str(exc)
    else:
        sink.close()
        pytest.skip("this OpenCV can show windows here")


def _gstreamer_capture_available() -> bool:
    from privsdk.io.gst import pygobject_gstreamer_available

    return gstreamer_available() or pygobject_gstreamer_available()


def test_gstreamer_videotestsrc_source():
    if not _gstreamer_capture_available():
        pytest.skip("no GStreamer capture here: this OpenCV was built without it (PyPI wheels are) and "
                    "PyGObject's GStreamer binding (python3-gi, gir1.2-gstreamer-1.0) is not importable")
    src = open_source("gst:videotestsrc pattern=red num-buffers=10 ! video/x-raw,width=64,height=48,framerate=10/1 ! "
                      "videoconvert ! video/x-raw,format=BGR ! appsink")
    frames = list(src)
    src.close()
    assert len(frames) == 10 and frames[0].shape == (48, 64, 3) and src.fps == pytest.approx(10.0)
    b, g, r = (float(frames[5][..., c].mean()) for c in range(3))
    assert r > 200 and b < 40 and g < 40, "a red test pattern arrives as BGR"


def test_gstreamer_pipeline_errors_are_clear():
    if not _gstreamer_capture_available():
        pytest.skip("no GStreamer capture here")
    with pytest.raises(SourceError, match="GStreamer|could not be opened"):
        open_source("gst:no_such_element_xyz ! appsink")


def test_gstreamer_sink_round_trip(tmp_path):
    if not _gstreamer_capture_available():
        pytest.skip("no GStreamer here (OpenCV without it, PyGObject's binding not importable)")
    frames = synthetic(6, size=(24, 32))
    sink = open_sink(f"gst:appsrc ! videoconvert ! pngenc ! multifilesink location={tmp_path}/f%03d.png", fps=10)
    for f in frames:
        sink.write(f)
    sink.close()
    back = list(open_source(str(tmp_path)))
    assert len(back) == 6 and all(np.array_equal(a, b) for a, b in zip(back, frames))
