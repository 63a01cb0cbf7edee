"""Where sanitized frames go: a window, a video file, a GStreamer/RTSP pipeline, a callback,
an image folder -- and an optional JSON side-file of what was filtered.

``open_sink(spec)`` picks one from a string: ``"window"``; a path ending in a
video extension (``out.mp4``); ``rtsp://…`` or ``gst:PIPELINE`` (a pipeline
starting with appsrc); anything else is an image folder. A callable gives a
:class:`CallbackSink`.

Example::

    from privsdk.io import open_sink
    with open_sink("out.mp4", fps=src.fps, audio_from="in.mp4") as sink:
        for frame in frames:
            sink.write(frame)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from ..errors import DependencyError, InputError, SourceError
from ..log import get_logger, warn_once
from .capture import gstreamer_available, gstreamer_missing_reason, import_cv2
from .sources import IMAGE_EXTS, VIDEO_EXTS

_log = get_logger(__name__)

#: default FourCC per container (selectable with ``encoder=``)
DEFAULT_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


class Sink:
    """Takes sanitized frames. ``stopped`` turns True when the user closes it (window: q or Esc)."""

    description: str = "?"
    stopped: bool = False
    frames_written: int = 0

    def write(self, frame: np.ndarray, name: Optional[str] = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release."""

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class CallbackSink(Sink):
    """Calls ``fn(frame)`` for every frame."""

    def __init__(self, fn: Callable[[np.ndarray], Any]) -> None:
        if not callable(fn):
            raise InputError(f"callback sink: expected a callable taking a frame, got {type(fn).__name__}")
        self.fn = fn
        self.description = f"callback {getattr(fn, '__name__', repr(fn))}"

    def write(self, frame: np.ndarray, name: Optional[str] = None) -> None:
        self.fn(frame)
        self.frames_written += 1


class WindowSink(Sink):
    """An OpenCV window (``cv2.imshow``); q or Esc stops."""

    def __init__(self, title: str = "privsdk") -> None:
        self.cv2 = import_cv2()
        self.title = title
        self.description = f"window {title!r}"
        self._opened = False

    def write(self, frame: np.ndarray, name: Optional[str] = None) -> None:
        cv2 = self.cv2
        try:
            cv2.imshow(self.title, frame)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            raise DependencyError(f"cannot show a window: {str(exc).strip().splitlines()[-1]} -- expected a display "
                                  "and an OpenCV with GUI support (opencv-python, not -headless); write to a "
                                  "file instead (--sink out.mp4)") from None
        self._opened = True
        self.frames_written += 1
        if key in (ord("q"), 27):
            self.stopped = True

    def close(self) -> None:
        if self._opened:
            try:
                self.cv2.destroyWindow(self.title)
            except self.cv2.error:
                pass


def _ffmpeg() -> Optional[str]:
    """The ffmpeg on PATH, else the one the ``imageio-ffmpeg`` package ships (``privsdk[audio]``), else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary missing for this platform
        return None


def has_audio(path: Union[str, Path]) -> Optional[bool]:
    """Whether a video file carries an audio track: True/False for MP4/MOV (an ``hdlr`` box of type
    ``soun``) and AVI (a stream header of type ``auds``), None when the container is not recognised."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(1 << 22)
            f.seek(max(0, size - (1 << 22)))
            tail = f.read(1 << 22)
    except OSError:
        return None
    data = head + tail
    ext = p.suffix.lower()
    if ext in (".mp4", ".m4v", ".mov"):
        i = data.find(b"hdlr")
        while i >= 0:
            if data[i + 12:i + 16] == b"soun":
                return True
            i = data.find(b"hdlr", i + 4)
        return False
    if ext == ".avi":
        i = data.find(b"strh")
        while i >= 0:
            if data[i + 8:i + 12] == b"auds":
                return True
            i = data.find(b"strh", i + 4)
        return False
    return None


class VideoFileSink(Sink):
    """A video file by ``cv2.VideoWriter``, at the source's FPS; audio copied from ``audio_from`` by ffmpeg.

    ``encoder`` is a FourCC (``mp4v``, ``MJPG``, ``avc1``, ``XVID``...); the writer is
    opened on the first frame, whose size fixes the video's.
    """

    def __init__(self, path: Union[str, Path], fps: float = 30.0, encoder: Optional[str] = None,
                 audio_from: Optional[str] = None) -> None:
        self.cv2 = import_cv2()
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_EXTS:
            raise InputError(f"video sink {path}: unknown extension {ext!r}; expected one of {sorted(VIDEO_EXTS)}")
        self.fourcc = encoder or DEFAULT_FOURCC.get(ext, "mp4v")
        if len(self.fourcc) != 4:
            raise InputError(f"encoder: expected a 4-character FourCC such as mp4v, MJPG, avc1, got {self.fourcc!r}")
        if not fps or fps <= 0 or fps > 1000:
            _log.warning("video sink %s: source FPS unknown (%r); writing at 30 FPS", path, fps)
            fps = 30.0
        self.fps = float(fps)
        self.audio_from = audio_from
        self.description = f"video file {self.path} ({self.fourcc}, {self.fps:g} FPS)"
        self._writer = None
        self._size: Optional[tuple] = None
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray, name: Optional[str] = None) -> None:
        h, w = frame.shape[:2]
        if self._writer is None:
            self._writer = self.cv2.VideoWriter(str(self.path), self.cv2.VideoWriter_fourcc(*self.fourcc),
                                                self.fps, (w, h))
            if not self._writer.isOpened():
                raise DependencyError(f"video sink {self.path}: OpenCV cannot encode {self.fourcc!r} into "
                                      f"{self.path.suffix}; expected an encoder this OpenCV has (mp4v for .mp4, "
                                      "MJPG for .avi)")
            self._size = (w, h)
            _log.info("sink: %s, %d×%d", self.description, w, h)
        elif (w, h) != self._size:
            raise InputError(f"video sink {self.path}: frame is {w}×{h}, the video is {self._size[0]}×{self._size[1]}; "
                             "expected every frame of one size")
        self._writer.write(frame)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.audio_from:
            self._mux_audio()

    def _mux_audio(self) -> None:
        audio = has_audio(self.audio_from)
        if audio is False:
            _log.debug("%s has no audio track; nothing to copy", self.audio_from)
            return
        ffmpeg = _ffmpeg()
        if ffmpeg is None:
            warn_once("no-ffmpeg", f"ffmpeg is not installed: the sound of {self.audio_from} was not copied into "
                      f"{self.path} (install ffmpeg, or `pip install 'privsdk[audio]'`, to keep audio)", _log)
            return
        tmp = self.path.with_name(self.path.stem + ".video" + self.path.suffix)
        os.replace(self.path, tmp)
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-i", str(tmp), "-i", str(self.audio_from), "-map", "0:v:0",
               "-map", "1:a?", "-c:v", "copy", "-c:a", "copy", "-shortest", str(self.path)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            os.replace(tmp, self.path)
            _log.warning("ffmpeg could not copy the audio of %s (%s); the video has no sound", self.audio_from,
                         res.stderr.strip()[-300:])
        else:
            tmp.unlink()
            _log.info("audio of %s copied into %s", self.audio_from, self.path)


class GStreamerSink(Sink):
    """A GStreamer pipeline starting with ``appsrc`` (``gst:...``), or ``rtsp://`` published by rtspclientsink.

    Runs through OpenCV when it has GStreamer, else through PyGObject (python3-gi).
    """

    def __init__(self, target: str, fps: float = 30.0) -> None:
        self.cv2 = import_cv2()
        from .gst import pygobject_gstreamer_available

        self.via_opencv = gstreamer_available()
        if not self.via_opencv and not pygobject_gstreamer_available():
            raise DependencyError(f"sink {target}: needs GStreamer, but {gstreamer_missing_reason()}, and PyGObject's "
                                  "GStreamer binding is not installed either (apt-get install python3-gi "
                                  "gir1.2-gstreamer-1.0)")
        if target.startswith("rtsp://"):
            pipeline = ("appsrc ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast ! "
                        f"rtspclientsink location={target}")
        else:
            pipeline = target[4:].strip() if target.startswith("gst:") else target
        self.pipeline = pipeline
        self.fps = float(fps or 30.0)
        self.description = f"GStreamer pipeline {pipeline}" + ("" if self.via_opencv else " (via PyGObject)")
        self._writer: Any = None

    def write(self, frame: np.ndarray, name: Optional[str] = None) -> None:
        if self._writer is None:
            h, w = frame.shape[:2]
            if self.via_opencv:
                self._writer = self.cv2.VideoWriter(self.pipeline, self.cv2.CAP_GSTREAMER, 0, self.fps, (w, h))
            else:
                from .gst import GstWriter

                self._writer = GstWriter(self.pipeline, self.fps, (w, h))
            if not self._writer.isOpened():
                raise SourceError(f"sink pipeline could not be started: {self.pipeline}; expected a pipeline "
                                  "starting with appsrc that GStreamer can run")
            _log.info("sink: %s", self.description)
        self._writer.write(frame)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class ImageFolderSink(Sink):
    """Images in a folder with predictable names: the source image's name when known, else ``000000.png``..."""

    def __init__(self, directory: Union[str, Path], ext: str = ".png", pattern: str = "{index:06d}") -> None:
        self.cv2 = import_cv2()
        self.directory = Path(directory)
        self.ext = ext if ext.startswith(".") else "." + ext
        if self.ext.lower() not in IMAGE_EXTS:
            raise InputError(f"image sink: extension {self.ext!r}; expected one of {sorted(IMAGE_EXTS)}")
        self.pattern = pattern
        self.directory.mkdir(parents=True, exist_ok=True)
        self.description = f"image folder {self.directory} ({self.ext})"

    def path_for(self, index: int, name: Optional[str] = None) -> Path:
        """The file a frame goes to: ``<name><ext>`` or the pattern with its index."""
        stem = name if name else self.pattern.format(index=index)
        return self.directory / f"{stem}{self.ext}"

    def write(self, frame: np.ndarray, name: Optional[str] = None) -> None:
        path = self.path_for(self.frames_written, name)
        if not self.cv2.imwrite(str(path), frame):
            raise SourceError(f"image sink: could not write {path}; expected a writeable folder")
        self.frames_written += 1


class SideFile:
    """The JSON side-file: per frame, the regions filtered (with scores) and whether it was blanked."""

    def __init__(self, path: Union[str, Path], meta: Optional[Dict[str, Any]] = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.frames: List[Dict[str, Any]] = []

    def add(self, index: int, regions: List[Any], blanked: bool, name: Optional[str] = None,
            error: Optional[str] = None) -> None:
        entry: Dict[str, Any] = {"index": index, "blanked": blanked,
                                 "regions": [r.to_dict() if hasattr(r, "to_dict") else r for r in regions]}
        if name:
            entry["name"] = name
        if error:
            entry["error"] = error
        self.frames.append(entry)

    def close(self, summary: Optional[Dict[str, Any]] = None) -> None:
        payload = {"format": "privsdk-regions/1", **self.meta, "summary": summary or {}, "frames": self.frames}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=str(self.path.parent), suffix=".json.tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, self.path)


def open_sink(spec: Union[str, Path, Callable[[np.ndarray], Any]], fps: float = 30.0, encoder: Optional[str] = None,
              audio_from: Optional[str] = None) -> Sink:
    """A sink from a spec: ``window``, ``out.mp4``, ``rtsp://…``, ``gst:appsrc ! …``, a folder, or a callable."""
    if callable(spec) and not isinstance(spec, (str, Path)):
        return CallbackSink(spec)
    s = str(spec)
    if s in ("window", "show", ":window"):
        return WindowSink()
    if s.startswith("rtsp://") or s.startswith("gst:") or s.startswith("appsrc"):
        return GStreamerSink(s, fps)
    p = Path(s).expanduser()
    if p.suffix.lower() in VIDEO_EXTS:
        return VideoFileSink(p, fps, encoder, audio_from)
    if p.suffix.lower() in IMAGE_EXTS:
        raise InputError(f"sink {s!r}: a single image file; expected a folder for images (e.g. {p.parent / p.stem}/)")
    return ImageFolderSink(p)


__all__ = ["Sink", "CallbackSink", "WindowSink", "VideoFileSink", "GStreamerSink", "ImageFolderSink", "SideFile",
           "open_sink", "DEFAULT_FOURCC"]
