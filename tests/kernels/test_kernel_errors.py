"""Bad input to the fused kernels: a ValueError naming the argument, and nothing written."""
from __future__ import annotations

import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.kernels import reference as ref

try:
    from privsdk.kernels import _cpp
except ImportError:  # extension not built: the reference is still checked
    _cpp = None

IMPLS = [pytest.param(ref, id="numpy"),
         pytest.param(_cpp, id="cpp", marks=pytest.mark.skipif(_cpp is None, reason="privsdk._fused not built"))]

H, W = 8, 10


def _args():
    frame = np.arange(30 * 40 * 3, dtype=np.uint8).reshape(30, 40, 3)
    scale = np.ones((3, H, W), np.float32)
    return frame, scale, np.zeros_like(scale), np.full_like(scale, 0.1)


def _pre_raises(impl, name: str, *, frame=None, roi=(1, 2, 20, 15), scale=None, shift=None, sigma=None,
                **kw) -> None:
    f0, s0, sh0, sg0 = _args()
    out = np.full((3, H, W), -7.0, np.float32)
    extra = kw.pop("noise_outputs", [np.full((4,), -7.0, np.float32)])
    with pytest.raises(ValueError) as info:
        impl.pre(f0 if frame is None else frame, roi, s0 if scale is None else scale,
                 sh0 if shift is None else shift, sg0 if sigma is None else sigma, out=out,
                 noise_outputs=extra, rng=kw.pop("rng", impl.NoiseSource(seed=1)), **kw)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(name + ":"), str(info.value)
    assert (out == -7.0).all(), "pre wrote into out before failing"
    for t in extra:
        if isinstance(t, np.ndarray) and t.dtype.kind == "f":
            assert (t == -7.0).all(), "pre wrote into a noise output before failing"


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_wrong_frame_dtype(impl) -> None:
    _pre_raises(impl, "frame", frame=np.zeros((30, 40, 3), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_wrong_channel_count(impl) -> None:
    _pre_raises(impl, "frame", frame=np.zeros((30, 40, 4), np.uint8))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_two_dimensional_frame(impl) -> None:
    _pre_raises(impl, "frame", frame=np.zeros((30, 40), np.uint8))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_not_an_array(impl) -> None:
    _pre_raises(impl, "frame", frame=[[[0, 0, 0]]])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("roi", [(1, 2, 0, 15), (1, 2, 20, 0), (1, 2, -3, 4)])
def test_pre_zero_size_roi(impl, roi) -> None:
    _pre_raises(impl, "roi", roi=roi)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("roi", [(30, 2, 20, 15), (-1, 0, 5, 5), (0, 20, 5, 11), (0, 0, 41, 30)])
def test_pre_roi_outside_frame(impl, roi) -> None:
    _pre_raises(impl, "roi", roi=roi)


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_roi_not_integers(impl) -> None:
    _pre_raises(impl, "roi", roi=(1.5, 2, 3, 4))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_mismatched_shift_shape(impl) -> None:
    _pre_raises(impl, "shift", shift=np.zeros((3, H, W + 1), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_mismatched_sigma_shape(impl) -> None:
    _pre_raises(impl, "sigma", sigma=np.zeros((3, H + 1, W), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_map_wrong_channels(impl) -> None:
    _pre_raises(impl, "scale", scale=np.ones((4, H, W), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_map_wrong_dtype(impl) -> None:
    _pre_raises(impl, "scale", scale=np.ones((3, H, W), np.float64))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("which", ["scale", "shift", "sigma"])
def test_pre_nan_in_maps(impl, which) -> None:
    bad = _args()[{"scale": 1, "shift": 2, "sigma": 3}[which]].copy()
    bad[1, 3, 4] = np.nan
    _pre_raises(impl, which, **{which: bad})


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_inf_in_map(impl) -> None:
    bad = np.ones((3, H, W), np.float32)
    bad[2, 7, 9] = np.inf
    _pre_raises(impl, "scale", scale=bad)


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_negative_sigma(impl) -> None:
    bad = np.full((3, H, W), 0.1, np.float32)
    bad[0, 0, 0] = -0.01
    _pre_raises(impl, "sigma", sigma=bad)


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_out_wrong_shape(impl) -> None:
    f, s, sh, sg = _args()
    with pytest.raises(InputError, match=r"^out:"):
        impl.pre(f, None, s, sh, out=np.empty((3, H, W + 1), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_out_wrong_dtype(impl) -> None:
    f, s, sh, sg = _args()
    with pytest.raises(InputError, match=r"^out:"):
        impl.pre(f, None, s, sh, out=np.empty((3, H, W), np.float64))


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_bad_dtype_argument(impl) -> None:
    f, s, sh, sg = _args()
    with pytest.raises(InputError, match=r"^dtype:"):
        impl.pre(f, None, s, sh, dtype=np.int32)


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_bad_noise_output(impl) -> None:
    _pre_raises(impl, "noise_outputs[1]", noise_outputs=[np.full((4,), -7.0, np.float32),
                                                         np.full((4, 4), -7.0, np.float32)[:, ::2]])


@pytest.mark.parametrize("impl", IMPLS)
def test_pre_noise_without_rng(impl) -> None:
    _pre_raises(impl, "rng", rng=None)


# ------------------------------------------------------------------ post

def _post_raises(impl, name: str, *, y=None, frame=None, roi=(1, 2, 20, 15), **kw) -> None:
    f0 = np.full((30, 40, 3), 7, np.uint8)
    frame = f0 if frame is None else frame
    before = frame.copy() if isinstance(frame, np.ndarray) else None
    y = np.full((3, H, W), 0.5, np.float32) if y is None else y
    with pytest.raises(ValueError) as info:
        impl.post(y, frame, roi, **kw)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(name + ":"), str(info.value)
    if before is not None:
        np.testing.assert_array_equal(frame, before)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_post_nan_in_y_writes_nothing(impl, value) -> None:
    y = np.full((3, H, W), 0.5, np.float32)
    y[2, H - 1, W - 1] = value  # the very last element: a kernel that writes first would have written
    _post_raises(impl, "y", y=y)


@pytest.mark.parametrize("impl", IMPLS)
def test_post_nan_in_float16_y(impl) -> None:
    y = np.full((3, H, W), 0.5, np.float16)
    y[1, 0, 0] = np.nan
    _post_raises(impl, "y", y=y)


@pytest.mark.parametrize("impl", IMPLS)
def test_post_read_only_frame(impl) -> None:
    frame = np.full((30, 40, 3), 7, np.uint8)
    frame.flags.writeable = False
    _post_raises(impl, "frame", frame=frame)


@pytest.mark.parametrize("impl", IMPLS)
def test_post_wrong_frame_dtype(impl) -> None:
    _post_raises(impl, "frame", frame=np.zeros((30, 40, 3), np.uint16))


@pytest.mark.parametrize("impl", IMPLS)
def test_post_wrong_channel_count(impl) -> None:
    _post_raises(impl, "frame", frame=np.zeros((30, 40, 1), np.uint8))


@pytest.mark.parametrize("impl", IMPLS)
def test_post_two_dimensional_frame(impl) -> None:
    _post_raises(impl, "frame", frame=np.zeros((30, 40), np.uint8))


@pytest.mark.parametrize("impl", IMPLS)
def test_post_wrong_y_shape(impl) -> None:
    _post_raises(impl, "y", y=np.zeros((1, H, W), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_post_roi_outside_frame(impl) -> None:
    _post_raises(impl, "roi", roi=(30, 20, 11, 5))


@pytest.mark.parametrize("impl", IMPLS)
def test_post_zero_size_roi(impl) -> None:
    _post_raises(impl, "roi", roi=(3, 3, 0, 5))


@pytest.mark.parametrize("impl", IMPLS)
def test_post_mismatched_map_shape(impl) -> None:
    _post_raises(impl, "scale", scale=np.ones((3, H + 1, W), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_post_nan_in_shift(impl) -> None:
    shift = np.zeros((3, H, W), np.float32)
    shift[0, 1, 1] = np.nan
    _post_raises(impl, "shift", shift=shift)


@pytest.mark.parametrize("impl", IMPLS)
def test_messages_say_what_was_got_and_expected(impl) -> None:
    with pytest.raises(InputError) as info:
        impl.pre(np.zeros((30, 40, 4), np.uint8), None, *_args()[1:3])
    msg = str(info.value)
    assert "expected 3 channels" in msg and "4" in msg
    with pytest.raises(InputError) as info:
        impl.pre(np.zeros((30, 40, 3), np.uint8), (35, 0, 10, 10), *_args()[1:3])
    assert "x=35" in str(info.value) and "expected" in str(info.value)


@pytest.mark.skipif(_cpp is None, reason="privsdk._fused not built")
def test_cpp_messages_equal_reference_messages() -> None:
    bad = np.ones((3, H, W), np.float32)
    bad[0, 0, 0] = np.nan
    for call in (lambda k: k.pre(np.zeros((30, 40, 2), np.uint8), None, *_args()[1:3]),
                 lambda k: k.pre(np.zeros((30, 40, 3), np.uint8), (0, 0, 50, 1), *_args()[1:3]),
                 lambda k: k.pre(np.zeros((30, 40, 3), np.uint8), None, bad, bad),
                 lambda k: k.post(np.full((3, 2, 2), np.nan, np.float32), np.zeros((5, 5, 3), np.uint8), None)):
        messages = []
        for impl in (ref, _cpp):
            with pytest.raises(InputError) as info:
                call(impl)
            messages.append(str(info.value))
        assert messages[0] == messages[1]


@pytest.mark.skipif(_cpp is None, reason="privsdk._fused not built")
def test_cpp_reports_the_first_error_in_the_reference_order() -> None:
    """Two bad arguments at once: the C++ path (whose value scans run in C++) names the same one first."""
    _, scale, shift, sigma = _args()
    nan = scale.copy()
    nan[1, 2, 3] = np.nan
    neg = sigma.copy()
    neg[2, 0, 0] = -1.0
    frame = np.zeros((30, 40, 3), np.uint8)
    cases = [
        dict(scale=nan, shift=shift[:, :2], sigma=sigma),                 # scale NaN before shift shape
        dict(scale=nan, shift=shift, sigma=sigma, out=np.empty((3, 2, 2), np.float32)),  # before out
        dict(scale=scale, shift=nan, sigma=neg),                          # shift NaN before negative σ
        dict(scale=scale, shift=shift, sigma=neg, noise_outputs=[np.empty(3, np.int32)]),  # σ before noise
        dict(scale=scale, shift=shift, sigma=sigma, rng=None),            # σ > 0 without a generator
        dict(scale=scale, shift=shift, sigma=sigma, rng="seed"),
        dict(scale=scale[:, :, ::2].copy(), shift=nan[:, :, 1::2], sigma=None),  # non-contiguous shift
    ]
    for case in cases:
        messages = []
        for impl in (ref, _cpp):
            kw = dict(case)
            if "rng" not in kw:
                kw["rng"] = impl.NoiseSource(seed=1)
            with pytest.raises(InputError) as info:
                impl.pre(frame, None, kw.pop("scale"), kw.pop("shift"), kw.pop("sigma"), **kw)
            messages.append(str(info.value))
        assert messages[0] == messages[1], case
