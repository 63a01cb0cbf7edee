"""Euclidean image registration by ECC maximisation: the C++ core when built, else OpenCV's.

Head levelling (:mod:`privsdk.regions.level`) registers each face's upper part onto a template with a
rotation and a shift. OpenCV's ``cv2.findTransformECC`` (``MOTION_EUCLIDEAN``) defines the method; the
C++ core's ``ecc_euclidean`` (``cpp_ext/src/ecc.cpp``) runs the same iteration -- the same smoothing,
masks, fixed-point bilinear sampling, update and stopping rule -- in one pass per step where OpenCV warps
three whole images, about three times faster on a 64×64 face (bench/RESULTS.md). The tests check the two
against each other on real faces: the same warp to float rounding for the first steps, and a median roll
difference of 0.002° once converged. Where a face is tilted 5° or more the criterion is flat and float
rounding alone can move the end point (1.4% of SMILEsmileD's faces by more than 0.5°, at about the same
correlation); OpenCV's own SIMD paths differ from machine to machine in the same way.

Example::

    import numpy as np
    from privsdk.regions.ecc import register_euclidean
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    face = (0.5 + 0.4 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.float32)
    shifted = np.roll(face, 2, axis=1)
    warp = register_euclidean(face, shifted)     # 2×3 float32, template -> image pixels; tx about 2
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..deps import import_cv2
from ..errors import InputError

try:  # the compiled core (privsdk._fused); absent only when privsdk was installed without a compiler
    from .. import _fused  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised when the build is absent
    _fused = None

#: which implementation registers faces: "cpp" (privsdk._fused) or "opencv" (cv2.findTransformECC)
IMPLEMENTATION = "cpp" if _fused is not None else "opencv"

#: ECC's settings for levelling: Gauss-Newton steps at most, the correlation's change that stops it, and
#: the Gaussian pre-filter's size
MAX_STEPS, STOP_EPS, GAUSS_SIZE = 50, 1e-4, 3

_STATUS_DIVERGED = 2   # ecc_euclidean's statuses 2 and 3 are OpenCV's StsNoConv errors


def grey01(image: np.ndarray) -> np.ndarray:
    """An H×W(×C) uint8 (0-255) or float (0-1) image as H×W float32 in 0-1: the channels' mean.

    The channels' mean, not a luma weighting, so that a colour order (RGB or BGR) changes nothing. The C++
    core computes the same values from a uint8 image (``privsdk::grey_mean01``).
    """
    x = np.asarray(image)
    unit = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32)
    if x.ndim == 3:
        x = x.mean(axis=2)
    return x / unit


def register_euclidean(template: np.ndarray, image: np.ndarray, mask: Optional[np.ndarray] = None,
                       max_steps: int = MAX_STEPS, eps: float = STOP_EPS, gauss_size: int = GAUSS_SIZE,
                       implementation: Optional[str] = None) -> Optional[np.ndarray]:
    """The rotation and shift that map ``template`` onto ``image``, or None when ECC does not converge.

    Args:
        template: H×W float32 grey image (0-1).
        image: H×W float32 grey image (0-1) of the template's size, or an H×W(×C) uint8 one, whose
            channels' mean (:func:`grey01`) is registered (computed in C++ with the core).
        mask: H×W uint8, nonzero where ``image`` is to be used (None: everywhere).
        max_steps, eps, gauss_size: ECC's criteria (``cv2.TERM_CRITERIA_COUNT | EPS``) and pre-filter.
        implementation: "cpp" or "opencv"; None takes :data:`IMPLEMENTATION`.

    Returns:
        The 2×3 float32 map from template to image pixel coordinates (``[[cos, -sin, tx], [sin, cos, ty]]``),
        or None where OpenCV would raise its "did not converge" error (a flat or unrelated image).
    """
    t, im = np.asarray(template), np.asarray(image)
    grey_ok = im.dtype == np.float32 and im.ndim == 2
    bytes_ok = im.dtype == np.uint8 and im.ndim in (2, 3)
    if t.dtype != np.float32 or t.ndim != 2 or not (grey_ok or bytes_ok) or t.shape != im.shape[:2]:
        raise InputError(f"ECC registration: expected an H×W float32 template and an image of one size with it "
                         f"(H×W float32, or H×W(×C) uint8), got template {t.dtype} {t.shape} and image "
                         f"{im.dtype} {im.shape}")
    if mask is not None and (mask.dtype != np.uint8 or mask.shape != t.shape):
        raise InputError(f"ECC registration: expected a uint8 mask of shape {t.shape}, got {mask.dtype} {mask.shape}")
    chosen = implementation or IMPLEMENTATION
    warp = np.eye(2, 3, dtype=np.float32)
    if chosen == "cpp":
        if _fused is None:
            raise InputError("ECC registration: implementation 'cpp' asked for, but privsdk._fused is not built")
        status, _, _ = _fused.ecc_euclidean(np.ascontiguousarray(t), np.ascontiguousarray(im),
                                            None if mask is None else np.ascontiguousarray(mask), warp,
                                            int(max_steps), float(eps), int(gauss_size))
        return None if status >= _STATUS_DIVERGED else warp
    if chosen != "opencv":
        raise InputError(f"ECC registration: implementation {chosen!r}; expected 'cpp' or 'opencv'")
    if bytes_ok:
        im = grey01(im)
    cv2 = import_cv2("head levelling")
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(max_steps), float(eps))
    try:
        _, warp = cv2.findTransformECC(t, np.ascontiguousarray(im), warp, cv2.MOTION_EUCLIDEAN, criteria,
                                       mask, int(gauss_size))
    except cv2.error:       # no convergence (e.g. a blank face): no estimate, not a guess
        return None
    return warp


__all__ = ["register_euclidean", "grey01", "IMPLEMENTATION", "MAX_STEPS", "STOP_EPS", "GAUSS_SIZE"]
