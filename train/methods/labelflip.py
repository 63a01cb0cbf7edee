"""``labelflip`` -- paper 003 (Pittaluga et al., WACV 2019).

The attacker is trained by cross-entropy on filtered images. The filter
(encoder) is trained with cross-entropy against the *opposite* of the
attacker's current prediction (for K > 2 classes: the next class, (ŝ + 1) mod K),
so the attacker is pushed to flip rather than to saturate. Use the filter with
``norm: perloc`` (per-location normalization without biases) as the paper does.

Utility (``utility_mode``):

- ``"task"`` (default): α · the frozen clean utility models' loss on y against the
  true utility labels (cross-entropy for classes, MSE for regressions), the
  paper's "promoted task";
- ``"variance"``: α · mean over locations of max(1 − Var_b(y)/Var_b(x), 0)², the
  generic constraint that each output location keeps its variance over the batch
  (prevents collapse of the encoding).

Hyper-parameters: ``alpha`` (default 1), ``utility_mode``.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F

from privsdk.errors import InputError

from .base import Batch, Method, MethodContext

UTILITY_MODES = ("task", "variance")


def variance_keep_penalty(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """mean over (c, y, x) of max(1 − Var_batch(y)/Var_batch(x), 0)²."""
    vy = y.float().var(dim=0, unbiased=False)
    vx = x.float().var(dim=0, unbiased=False).clamp_min(1e-6)
    return (torch.clamp(1.0 - vy / vx, min=0.0) ** 2).mean()


class LabelFlip(Method):
    name = "labelflip"
    defaults: Dict[str, Any] = {"alpha": 1.0, "utility_mode": "task"}

    def __init__(self, ctx: MethodContext, params: Dict[str, Any]):
        super().__init__(ctx, params)
        if self.params["utility_mode"] not in UTILITY_MODES:
            raise InputError(f"labelflip utility_mode is {self.params['utility_mode']!r}; "
                             f"expected one of {list(UTILITY_MODES)}")
        self._make_optimizers()

    def filter_loss(self, batch: Batch, y: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        self.attacker.eval()
        with self._autocast():
            logits = self.attacker(y).float()
        k = self.ctx.num_secret_classes
        flipped = (logits.detach().argmax(dim=1) + 1) % k
        flip_ce = F.cross_entropy(logits, flipped)
        if self.params["utility_mode"] == "variance":
            util = variance_keep_penalty(y, batch.x)
        else:
            util = y.new_zeros((), dtype=torch.float32)
            for name, model in self.ctx.utility.items():
                out = model.module(y).float()
                target = batch.u[name]
                util = util + (F.cross_entropy(out, target) if model.kind == "class"
                               else F.mse_loss(out, target.float().view_as(out)))
        util = float(self.params["alpha"]) * util
        return flip_ce + util, {"flip_ce": float(flip_ce.detach()), "utility": float(util.detach())}
