"""The fused kernels backed by the C++ extension ``privsdk._fused``.

Same signatures and semantics as :mod:`privsdk.kernels.reference` (which
defines them), and the same error messages: the structural checks run here
with the reference's ``check_*`` helpers, the value scans of the maps (NaN,
infinity, negative σ) run once in the C++ core, in the reference's order and
with its messages, and any unusual argument takes a path that runs every
check of the reference in Python. The C++ core then runs with the GIL
released, multi-threaded over output rows, without copying the frame (crops
and strided views are read in place).

Example::

    import numpy as np
    from privsdk.kernels._cpp import NoiseSource, pre, post
    frame = np.zeros((480, 640, 3), np.uint8)
    scale = np.ones((3, 64, 64), np.float32); shift = np.zeros_like(scale)
    sigma = np.full_like(scale, 0.1)
    x = pre(frame, (100, 50, 128, 128), scale, shift, sigma, rng=NoiseSource(seed=1))
    post(np.clip(x, 0, 1), frame, (100, 50, 128, 128))
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from .. import _fused  # type: ignore[attr-defined]
from ..errors import InputError, describe_array
from . import reference
from .reference import check_frame, check_map, check_out, check_roi

if TYPE_CHECKING:
    from .prepared import PreparedMaps

__all__ = ["NoiseSource", "pre", "pre_prepared", "post", "philox4x32_10"]


class NoiseSource:
    """A keyed Philox4x32-10 stream (C++); ``seed=None`` keys it from the OS entropy source.

    An explicit ``seed`` exists for tests only: a seeded source is replayable and
    gives the same numbers as :class:`privsdk.kernels.reference.NoiseSource`
    with the same seed. Thread-safe: each kernel call takes the next call number
    from an atomic counter.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        if seed is None:
            self._native = _fused.NoiseSource()
        else:
            if not isinstance(seed, (int, np.integer)) or seed < 0 or seed >= 2**64:
                raise InputError(f"seed: expected an int in [0, 2**64) or None, got {seed!r}")
            self._native = _fused.NoiseSource(int(seed))
        self.seeded = seed is not None

    def next_call(self) -> int:
        """Take the next call number (every kernel call that draws noise takes one)."""
        return int(self._native.next_call())

    def normals(self, n: int, tensor_id: int, call: int) -> np.ndarray:
        """``n`` N(0, 1) float32 values of tensor ``tensor_id`` of call ``call``."""
        return self._native.normals(int(n), int(tensor_id), int(call))


def philox4x32_10(counter: Sequence[int], key: Sequence[int]) -> np.ndarray:
    """The C++ Philox4x32-10 block function: 4 uint32 counter words, 2 key words -> 4 words."""
    return np.asarray(_fused.philox4x32_10([int(c) for c in counter], [int(k) for k in key]), dtype=np.uint32)


def _native_rng(rng: object, draws: bool) -> Optional[object]:
    """The C++ stream to draw from (None when nothing is drawn)."""
    if not draws:
        return None
    if isinstance(rng, NoiseSource):
        return rng._native
    if isinstance(rng, reference.NoiseSource):  # interoperate: same key, its next call number
        key64 = int(rng._key[0]) | (int(rng._key[1]) << 32)
        return _fused.NoiseSource(key64, rng.next_call(), rng.seeded)
    raise InputError(f"rng: expected a privsdk NoiseSource when noise is drawn, got {type(rng).__name__}")


def _contiguous(m: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if m is None else np.ascontiguousarray(m)


def _map_ok(m: object, shape: Optional[tuple] = None) -> bool:
    """True when ``m`` passes check_map's structural checks and is C-contiguous (values unchecked)."""
    return (type(m) is np.ndarray and m.dtype == np.float32 and m.ndim == 3 and m.shape[0] == 3
            and m.shape[1] > 0 and m.shape[2] > 0 and (shape is None or m.shape == shape)
            and m.flags.c_contiguous)


def _noise_tensor_ok(t: object) -> bool:
    return (isinstance(t, np.ndarray) and t.dtype in (np.float32, np.float16) and t.flags.c_contiguous
            and t.flags.writeable)


def _rng_message(rng: object) -> str:
    return f"rng: expected a privsdk NoiseSource when noise is drawn, got {type(rng).__name__}"


def pre(frame: np.ndarray, roi: Optional[Sequence[int]], scale: np.ndarray, shift: np.ndarray,
        sigma: Optional[np.ndarray] = None, *, out: Optional[np.ndarray] = None,
        dtype: object = np.float32, noise_outputs: Sequence[np.ndarray] = (),
        rng: Optional[NoiseSource] = None, swap_rb: bool = True, threads: int = 0) -> np.ndarray:
    """Fused pre-kernel: crop, bilinear resize, BGR->RGB, per-location affine and σ noise.

    ``frame``: uint8 H×W×3 BGR, any strides (views are read in place).
    ``roi``: ``(x, y, w, h)`` or None for the whole frame. ``scale``, ``shift``,
    ``sigma``: float32 3×H_o×W_o maps (``sigma`` optional, ≥ 0). Writes and
    returns ``out`` (3×H_o×W_o, float32 or float16, allocated with ``dtype`` when
    None) and fills every ``noise_outputs[k]`` with N(0, 1). ``rng`` is required
    when noise is drawn. ``threads=0`` uses all cores (1 for small outputs); the
    result is the same for any thread count. Raises
    :class:`privsdk.errors.InputError` naming the bad argument; nothing is
    written then.
    """
    frame = check_frame(frame)
    x, y, w, h = check_roi(roi, frame.shape)
    # Fast path: the structural checks here; the value scans of the maps (NaN,
    # inf, negative σ, any σ != 0) run once, in C++, in the reference's order and
    # with its messages. Anything unusual takes the fully checked path, which
    # raises exactly the reference's first error.
    fast = (_map_ok(scale) and _map_ok(shift, scale.shape) and (sigma is None or _map_ok(sigma, scale.shape))
            and (rng is None or isinstance(rng, NoiseSource))
            and isinstance(threads, (int, np.integer)) and threads >= 0
            and all(_noise_tensor_ok(t) for t in noise_outputs))
    if fast:
        shape = scale.shape
        if out is None:
            fast = dtype is np.float32 or dtype is np.float16 or np.dtype(dtype) in (np.float32, np.float16)  # type: ignore[call-overload]
            if fast:
                out = np.empty(shape, dtype=dtype)  # type: ignore[call-overload]
        else:
            fast = (type(out) is np.ndarray and out.dtype in (np.float32, np.float16) and out.shape == shape
                    and out.flags.c_contiguous and out.flags.writeable)
    if not fast:
        return _pre_checked(frame, (x, y, w, h), scale, shift, sigma, out=out, dtype=dtype,
                            noise_outputs=noise_outputs, rng=rng, swap_rb=swap_rb, threads=threads)
    native = rng._native if rng is not None else None
    try:
        _fused.pre(frame, x, y, w, h, scale, shift, sigma, out, list(noise_outputs), native, bool(swap_rb),
                   int(threads))
    except ValueError as exc:
        msg = str(exc)
        raise InputError(_rng_message(rng) if msg.startswith("rng:") else msg) from None
    return out


def _pre_checked(frame: np.ndarray, roi: Sequence[int], scale: np.ndarray, shift: np.ndarray,
                 sigma: Optional[np.ndarray], *, out: Optional[np.ndarray], dtype: object,
                 noise_outputs: Sequence[np.ndarray], rng: object, swap_rb: bool, threads: int) -> np.ndarray:
    """pre() with every check of the reference, in its order (the path for unusual arguments)."""
    x, y, w, h = roi
    scale = check_map(scale, "scale")
    shift = check_map(shift, "shift", scale.shape)
    if sigma is not None:
        sigma = check_map(sigma, "sigma", scale.shape, nonnegative=True)
    _, out_h, out_w = scale.shape
    if out is None:
        if np.dtype(dtype) not in (np.float32, np.float16):  # type: ignore[call-overload]
            raise InputError(f"dtype: expected float32 or float16, got {np.dtype(dtype)}")  # type: ignore[call-overload]
        out = np.empty((3, out_h, out_w), dtype=dtype)  # type: ignore[call-overload]
    else:
        check_out(out, (3, out_h, out_w))
    for k, t in enumerate(noise_outputs):
        if not _noise_tensor_ok(t):
            raise InputError(f"noise_outputs[{k}]: expected a C-contiguous writeable float32/float16 array, "
                             f"got {describe_array(t)}")
    draws = (sigma is not None and bool(sigma.any())) or len(noise_outputs) > 0
    native = _native_rng(rng, draws)
    if not isinstance(threads, (int, np.integer)) or threads < 0:
        raise InputError(f"threads: expected 0 (all cores) or a positive int, got {threads!r}")
    try:
        _fused.pre(frame, x, y, w, h, _contiguous(scale), _contiguous(shift), _contiguous(sigma), out,
                   list(noise_outputs), native, bool(swap_rb), int(threads))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return out


def pre_prepared(maps: "PreparedMaps", frame: np.ndarray, roi: Optional[Sequence[int]], *,
                 out: Optional[np.ndarray] = None, dtype: object = np.float32,
                 noise_outputs: Sequence[np.ndarray] = (), rng: Optional[object] = None, swap_rb: bool = True,
                 threads: int = 0) -> np.ndarray:
    """pre() with maps checked once (:class:`privsdk.kernels.PreparedMaps`): the C++ core skips its value scan.

    The other arguments get the reference's checks, in its order and with its messages.
    """
    frame = check_frame(frame)
    x, y, w, h = check_roi(roi, frame.shape)
    if out is None:
        if np.dtype(dtype) not in (np.float32, np.float16):  # type: ignore[call-overload]
            raise InputError(f"dtype: expected float32 or float16, got {np.dtype(dtype)}")  # type: ignore[call-overload]
        out = np.empty(maps.shape, dtype=dtype)  # type: ignore[call-overload]
    else:
        check_out(out, maps.shape)
    for k, t in enumerate(noise_outputs):
        if not _noise_tensor_ok(t):
            raise InputError(f"noise_outputs[{k}]: expected a C-contiguous writeable float32/float16 array, "
                             f"got {describe_array(t)}")
    native = _native_rng(rng, maps.sigma_nonzero or len(noise_outputs) > 0)
    if not isinstance(threads, (int, np.integer)) or threads < 0:
        raise InputError(f"threads: expected 0 (all cores) or a positive int, got {threads!r}")
    try:
        _fused.pre(frame, x, y, w, h, maps.scale, maps.shift, maps.sigma, out, list(noise_outputs), native,
                   bool(swap_rb), int(threads), maps.sigma_nonzero)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return out


def post(y: np.ndarray, frame: np.ndarray, roi: Optional[Sequence[int]],
         scale: Optional[np.ndarray] = None, shift: Optional[np.ndarray] = None, *,
         swap_rb: bool = True, threads: int = 0) -> np.ndarray:
    """Fused post-kernel: writes ``y`` (3×H_o×W_o, RGB in [0, 1]) into ``frame[roi]`` in place.

    ``u = y · scale + shift`` (each optional), bilinear resize to the region,
    clamp to [0, 1], round to uint8, BGR order. ``frame`` may be any writeable
    strided view. Raises before writing anything if ``y`` holds NaN or infinity
    (fail closed). Returns ``frame``.
    """
    if not isinstance(y, np.ndarray) or y.dtype not in (np.float32, np.float16) or y.ndim != 3 \
            or y.shape[0] != 3 or y.shape[1] == 0 or y.shape[2] == 0:
        raise InputError(f"y: expected a float32/float16 array of shape (3, H, W), got {describe_array(y)}")
    frame = check_frame(frame, writeable=True)
    x0, y0, w, h = check_roi(roi, frame.shape)
    # Structurally sound, C-contiguous maps are scanned for NaN/inf by the C++
    # core (scale, then shift, then y, as the reference); others get every check here.
    if scale is not None and not _map_ok(scale, y.shape):
        check_map(scale, "scale", y.shape)
    if shift is not None and not _map_ok(shift, y.shape):
        if scale is not None:
            check_map(scale, "scale", y.shape)
        check_map(shift, "shift", y.shape)
    if not isinstance(threads, (int, np.integer)) or threads < 0:
        raise InputError(f"threads: expected 0 (all cores) or a positive int, got {threads!r}")
    try:  # the C++ core checks y for NaN/inf before it writes anything
        _fused.post(np.ascontiguousarray(y), frame, x0, y0, w, h, _contiguous(scale), _contiguous(shift),
                    bool(swap_rb), int(threads))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return frame
