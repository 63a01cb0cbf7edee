"""The whole frame as one region."""
from __future__ import annotations

from typing import List

import numpy as np

from .base import Region, RegionFinder


class FullFrame(RegionFinder):
    """Filter the whole frame (for face crops, or when every pixel is private)."""

    name = "full"

    def find(self, frame: np.ndarray) -> List[Region]:
        return [Region(0, 0, int(frame.shape[1]), int(frame.shape[0]), 1.0)]
