"""The linear eraser of the secret: an optional stage between the network and the post-kernel.

A bundle with an ``erase`` section carries ``erase.npz``: what is left of the secret in the network's
output that a *linear* model could read is projected out of every face before it is written back::

    x' = x - basisᵀ · (readout · (x - mean))          # per face, x flattened to C·H·W values

``basis`` and ``readout`` are r×C×H×W (r = 1 for a yes/no secret), ``mean`` is C×H×W; all float32.
It is LEACE (Belrose et al. 2023), fit on the filter's outputs for its training faces by
``privsdk export BUNDLE --erase-secret`` (:mod:`privsdk.train.erasure`): afterwards both classes have
the same mean output, so no linear classifier reads the secret better than a constant on those faces,
and the change is the least that does it. It costs two passes over the face (about 10 µs at 64×64×3).

Example::

    import numpy as np
    from privsdk.erase import LinearEraser
    mean = np.zeros((3, 4, 4), np.float32); basis = np.zeros((1, 3, 4, 4), np.float32); basis[0, 0, 0, 0] = 1
    e = LinearEraser(mean, basis, basis.copy())
    x = np.ones((2, 3, 4, 4), np.float32)
    e.apply(x)[:, 0, 0, 0]          # array([0., 0.], dtype=float32): that value is erased, the rest kept
"""
from __future__ import annotations

import io
from typing import Any, Dict, Tuple

import numpy as np

from .errors import BundleError, InputError, describe_array

ERASE_KEYS = ("mean", "basis", "readout")


class LinearEraser:
    """``x' = x - basisᵀ (readout (x - mean))`` on a batch of N×C×H×W network outputs, in place."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray, readout: np.ndarray) -> None:
        mean = np.asarray(mean)
        basis = np.asarray(basis)
        readout = np.asarray(readout)
        if basis.ndim != mean.ndim + 1 or basis.shape[1:] != mean.shape or readout.shape != basis.shape \
                or basis.shape[0] < 1:
            raise InputError(f"LinearEraser: expected mean C×H×W and basis, readout r×C×H×W (r ≥ 1) of the same "
                             f"shape, got {mean.shape}, {basis.shape}, {readout.shape}")
        for name, arr in (("mean", mean), ("basis", basis), ("readout", readout)):
            if not np.isfinite(arr).all():
                raise InputError(f"LinearEraser: {name} contains NaN or infinity")
        self.shape: Tuple[int, ...] = tuple(mean.shape)
        self.rank = int(basis.shape[0])
        d = int(mean.size)
        self._basis = np.ascontiguousarray(basis.reshape(self.rank, d), np.float32)
        self._readout_t = np.ascontiguousarray(readout.reshape(self.rank, d).T, np.float32)   # d×r
        # readout · mean, once: each face then needs one pass to read, one to write
        self._offset = (self._readout_t.T.astype(np.float64) @ mean.reshape(d).astype(np.float64)).astype(np.float32)
        self.mean = np.ascontiguousarray(mean, np.float32)

    def apply(self, outputs: np.ndarray) -> np.ndarray:
        """Erase in place and return ``outputs`` (N×C×H×W float32, C-contiguous)."""
        if not isinstance(outputs, np.ndarray) or outputs.dtype != np.float32 or outputs.shape[1:] != self.shape \
                or not outputs.flags.c_contiguous or not outputs.flags.writeable:
            raise InputError(f"LinearEraser.apply: expected a writeable C-contiguous float32 N×{'×'.join(map(str, self.shape))}"
                             f" array, got {describe_array(outputs)}")
        flat = outputs.reshape(len(outputs), -1)
        coeff = flat @ self._readout_t
        coeff -= self._offset
        flat -= coeff @ self._basis
        return outputs

    def arrays(self) -> Dict[str, np.ndarray]:
        """The arrays of ``erase.npz``."""
        return {"mean": self.mean, "basis": self._basis.reshape(self.rank, *self.shape),
                "readout": np.ascontiguousarray(self._readout_t.T).reshape(self.rank, *self.shape)}

    def describe(self) -> str:
        return f"linear eraser of rank {self.rank} on {'×'.join(map(str, self.shape))}"


def load_eraser(data: bytes, shape: Tuple[int, ...], source: str) -> LinearEraser:
    """``erase.npz`` bytes → a checked :class:`LinearEraser` for outputs of ``shape`` (C×H×W)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays: Dict[str, Any] = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:
        raise BundleError(f"filter bundle {source}: erase.npz is not a readable .npz ({exc})") from None
    missing = [k for k in ERASE_KEYS if k not in arrays]
    if missing:
        raise BundleError(f"filter bundle {source}: erase.npz lacks {missing}; expected {ERASE_KEYS}")
    for key in ERASE_KEYS:
        a = arrays[key]
        want = shape if key == "mean" else (a.shape[0] if a.ndim else -1, *shape)
        if a.dtype != np.float32 or a.shape != want:
            raise BundleError(f"filter bundle {source}: erase.npz[{key!r}] is {a.dtype} {a.shape}; expected float32 "
                              f"{'C×H×W ' + str(shape) if key == 'mean' else 'r×C×H×W with C×H×W ' + str(shape)}")
    try:
        return LinearEraser(arrays["mean"], arrays["basis"], arrays["readout"])
    except InputError as exc:
        raise BundleError(f"filter bundle {source}: erase.npz: {exc}") from None


__all__ = ["LinearEraser", "load_eraser", "ERASE_KEYS"]
