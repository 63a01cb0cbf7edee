"""``advrec`` -- adversarial reconstruction (paper 004, Xiao et al., AAAI 2020).

A decoder adversary D is trained to reconstruct the raw image x from the filter
output y (pixel MSE + ``perceptual_weight`` · perceptual distance). The filter
keeps the task and *maximizes* the adversary's reconstruction loss::

    L_f = utility_weight · KL(p_φ(u|x) ‖ p_φ(u|y))
          − rec_weight · (mse(D(y), x) + perceptual_weight · perc(D(y), x))
          + secret_weight · (log K − H(p(s|y)))

The perceptual distance is the MSE between the features of a frozen
clean-trained network (the run's fixed secret classifier: its stem and first
stage). The last term (max entropy of the secret attacker) is privsdk's
addition so that the filter also hides the named secret; set
``secret_weight: 0`` for the paper's objective alone.

Hyper-parameters: ``rec_weight`` (1), ``perceptual_weight`` (1),
``utility_weight`` (1), ``secret_weight`` (1).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F

from ..losses import entropy
from ..networks import ReconstructionDecoder
from .base import Batch, Method, MethodContext


class AdvRec(Method):
    name = "advrec"
    defaults: Dict[str, Any] = {"rec_weight": 1.0, "perceptual_weight": 1.0, "utility_weight": 1.0,
                                "secret_weight": 1.0}

    def __init__(self, ctx: MethodContext, params: Dict[str, Any]):
        super().__init__(ctx, params)
        self.decoder = self._add("decoder", ReconstructionDecoder(width=2 * ctx.estimator_width))
        self._make_optimizers()

    def _perceptual(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fixed = self.ctx.fixed_secret
        if fixed is None or float(self.params["perceptual_weight"]) == 0.0:
            return a.new_zeros((), dtype=torch.float32)
        net = fixed.module

        def feats(t: torch.Tensor) -> torch.Tensor:
            return net.stages[0](net.stem((t - 0.5) * 4.0))

        return F.mse_loss(feats(a).float(), feats(b).float())

    def reconstruction_loss(self, rec: torch.Tensor, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(pixel MSE, perceptual distance) between a reconstruction and the raw image."""
        return F.mse_loss(rec.float(), x.float()), self._perceptual(rec, x)

    def adversary_step(self, batch: Batch) -> Dict[str, float]:
        logs = self._train_attacker(batch)
        self.decoder.train()
        with self._autocast():
            rec = self.decoder(batch.y_detached)
        pix, perc = self.reconstruction_loss(rec, batch.x)
        self._step("decoder", pix + float(self.params["perceptual_weight"]) * perc)
        logs.update({"decoder_mse": float(pix.detach()), "decoder_perceptual": float(perc.detach())})
        return logs

    def filter_loss(self, batch: Batch, y: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        self.decoder.eval()
        self.attacker.eval()
        with self._autocast():
            rec = self.decoder(y)
            logits = self.attacker(y)
        pix, perc = self.reconstruction_loss(rec, batch.x)
        rec_loss = pix + float(self.params["perceptual_weight"]) * perc
        gap = math.log(self.ctx.num_secret_classes) - entropy(logits).mean()
        util = float(self.params["utility_weight"]) * self._utility_kl(batch, y)
        loss = util - float(self.params["rec_weight"]) * rec_loss + float(self.params["secret_weight"]) * gap
        return loss, {"reconstruction": float(rec_loss.detach()), "entropy_gap": float(gap.detach()),
                      "utility_kl": float(util.detach())}
