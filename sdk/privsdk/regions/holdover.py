"""Temporal hold-over ("frame memory"): a face the detector misses is still covered for a while.

Detections are matched to tracks by IoU. A track not matched in a frame keeps
its last box (marked ``held``) until it has been missed for more than
``frames`` consecutive frames, or -- when ``seconds`` is set -- for longer than
that. A single miss therefore never leaks a raw face.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from ..errors import InputError
from .base import Region, RegionFinder, clip_region, iou


@dataclass
class _Track:
    ident: int
    box: Region
    misses: int = 0
    last_seen: float = 0.0


class HoldOver(RegionFinder):
    """Wrap a finder so that lost regions are held for ``frames`` frames and/or ``seconds``."""

    def __init__(self, finder: RegionFinder, frames: int = 5, seconds: Optional[float] = None,
                 iou_threshold: float = 0.3, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(frames, int) or frames < 0:
            raise InputError(f"hold frames: expected an int ≥ 0, got {frames!r}")
        if seconds is not None and seconds < 0:
            raise InputError(f"hold seconds: expected a number ≥ 0 or None, got {seconds!r}")
        self.finder = finder
        self.name = f"{finder.name}+hold"
        self.frames, self.seconds, self.iou_threshold = frames, seconds, float(iou_threshold)
        self.clock = clock
        self._tracks: List[_Track] = []
        self._next = 0

    def reset(self) -> None:
        self._tracks = []
        self.finder.reset()

    def _expired(self, t: _Track, now: float) -> bool:
        if self.seconds is not None:
            return now - t.last_seen > self.seconds
        return t.misses > self.frames

    def find(self, frame: np.ndarray) -> List[Region]:
        found = self.finder.find(frame)
        now = self.clock()
        height, width = int(frame.shape[0]), int(frame.shape[1])
        unmatched = list(range(len(self._tracks)))
        out: List[Region] = []
        for det in found:
            best, best_iou = -1, self.iou_threshold
            for k in unmatched:
                v = iou(det, self._tracks[k].box)
                if v >= best_iou:
                    best, best_iou = k, v
            if best >= 0:
                unmatched.remove(best)
                track = self._tracks[best]
            else:
                track = _Track(self._next, det)
                self._next += 1
                self._tracks.append(track)
            track.box, track.misses, track.last_seen = det, 0, now
            out.append(Region(det.x, det.y, det.w, det.h, det.score, False, track.ident))
        keep: List[_Track] = []
        for k, track in enumerate(self._tracks):
            if k in unmatched:
                track.misses += 1
                if self._expired(track, now):
                    continue
                held = clip_region(Region(*track.box.roi, track.box.score, True, track.ident), width, height)
                if held is not None:
                    out.append(held)
            keep.append(track)
        self._tracks = keep
        return out
