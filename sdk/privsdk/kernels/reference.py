"""The numpy reference of the fused kernels: it *defines* their semantics.

The C++ extension ``privsdk._fused`` must agree with this module: exactly (to
float rounding) for the deterministic part, and -- given the same seed -- to
float rounding for the noise too, since both use the same counter-based
generator. It is also the fallback when the extension is missing (slow).

Semantics (DESIGN.md, "Fused kernels")
--------------------------------------
**pre**: from a uint8 H×W×3 BGR ``frame`` and a region ``roi = (x, y, w, h)``::

    src(o, n_out, n_in) = clamp((o + 0.5) · (n_in / n_out) − 0.5, 0, n_in − 1)
    v[c, oy, ox]  = bilinear(frame[y:y+h, x:x+w, 2 − c], src(oy, H_o, h), src(ox, W_o, w))
    out[c, oy, ox] = v / 255 · scale[c, oy, ox] + shift[c, oy, ox] + sigma[c, oy, ox] · z

with ``z ~ N(0, 1)`` drawn from the noise stream (tensor id 0), and every extra
``noise_outputs[k]`` filled with N(0, 1) (tensor id k + 1). ``c`` indexes RGB,
so ``2 − c`` is the BGR→RGB swap (``swap_rb=False`` keeps BGR order).

**post**: the inverse, from a float C×H_o×W_o ``y`` into ``frame[roi]`` in place::

    u[c, oy, ox]  = y · scale + shift              (identity when maps are None)
    v[c, fy, fx]  = bilinear(u[c], src(fy, h, H_o), src(fx, w, W_o))
    frame[y0+fy, x0+fx, 2 − c] = floor(clamp(v, 0, 1) · 255 + 0.5)

**noise**: Philox4x32-10 keyed by a 64-bit key (the seed, or 8 bytes of OS
entropy). Call number ``k`` of a :class:`NoiseSource` (incremented by every
kernel call that draws noise), tensor id ``t`` and flat element index ``i`` use
counter ``(i // 4, t, k mod 2³², k div 2³²)`` and output word ``i mod 4``;
words ``(a, b)`` of each pair become two normals by Box-Muller in float32::

    u1 = a · 2⁻³² + 2⁻³³,  r = sqrt(−2 ln u1)
    z_even = r · cos(2π b / 2³²),  z_odd = r · sin(2π b / 2³²)

where the angle is reduced exactly in integers (quadrant from the top bits of
``b``, the rest as a float32 angle in [−π/4, π/4]; see ``_sincos_turn``).

Because the counter depends only on the element index, the output is the same
for any thread count.
"""
from __future__ import annotations

import os
import threading
from typing import Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, describe_array

Roi = Tuple[int, int, int, int]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint32(0x9E3779B9)
_W1 = np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter: np.ndarray, key: Tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 block function (Salmon et al. 2011).

    ``counter``: uint32 array (..., 4); ``key``: two uint32. Returns uint32 (..., 4).
    """
    c = np.asarray(counter, dtype=np.uint32)
    c0, c1, c2, c3 = (c[..., j].astype(np.uint64) for j in range(4))
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    for r in range(10):
        if r:
            k0 = np.uint32((int(k0) + int(_W0)) & 0xFFFFFFFF)
            k1 = np.uint32((int(k1) + int(_W1)) & 0xFFFFFFFF)
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
        c0, c1, c2, c3 = (hi1 ^ c1 ^ np.uint64(k0)), lo1, (hi0 ^ c3 ^ np.uint64(k1)), lo0
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def philox_normals(n: int, key: Tuple[int, int], tensor_id: int, call: int) -> np.ndarray:
    """``n`` N(0, 1) float32 values of one tensor of one call (see module docstring)."""
    blocks = (n + 3) // 4
    counter = np.zeros((blocks, 4), dtype=np.uint32)
    counter[:, 0] = np.arange(blocks, dtype=np.uint64).astype(np.uint32)
    counter[:, 1] = np.uint32(tensor_id)
    counter[:, 2] = np.uint32(call & 0xFFFFFFFF)
    counter[:, 3] = np.uint32((call >> 32) & 0xFFFFFFFF)
    words = philox4x32_10(counter, key)  # (blocks, 4)
    a = words[:, 0::2].astype(np.float32)  # (blocks, 2): a of each pair
    u1 = a * np.float32(2.0**-32) + np.float32(2.0**-33)
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    sin, cos = _sincos_turn(words[:, 1::2])
    z = np.empty((blocks, 4), dtype=np.float32)
    z[:, 0::2] = r * cos
    z[:, 1::2] = r * sin
    return z.reshape(-1)[:n]


def _sincos_turn(b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """sin and cos of 2π·b/2³² (uint32 ``b``) in float32, reduced exactly in integers.

    Quadrant ``q = (b + 2²⁹) >> 30`` (mod 4) and ``b = q·2³⁰ + rem`` with rem in
    [−2²⁹, 2²⁹) (``int32(b << 2) = 4·rem``); ``x = rem·2π/2³²`` lies in [−π/4, π/4]
    and sin/cos(2π·b/2³²) = sin/cos(x + q·π/2).
    """
    b = b.astype(np.uint32)
    t = b + np.uint32(0x20000000)  # wraps mod 2³²: t >> 30 is the quadrant
    x = (b << np.uint32(2)).view(np.int32).astype(np.float32) * np.float32(2.0 * np.pi / 2.0**34)
    s, c = np.sin(x), np.cos(x)
    swap = (t & np.uint32(0x40000000)) != 0  # odd quadrant
    sv, cv = np.where(swap, c, s), np.where(swap, s, c)
    q = t >> np.uint32(30)
    sin = np.where(q >= 2, -sv, sv)
    cos = np.where((q == 1) | (q == 2), -cv, cv)
    return sin.astype(np.float32), cos.astype(np.float32)


class NoiseSource:
    """A keyed Philox stream. ``seed=None`` keys it from the OS entropy source.

    An explicit ``seed`` exists for tests only: a seeded source is replayable.
    Thread-safe: each kernel call takes the next call number atomically.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        if seed is None:
            key64 = int.from_bytes(os.urandom(8), "little")
        else:
            if not isinstance(seed, (int, np.integer)) or seed < 0 or seed >= 2**64:
                raise InputError(f"seed: expected an int in [0, 2**64) or None, got {seed!r}")
            key64 = int(seed)
        self.seeded = seed is not None
        self._key = (key64 & 0xFFFFFFFF, (key64 >> 32) & 0xFFFFFFFF)
        self._calls = 0
        self._lock = threading.Lock()

    def next_call(self) -> int:
        with self._lock:
            k = self._calls
            self._calls += 1
        return k

    def normals(self, n: int, tensor_id: int, call: int) -> np.ndarray:
        return philox_normals(n, self._key, tensor_id, call)


# ---------------------------------------------------------------- validation

def check_frame(frame: object, name: str = "frame", writeable: bool = False) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise InputError(f"{name}: expected a numpy uint8 array H×W×3 (BGR), got {describe_array(frame)}")
    if frame.dtype != np.uint8:
        raise InputError(f"{name}: expected dtype uint8 (H×W×3 BGR), got {describe_array(frame)}")
    if frame.ndim != 3:
        raise InputError(f"{name}: expected a 3-D array H×W×3, got {frame.ndim}-D {describe_array(frame)}")
    if frame.shape[2] != 3:
        raise InputError(f"{name}: expected 3 channels (BGR) in the last axis, got {frame.shape[2]} in {describe_array(frame)}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"{name}: expected a non-empty image, got {describe_array(frame)}")
    if writeable and not frame.flags.writeable:
        raise InputError(f"{name}: expected a writeable array, got a read-only {describe_array(frame)}")
    return frame


def check_roi(roi: Optional[Sequence[int]], frame_shape: Tuple[int, ...], name: str = "roi") -> Roi:
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if roi is None:
        return (0, 0, width, height)
    try:
        x, y, w, h = (int(v) for v in roi)
        if any(int(v) != v for v in roi):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected (x, y, w, h) as 4 integers, got {roi!r}") from None
    if w <= 0 or h <= 0:
        raise InputError(f"{name}: expected a positive width and height, got (x={x}, y={y}, w={w}, h={h})")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InputError(
            f"{name}: (x={x}, y={y}, w={w}, h={h}) reaches outside the {width}×{height} frame; "
            f"expected 0 ≤ x, x + w ≤ {width}, 0 ≤ y, y + h ≤ {height}"
        )
    return (x, y, w, h)


def check_map(m: object, name: str, shape: Optional[Tuple[int, int, int]] = None,
              nonnegative: bool = False) -> np.ndarray:
    if not isinstance(m, np.ndarray) or m.dtype != np.float32:
        raise InputError(f"{name}: expected a float32 array C×H×W, got {describe_array(m)}")
    if m.ndim != 3 or m.shape[0] != 3 or m.shape[1] == 0 or m.shape[2] == 0:
        raise InputError(f"{name}: expected shape (3, H, W), got {describe_array(m)}")
    if shape is not None and tuple(m.shape) != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)} to match the other maps, got {tuple(m.shape)}")
    if not np.isfinite(m).all():
        raise InputError(f"{name}: contains NaN or infinity; expected finite values")
    if nonnegative and (m < 0).any():
        raise InputError(f"{name}: contains negative values; expected σ ≥ 0")
    return m


def check_out(out: object, shape: Tuple[int, ...], name: str = "out") -> np.ndarray:
    if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float16):
        raise InputError(f"{name}: expected a float32 or float16 array of shape {shape}, got {describe_array(out)}")
    if tuple(out.shape) != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)}, got {tuple(out.shape)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InputError(f"{name}: expected a C-contiguous writeable array, got {describe_array(out)}")
    return out


# ---------------------------------------------------------------- kernels

def _source_coords(n_out: int, n_in: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    ratio = np.float32(n_in) / np.float32(n_out)
    s = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * ratio - np.float32(0.5)
    s = np.clip(s, np.float32(0.0), np.float32(n_in - 1))
    i0 = np.floor(s).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (s - i0.astype(np.float32)).astype(np.float32)


def _bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of (..., H, W) float32 to (..., out_h, out_w), half-pixel centres."""
    y0, y1, fy = _source_coords(out_h, img.shape[-2])
    x0, x1, fx = _source_coords(out_w, img.shape[-1])
    one = np.float32(1.0)
    rows0 = img[..., y0, :]
    rows1 = img[..., y1, :]
    top = rows0[..., x0] * (one - fx) + rows0[..., x1] * fx
    bot = rows1[..., x0] * (one - fx) + rows1[..., x1] * fx
    return top * (one - fy)[:, None] + bot * fy[:, None]


def pre(frame: np.ndarray, roi: Optional[Sequence[int]], scale: np.ndarray, shift: np.ndarray,
        sigma: Optional[np.ndarray] = None, *, out: Optional[np.ndarray] = None,
        dtype: object = np.float32, noise_outputs: Sequence[np.ndarray] = (),
        rng: Optional[NoiseSource] = None, swap_rb: bool = True, threads: int = 0) -> np.ndarray:
    """Reference fused pre-kernel; see the module docstring. Returns ``out`` (3×H_o×W_o).

    ``threads`` is accepted for signature parity with the C++ kernel and ignored.
    """
    frame = check_frame(frame)
    x, y, w, h = check_roi(roi, frame.shape)
    scale = check_map(scale, "scale")
    shift = check_map(shift, "shift", scale.shape)
    if sigma is not None:
        sigma = check_map(sigma, "sigma", scale.shape, nonnegative=True)
    _, out_h, out_w = scale.shape
    if out is None:
        if np.dtype(dtype) not in (np.float32, np.float16):
            raise InputError(f"dtype: expected float32 or float16, got {np.dtype(dtype)}")
        out = np.empty((3, out_h, out_w), dtype=dtype)
    else:
        check_out(out, (3, out_h, out_w))
    for k, t in enumerate(noise_outputs):
        if not isinstance(t, np.ndarray) or t.dtype not in (np.float32, np.float16) \
                or not t.flags.c_contiguous or not t.flags.writeable:
            raise InputError(f"noise_outputs[{k}]: expected a C-contiguous writeable float32/float16 array, "
                             f"got {describe_array(t)}")
    draws = (sigma is not None and bool((sigma != 0).any())) or len(noise_outputs) > 0
    if draws and not isinstance(rng, NoiseSource):
        raise InputError(f"rng: expected a privsdk NoiseSource when noise is drawn, got {type(rng).__name__}")

    crop = frame[y:y + h, x:x + w]
    planes = crop[..., ::-1] if swap_rb else crop
    chw = np.ascontiguousarray(planes.transpose(2, 0, 1)).astype(np.float32)
    v = _bilinear(chw, out_h, out_w)
    res = v * np.float32(1.0 / 255.0) * scale + shift
    if draws:
        call = rng.next_call()  # type: ignore[union-attr]
        if sigma is not None:
            res = res + sigma * rng.normals(res.size, 0, call).reshape(res.shape)  # type: ignore[union-attr]
        for k, t in enumerate(noise_outputs):
            t[...] = rng.normals(t.size, k + 1, call).reshape(t.shape)  # type: ignore[union-attr]
    out[...] = res
    return out


def post(y: np.ndarray, frame: np.ndarray, roi: Optional[Sequence[int]],
         scale: Optional[np.ndarray] = None, shift: Optional[np.ndarray] = None, *,
         swap_rb: bool = True, threads: int = 0) -> np.ndarray:
    """Reference fused post-kernel: writes ``y`` (3×H_o×W_o) into ``frame[roi]`` in place.

    Raises before writing anything if ``y`` holds NaN or infinity (fail closed).
    """
    if not isinstance(y, np.ndarray) or y.dtype not in (np.float32, np.float16) or y.ndim != 3 \
            or y.shape[0] != 3 or y.shape[1] == 0 or y.shape[2] == 0:
        raise InputError(f"y: expected a float32/float16 array of shape (3, H, W), got {describe_array(y)}")
    frame = check_frame(frame, writeable=True)
    x0, y0, w, h = check_roi(roi, frame.shape)
    if scale is not None:
        check_map(scale, "scale", y.shape)
    if shift is not None:
        check_map(shift, "shift", y.shape)
    if not np.isfinite(y).all():
        raise InputError("y: the network output contains NaN or infinity; expected finite values "
                         "(nothing was written)")
    u = y.astype(np.float32)
    if scale is not None:
        u = u * scale
    if shift is not None:
        u = u + shift
    v = _bilinear(u, h, w)
    q = np.floor(np.clip(v, np.float32(0.0), np.float32(1.0)) * np.float32(255.0) + np.float32(0.5))
    hwc = q.astype(np.uint8).transpose(1, 2, 0)
    frame[y0:y0 + h, x0:x0 + w] = hwc[..., ::-1] if swap_rb else hwc
    return frame
