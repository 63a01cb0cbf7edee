"""Per-location maps checked once, for callers that run the pre-kernel with the same maps many times.

:func:`privsdk.kernels.pre` scans the values of ``scale``, ``shift`` and ``sigma`` on every call
(NaN or infinity, negative σ, and whether any σ ≠ 0 draws noise): one pass over 2–3× the output
bytes, a tenth of the kernel's time for a 64×64 face. A filter's maps are loaded once and used
for every region of every frame, so :class:`PreparedMaps` checks them once, keeps read-only
copies (later changes to the caller's arrays can neither bypass the check nor leak in) and
runs the kernel without the per-call scan. Same semantics and output as ``pre``.

Example::

    import numpy as np
    from privsdk.kernels import NoiseSource, PreparedMaps
    scale = np.ones((3, 64, 64), np.float32); shift = np.zeros_like(scale)
    maps = PreparedMaps(scale, shift, np.full_like(scale, 0.1))   # checked here, once
    frame = np.zeros((480, 640, 3), np.uint8)
    x = maps.pre(frame, (100, 50, 128, 128), rng=NoiseSource())   # no per-call scan
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from . import reference
from .reference import check_map


def _frozen(m: np.ndarray) -> np.ndarray:
    """A private read-only C-contiguous float32 copy of a checked map."""
    copy = np.array(m, dtype=np.float32, order="C", copy=True)
    copy.flags.writeable = False
    return copy


class PreparedMaps:
    """``scale``, ``shift`` and optional ``sigma`` (float32 3×H×W) checked once for the pre-kernel.

    Raises :class:`privsdk.errors.InputError` with the messages of ``pre`` when a map has the
    wrong type or shape, holds NaN or infinity, or σ is negative. ``sigma_nonzero`` says
    whether σ draws noise (any σ ≠ 0); with ``sigma=None`` or an all-zero σ no noise is drawn.
    """

    def __init__(self, scale: np.ndarray, shift: np.ndarray, sigma: Optional[np.ndarray] = None) -> None:
        scale = check_map(scale, "scale")
        shift = check_map(shift, "shift", scale.shape)
        if sigma is not None:
            sigma = check_map(sigma, "sigma", scale.shape, nonnegative=True)
        self.scale = _frozen(scale)
        self.shift = _frozen(shift)
        self.sigma = None if sigma is None else _frozen(sigma)
        self.sigma_nonzero = bool(self.sigma is not None and self.sigma.any())
        self.shape: Tuple[int, int, int] = tuple(self.scale.shape)  # type: ignore[assignment]
        self._pre = _implementation()

    def pre(self, frame: np.ndarray, roi: Optional[Sequence[int]], *, out: Optional[np.ndarray] = None,
            dtype: object = np.float32, noise_outputs: Sequence[np.ndarray] = (), rng: Optional[object] = None,
            swap_rb: bool = True, threads: int = 0) -> np.ndarray:
        """``privsdk.kernels.pre(frame, roi, scale, shift, sigma, ...)`` with these maps, without the scan.

        Every other argument is checked as by ``pre``; returns ``out`` (3×H×W).
        """
        return self._pre(self, frame, roi, out=out, dtype=dtype, noise_outputs=noise_outputs, rng=rng,
                         swap_rb=swap_rb, threads=threads)

    def __repr__(self) -> str:
        return f"PreparedMaps(shape={self.shape}, sigma={'none' if self.sigma is None else 'set'}, " \
               f"draws_noise={self.sigma_nonzero})"


def _reference_pre(maps: PreparedMaps, frame: np.ndarray, roi: Optional[Sequence[int]], **kwargs: object) -> np.ndarray:
    """The numpy fallback (no extension): the reference, which rescans (it is slow anyway)."""
    return reference.pre(frame, roi, maps.scale, maps.shift, maps.sigma, **kwargs)  # type: ignore[arg-type]


def _implementation() -> Callable[..., np.ndarray]:
    """The pre-kernel for prepared maps: the C++ extension's when built, else the reference's."""
    from . import IMPLEMENTATION

    if IMPLEMENTATION == "cpp":
        from ._cpp import pre_prepared

        return pre_prepared
    return _reference_pre
