"""PreparedMaps: maps checked once give the same output as pre(), and the per-call scan is really gone."""
from __future__ import annotations

import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.kernels import NoiseSource, PreparedMaps, pre
from privsdk.kernels import reference as ref


def _maps(rng: np.random.Generator, h: int, w: int):
    scale = rng.uniform(0.5, 2.0, (3, h, w)).astype(np.float32)
    shift = rng.uniform(-1.0, 1.0, (3, h, w)).astype(np.float32)
    sigma = rng.uniform(0.0, 0.3, (3, h, w)).astype(np.float32)
    return scale, shift, sigma


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_prepared_equals_pre_bit_for_bit(dtype) -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (57, 83, 3), dtype=np.uint8)
    scale, shift, sigma = _maps(rng, 19, 23)
    prepared = PreparedMaps(scale, shift, sigma)
    a, b = NoiseSource(seed=4), NoiseSource(seed=4)
    for _ in range(2):  # consecutive calls stay in step
        extra_a, extra_b = [np.empty((2, 7, 5), dtype)], [np.empty((2, 7, 5), dtype)]
        got = prepared.pre(frame, (3, 4, 50, 41), dtype=dtype, noise_outputs=extra_a, rng=a, threads=2)
        want = pre(frame, (3, 4, 50, 41), scale, shift, sigma, dtype=dtype, noise_outputs=extra_b, rng=b)
        assert got.dtype == dtype and got.shape == (3, 19, 23)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(extra_a[0], extra_b[0])


def test_prepared_without_noise_takes_no_call() -> None:
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    scale, shift, _ = _maps(rng, 9, 11)
    for sigma in (None, np.zeros_like(scale)):
        prepared = PreparedMaps(scale, shift, sigma)
        assert not prepared.sigma_nonzero
        src = NoiseSource(seed=1)
        out = np.empty((3, 9, 11), np.float32)
        assert prepared.pre(frame, None, out=out, rng=src) is out
        np.testing.assert_array_equal(out, pre(frame, None, scale, shift))
        assert src.next_call() == 0
    assert PreparedMaps(scale, shift, np.full_like(scale, 0.1)).sigma_nonzero


def test_bad_maps_fail_when_prepared_with_pre_messages() -> None:
    scale = np.ones((3, 4, 4), np.float32)
    shift = np.zeros_like(scale)
    bad_shift = shift.copy()
    bad_shift[1, 2, 3] = np.nan
    with pytest.raises(InputError, match=r"^shift: contains NaN or infinity"):
        PreparedMaps(scale, bad_shift)
    with pytest.raises(InputError, match=r"^sigma: contains negative values"):
        PreparedMaps(scale, shift, np.full_like(scale, -0.1))
    with pytest.raises(InputError, match=r"^shift: expected shape \(3, 4, 4\)"):
        PreparedMaps(scale, np.zeros((3, 4, 5), np.float32))
    with pytest.raises(InputError, match=r"^scale: expected a float32 array"):
        PreparedMaps(scale.astype(np.float64), shift)


def test_other_arguments_are_still_checked() -> None:
    prepared = PreparedMaps(np.ones((3, 4, 4), np.float32), np.zeros((3, 4, 4), np.float32),
                            np.full((3, 4, 4), 0.1, np.float32))
    frame = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(InputError, match=r"^rng: expected a privsdk NoiseSource"):
        prepared.pre(frame, None)
    with pytest.raises(InputError, match=r"^roi: "):
        prepared.pre(frame, (5, 5, 10, 10), rng=NoiseSource())
    with pytest.raises(InputError, match=r"^out: expected shape \(3, 4, 4\)"):
        prepared.pre(frame, None, out=np.empty((3, 4, 5), np.float32), rng=NoiseSource())
    with pytest.raises(InputError, match=r"^frame: "):
        prepared.pre(np.zeros((10, 10, 4), np.uint8), None, rng=NoiseSource())


def test_maps_are_private_read_only_copies() -> None:
    scale = np.ones((3, 4, 4), np.float32)
    shift = np.zeros_like(scale)
    prepared = PreparedMaps(scale, shift)
    frame = np.full((8, 8, 3), 255, np.uint8)
    before = prepared.pre(frame, None).copy()
    scale[...] = np.nan  # the caller's later change neither leaks in nor bypasses the check
    np.testing.assert_array_equal(prepared.pre(frame, None), before)
    with pytest.raises(ValueError):
        prepared.scale[0, 0, 0] = 2.0


def test_the_per_call_scan_is_skipped() -> None:
    """What makes it faster: values are trusted after the check (pre itself would reject this)."""
    scale = np.ones((3, 4, 4), np.float32)
    prepared = PreparedMaps(scale, np.zeros_like(scale))
    prepared.shift.flags.writeable = True  # tamper with the private copy, past the one-time check
    prepared.shift[0, 1, 1] = np.inf
    got = prepared.pre(np.zeros((8, 8, 3), np.uint8), None)
    assert np.isinf(got[0, 1, 1]) and np.isfinite(np.delete(got.reshape(-1), 5)).all()
    with pytest.raises(InputError, match=r"^shift: contains NaN or infinity"):
        pre(np.zeros((8, 8, 3), np.uint8), None, prepared.scale, prepared.shift)


def test_reference_fallback_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the extension PreparedMaps runs the numpy reference with its maps."""
    import privsdk.kernels as kernels

    monkeypatch.setattr(kernels, "IMPLEMENTATION", "numpy")
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    scale, shift, sigma = _maps(rng, 6, 7)
    prepared = PreparedMaps(scale, shift, sigma)
    got = prepared.pre(frame, None, rng=ref.NoiseSource(seed=2))
    np.testing.assert_array_equal(got, ref.pre(frame, None, scale, shift, sigma, rng=ref.NoiseSource(seed=2)))
