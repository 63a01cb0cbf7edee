"""``maxent`` -- maximum entropy of the attacker's posterior (papers 001 and 002).

The attacker is trained by cross-entropy on filtered images; the filter
minimizes the negative entropy of its posterior, written as the gap to the
maximum, ``log K − H(p(s|y))`` (nats; the target is log2 K bits, 1 bit for a
binary secret), plus ``utility_weight`` · KL(p_φ(u|x) ‖ p_φ(u|y)) to the frozen
utility models.

Hyper-parameters: ``utility_weight`` (default 1).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import torch

from ..losses import entropy
from .base import Batch, Method, MethodContext


class MaxEnt(Method):
    name = "maxent"
    defaults: Dict[str, Any] = {"utility_weight": 1.0}

    def __init__(self, ctx: MethodContext, params: Dict[str, Any]):
        super().__init__(ctx, params)
        self._make_optimizers()

    def filter_loss(self, batch: Batch, y: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        self.attacker.eval()
        with self._autocast():
            logits = self.attacker(y)
        h = entropy(logits).mean()
        gap = math.log(self.ctx.num_secret_classes) - h
        util = float(self.params["utility_weight"]) * self._utility_kl(batch, y)
        return gap + util, {"entropy_bits": float(h.detach()) / math.log(2.0),
                            "entropy_gap": float(gap.detach()), "utility_kl": float(util.detach())}
