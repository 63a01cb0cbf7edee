"""The performance bounds of paper 000 (Bertran et al. 2019, Section 2.1), in nats.

Given the joint distribution p(u, s) of the utility U and the secret S (the
labels' contingency table), for every leakage tolerance k = I(S; Y):

- **Lemma 2.2** (lower bound on the utility lost by *any* filter)::

      I(U; X | Y) ≥ −k + I(U; S) − I(U; S | X)

  floored at 0 (it is a mutual information).
- **Lemma 2.3** (achievable: keep X with probability β = min(k / I(S; X), 1),
  else emit a blank symbol)::

      I(U; X | Y) = max(0, 1 − k / I(S; X)) · I(U; X)

When the labels are functions of the image (the case of labelled photos),
I(U; S | X) = 0, I(U; X) = H(U) and I(S; X) = H(S); those are the defaults.

Example::

    import numpy as np
    from privsdk.train.eval.bounds import tradeoff_bounds
    table = np.array([[40, 10], [10, 40]])           # rows: utility, columns: secret
    b = tradeoff_bounds(table, k=np.linspace(0, 0.7, 8))
    b["lower"], b["achievable"]
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np

from privsdk.errors import InputError


def _joint(table: np.ndarray) -> np.ndarray:
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.size == 0 or (t < 0).any() or not np.isfinite(t).all() or t.sum() <= 0:
        raise InputError(f"contingency table: expected a 2-D array of non-negative counts (utility × secret) "
                         f"with a positive sum, got shape {t.shape}")
    return t / t.sum()


def entropy_nats(p: np.ndarray) -> float:
    """Shannon entropy (nats) of a probability vector or table (zeros ignored)."""
    q = np.asarray(p, dtype=np.float64).reshape(-1)
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def mutual_information_nats(table: np.ndarray) -> float:
    """I(U; S) in nats of the joint given by a contingency table."""
    p = _joint(table)
    return entropy_nats(p.sum(1)) + entropy_nats(p.sum(0)) - entropy_nats(p)


def contingency_table(utility: np.ndarray, secret: np.ndarray) -> np.ndarray:
    """Counts of (utility, secret) label pairs: rows utility classes, columns secret classes."""
    u, s = np.asarray(utility).astype(np.int64), np.asarray(secret).astype(np.int64)
    if u.shape != s.shape or u.ndim != 1 or u.size == 0 or u.min() < 0 or s.min() < 0:
        raise InputError(f"contingency_table: expected two 1-D non-negative integer label arrays of one length, "
                         f"got {u.shape} and {s.shape}")
    table = np.zeros((u.max() + 1, s.max() + 1), dtype=np.int64)
    np.add.at(table, (u, s), 1)
    return table


def lemma22_lower_bound(table: np.ndarray, k: Union[float, np.ndarray],
                        i_us_given_x: float = 0.0) -> np.ndarray:
    """Lemma 2.2: min over filters of I(U; X | Y) ≥ max(0, I(U; S) − I(U; S | X) − k) (nats)."""
    kk = np.asarray(k, dtype=np.float64)
    return np.maximum(0.0, mutual_information_nats(table) - float(i_us_given_x) - kk)


def lemma23_achievable(table: np.ndarray, k: Union[float, np.ndarray], i_ux: Optional[float] = None,
                       i_sx: Optional[float] = None) -> np.ndarray:
    """Lemma 2.3: I(U; X | Y) = max(0, 1 − k / I(S; X)) · I(U; X) is achievable (nats).

    ``i_ux`` / ``i_sx`` default to H(U) / H(S) of the table (labels determined by X).
    """
    p = _joint(table)
    i_ux = entropy_nats(p.sum(1)) if i_ux is None else float(i_ux)
    i_sx = entropy_nats(p.sum(0)) if i_sx is None else float(i_sx)
    kk = np.asarray(k, dtype=np.float64)
    if i_sx <= 0:
        return np.zeros_like(kk)
    return np.maximum(0.0, 1.0 - kk / i_sx) * i_ux


def tradeoff_bounds(table: np.ndarray, k: Optional[Sequence[float]] = None, points: int = 51,
                    i_us_given_x: float = 0.0) -> Dict[str, object]:
    """Both bounds over a grid of leakage tolerances k ∈ [0, H(S)] (nats), JSON-ready."""
    p = _joint(table)
    h_s, h_u = entropy_nats(p.sum(0)), entropy_nats(p.sum(1))
    grid = np.linspace(0.0, h_s, points) if k is None else np.asarray(k, dtype=np.float64)
    return {
        "units": "nats",
        "table": np.asarray(table).tolist(),
        "H_U": h_u, "H_S": h_s, "I_US": mutual_information_nats(table), "I_US_given_X": float(i_us_given_x),
        "k": grid.tolist(),
        "lower": lemma22_lower_bound(table, grid, i_us_given_x).tolist(),
        "achievable": lemma23_achievable(table, grid).tolist(),
    }
