"""``aioi`` -- Adversarial Information Obfuscation (paper 000, Eq. (10) / Algorithm 1).

Filter loss (fixed-utility variant, Section 3.1)::

    Θ(θ) = E[ KL(p_φ(u|x) ‖ p_φ(u|y)) ] + λ · max(E[ KL_s ] − k, 0)²

with p_φ the *frozen* clean-trained utility models (regressions use MSE between
their outputs on x and on y), p_η the secret attacker trained by cross-entropy on
filtered images, and the budget k in nats. ``kl_direction``:

- ``"paper"`` (default): KL_s = KL(P_s ‖ p_η(s|y)), as Eq. (10) is written;
- ``"code"``: KL_s = KL(p_η(s|y) ‖ P_s), as the authors' code computes it.

Hyper-parameters: ``lam`` (λ, default 10), ``k`` (nats, default 0.0),
``kl_direction``, ``utility_weight`` (default 1).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from ..losses import KL_DIRECTIONS, hinge_squared, kl_to_prior
from .base import Batch, Method, MethodContext
from privsdk.errors import InputError


class AIOI(Method):
    name = "aioi"
    defaults: Dict[str, Any] = {"lam": 10.0, "k": 0.0, "kl_direction": "paper", "utility_weight": 1.0}
    balanced_attacker = False  # p_η must estimate the true posterior p(s|y) (plain cross-entropy)

    def __init__(self, ctx: MethodContext, params: Dict[str, Any]):
        super().__init__(ctx, params)
        if self.params["kl_direction"] not in KL_DIRECTIONS:
            raise InputError(f"aioi kl_direction is {self.params['kl_direction']!r}; expected one of {list(KL_DIRECTIONS)}")
        if float(self.params["k"]) < 0:
            raise InputError(f"aioi budget k is {self.params['k']}; expected >= 0 nats")
        self._make_optimizers()

    def filter_loss(self, batch: Batch, y: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        self.attacker.eval()  # its running statistics are the adversary's, not updated by the filter step
        with self._autocast():
            logits = self.attacker(y)
        kl_s = kl_to_prior(logits, self.ctx.secret_prior, self.params["kl_direction"]).mean()
        secret_term = float(self.params["lam"]) * hinge_squared(kl_s, float(self.params["k"]))
        util = self._utility_kl(batch, y) * float(self.params["utility_weight"])
        loss = util + secret_term
        return loss, {"kl_secret": float(kl_s.detach()), "utility_kl": float(util.detach()),
                      "secret_penalty": float(secret_term.detach())}
