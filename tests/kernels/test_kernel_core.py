"""The C++ core validates its own arguments (C++ users call it without the Python checks)."""
from __future__ import annotations

import numpy as np
import pytest

_fused = pytest.importorskip("privsdk._fused", reason="the C++ extension privsdk._fused is not built")


def _pre(**over):
    args = dict(frame=np.zeros((20, 30, 3), np.uint8), x=0, y=0, w=30, h=20,
                scale=np.ones((3, 4, 5), np.float32), shift=np.zeros((3, 4, 5), np.float32), sigma=None,
                out=np.full((3, 4, 5), -7.0, np.float32), noise_outputs=[], rng=None, swap_rb=True, threads=1)
    args.update(over)
    return args


@pytest.mark.parametrize("over,name", [
    (dict(w=0), "roi"),
    (dict(x=25, w=10), "roi"),
    (dict(y=-1), "roi"),
    (dict(frame=np.zeros((20, 30, 4), np.uint8)), "frame"),
    (dict(frame=np.zeros((20, 30), np.uint8)), "frame"),
    (dict(frame=np.zeros((20, 30, 3), np.int16)), "frame"),
    (dict(scale=np.full((3, 4, 5), np.nan, np.float32)), "scale"),
    (dict(shift=np.full((3, 4, 5), np.inf, np.float32)), "shift"),
    (dict(sigma=np.full((3, 4, 5), -1.0, np.float32)), "sigma"),
    (dict(sigma=np.full((3, 4, 5), 0.5, np.float32)), "rng"),  # noise drawn, no generator
    (dict(shift=np.zeros((3, 4, 6), np.float32)), "shift"),
    (dict(scale=np.ones((3, 8, 5), np.float32)[:, ::2]), "scale"),  # not contiguous
    (dict(out=np.zeros((3, 4, 6), np.float32)), "out"),
    (dict(threads=-1), "threads"),
])
def test_core_pre_rejects(over, name) -> None:
    args = _pre(**over)
    with pytest.raises(ValueError, match=rf"^{name}"):
        _fused.pre(**args)
    if args["out"].shape == (3, 4, 5):
        assert (args["out"] == -7.0).all()


def test_core_post_checks_y_before_writing() -> None:
    frame = np.full((10, 10, 3), 7, np.uint8)
    y = np.zeros((3, 4, 4), np.float32)
    y[2, 3, 3] = np.nan
    with pytest.raises(ValueError, match="^y: .*NaN"):
        _fused.post(y, frame, 0, 0, 10, 10, None, None, True, 2)
    assert (frame == 7).all()
    ro = np.zeros((10, 10, 3), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^frame"):
        _fused.post(np.zeros((3, 4, 4), np.float32), ro, 0, 0, 10, 10, None, None, True, 1)


def test_half_conversion_matches_numpy_exhaustively() -> None:
    bits = np.arange(2**16, dtype=np.uint16)
    halves = bits.view(np.float16)
    floats = halves.astype(np.float32)
    back = np.array([_fused.float_to_half(float(f)) for f in floats[::7]], np.uint16)
    finite = np.isfinite(halves[::7])
    np.testing.assert_array_equal(back[finite], bits[::7][finite])
    got = np.array([_fused.half_to_float(int(b)) for b in bits[::5]], np.float32)
    np.testing.assert_array_equal(got[np.isfinite(floats[::5])], floats[::5][np.isfinite(floats[::5])])
    assert np.isnan(_fused.half_to_float(0x7E00))


def test_half_rounding_matches_numpy_on_random_and_edge_floats() -> None:
    rng = np.random.default_rng(0)
    xs = np.concatenate([
        rng.normal(0, 1, 3000), rng.normal(0, 3e4, 1000), rng.normal(0, 1e-5, 1000), rng.normal(0, 1e-7, 500),
        [65504.0, 65519.0, 65520.0, 1e6, -1e6, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-14, 0.0, -0.0],
        # exact ties between two halves: round to even
        [1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 2.0**-14 + 2.0**-25],
    ]).astype(np.float32)
    got = np.array([_fused.float_to_half(float(x)) for x in xs], np.uint16)
    with np.errstate(over="ignore"):  # 65520 and 1e6 overflow to infinity, as they should
        want = xs.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got, want)


def test_core_rejected_call_takes_no_call_number() -> None:
    rng = _fused.NoiseSource(5)
    args = _pre(sigma=np.full((3, 4, 5), 0.5, np.float32), rng=rng, threads=-2)
    with pytest.raises(ValueError, match="^threads"):
        _fused.pre(**args)
    assert rng.next_call() == 0
