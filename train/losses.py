"""Loss terms shared by the methods: KL divergences, entropy, budgets, and validation metrics.

All information quantities are in nats unless a name says bits.

Example::

    import torch
    from privsdk.train.losses import kl_to_prior, entropy
    logits = torch.zeros(4, 2)
    prior = torch.tensor([0.7, 0.3])
    kl_to_prior(logits, prior, direction="paper")   # KL(P_s ‖ p(s|y)) per sample
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from privsdk.errors import InputError

KL_DIRECTIONS = ("paper", "code")


def kl_to_prior(logits: torch.Tensor, prior: torch.Tensor, direction: str = "paper") -> torch.Tensor:
    """Per-sample KL between the secret posterior ``softmax(logits)`` and the prior ``P_s``.

    ``direction="paper"``: KL(P_s ‖ p(s|y)) as paper 000 Eq. (10) writes it;
    ``direction="code"``: KL(p(s|y) ‖ P_s) as the authors' code computes it.
    Both are zero exactly when the attacker's posterior equals the prior.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    logq = torch.log(prior.float().clamp_min(1e-12))[None, :]
    if direction == "paper":
        return (prior[None, :] * (logq - logp)).sum(dim=1)
    if direction == "code":
        return (logp.exp() * (logp - logq)).sum(dim=1)
    raise InputError(f"unknown KL direction {direction!r}; expected one of {list(KL_DIRECTIONS)}")


def kl_posteriors(logits_ref: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(logits_ref) ‖ softmax(logits)) (paper 000's utility term)."""
    logp = F.log_softmax(logits_ref.float(), dim=1)
    logq = F.log_softmax(logits.float(), dim=1)
    return (logp.exp() * (logp - logq)).sum(dim=1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy (nats) of ``softmax(logits)``."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def hinge_squared(value: torch.Tensor, budget: float) -> torch.Tensor:
    """``max(value − budget, 0)²`` (paper 000's budget k, paper 002's ε)."""
    return torch.clamp(value - budget, min=0.0) ** 2


def distortion_per_image(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image (L2 per pixel) between x01 images."""
    return ((y.float() - x.float()) ** 2).flatten(1).mean(dim=1)


def distortion_penalty(y: torch.Tensor, x: torch.Tensor, eps: Optional[float], weight: float) -> torch.Tensor:
    """``weight · mean_i max(mse_i − eps, 0)²``; zero when ``eps`` is None."""
    if eps is None:
        return y.new_zeros(())
    return weight * hinge_squared(distortion_per_image(y, x), float(eps)).mean()


def band_distortion_per_image(y: torch.Tensor, x: torch.Tensor, top: float, bottom: float) -> torch.Tensor:
    """Mean squared error per image over the rows ``[top, bottom)`` (fractions of the height) of x01 images."""
    h = y.shape[-2]
    r0, r1 = int(round(top * h)), max(int(round(bottom * h)), int(round(top * h)) + 1)
    return ((y[..., r0:r1, :].float() - x[..., r0:r1, :].float()) ** 2).flatten(1).mean(dim=1)


def region_distortion_penalty(y: torch.Tensor, x: torch.Tensor, budgets: Sequence[Dict[str, Any]]) -> torch.Tensor:
    """Sum over bands of ``weight · mean_i max(band_mse_i − eps, 0)²`` (``losses.region_budgets``)."""
    total = y.new_zeros((), dtype=torch.float32)
    for band in budgets:
        mse = band_distortion_per_image(y, x, *band["rows"])
        total = total + float(band["weight"]) * hinge_squared(mse, float(band["eps"])).mean()
    return total


def ssim_per_image(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SSIM per image between N×C×H×W x01 images, differentiable, with the evaluation's window.

    ``privsdk eval`` reports scikit-image's ``structural_similarity`` (a uniform 7×7 window,
    channels averaged); this is the same index on the same window through ``pytorch_msssim``,
    so a training term on it pays for what the report measures. Images smaller than 7 pixels
    use the largest odd window that fits, as the evaluation does.

    >>> x = torch.rand(2, 3, 16, 16)
    >>> [round(v, 4) for v in ssim_per_image(x, x).tolist()]
    [1.0, 1.0]
    """
    from pytorch_msssim import ssim  # train extra: the runtime never imports it

    size = min(7, x.shape[-2], x.shape[-1])
    size -= 1 - size % 2
    window = torch.full((x.shape[1], 1, 1, size), 1.0 / size, dtype=torch.float32, device=x.device)
    return ssim(y.float(), x.float(), data_range=1.0, size_average=False, win=window)


def ssim_penalty(y: torch.Tensor, x: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight · mean_i (1 − SSIM(y_i, x_i))`` (``losses.ssim_weight``); zero when the weight is 0."""
    if weight <= 0:
        return y.new_zeros((), dtype=torch.float32)
    return weight * (1.0 - ssim_per_image(y, x)).mean()


def balanced_accuracy(pred: np.ndarray, true: np.ndarray, num_classes: Optional[int] = None) -> float:
    """Mean of the per-class recalls over the classes present in ``true``."""
    pred, true = np.asarray(pred), np.asarray(true)
    classes = np.unique(true) if num_classes is None else [c for c in range(num_classes) if np.any(true == c)]
    if len(classes) == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[true == c] == c) for c in classes]))


def roc_auc(scores: np.ndarray, true: np.ndarray) -> float:
    """Area under the ROC curve: binary (``scores`` N, for class 1) or macro one-vs-rest (``scores`` N×K).

    Mann-Whitney statistic with ties counted half; NaN when a class is absent.
    """
    scores, true = np.asarray(scores, np.float64), np.asarray(true)
    if scores.ndim == 2:
        if scores.shape[1] == 2:
            return roc_auc(scores[:, 1] - scores[:, 0], true)
        aucs = [roc_auc(scores[:, c], (true == c).astype(np.int64)) for c in range(scores.shape[1])]
        aucs = [a for a in aucs if not np.isnan(a)]
        return float(np.mean(aucs)) if aucs else float("nan")
    pos = true == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks, ties share
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_class_weights(prior: torch.Tensor) -> torch.Tensor:
    """Cross-entropy class weights 1 / (K · P(c)) so that every class counts equally (balanced accuracy)."""
    k = prior.numel()
    return (1.0 / (k * prior.float().clamp_min(1e-6))).to(prior.device)


def psnr(mse: float) -> float:
    """PSNR (dB) of x01 images from their mean squared error."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)
