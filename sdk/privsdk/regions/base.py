"""Regions and the region-finder interface."""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Region:
    """A box in frame pixels, ``(x, y, w, h)``, with the finder's score.

    ``held`` is True when the box was not found in this frame but is kept from a
    recent one (temporal hold-over), and ``track`` identifies it across frames.
    """

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    held: bool = False
    track: int = -1

    @property
    def roi(self) -> Tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "score": round(float(self.score), 4),
                "held": self.held, "track": self.track}


def iou(a: Region, b: Region) -> float:
    """Intersection over union of two boxes."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def clip_region(r: Region, width: int, height: int) -> "Region | None":
    """``r`` clipped to a ``width``×``height`` frame, or None when nothing of it is inside."""
    x0, y0 = max(0, r.x), max(0, r.y)
    x1, y1 = min(width, r.x + r.w), min(height, r.y + r.h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return Region(x0, y0, x1 - x0, y1 - y0, r.score, r.held, r.track)


def check_face_crop(crop: Any, where: str = "face crop") -> Tuple[float, float, float, float]:
    """A face-crop layout ``(left, top, right, bottom)`` in detector-box units, checked.

    The crop spans ``x + left·w .. x + right·w`` and ``y + top·h .. y + bottom·h`` of a detector
    box ``(x, y, w, h)``: ``(0, 0, 1, 1)`` is the box itself, ``(-0.25, -0.25, 1.25, 1.4)`` is the
    default margin 0.25 with chin 0.15. Raises :class:`InputError` saying what was expected.
    """
    try:
        vals = tuple(float(v) for v in crop)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) and -2.0 <= v <= 3.0 for v in vals) \
            or not (vals[0] < vals[2] and vals[1] < vals[3]):
        raise InputError(f"{where} is {crop!r}; expected (left, top, right, bottom) in detector-box units, "
                         f"left < right and top < bottom, each within [-2, 3] (the box itself is (0, 0, 1, 1))")
    return vals  # type: ignore[return-value]


def expand_to_aspect(x: float, y: float, w: float, h: float, margin: float, chin: float, aspect: float,
                     width: int, height: int, crop: Optional[Sequence[float]] = None) -> Region:
    """Grow a detector box by ``margin`` (fraction of its size on each side, ``chin`` extra below),
    or place it by a face-crop layout ``crop`` (see :func:`check_face_crop`; it wins over margin and
    chin), make it ``aspect`` (w / h) around its centre, and clip it to the frame."""
    if crop is not None:
        left, top, right, bottom = crop
        x0, x1 = x + left * w, x + right * w
        y0, y1 = y + top * h, y + bottom * h
    else:
        x0, x1 = x - margin * w, x + w + margin * w
        y0, y1 = y - margin * h, y + h + (margin + chin) * h
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw, bh = x1 - x0, y1 - y0
    if bw / bh < aspect:
        bw = bh * aspect
    else:
        bh = bw / aspect
    r = Region(int(round(cx - bw / 2)), int(round(cy - bh / 2)), int(round(bw)), int(round(bh)))
    clipped = clip_region(r, width, height)
    return clipped if clipped is not None else Region(0, 0, width, height)


class RegionFinder(abc.ABC):
    """Finds the regions of a frame to filter. Implementations must be safe to call from one
    thread at a time (the Filter serializes calls) and raise :class:`RegionError` on failure."""

    #: short name used in logs and side-files
    name: str = "?"

    @abc.abstractmethod
    def find(self, frame: np.ndarray) -> List[Region]:
        """Regions of ``frame`` (H×W×3 uint8 BGR), inside the frame."""

    def reset(self) -> None:
        """Forget any state carried between frames (a new stream starts)."""
