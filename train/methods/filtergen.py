"""``filtergen`` -- filter + generator (paper 002, Martinsson et al.).

Two stages on top of each other:

1. the **filter** f(x, z) removes the secret: it minimizes the negative entropy of
   the secret attacker on f's output (gap to the maximum, ``log K − H``) plus
   the distortion budget (the trainer's ``losses.distortion_eps`` with a
   quadratic penalty);
2. the **generator** g(f(x), s', z') inserts a freshly sampled synthetic secret
   s' ~ P_s: it minimizes the cross-entropy of the discriminator predicting s'
   on its output, plus ``gen_distortion_weight`` · max(mse(g, x) − eps, 0)²;
3. the **discriminator** D has K + 1 outputs: the secret value of a real image,
   or "fake" (class K) for the generator's output.

The filter network is what the checkpoint holds (and what exports); the
generator is saved beside it in the run (``generator.pt``) and its losses are
logged.

Hyper-parameters: ``eps`` (generator distortion budget, MSE per pixel, default
0.01), ``gen_distortion_weight`` (default 100), ``utility_weight`` (default 1).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F

from ..losses import distortion_penalty
from ..networks import SecretGenerator, SmallResNet
from .base import Batch, Method, MethodContext
from .maxent import MaxEnt


class FilterGen(Method):
    name = "filtergen"
    defaults: Dict[str, Any] = {"eps": 0.01, "gen_distortion_weight": 100.0, "utility_weight": 1.0}

    def __init__(self, ctx: MethodContext, params: Dict[str, Any]):
        super().__init__(ctx, params)
        k = ctx.num_secret_classes
        self.generator = self._add("generator", SecretGenerator(size=ctx.size, num_classes=k, base=ctx.estimator_width))
        self.discriminator = self._add("discriminator", SmallResNet(k + 1, ctx.estimator_width))
        self._make_optimizers()

    def sample_secret(self, n: int) -> torch.Tensor:
        """n secrets drawn from the empirical prior P_s."""
        return torch.multinomial(self.ctx.secret_prior, n, replacement=True).to(self.ctx.device)

    def generate(self, y: torch.Tensor, s_prime: torch.Tensor) -> torch.Tensor:
        z = torch.randn((y.shape[0], *self.generator.noise_shape), device=y.device)
        return self.generator(y, s_prime, z)

    def adversary_step(self, batch: Batch) -> Dict[str, float]:
        logs = self._train_attacker(batch)
        k = self.ctx.num_secret_classes
        y = batch.y_detached
        s_prime = self.sample_secret(y.shape[0])
        # generator: fool D into "real image with secret s'", stay within the distortion budget
        self.generator.train()
        self.discriminator.eval()
        with self._autocast():
            g = self.generate(y, s_prime)
            adv = F.cross_entropy(self.discriminator(g).float(), s_prime)
        dist = distortion_penalty(g, batch.x, float(self.params["eps"]), float(self.params["gen_distortion_weight"]))
        self._step("generator", adv + dist)
        # discriminator: real x -> its secret, generated -> fake (class K)
        self.discriminator.train()
        with self._autocast():
            w = self._class_weights()
            w = torch.cat([w, w.new_ones(1)]) if w is not None else None  # the fake class counts 1
            real = F.cross_entropy(self.discriminator(batch.x).float(), batch.s, weight=w)
            fake_target = torch.full_like(s_prime, k)
            fake = F.cross_entropy(self.discriminator(g.detach()).float(), fake_target)
        self._step("discriminator", real + fake)
        logs.update({"generator_adv": float(adv.detach()), "generator_distortion": float(dist.detach()),
                     "discriminator_real": float(real.detach()), "discriminator_fake": float(fake.detach())})
        return logs

    def filter_loss(self, batch: Batch, y: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        # Paper 002's filter loss is the negative entropy of the attacker: the maxent objective.
        return MaxEnt.filter_loss(self, batch, y)  # type: ignore[arg-type]
