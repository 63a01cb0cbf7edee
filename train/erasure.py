"""Fit a linear eraser of the secret: LEACE (Belrose et al., NeurIPS 2023, *LEACE: Perfect linear concept
erasure in closed form*), on a filter's outputs.

After a filter, whatever still tells the secret apart *linearly* is removed by an oblique projection of
rank ``classes - 1`` (one direction for a yes/no secret)::

    x' = x - B (Bᵀ Σ⁻¹ B)⁻¹ (Σ⁻¹ B)ᵀ (x - μ)

where μ is the mean output, Σ its covariance and B spans the class means' differences (within each
group of faces, e.g. each data set, when groups are given). Afterwards every
class has the same mean output, which is exactly the condition under which no linear classifier (with
any convex loss, class weights included) does better than a constant (LEACE, Theorem 3.1); among the
erasers with that property this one changes the outputs least (in expected squared distance).

Σ is estimated from the training outputs with a ridge, ``Σ + τ·(tr Σ / d)·I``. Any τ keeps the class means
equal on the outputs it was fit on; τ is picked on the validation outputs by the same expected squared
change. A stochastic filter needs more: its outputs change with every noise draw, and an eraser fit on one
draw with a small τ reads along directions where Σ is barely sampled, so it turns that draw's noise into a
fixed offset between the classes that every later draw carries (on ``emotion`` 0.10.0, a class-mean
difference of 0.057 left on fresh draws against 0.011 between two draws, and a logistic attacker read 0.568).
Given ``fresh_outputs`` (the same training faces through the filter again, other noise), τ is picked among
those that leave the least class-mean difference on them, and only then by the smallest change
(``privsdk export --erase-secret --erase-draws K``; on ``emotion`` it took the logistic attacker to 0.517 but
the retrained CNN read 0.691 against 0.606, so the export's default stays one draw). With more pixels than
faces, Σ⁻¹B is solved in the span of the faces (Woodbury), so the cost grows with the smaller of the two. Pixels that never change (a fill) are left alone.

This is what :mod:`privsdk.erase` applies in the runtime; ``privsdk export BUNDLE --erase-secret`` fits
it (:mod:`privsdk.export.erase_secret`).

Example::

    import numpy as np
    from privsdk.train.erasure import fit_linear_eraser
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400); x = rng.normal(size=(400, 30)).astype(np.float32); x[:, 0] += 2 * y
    fit = fit_linear_eraser(x[:300], y[:300], x[300:])
    e = fit.eraser.apply(x.copy())
    abs(e[y == 1].mean(0) - e[y == 0].mean(0)).max() < 0.3     # True: the means met
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

import numpy as np

from privsdk.erase import LinearEraser
from privsdk.errors import InputError

#: the ridge grid, as multiples of the mean pixel variance
RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: with fresh outputs, a ridge qualifies when the class-mean difference it leaves on them is within this
#: factor of the least any ridge leaves (what is left at the best is the fresh draw's own noise)
FRESH_TOLERANCE = 1.25


@dataclass
class EraserFit:
    """The fitted eraser and how it was chosen (for the bundle's manifest)."""

    eraser: LinearEraser
    ridge: float
    #: per ridge: the root-mean-square change per value on the validation outputs
    validation_rms_change: Dict[str, float] = field(default_factory=dict)
    faces: int = 0
    live_values: int = 0
    #: per ridge: the norm of the class means' differences left on the fresh outputs (when given)
    fresh_difference_left: Dict[str, float] = field(default_factory=dict)

    def describe(self) -> Dict[str, Any]:
        out = {"ridge": self.ridge, "validation_rms_change": self.validation_rms_change,
               "faces": self.faces, "live_values": self.live_values, "rank": self.eraser.rank}
        if self.fresh_difference_left:
            out["fresh_difference_left"] = self.fresh_difference_left
            out["ridge_picked_by"] = (f"the class-mean difference left on a fresh noise draw of the training faces "
                                      f"(within {FRESH_TOLERANCE:g}× the least), then the smallest change on val")
        return out


def _class_mean_deviations(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """K×d: every (group, class) mean's deviation from its group's mean (float64)."""
    devs = []
    for g in np.unique(groups):
        xg, lg = x[groups == g], labels[groups == g]
        centre = xg.mean(axis=0, dtype=np.float64)
        devs += [xg[lg == c].mean(axis=0, dtype=np.float64) - centre for c in np.unique(lg)]
    return np.stack(devs)


def _class_mean_basis(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """An orthonormal basis (d×r) of the span of the class means' deviations from their group's mean."""
    u, s, _ = np.linalg.svd(_class_mean_deviations(x, labels, groups).T, full_matrices=False)
    rank = int((s > s.max() * 1e-6).sum()) if s.size and s.max() > 0 else 0
    return u[:, :rank]


def fit_linear_eraser(outputs: np.ndarray, labels: np.ndarray, val_outputs: np.ndarray,
                      ridges: Sequence[float] = RIDGES, groups: Optional[np.ndarray] = None,
                      fresh_outputs: Optional[np.ndarray] = None) -> EraserFit:
    """Fit LEACE to ``outputs`` (N×… float, one row per face) of the secret ``labels`` (N ints).

    ``val_outputs`` (held-out faces, same shape) pick the ridge. ``groups`` (N ints, e.g. which data set
    each face comes from) makes the classes' means meet *within* every group: the erased directions are
    each group's class-mean differences (rank up to groups × (classes − 1)). ``fresh_outputs`` (N×…, the
    same faces through a stochastic filter with other noise; ``outputs`` then best the mean of several
    draws) first restricts the ridge to those that leave the least class-mean difference on them (see the
    module's docstring). Returns an :class:`EraserFit` whose ``eraser`` works on arrays shaped like one
    output (``outputs.shape[1:]``).
    """
    x = np.asarray(outputs)
    labels = np.asarray(labels).reshape(-1)
    groups = np.zeros(len(labels), int) if groups is None else np.asarray(groups).reshape(-1)
    if x.ndim < 2 or len(x) != len(labels) or len(x) != len(groups) or len(x) < 4:
        raise InputError(f"fit_linear_eraser: expected N≥4 outputs, N labels and N groups, got {x.shape}, "
                         f"{labels.shape} and {groups.shape}")
    for g in np.unique(groups):
        if len(np.unique(labels[groups == g])) < 2:
            raise InputError(f"fit_linear_eraser: the secret takes one value on the faces of group {g}; expected at "
                             "least two in every group")
    shape = x.shape[1:]
    flat = x.reshape(len(x), -1).astype(np.float64)
    val = np.asarray(val_outputs).reshape(len(val_outputs), -1).astype(np.float64)
    if val.shape[1] != flat.shape[1]:
        raise InputError(f"fit_linear_eraser: validation outputs are {val_outputs.shape[1:]}, expected {shape}")
    fresh_devs = None
    if fresh_outputs is not None:
        fresh = np.asarray(fresh_outputs)
        if fresh.shape != x.shape:
            raise InputError(f"fit_linear_eraser: fresh outputs are {fresh.shape}; expected the same faces as the "
                             f"outputs, {x.shape}")
        fresh_devs = _class_mean_deviations(fresh.reshape(len(fresh), -1), labels, groups)
    mean = flat.mean(axis=0)
    live = flat.std(axis=0) > 1e-6
    xc = flat[:, live] - mean[live]
    basis = _class_mean_basis(flat[:, live], labels, groups)               # d×r
    if fresh_devs is not None:
        fresh_devs = fresh_devs[:, live]
    n, d = xc.shape
    mean_var = float((xc ** 2).sum() / (n * d))
    # eigen-decompose the smaller of XᵀX (d×d) and XXᵀ (n×n) once; every ridge is then cheap
    if d <= n:
        s, v = np.linalg.eigh(xc.T @ xc / n)

        def solve(lam: float) -> np.ndarray:            # (Σ + λI)⁻¹ B
            return v @ ((v.T @ basis) / (s + lam)[:, None])
    else:
        s, v = np.linalg.eigh(xc @ xc.T)
        xb = xc @ basis

        def solve(lam: float) -> np.ndarray:            # Woodbury: (1/λ)(B - Xᵀ(nλI + XXᵀ)⁻¹ X B)
            return (basis - xc.T @ (v @ ((v.T @ xb) / (n * lam + s)[:, None]))) / lam
    vc = val[:, live] - mean[live]
    candidates = []
    report: Dict[str, float] = {}
    left: Dict[str, float] = {}
    for ridge in ridges:
        w = solve(ridge * mean_var)                        # Σ⁻¹B, d×r
        readout = np.linalg.solve(basis.T @ w, w.T)       # (BᵀΣ⁻¹B)⁻¹(Σ⁻¹B)ᵀ, r×d
        change = (vc @ readout.T) @ basis.T
        rms = float(np.sqrt(np.mean(change ** 2) * d / flat.shape[1]))
        report[f"{ridge:g}"] = round(rms, 5)
        residual = 0.0
        if fresh_devs is not None:   # the eraser is linear: the erased class means are the means erased
            residual = float(np.linalg.norm(fresh_devs - (fresh_devs @ readout.T) @ basis.T))
            left[f"{ridge:g}"] = round(residual, 5)
        candidates.append((residual, rms, ridge, readout))
    least = min(c[0] for c in candidates)
    _, _, ridge, readout = min((c for c in candidates if c[0] <= FRESH_TOLERANCE * least + 1e-12),
                               key=lambda c: c[1])
    full_basis = np.zeros((basis.shape[1], flat.shape[1]))
    full_readout = np.zeros_like(full_basis)
    full_basis[:, live] = basis.T
    full_readout[:, live] = readout
    eraser = LinearEraser(mean.reshape(shape), full_basis.reshape((-1, *shape)), full_readout.reshape((-1, *shape)))
    return EraserFit(eraser, float(ridge), report, faces=int(n), live_values=int(d), fresh_difference_left=left)


__all__ = ["EraserFit", "fit_linear_eraser", "FRESH_TOLERANCE", "RIDGES"]
