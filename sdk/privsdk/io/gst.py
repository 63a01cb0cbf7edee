"""GStreamer capture through PyGObject, for an OpenCV built without GStreamer (PyPI's wheels).

``GstCapture`` runs a pipeline ending in ``appsink`` and offers the small
``cv2.VideoCapture`` surface that :class:`privsdk.io.sources.CaptureSource`
uses (``isOpened``, ``read``, ``get``, ``release``). On a Jetson it lets
``csi://0`` work with JetPack's ``python3-gi`` even where cv2 came from PyPI.
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import DependencyError, SourceError
from ..log import get_logger

_log = get_logger(__name__)


def import_gst() -> Any:
    """Import and initialise GStreamer's Python binding, or raise :class:`DependencyError`."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError) as exc:
        raise DependencyError("GStreamer capture needs an OpenCV built with GStreamer or PyGObject "
                              "(Debian/JetPack: apt-get install python3-gi gir1.2-gstreamer-1.0) -- "
                              f"not available: {exc}") from None
    if not Gst.is_initialized():
        Gst.init(None)
    return Gst


@functools.lru_cache(maxsize=1)
def pygobject_gstreamer_available() -> bool:
    """Whether GStreamer can be driven through PyGObject here."""
    try:
        import_gst()
    except DependencyError:
        return False
    return True


class GstCapture:
    """A GStreamer pipeline ending in ``appsink`` (BGR frames), read like a cv2.VideoCapture."""

    def __init__(self, pipeline: str, timeout_s: float = 5.0) -> None:
        Gst = import_gst()
        self.Gst = Gst
        self.description = pipeline
        self.timeout_ns = int(timeout_s * 1e9)
        try:
            self.pipeline = Gst.parse_launch(pipeline)
        except Exception as exc:  # GLib.Error
            raise SourceError(f"GStreamer pipeline cannot be parsed ({exc}): {pipeline}; expected a "
                              "gst-launch-1.0 style pipeline ending in appsink") from None
        self.sink = self._find_appsink()
        if self.sink is None:
            raise SourceError(f"GStreamer pipeline has no appsink: {pipeline}; expected it to end in "
                              "'videoconvert ! video/x-raw,format=BGR ! appsink'")
        self._fps = 0.0
        ret = self.pipeline.set_state(Gst.State.PLAYING)
        if ret == Gst.StateChangeReturn.FAILURE:
            err = self._bus_error()
            self.pipeline.set_state(Gst.State.NULL)
            raise SourceError(f"GStreamer pipeline failed to start ({err or 'no message'}): {pipeline}")
        self._opened = True
        # wait for preroll, so that the negotiated caps (and the frame rate) are known
        self.pipeline.get_state(self.timeout_ns)
        pad = self.sink.get_static_pad("sink")
        caps = pad.get_current_caps() if pad is not None else None
        if caps is not None and caps.get_size():
            ok, num, den = caps.get_structure(0).get_fraction("framerate")
            if ok and den:
                self._fps = num / den

    def _find_appsink(self) -> Optional[Any]:
        it = self.pipeline.iterate_elements() if hasattr(self.pipeline, "iterate_elements") else None
        if it is None:
            return self.pipeline if self.pipeline.get_factory().get_name() == "appsink" else None
        found = []
        it.foreach(lambda el: found.append(el) if el.get_factory() and el.get_factory().get_name() == "appsink"
                   else None)
        return found[0] if found else None

    def _bus_error(self) -> Optional[str]:
        bus = self.pipeline.get_bus()
        msg = bus.pop_filtered(self.Gst.MessageType.ERROR) if bus is not None else None
        if msg is None:
            return None
        err, debug = msg.parse_error()
        return f"{err.message} ({debug})" if debug else err.message

    def isOpened(self) -> bool:  # noqa: N802 - the cv2.VideoCapture spelling
        return self._opened

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        if not self._opened:
            return False, None
        sample = self.sink.emit("try-pull-sample", self.timeout_ns)
        if sample is None:
            err = self._bus_error()
            if err:
                _log.warning("GStreamer: %s", err)
            return False, None
        caps = sample.get_caps().get_structure(0)
        fmt = caps.get_value("format")
        if fmt != "BGR":
            raise SourceError(f"GStreamer appsink delivers {fmt}; expected format=BGR (add "
                              "'videoconvert ! video/x-raw,format=BGR' before appsink)")
        width, height = caps.get_value("width"), caps.get_value("height")
        ok, num, den = caps.get_fraction("framerate")
        if ok and den:
            self._fps = num / den
        buf = sample.get_buffer()
        ok, info = buf.map(self.Gst.MapFlags.READ)
        if not ok:
            return False, None
        try:
            data = np.frombuffer(info.data, np.uint8)
            stride = data.size // height
            frame = data[:stride * height].reshape(height, stride)[:, :width * 3].reshape(height, width, 3).copy()
        finally:
            buf.unmap(info)
        return True, frame

    def get(self, prop: int) -> float:
        import cv2

        if prop == cv2.CAP_PROP_FPS:
            return self._fps
        return 0.0

    def release(self) -> None:
        if self._opened:
            self.pipeline.set_state(self.Gst.State.NULL)
            self._opened = False


class GstWriter:
    """A GStreamer pipeline starting with ``appsrc``, fed BGR frames (the cv2.VideoWriter surface)."""

    def __init__(self, pipeline: str, fps: float, size: Tuple[int, int]) -> None:
        Gst = import_gst()
        self.Gst = Gst
        try:
            self.pipeline = Gst.parse_launch(pipeline)
        except Exception as exc:  # GLib.Error
            raise SourceError(f"GStreamer sink pipeline cannot be parsed ({exc}): {pipeline}; expected a "
                              "gst-launch-1.0 style pipeline starting with appsrc") from None
        found = []
        it = self.pipeline.iterate_elements() if hasattr(self.pipeline, "iterate_elements") else None
        if it is not None:
            it.foreach(lambda el: found.append(el) if el.get_factory() and el.get_factory().get_name() == "appsrc"
                       else None)
        if not found:
            raise SourceError(f"GStreamer sink pipeline has no appsrc: {pipeline}; expected it to start with "
                              "'appsrc ! videoconvert ! ...'")
        self.src = found[0]
        w, h = size
        num, den = (int(round(fps * 1000)), 1000) if fps else (30, 1)
        self.src.set_property("caps", Gst.Caps.from_string(
            f"video/x-raw,format=BGR,width={w},height={h},framerate={num}/{den}"))
        self.src.set_property("format", Gst.Format.TIME)
        self.src.set_property("block", True)
        self.duration = int(Gst.SECOND * den / num)
        self.count = 0
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.pipeline.set_state(Gst.State.NULL)
            raise SourceError(f"GStreamer sink pipeline failed to start: {pipeline}")
        self._opened = True

    def isOpened(self) -> bool:  # noqa: N802 - the cv2.VideoWriter spelling
        return self._opened

    def write(self, frame: np.ndarray) -> None:
        buf = self.Gst.Buffer.new_wrapped(np.ascontiguousarray(frame).tobytes())
        buf.pts = self.count * self.duration
        buf.duration = self.duration
        self.count += 1
        ret = self.src.emit("push-buffer", buf)
        if ret != self.Gst.FlowReturn.OK:
            raise SourceError(f"GStreamer sink refused a frame ({ret.value_nick}); the pipeline stopped")

    def release(self) -> None:
        if not self._opened:
            return
        self._opened = False
        self.src.emit("end-of-stream")
        bus = self.pipeline.get_bus()
        if bus is not None:  # let the pipeline finish writing (muxers need the EOS)
            bus.timed_pop_filtered(5 * self.Gst.SECOND, self.Gst.MessageType.EOS | self.Gst.MessageType.ERROR)
        self.pipeline.set_state(self.Gst.State.NULL)
