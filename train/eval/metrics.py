"""Privacy and fidelity metrics of the evaluation protocol (pure numpy).

Balanced accuracy and AUC are the privacy numbers (never plain accuracy: the
face sets are imbalanced); cross-entropy and entropy in bits give the leakage
estimates; PSNR / SSIM (scikit-image) measure image fidelity.

Example::

    import numpy as np
    from privsdk.train.eval.metrics import balanced_accuracy, roc_auc
    y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.6, 0.4, 0.9])
    balanced_accuracy(y, p > 0.5), roc_auc(y, p)       # (0.5, 0.75)
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from privsdk.errors import InputError

LN2 = float(np.log(2.0))


def _labels(y: np.ndarray, name: str = "labels") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise InputError(f"{name}: expected a non-empty 1-D array of class labels, got shape {y.shape}")
    return y.astype(np.int64)


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    y = _labels(labels)
    p = np.asarray(predicted).astype(np.int64).reshape(-1)
    if p.shape != y.shape:
        raise InputError(f"predicted: expected shape {y.shape} like labels, got {p.shape}")
    recalls = [float(np.mean(p[y == c] == c)) for c in np.unique(y)]
    return float(np.mean(recalls))


def majority_rate(labels: np.ndarray) -> float:
    """Share of the most frequent class: plain accuracy of always guessing it."""
    y = _labels(labels)
    return float(np.bincount(y).max() / y.size)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of binary ``labels`` (0/1) by ``scores`` (ties count half).

    Returns NaN when only one class is present.
    """
    y = _labels(labels)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape != y.shape:
        raise InputError(f"scores: expected shape {y.shape} like labels, got {s.shape}")
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def entropy_bits(probabilities: np.ndarray) -> float:
    """Shannon entropy in bits of one distribution (zeros ignored)."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def label_entropy_bits(labels: np.ndarray) -> float:
    """H(S) in bits of the empirical label distribution."""
    y = _labels(labels)
    return entropy_bits(np.bincount(y).astype(np.float64))


def cross_entropy_bits(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean −log2 p(true class) of an attacker's N×K class probabilities."""
    y = _labels(labels)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size or y.max() >= p.shape[1]:
        raise InputError(f"probs: expected N×K probabilities with N={y.size} and K > max label, got {p.shape}")
    return float(-np.mean(np.log2(np.clip(p[np.arange(y.size), y], eps, 1.0))))


def mean_prediction_entropy_bits(probs: np.ndarray) -> float:
    """InfoScrub's obfuscation measure: the mean entropy (bits) of the attacker's predictions."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return float(np.mean(-(p * np.log2(p)).sum(axis=1)))


def classification_metrics(labels: np.ndarray, probs: np.ndarray,
                           balanced_probs: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Every privacy number of one attacker on one test set.

    ``probs``: N×K calibrated class probabilities (cross-entropy, leakage, entropy,
    AUC); ``balanced_probs`` (default ``probs``): those of the class-balanced model,
    whose arg-max gives the balanced accuracy. For a binary secret ``auc`` uses
    p(class 1); for K > 2 it is the macro one-vs-rest AUC.
    ``leakage_bits`` = max(0, H(S) − CE), a lower bound on I(S; Y) in bits.
    """
    y = _labels(labels)
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[1]
    if k == 2:
        auc = roc_auc(y, p[:, 1])
    else:
        aucs = [roc_auc((y == c).astype(np.int64), p[:, c]) for c in range(k) if (y == c).any()]
        auc = float(np.nanmean(aucs)) if aucs else float("nan")
    h = label_entropy_bits(y)
    ce = cross_entropy_bits(y, p)
    return {
        "balanced_accuracy": balanced_accuracy(y, (p if balanced_probs is None else balanced_probs).argmax(axis=1)),
        "auc": auc,
        "cross_entropy_bits": ce,
        "label_entropy_bits": h,
        "leakage_bits": max(0.0, h - ce),
        "mean_entropy_bits": mean_prediction_entropy_bits(p),
        "n": int(y.size),
    }


def image_fidelity(original: np.ndarray, filtered: np.ndarray) -> Dict[str, float]:
    """Mean PSNR (dB) and SSIM of uint8 N×H×W×3 ``filtered`` against ``original``.

    PSNR of an unchanged image is infinite; it is capped at 100 dB so the JSON stays finite.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = np.asarray(original), np.asarray(filtered)
    if a.shape != b.shape or a.ndim != 4 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise InputError(f"image_fidelity: expected two uint8 N×H×W×3 arrays of one shape, got "
                         f"{a.dtype}{a.shape} and {b.dtype}{b.shape}")
    psnr, ssim = [], []
    for x, y in zip(a, b):
        if np.array_equal(x, y):
            psnr.append(100.0)
        else:
            psnr.append(min(100.0, float(peak_signal_noise_ratio(x, y, data_range=255))))
        win = min(7, x.shape[0], x.shape[1])
        win -= 1 - win % 2
        ssim.append(float(structural_similarity(x, y, channel_axis=2, data_range=255, win_size=win)))
    return {"psnr_db": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}
