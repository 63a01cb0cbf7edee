"""Frame sources from one URI-like string (jetson-utils spelling).

=====================  ===========================================================
``csi://0``            Jetson CSI camera: nvarguscamerasrc → nvvidconv → BGR appsink
                       (needs an OpenCV with GStreamer, e.g. JetPack's)
``/dev/video0``,       USB/V4L2 camera, MJPEG when offered
``v4l2://0``
``0`` (an int)         camera by index (V4L2 on Linux)
``file.mp4``,          a video file (every frame, in order)
``file://file.mp4``
``rtsp://…``,          a network stream (live)
``http(s)://…``
``photo.jpg``,         an image, a glob or a folder of images (sorted by name)
``"dir/*.png"``, dir
``gst:PIPELINE``       any GStreamer pipeline ending in appsink
=====================  ===========================================================

Options go in the query string or as keywords: ``csi://0?width=1280&height=720&fps=30``.

A reader thread decodes ahead. For live sources it keeps only the latest frame
(a slow consumer drops stale frames instead of queueing seconds of latency);
for files it keeps every frame (a short bounded queue). A live source that drops
is reopened with exponential back-off, and each attempt is logged.

Example::

    from privsdk.io import open_source
    with open_source("video.mp4") as src:
        print(src.description, src.fps, src.frame_count)
        for frame in src:
            ...
"""
from __future__ import annotations

import glob
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from ..errors import InputError, SourceError
from ..log import get_logger
from .capture import gstreamer_available, gstreamer_missing_reason, import_cv2

_log = get_logger(__name__)

VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SCHEMES = ("csi://", "v4l2://", "file://", "rtsp://", "rtsps://", "http://", "https://", "gst:")


@dataclass
class SourceSpec:
    """A parsed source: ``kind`` in camera | csi | file | stream | images | gstreamer."""

    kind: str
    target: Any
    options: Dict[str, Any] = field(default_factory=dict)


def _options(query: str, extra: Dict[str, Any]) -> Dict[str, Any]:
    opts: Dict[str, Any] = {}
    for k, v in parse_qsl(query):
        opts[k] = int(v) if v.isdigit() else v
    opts.update({k: v for k, v in extra.items() if v is not None})
    return opts


def parse_source(spec: Union[str, int, Path], **options: Any) -> SourceSpec:
    """Parse a source string (see the module docstring); raises :class:`SourceError` when unknown."""
    if isinstance(spec, bool):
        raise SourceError(f"source: got {spec!r}; expected a camera index, a path or a URI")
    if isinstance(spec, int):
        if spec < 0:
            raise SourceError(f"source: camera index {spec} is negative; expected 0, 1, ...")
        return SourceSpec("camera", spec, _options("", options))
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError(f"source: got {spec!r}; expected a camera index, a path, a glob or a URI "
                          f"({', '.join(SCHEMES)})")
    s = spec.strip()
    if s.isdigit():
        return SourceSpec("camera", int(s), _options("", options))
    if s.startswith("gst:"):
        return SourceSpec("gstreamer", s[4:].strip(), _options("", options))
    if "://" in s:
        parts = urlsplit(s)
        scheme = parts.scheme.lower()
        opts = _options(parts.query, options)
        if scheme == "csi":
            sensor = parts.netloc or parts.path.strip("/") or "0"
            if not sensor.isdigit():
                raise SourceError(f"source {s!r}: expected csi://N with a sensor number N, got {sensor!r}")
            return SourceSpec("csi", int(sensor), opts)
        if scheme == "v4l2":
            dev = (parts.netloc + parts.path) or "0"
            if dev.isdigit():
                return SourceSpec("camera", int(dev), opts)
            m = dev if dev.startswith("/") else "/" + dev
            return SourceSpec("camera", m, opts)
        if scheme == "file":
            return _path_spec(parts.netloc + parts.path, opts, s)
        if scheme in ("rtsp", "rtsps", "http", "https", "rtmp", "udp"):
            return SourceSpec("stream", s, opts)
        raise SourceError(f"source {s!r}: unknown scheme {scheme!r}://; expected one of {', '.join(SCHEMES)}, "
                          "a path, a glob or a camera index")
    if s.startswith("/dev/video"):
        return SourceSpec("camera", s, _options("", options))
    return _path_spec(s, _options("", options), s)


def _path_spec(path: str, opts: Dict[str, Any], original: str) -> SourceSpec:
    p = Path(path).expanduser()
    if any(ch in path for ch in "*?["):
        files = sorted(f for f in glob.glob(str(p)) if Path(f).suffix.lower() in IMAGE_EXTS)
        if not files:
            raise SourceError(f"source {original!r}: the glob matches no image files; expected image files "
                              f"({', '.join(sorted(IMAGE_EXTS))})")
        return SourceSpec("images", files, opts)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise SourceError(f"source {original!r}: the folder holds no image files; expected "
                              f"{', '.join(sorted(IMAGE_EXTS))}")
        return SourceSpec("images", files, opts)
    if not p.exists():
        raise SourceError(f"source {original!r}: no such file or folder; expected an existing video or image file, "
                          f"a folder, a glob, a camera index or a URI ({', '.join(SCHEMES)})")
    if p.suffix.lower() in IMAGE_EXTS:
        return SourceSpec("images", [str(p)], opts)
    return SourceSpec("file", str(p), opts)


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The GStreamer pipeline for a Jetson CSI camera, ending in a BGR appsink that keeps one buffer."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1,format=NV12 ! nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! "
            "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")


def _video_devices() -> List[str]:
    return sorted(glob.glob("/dev/video*"))


class Source:
    """A stream of H×W×3 uint8 BGR frames. Iterate it, or call :meth:`read` (None at the end)."""

    description: str = "?"
    live: bool = False
    fps: float = 0.0
    frame_count: Optional[int] = None
    #: a name for the frame last read (image sources: the file's stem), for predictable output names
    current_name: Optional[str] = None

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        """Stop reading and release the device or file."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ImageSource(Source):
    """Image files read in order; an unreadable image yields an empty array (the Filter blanks it)."""

    def __init__(self, files: List[str], fps: float = 0.0) -> None:
        self.cv2 = import_cv2()
        self.files = list(files)
        self.frame_count = len(self.files)
        self.fps = float(fps)
        self._i = 0
        self.description = (f"image {self.files[0]}" if len(self.files) == 1
                            else f"{len(self.files)} images from {os.path.dirname(self.files[0]) or '.'}")
        _log.info("source: %s (cv2.imread)", self.description)

    def read(self) -> Optional[np.ndarray]:
        if self._i >= len(self.files):
            return None
        path = self.files[self._i]
        self._i += 1
        self.current_name = Path(path).stem
        img = self.cv2.imread(path, self.cv2.IMREAD_COLOR)
        if img is None:
            _log.warning("image %s could not be decoded", path)
            return np.empty((0, 0, 3), np.uint8)
        return img


_END = object()


class CaptureSource(Source):
    """An OpenCV VideoCapture read by a thread: latest frame only (live) or every frame (files).

    ``opener`` returns an opened capture (anything with ``read()``, ``get()``,
    ``release()``); it is called again to reconnect a dropped live source, with
    back-off ``0.5, 1, 2, ... ≤ 8 s``, at most ``reconnects`` times in a row.
    """

    def __init__(self, opener: Callable[[], Any], description: str, live: bool, reconnects: int = 5,
                 backoff: float = 0.5, queue_size: int = 4) -> None:
        self.opener = opener
        self.description = description
        self.live = live
        self.reconnects = int(reconnects)
        self.backoff = float(backoff)
        self.reconnect_count = 0
        self.dropped = 0
        self.cap = opener()
        cv2 = import_cv2()
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 0.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
        self.frame_count = n if n > 0 else None
        self._stop = threading.Event()
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=queue_size)
        self._latest: Any = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=f"privsdk-source:{description}", daemon=True)
        self._thread.start()
        _log.info("source: %s (%s; %s)", description, "live, latest frame only" if live else "file, every frame",
                  f"{self.fps:.2f} FPS" if self.fps else "FPS unknown")

    # reader thread ----------------------------------------------------------
    def _put(self, item: Any) -> None:
        if self.live:
            with self._cond:
                if self._latest is not None and self._latest is not _END and not isinstance(self._latest, Exception):
                    self.dropped += 1
                self._latest = item
                self._cond.notify()
        else:
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

    def _reopen(self, attempt: int) -> bool:
        """One reconnect attempt after a back-off; False when the source is being closed."""
        delay = min(8.0, self.backoff * 2 ** (attempt - 1))
        _log.warning("source %s dropped; reconnecting in %.2f s (attempt %d of %d)", self.description, delay,
                     attempt, self.reconnects)
        if self._stop.wait(delay):
            return False
        if self.cap is not None:
            try:
                self.cap.release()
            except Exception:
                pass
            self.cap = None
        try:
            self.cap = self.opener()
        except SourceError as exc:
            _log.warning("reconnect attempt %d failed: %s", attempt, exc)
            return True
        self.reconnect_count += 1
        _log.warning("source %s reopened (attempt %d)", self.description, attempt)
        return True

    def _loop(self) -> None:
        failures = 0  # consecutive attempts without a frame
        try:
            while not self._stop.is_set():
                ok, frame = self.cap.read() if self.cap is not None else (False, None)
                if ok and frame is not None:
                    failures = 0
                    self._put(frame)
                    continue
                if not self.live:
                    break
                failures += 1
                if failures > self.reconnects:
                    self._put(SourceError(f"source {self.description} dropped and could not be reopened after "
                                          f"{self.reconnects} attempts; expected the camera/stream to come back"))
                    return
                if not self._reopen(failures):
                    return
        except Exception as exc:  # surfaced to the consumer, never swallowed
            self._put(SourceError(f"source {self.description}: reading failed ({exc})"))
            return
        self._release()  # end of the file: free the decoder now, not at close()
        self._put(_END)

    def _release(self) -> None:
        cap, self.cap = self.cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:
                pass

    # consumer ---------------------------------------------------------------
    def read(self, timeout: Optional[float] = None) -> Optional[np.ndarray]:
        """The next frame (files) or the newest one (live); None at the end. Raises SourceError."""
        if self.live:
            with self._cond:
                if not self._cond.wait_for(lambda: self._latest is not None, timeout=timeout):
                    raise SourceError(f"source {self.description}: no frame within {timeout} s")
                item, self._latest = self._latest, None
                if item is _END:
                    self._latest = _END
        else:
            while True:
                try:
                    item = self._queue.get(timeout=0.5 if timeout is None else timeout)
                    break
                except queue.Empty:
                    if timeout is not None:
                        raise SourceError(f"source {self.description}: no frame within {timeout} s") from None
                    if not self._thread.is_alive() and self._queue.empty():
                        return None
            if item is _END:
                self._put_back_end()
        if item is _END:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def _put_back_end(self) -> None:
        try:
            self._queue.put_nowait(_END)
        except queue.Full:
            pass

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            self._release()


def _say_capture_path(what: str) -> None:
    cv2 = import_cv2()
    gst = "with GStreamer" if gstreamer_available() else "without GStreamer (PyPI build; csi:// needs JetPack's OpenCV)"
    _log.info("capture path: %s via OpenCV %s, %s", what, cv2.__version__, gst)


def _capture_opener(target: Any, api: int, description: str, setup: Optional[Callable[[Any], None]] = None,
                    hint: str = "") -> Callable[[], Any]:
    def open_it() -> Any:
        cv2 = import_cv2()
        cap = cv2.VideoCapture(target, api)
        if setup is not None and cap.isOpened():
            setup(cap)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"source {description} could not be opened{hint}")
        return cap

    return open_it


def open_source(spec: Union[str, int, Path, SourceSpec], **options: Any) -> Source:
    """Open a frame source from a URI-like string, a path or a camera index (see the module docstring).

    Options: ``width``, ``height``, ``fps`` (cameras), ``reconnects`` (live sources), ``flip`` (CSI).
    Raises :class:`SourceError` saying what was wrong and what was expected.
    """
    parsed = spec if isinstance(spec, SourceSpec) else parse_source(spec, **options)
    cv2 = import_cv2()
    opts = parsed.options
    reconnects = int(opts.get("reconnects", 5))
    if parsed.kind == "images":
        return ImageSource(parsed.target, fps=float(opts.get("fps", 0) or 0))
    if parsed.kind == "file":
        desc = f"video file {parsed.target}"
        _say_capture_path("FFmpeg decoder")
        opener = _capture_opener(parsed.target, cv2.CAP_FFMPEG, desc,
                                 hint="; expected a video OpenCV's FFmpeg backend can decode")
        return CaptureSource(opener, desc, live=False)
    if parsed.kind == "camera":
        target = parsed.target
        index = int(target[len("/dev/video"):]) if isinstance(target, str) and target[len("/dev/video"):].isdigit() \
            else target
        desc = f"camera {target} (V4L2)" if os.name == "posix" else f"camera {target}"
        api = cv2.CAP_V4L2 if os.name == "posix" and not str(os.uname().sysname).startswith("Darwin") else cv2.CAP_ANY
        if isinstance(target, str) and not os.path.exists(target):
            raise SourceError(f"source {target}: no such device; video devices here: "
                              f"{', '.join(_video_devices()) or 'none'}; expected one of those or a camera index")

        def setup(cap: Any) -> None:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))  # MJPEG when offered
            for prop, key in ((cv2.CAP_PROP_FRAME_WIDTH, "width"), (cv2.CAP_PROP_FRAME_HEIGHT, "height"),
                              (cv2.CAP_PROP_FPS, "fps")):
                if key in opts:
                    cap.set(prop, float(opts[key]))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)

        _say_capture_path("V4L2 (MJPEG requested)" if api == cv2.CAP_V4L2 else "the default camera API")
        hint = (f"; video devices here: {', '.join(_video_devices()) or 'none'}; expected a connected camera "
                "that no other program holds")
        return CaptureSource(_capture_opener(index, api, desc, setup, hint), desc, live=True, reconnects=reconnects)
    if parsed.kind in ("csi", "gstreamer"):
        if parsed.kind == "csi":
            pipeline = csi_pipeline(parsed.target, int(opts.get("width", 1280)), int(opts.get("height", 720)),
                                    int(opts.get("fps", 30)), int(opts.get("flip", 0)))
            desc = f"CSI camera {parsed.target} (GStreamer nvarguscamerasrc)"
        else:
            pipeline, desc = parsed.target, "GStreamer pipeline"
        live = "videotestsrc" not in pipeline or "is-live=true" in pipeline
        if gstreamer_available():
            _say_capture_path("GStreamer")
            _log.info("pipeline: %s", pipeline)
            opener = _capture_opener(pipeline, cv2.CAP_GSTREAMER, desc,
                                     hint="; expected a pipeline ending in 'appsink' that GStreamer can run")
            return CaptureSource(opener, desc, live=live, reconnects=reconnects)
        from .gst import GstCapture, pygobject_gstreamer_available

        if not pygobject_gstreamer_available():
            raise SourceError(f"source {'csi://%d' % parsed.target if parsed.kind == 'csi' else parsed.target}: "
                              f"needs GStreamer, but {gstreamer_missing_reason()}, and PyGObject's GStreamer "
                              "binding is not installed either (apt-get install python3-gi gir1.2-gstreamer-1.0)")
        _log.info("capture path: GStreamer via PyGObject (this OpenCV has no GStreamer); pipeline: %s", pipeline)
        return CaptureSource(lambda: GstCapture(pipeline), desc + " via PyGObject", live=live, reconnects=reconnects)
    if parsed.kind == "stream":
        url = parsed.target
        api = cv2.CAP_FFMPEG
        desc = f"stream {url}"
        if gstreamer_available() and url.startswith("rtsp") and opts.get("gstreamer", 1):
            latency = int(opts.get("latency", 200))
            url = f"rtspsrc location={url} latency={latency} ! decodebin ! videoconvert ! video/x-raw,format=BGR ! " \
                  "appsink drop=true max-buffers=1 sync=false"
            api = cv2.CAP_GSTREAMER
            desc += " (GStreamer)"
        else:
            desc += " (FFmpeg)"
        _say_capture_path(desc.rsplit("(", 1)[-1].rstrip(")"))
        return CaptureSource(_capture_opener(url, api, desc, hint="; expected a reachable stream"),
                             desc, live=True, reconnects=reconnects)
    raise InputError(f"source kind {parsed.kind!r} is unknown")  # pragma: no cover - parse_source guards it


__all__ = ["Source", "SourceSpec", "ImageSource", "CaptureSource", "open_source", "parse_source", "csi_pipeline",
           "VIDEO_EXTS", "IMAGE_EXTS"]
