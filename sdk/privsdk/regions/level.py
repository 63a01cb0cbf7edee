"""Head levelling: each face is cut out of the frame turned level, so the head's roll is not passed on.

Why: people tilt their heads when they smile for a photo. On SMILEsmileD the head's roll and shift in
the crop alone read the smile at 0.626 balanced accuracy (the *pose floor* of ``privsdk eval``), so a
filter that leaves the head where it is can never hide the smile better than that. A bundle whose
manifest has ``input.level_head`` turns every face level as it crops it: the upper part of the face
(eyes and brows, above the mouth) is registered onto the bundle's template face by ECC maximisation
(a rotation and a shift; :mod:`privsdk.regions.ecc`), and the crop is cut out of the frame turned back
by the roll found. The filtered face is pasted back level: the roll is the price, and the manifest
says so.

A face whose registration fails (no convergence, or an implausible roll or shift) is cut out as it is,
unlevelled -- the same as the evaluation measured -- and counted by the Filter (``stats.unlevelled``).

Example::

    import numpy as np
    from privsdk.regions.level import HeadLeveller
    template = np.full((64, 64), 0.5, np.float32)
    template[18:24, 14:26] = template[18:24, 38:50] = 0.1        # two dark eyes
    frame = np.repeat((template * 255).astype(np.uint8)[..., None], 3, axis=2)
    leveller = HeadLeveller(template)
    crop, roll = leveller.crop(frame, None)    # 64×64×3 uint8, the roll found (about 0°) or None
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..deps import import_cv2
from ..errors import InputError
from .ecc import grey01, register_euclidean

#: the share of the crop's rows (from the top) that is registered: down to the nose on aligned face crops
UPPER_SHARE = 0.5
#: a registration that turns the face further than this, in degrees, is taken as failed
MAX_ROLL_DEG = 30.0
#: ... or shifts its centre further than this share of the crop's side
MAX_SHIFT_SHARE = 0.125


class HeadLeveller:
    """Registers a face crop's upper part onto a template face and cuts the face out level.

    Args:
        template: H×W float grey face in 0-1 (the training faces' mean face): the crops it levels are
            H×W, framed like the faces the template was made from.
        upper_share: the top share of rows registered (0.1-1).
        max_roll_deg, max_shift_share: a registration beyond these is taken as failed.
        recentre: undo the registration whole (shift as well as roll), so the face sits where the
            template's does. Measured on SMILEsmileD it hid the smile *less* than the roll alone
            (docs/emotion-methods.md, "After 0.1.0"), so no bundle asks for it; it is here to be measured.
    """

    def __init__(self, template: np.ndarray, upper_share: float = UPPER_SHARE,
                 max_roll_deg: float = MAX_ROLL_DEG, max_shift_share: float = MAX_SHIFT_SHARE,
                 recentre: bool = False) -> None:
        t = np.asarray(template)
        if t.ndim != 2 or min(t.shape) < 8 or not np.issubdtype(t.dtype, np.floating):
            raise InputError(f"head levelling template: expected an H×W float array (H, W ≥ 8) in 0-1, "
                             f"got dtype={t.dtype} shape={t.shape}")
        if not np.isfinite(t).all() or t.min() < 0.0 or t.max() > 1.0 or float(t.std()) < 1e-3:
            raise InputError("head levelling template: expected finite values in 0-1 with some contrast "
                             "(a face), got NaN, values outside 0-1, or a flat image")
        if not 0.1 <= float(upper_share) <= 1.0:
            raise InputError(f"head levelling upper_share {upper_share!r}: expected 0.1-1")
        if not 0.0 < float(max_roll_deg) <= 90.0 or not 0.0 < float(max_shift_share) <= 0.5:
            raise InputError(f"head levelling limits: max_roll_deg {max_roll_deg!r} (expected 0-90) and "
                             f"max_shift_share {max_shift_share!r} (expected 0-0.5)")
        self.cv2 = import_cv2("head levelling")
        self.template = np.ascontiguousarray(t, np.float32)
        self.size: Tuple[int, int] = (int(t.shape[0]), int(t.shape[1]))
        self.upper_share, self.max_roll_deg = float(upper_share), float(max_roll_deg)
        self.max_shift_share = float(max_shift_share)
        self.recentre = bool(recentre)
        h, w = self.size
        self._mask = np.zeros((h, w), np.uint8)
        self._mask[: max(2, int(round(self.upper_share * h)))] = 1
        self._centre = ((w - 1) / 2.0, (h - 1) / 2.0)

    @classmethod
    def from_manifest(cls, spec: Mapping[str, Any], template: np.ndarray) -> "HeadLeveller":
        """From a bundle's ``input.level_head`` section and its template."""
        return cls(template, float(spec.get("upper_share", UPPER_SHARE)),
                   float(spec.get("max_roll_deg", MAX_ROLL_DEG)), float(spec.get("max_shift_share", MAX_SHIFT_SHARE)))

    def describe(self) -> str:
        h, w = self.size
        return f"head levelling (ECC on the top {self.upper_share:.0%} of a {w}×{h} template)"

    def register(self, crop: np.ndarray) -> Optional[Tuple[float, float, float]]:
        """``(roll°, shift x, shift y)`` of a template-sized crop, or None when the registration fails.

        Roll is positive when the face is turned clockwise in the picture; the shift is that of the
        crop's centre in pixels. ``crop`` is H×W(×C), uint8 (0-255) or float (0-1).
        """
        found = self._register(crop)
        return None if found is None else found[0]

    def _register(self, crop: np.ndarray) -> Optional[Tuple[Tuple[float, float, float], np.ndarray]]:
        """``((roll, sx, sy), W)``: W is the 2×3 map from template to crop pixels (ECC's); None on failure."""
        image = np.asarray(crop)
        if image.shape[:2] != self.size:
            raise InputError(f"head levelling: the crop is {image.shape[:2]}, the template {self.size}; expected the "
                             "same size")
        # a uint8 crop goes as it is: the core takes the channels' mean itself (grey01's values)
        warp = register_euclidean(self.template, np.ascontiguousarray(image) if image.dtype == np.uint8 else
                                  np.ascontiguousarray(grey01(image)), self._mask)
        if warp is None:        # no convergence (e.g. a blank face): no estimate, not a guess
            return None
        a, b, tx, c, d, ty = warp.ravel().astype(np.float64)
        roll = math.degrees(math.atan2(c, a))
        cx, cy = self._centre
        # the shift of the crop's centre, so that a roll about the centre does not read as a shift
        sx, sy = a * cx + b * cy + tx - cx, c * cx + d * cy + ty - cy
        h, w = self.size
        if abs(roll) > self.max_roll_deg or max(abs(sx), abs(sy)) > self.max_shift_share * max(h, w):
            return None
        return (roll, sx, sy), warp.astype(np.float64)

    def _frame_to_crop(self, frame_shape: Tuple[int, ...], roi: Optional[Sequence[int]]) -> np.ndarray:
        """The 3×3 map from frame pixels to crop pixels (pixel centres aligned, as the pre-kernel resizes)."""
        h, w = self.size
        x0, y0, bw, bh = (0, 0, frame_shape[1], frame_shape[0]) if roi is None else (int(v) for v in roi)
        if bw <= 0 or bh <= 0:
            raise InputError(f"head levelling: region {roi!r} is empty; expected (x, y, w, h) with w, h > 0")
        sx, sy = w / float(bw), h / float(bh)
        return np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5], [0.0, 0.0, 1.0]])

    def crop(self, frame: np.ndarray, roi: Optional[Sequence[int]],
             out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[float]]:
        """Cut the region ``roi`` (x, y, w, h; None: the whole frame) out of ``frame`` at the template's size, level.

        The crop is registered first; when that succeeds it is cut again from the frame turned back by the
        roll found (about the crop's centre), so its corners hold the frame's own pixels where the frame has
        them (edges replicated beyond it). Returns the H×W×C uint8 crop (``out`` when given) and the roll
        in degrees, or None when the face could not be registered (the crop is then unlevelled).
        """
        cv2 = self.cv2
        h, w = self.size
        to_crop = self._frame_to_crop(frame.shape, roi)
        if out is None:
            out = np.empty((h, w, *frame.shape[2:]), np.uint8)
        elif out.shape != (h, w, *frame.shape[2:]) or out.dtype != np.uint8:
            raise InputError(f"head levelling: out is {out.dtype} {out.shape}; expected uint8 {(h, w, *frame.shape[2:])}")
        flags, border = cv2.INTER_LINEAR, cv2.BORDER_REPLICATE
        out[...] = cv2.warpAffine(frame, to_crop[:2], (w, h), flags=flags, borderMode=border).reshape(out.shape)
        found = self._register(out)
        if found is None:
            return out, None
        roll = found[0][0]
        if self.recentre:     # the registration undone whole: the face turned level and moved onto the template's
            turn = np.linalg.inv(np.vstack([found[1], [0.0, 0.0, 1.0]]))
        else:                 # OpenCV's positive angle turns counter-clockwise: it undoes a clockwise (positive) roll
            turn = np.vstack([cv2.getRotationMatrix2D(self._centre, roll, 1.0), [0.0, 0.0, 1.0]])
        out[...] = cv2.warpAffine(frame, (turn @ to_crop)[:2], (w, h), flags=flags,
                                  borderMode=border).reshape(out.shape)
        return out, roll


__all__ = ["HeadLeveller", "grey01", "UPPER_SHARE", "MAX_ROLL_DEG", "MAX_SHIFT_SHARE"]
