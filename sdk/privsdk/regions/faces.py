"""Face finders: OpenCV's Haar cascade (default) and YuNet (cv2.FaceDetectorYN, given a model path).

A detector box is grown to cover the whole face -- forehead, cheeks and chin --
by ``margin`` (a fraction of its size on each side, plus ``chin`` extra below),
made the filter's aspect ratio (square for a square model) and clipped to the frame.
A ``crop`` layout (left, top, right, bottom in box units) places it instead: a
filter bundle carries the layout of the faces it was trained on
(``input.face_crop``), so the runtime feeds it faces framed the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..deps import import_cv2 as _import_cv2
from ..errors import DependencyError, InputError, RegionError
from ..log import get_logger
from .base import Region, RegionFinder, check_face_crop, expand_to_aspect

_log = get_logger(__name__)

HAAR_FILE = "haarcascade_frontalface_default.xml"


def import_cv2() -> Any:
    """OpenCV for face regions (see :func:`privsdk.deps.import_cv2`)."""
    return _import_cv2("face regions")


class HaarFaces(RegionFinder):
    """Frontal faces by OpenCV's Haar cascade (``cv2.data``), run on a grey frame downscaled to
    ``detect_width`` pixels wide; ``min_size`` is the smallest face side in those pixels.

    The defaults (640, 40) find the astronaut test face down to about 100 pixels
    wide in 1280×720 frames; ``detect_width=320, min_size=24`` is about twice as
    fast but misses faces under about 120 pixels in a 1280-wide frame."""

    name = "haar"

    def __init__(self, margin: float = 0.25, chin: float = 0.15, aspect: float = 1.0,
                 detect_width: int = 640, min_size: int = 40, scale_factor: float = 1.2,
                 min_neighbors: int = 4, cascade: Optional[str] = None,
                 crop: Optional[Sequence[float]] = None) -> None:
        cv2 = import_cv2()
        self.cv2 = cv2
        if cascade is None:
            base = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if base is None:
                raise DependencyError("this OpenCV has no cv2.data.haarcascades (OpenCV ≥ 5 dropped them); "
                                      "expected opencv < 5, or pass a YuNet model path (regions='yunet:PATH')")
            cascade = str(Path(base) / HAAR_FILE)
        self.classifier = cv2.CascadeClassifier(cascade)
        if self.classifier.empty():
            raise RegionError(f"Haar cascade {cascade} could not be loaded; expected OpenCV's {HAAR_FILE}")
        self.margin, self.chin, self.aspect = float(margin), float(chin), float(aspect)
        self.crop = check_face_crop(crop, "HaarFaces crop") if crop is not None else None
        self.detect_width, self.min_size = int(detect_width), int(min_size)
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        self._grey: Optional[np.ndarray] = None
        self._small: Optional[np.ndarray] = None

    def find(self, frame: np.ndarray) -> List[Region]:
        cv2 = self.cv2
        h, w = frame.shape[:2]
        s = min(1.0, self.detect_width / float(w))
        try:
            if self._grey is None or self._grey.shape != (h, w):
                self._grey = np.empty((h, w), np.uint8)
            cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self._grey)
            grey = self._grey
            if s < 1.0:
                size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
                if self._small is None or self._small.shape != (size[1], size[0]):
                    self._small = np.empty((size[1], size[0]), np.uint8)
                cv2.resize(grey, size, dst=self._small, interpolation=cv2.INTER_AREA)
                grey = self._small
            min_side = self.min_size
            boxes, _, weights = self.classifier.detectMultiScale3(
                grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(min_side, min_side), outputRejectLevels=True)
        except cv2.error as exc:
            raise RegionError(f"the Haar face detector failed on a {w}×{h} frame ({exc})") from None
        out = []
        for (bx, by, bw, bh), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            score = float(1.0 / (1.0 + np.exp(-float(wt))))
            r = expand_to_aspect(bx / s, by / s, bw / s, bh / s, self.margin, self.chin, self.aspect, w, h, self.crop)
            out.append(Region(r.x, r.y, r.w, r.h, score))
        return out


class YuNetFaces(RegionFinder):
    """Faces by ``cv2.FaceDetectorYN`` with a YuNet ONNX model the user provides."""

    name = "yunet"

    def __init__(self, model: str, margin: float = 0.15, chin: float = 0.1, aspect: float = 1.0,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        cv2 = import_cv2()
        if not Path(model).is_file():
            raise InputError(f"YuNet model {model!r} does not exist; expected a path to "
                             "face_detection_yunet_*.onnx (OpenCV zoo)")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DependencyError(f"OpenCV {cv2.__version__} has no cv2.FaceDetectorYN; expected OpenCV ≥ 4.5.4")
        try:
            self.detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold, nms_threshold)
        except cv2.error as exc:
            raise RegionError(f"YuNet model {model} could not be loaded ({exc})") from None
        self.cv2 = cv2
        self.margin, self.chin, self.aspect = float(margin), float(chin), float(aspect)
        self._size: Tuple[int, int] = (320, 320)

    def find(self, frame: np.ndarray) -> List[Region]:
        h, w = frame.shape[:2]
        try:
            if self._size != (w, h):
                self.detector.setInputSize((w, h))
                self._size = (w, h)
            _, faces = self.detector.detect(frame)
        except self.cv2.error as exc:
            raise RegionError(f"the YuNet face detector failed on a {w}×{h} frame ({exc})") from None
        out = []
        for f in (faces if faces is not None else []):
            r = expand_to_aspect(float(f[0]), float(f[1]), float(f[2]), float(f[3]), self.margin, self.chin,
                                 self.aspect, w, h)
            out.append(Region(r.x, r.y, r.w, r.h, float(f[-1])))
        return out
