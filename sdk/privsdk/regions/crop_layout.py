"""Where a filter's training faces sit relative to the runtime's face detector box.

A filter learns on face crops framed one way (SMILEsmileD's are tight: brows to chin;
GENKI-4K's are the Haar box itself). At run time the face finder cuts crops out of
camera frames; if it frames them differently (the default margin makes the face about
half as wide), the filter sees faces it never trained on and hides less. So the
trainer runs the runtime's own Haar finder on its training crops, stores the median
layout, export writes it into the bundle (``input.face_crop``), and ``Filter`` frames
faces that way.

Example::

    from privsdk.regions.crop_layout import measure_face_crop
    layout = measure_face_crop(faces_rgb)          # N×64×64×3 uint8 training crops
    print(layout["box"])                           # e.g. [0.11, 0.19, 0.88, 0.96]
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from ..errors import InputError
from ..log import get_logger

_log = get_logger(__name__)

#: fewer faces found than this, and no layout is claimed
MIN_FACES = 10
#: faces measured at most (callers sample this many from a split rather than copy all of it)
MAX_FACES = 600


def measure_face_crop(images: np.ndarray, max_faces: int = MAX_FACES, seed: int = 0) -> Optional[Dict[str, Any]]:
    """The median face-crop layout of ``images`` in the runtime Haar finder's box units.

    Each crop is padded (replicated border) and enlarged so the detector sees a whole face,
    then :class:`~privsdk.regions.faces.HaarFaces` (the runtime's finder and settings) finds
    its box ``(x, y, w, h)``; crops with no face or several are skipped. The crop's centre and
    side in box units are averaged by the median (robust to a few wrong boxes) into a square
    layout ``(left, top, right, bottom)`` for :func:`~privsdk.regions.base.expand_to_aspect`.

    Args:
        images: uint8 N×S×S×3 RGB face crops (square).
        max_faces: at most this many, drawn at random with ``seed``.

    Returns:
        ``{"detector": "haar", "box": [l, t, r, b], "faces_found": n, "faces_tried": m}``, or
        None when fewer than :data:`MIN_FACES` faces were found (no layout is then claimed).
    """
    from .faces import HaarFaces, import_cv2

    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[1] != arr.shape[2] or len(arr) == 0:
        raise InputError(f"face crops: got {arr.dtype} array of shape {arr.shape}; expected uint8 N×S×S×3 "
                         f"(square RGB crops, N ≥ 1)")
    cv2 = import_cv2()
    size = int(arr.shape[1])
    pad = size // 2
    scale = max(1, math.ceil(256 / size))  # the Haar cascade wants faces well above its 24-pixel window
    big = (size + 2 * pad) * scale
    finder = HaarFaces(crop=(0.0, 0.0, 1.0, 1.0), aspect=1.0, detect_width=big, min_size=size * scale // 3)
    pick = np.random.default_rng(seed).permutation(len(arr))[:max_faces]
    centres, sides = [], []
    for i in pick:
        bgr = cv2.cvtColor(arr[i], cv2.COLOR_RGB2BGR)
        bgr = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        bgr = cv2.resize(bgr, (big, big), interpolation=cv2.INTER_LINEAR)
        found = finder.find(bgr)
        if len(found) != 1:
            continue
        r = found[0]
        x, y, w, h = r.x / scale - pad, r.y / scale - pad, r.w / scale, r.h / scale
        centres.append(((size / 2 - x) / w, (size / 2 - y) / h))
        sides.append((size / w, size / h))
    if len(centres) < MIN_FACES:
        _log.warning("face crop layout: the Haar finder found a single face in %d of %d crops; expected at least "
                     "%d, so no layout is claimed", len(centres), len(pick), MIN_FACES)
        return None
    cx, cy = np.median(np.asarray(centres), axis=0)
    side = float(np.median(np.asarray(sides)))
    box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    return {"detector": "haar", "box": [round(float(v), 4) for v in box], "faces_found": len(centres),
            "faces_tried": int(len(pick))}
