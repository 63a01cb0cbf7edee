"""The C++ fused post-kernel against the numpy reference: within ±1 uint8, in place, any strides."""
from __future__ import annotations

import numpy as np
import pytest

from privsdk.kernels import reference as ref

cpp = pytest.importorskip("privsdk.kernels._cpp", reason="the C++ extension privsdk._fused is not built")

CASES = [
    ((37, 53), None, (17, 29)),             # upscale into the whole frame
    ((37, 53), (5, 3, 11, 7), (17, 29)),     # downscale into a crop
    ((37, 53), (40, 20, 13, 17), (9, 5)),    # touching the right and bottom borders
    ((37, 53), (0, 0, 1, 1), (4, 6)),        # a single pixel
    ((120, 90), (7, 11, 61, 83), (64, 64)),
]


def _close(got: np.ndarray, want: np.ndarray) -> None:
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1, f"max |C++ - reference| = {diff.max()} uint8 levels"
    assert (diff == 0).mean() > 0.99  # off-by-one only where float rounding ties


@pytest.mark.parametrize("frame_hw,roi,y_hw", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_post_matches_reference(frame_hw, roi, y_hw, dtype) -> None:
    rng = np.random.default_rng(sum(frame_hw) + sum(y_hw))
    frame = rng.integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    y = rng.uniform(-0.2, 1.2, (3, *y_hw)).astype(dtype)  # includes values to clamp
    got, want = frame.copy(), frame.copy()
    assert cpp.post(y, got, roi) is got
    ref.post(y, want, roi)
    _close(got, want)
    if roi is not None:  # pixels outside the region are untouched
        x, y0, w, h = roi
        mask = np.ones(frame_hw, bool)
        mask[y0:y0 + h, x:x + w] = False
        np.testing.assert_array_equal(got[mask], frame[mask])


def test_post_with_maps_inverts_pre(astronaut_bgr: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    mean = rng.uniform(0.3, 0.6, (3, 64, 64)).astype(np.float32)
    std = rng.uniform(0.1, 0.3, (3, 64, 64)).astype(np.float32)
    roi = (150, 40, 160, 190)
    x = cpp.pre(astronaut_bgr, roi, 1 / std, -mean / std)
    got, want = astronaut_bgr.copy(), astronaut_bgr.copy()
    cpp.post(x, got, roi, scale=std, shift=mean)
    ref.post(x, want, roi, scale=std, shift=mean)
    _close(got, want)
    # Round trip through 64×64 keeps the face recognisable: small mean error.
    err = np.abs(got.astype(np.int16) - astronaut_bgr.astype(np.int16))[40:230, 150:310].mean()
    assert err < 12


@pytest.mark.parametrize("view", ["step", "flip", "fortran"])
def test_post_writes_into_strided_views(view: str) -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    base_ref = base.copy()
    pick = {"step": lambda a: a[1::2, ::3], "flip": lambda a: a[::-1, ::-1], "fortran": np.asfortranarray}[view]
    if view == "fortran":
        base, base_ref = np.asfortranarray(base), np.asfortranarray(base_ref)
        frame, frame_ref = base, base_ref
    else:
        frame, frame_ref = pick(base), pick(base_ref)
    y = rng.uniform(0, 1, (3, 13, 11)).astype(np.float32)
    roi = (2, 3, frame.shape[1] - 4, frame.shape[0] - 5)
    cpp.post(y, frame, roi)
    ref.post(y, frame_ref, roi)
    _close(base, base_ref)  # the same pixels of the underlying buffer were written


def test_post_swap_rb_and_threads() -> None:
    rng = np.random.default_rng(3)
    y = rng.uniform(0, 1, (3, 31, 17)).astype(np.float32)
    frames = []
    for threads in (1, 2, 4):
        f = np.zeros((200, 150, 3), np.uint8)
        cpp.post(y, f, (3, 4, 140, 190), swap_rb=False, threads=threads)
        frames.append(f)
    for f in frames[1:]:
        np.testing.assert_array_equal(f, frames[0])
    want = np.zeros((200, 150, 3), np.uint8)
    ref.post(y, want, (3, 4, 140, 190), swap_rb=False)
    _close(frames[0], want)


def test_post_clamps_and_rounds_exactly() -> None:
    y = np.empty((3, 2, 2), np.float32)
    y[0], y[1], y[2] = -5.0, 7.0, 0.5 / 255 * 3  # 0, 255, round(1.5) = 2
    f = np.full((2, 2, 3), 9, np.uint8)
    cpp.post(y, f, None)
    assert (f[..., 2] == 0).all() and (f[..., 1] == 255).all() and (f[..., 0] == 2).all()
