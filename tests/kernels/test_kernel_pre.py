"""The C++ fused pre-kernel against the numpy reference (which defines the semantics)."""
from __future__ import annotations

import numpy as np
import pytest

from privsdk.kernels import reference as ref

cpp = pytest.importorskip("privsdk.kernels._cpp", reason="the C++ extension privsdk._fused is not built")


def _maps(rng: np.random.Generator, h: int, w: int, sigma: bool = True):
    scale = rng.uniform(0.5, 3.0, (3, h, w)).astype(np.float32)
    shift = rng.normal(0.0, 1.0, (3, h, w)).astype(np.float32)
    sig = rng.uniform(0.0, 0.5, (3, h, w)).astype(np.float32) if sigma else None
    return scale, shift, sig


def _frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


CASES = [
    # frame (h, w), roi (x, y, w, h) or None, output (h, w)
    ((37, 53), None, (17, 29)),          # odd sizes, downscale
    ((37, 53), (5, 3, 11, 7), (17, 29)),  # upscale of a small crop
    ((37, 53), (0, 0, 1, 1), (4, 6)),     # a single pixel
    ((37, 53), (40, 20, 13, 17), (9, 5)),  # touching the right and bottom borders
    ((64, 48), (0, 0, 48, 64), (64, 48)),  # identity size
    ((120, 90), (7, 11, 61, 83), (31, 23)),
]


@pytest.mark.parametrize("frame_hw,roi,out_hw", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_deterministic_part_equals_reference(frame_hw, roi, out_hw, dtype) -> None:
    rng = np.random.default_rng(hash((frame_hw, roi, out_hw)) & 0xFFFF)
    frame = _frame(rng, *frame_hw)
    scale, shift, _ = _maps(rng, *out_hw, sigma=False)
    got = cpp.pre(frame, roi, scale, shift, dtype=dtype)
    want = ref.pre(frame, roi, scale, shift, dtype=dtype)
    assert got.dtype == want.dtype == np.dtype(dtype)
    assert got.shape == (3, *out_hw)
    # Same float32 operations in the same order (-ffp-contract=off): equal to rounding.
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_real_face_crop_matches_reference(astronaut_bgr: np.ndarray) -> None:
    scale = np.full((3, 64, 64), 1 / 0.25, np.float32)
    shift = np.full((3, 64, 64), -0.5 / 0.25, np.float32)
    roi = (150, 40, 160, 190)  # the astronaut's face
    got = cpp.pre(astronaut_bgr, roi, scale, shift)
    np.testing.assert_allclose(got, ref.pre(astronaut_bgr, roi, scale, shift), rtol=1e-6, atol=1e-6)
    # Channel 0 is red: BGR -> RGB happened (the astronaut's suit is not grey).
    assert not np.allclose(got[0], got[2])


@pytest.mark.parametrize("view", ["step", "flip", "channels_last_not_contiguous", "fortran"])
def test_strided_views_are_read_in_place(view: str) -> None:
    rng = np.random.default_rng(3)
    base = _frame(rng, 75, 160)
    frame = {
        "step": base[::2, 1::3],
        "flip": base[::-1, ::-1],
        "channels_last_not_contiguous": np.ascontiguousarray(base.transpose(2, 0, 1)).transpose(1, 2, 0),
        "fortran": np.asfortranarray(base),
    }[view]
    assert not frame.flags.c_contiguous
    scale, shift, _ = _maps(rng, 19, 23, sigma=False)
    roi = (1, 2, frame.shape[1] - 3, frame.shape[0] - 2)
    got = cpp.pre(frame, roi, scale, shift)
    want = ref.pre(np.ascontiguousarray(frame), roi, scale, shift)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_swap_rb_false_keeps_bgr_order() -> None:
    rng = np.random.default_rng(4)
    frame = _frame(rng, 30, 40)
    scale, shift, _ = _maps(rng, 8, 8, sigma=False)
    got = cpp.pre(frame, None, scale, shift, swap_rb=False)
    np.testing.assert_allclose(got, ref.pre(frame, None, scale, shift, swap_rb=False), rtol=1e-6, atol=1e-6)
    assert not np.allclose(got, cpp.pre(frame, None, scale, shift))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_seeded_noise_equals_reference(dtype) -> None:
    rng = np.random.default_rng(5)
    frame = _frame(rng, 41, 67)
    scale, shift, sigma = _maps(rng, 13, 21)
    extra_c = [np.empty((2, 5, 7), dtype), np.empty((1, 3, 3), np.float32)]
    extra_r = [np.empty_like(t) for t in extra_c]
    src_c, src_r = cpp.NoiseSource(seed=1234), ref.NoiseSource(seed=1234)
    for _ in range(3):  # consecutive calls stay in step (call counter)
        got = cpp.pre(frame, (2, 3, 30, 33), scale, shift, sigma, dtype=dtype, noise_outputs=extra_c, rng=src_c)
        want = ref.pre(frame, (2, 3, 30, 33), scale, shift, sigma, dtype=dtype, noise_outputs=extra_r, rng=src_r)
        tol = 2e-3 if dtype == np.float16 else 2e-5
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=tol, atol=tol)
        for a, b in zip(extra_c, extra_r):
            np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=tol, atol=tol)
    # The noise really was added: the result differs from the noiseless one.
    assert np.abs(got.astype(np.float32) - cpp.pre(frame, (2, 3, 30, 33), scale, shift).astype(np.float32)).max() > 0.1


def test_reference_noise_source_is_accepted_and_consumes_a_call() -> None:
    rng = np.random.default_rng(6)
    frame = _frame(rng, 20, 20)
    scale, shift, sigma = _maps(rng, 6, 6)
    a, b = ref.NoiseSource(seed=9), ref.NoiseSource(seed=9)
    got = cpp.pre(frame, None, scale, shift, sigma, rng=a)
    want = ref.pre(frame, None, scale, shift, sigma, rng=b)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert a.next_call() == b.next_call() == 1


def test_zero_sigma_draws_no_noise_and_takes_no_call() -> None:
    rng = np.random.default_rng(7)
    frame = _frame(rng, 20, 30)
    scale, shift, _ = _maps(rng, 9, 9, sigma=False)
    src = cpp.NoiseSource(seed=1)
    got = cpp.pre(frame, None, scale, shift, np.zeros_like(scale), rng=src)
    np.testing.assert_array_equal(got, cpp.pre(frame, None, scale, shift))
    assert src.next_call() == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_seeded_output_is_identical_for_any_thread_count(dtype) -> None:
    rng = np.random.default_rng(8)
    frame = _frame(rng, 90, 130)
    scale, shift, sigma = _maps(rng, 37, 45)
    outs = []
    for threads in (1, 2, 3, 4, 0):
        extra = [np.empty((5, 11, 13), dtype)]
        x = cpp.pre(frame, (3, 5, 120, 80), scale, shift, sigma, dtype=dtype, noise_outputs=extra,
                    rng=cpp.NoiseSource(seed=77), threads=threads)
        outs.append((x, extra[0]))
    for x, e in outs[1:]:
        np.testing.assert_array_equal(x, outs[0][0])
        np.testing.assert_array_equal(e, outs[0][1])


def test_out_is_written_in_place_and_returned() -> None:
    rng = np.random.default_rng(9)
    frame = _frame(rng, 25, 25)
    scale, shift, _ = _maps(rng, 10, 12, sigma=False)
    out = np.full((3, 10, 12), np.nan, np.float16)
    got = cpp.pre(frame, None, scale, shift, out=out)
    assert got is out
    np.testing.assert_array_equal(out, ref.pre(frame, None, scale, shift, dtype=np.float16))


def test_concurrent_calls_from_python_threads_are_correct() -> None:
    """The GIL is released during the kernel: concurrent calls must not interfere."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(10)
    frame = _frame(rng, 120, 160)
    scale, shift, sigma = _maps(rng, 48, 48)
    want = [cpp.pre(frame, (k, k, 100, 90), scale, shift, sigma, rng=cpp.NoiseSource(seed=k)) for k in range(8)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: cpp.pre(frame, (k, k, 100, 90), scale, shift, sigma,
                                              rng=cpp.NoiseSource(seed=k), threads=2), range(8)))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
