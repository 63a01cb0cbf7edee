"""What every training method shares: the context it is given and the interface it implements.

A method owns its adversaries (attacker, decoder, generator, discriminator) and
their optimizers. The trainer calls, per batch:

1. ``adversary_step(batch)`` ``adversary_steps`` times, with the filter output detached;
2. ``filter_loss(batch, y)`` with ``y`` the filter output (gradients flow to the filter);
   the trainer adds the terms common to every method (distortion budget, pose, identity).

``attacker`` is the secret classifier on filtered images that validation reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from privsdk.errors import InputError

from ..networks import CNNPlusLinear, SmallResNet


@dataclass
class FrozenModel:
    """A model trained on clean images and frozen: ``kind`` is ``"class"`` (logits) or ``"reg"`` (values)."""

    module: nn.Module
    kind: str
    outputs: int


@dataclass
class MethodContext:
    """What a method needs to know about the run."""

    device: torch.device
    size: int
    num_secret_classes: int
    secret_prior: torch.Tensor                       # P_s, float32 (K,)
    utility: Dict[str, FrozenModel] = field(default_factory=dict)   # frozen models of the utility labels
    fixed_secret: Optional[FrozenModel] = None       # the clean-trained secret classifier ("fixed attacker")
    estimator_width: int = 16
    adversary_linear_branch: bool = False            # secret adversary = CNN + linear model on the pixels
    adversary_lr: float = 1e-3
    autocast: Any = None                             # a callable returning a context manager
    world_size: int = 1                              # > 1 under torchrun: gradients are all-reduced


@dataclass
class Batch:
    """One training batch: raw images x01 (N×3×H×W), secret labels and utility labels."""

    x: torch.Tensor
    s: torch.Tensor
    u: Dict[str, torch.Tensor]
    y_detached: Optional[torch.Tensor] = None


class Method:
    """Base class of the training methods. Subclasses set ``name`` and ``defaults``."""

    name: str = ""
    defaults: Dict[str, Any] = {}
    #: train the attacker with class-balanced cross-entropy (balanced accuracy is the privacy metric);
    #: aioi sets False: its KL to the prior needs the attacker's calibrated posterior p(s|y).
    balanced_attacker: bool = True

    def __init__(self, ctx: MethodContext, params: Dict[str, Any]):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise InputError(f"unknown parameter(s) {sorted(unknown)} for method {self.name!r}; "
                             f"expected some of {sorted(self.defaults)}")
        self.ctx = ctx
        self.params: Dict[str, Any] = {**self.defaults, **params}
        self.attacker = (CNNPlusLinear(ctx.num_secret_classes, ctx.estimator_width, size=ctx.size)
                         if ctx.adversary_linear_branch
                         else SmallResNet(ctx.num_secret_classes, ctx.estimator_width)).to(ctx.device)
        self.modules: Dict[str, nn.Module] = {"attacker": self.attacker}
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}

    # -- helpers for subclasses
    def _add(self, name: str, module: nn.Module) -> nn.Module:
        module = module.to(self.ctx.device)
        self.modules[name] = module
        return module

    def _make_optimizers(self) -> None:
        for name, module in self.modules.items():
            self.optimizers[name] = torch.optim.Adam(module.parameters(), lr=self.ctx.adversary_lr, betas=(0.5, 0.999))

    def _autocast(self):
        return self.ctx.autocast() if self.ctx.autocast is not None else _null()

    def _step(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.ctx.world_size > 1:  # data-parallel: average the adversary's gradients over ranks
            import torch.distributed as dist

            for p in self.modules[name].parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(self.ctx.world_size)
        opt.step()

    def _train_attacker(self, batch: Batch) -> Dict[str, float]:
        self.attacker.train()
        with self._autocast():
            loss = F.cross_entropy(self.attacker(batch.y_detached).float(), batch.s, weight=self._class_weights())
        self._step("attacker", loss)
        return {"attacker_ce": float(loss.detach())}

    def _class_weights(self) -> Optional[torch.Tensor]:
        from ..losses import balanced_class_weights

        return balanced_class_weights(self.ctx.secret_prior) if self.balanced_attacker else None

    def _utility_kl(self, batch: Batch, y: torch.Tensor) -> torch.Tensor:
        """Sum over frozen utility models of KL(p(u|x) ‖ p(u|y)) (classes) or MSE (regressions)."""
        from ..losses import kl_posteriors

        total = y.new_zeros((), dtype=torch.float32)
        for model in self.ctx.utility.values():
            with torch.no_grad():
                ref = model.module(batch.x).float()
            out = model.module(y).float()
            total = total + (kl_posteriors(ref, out).mean() if model.kind == "class" else F.mse_loss(out, ref))
        return total

    # -- interface
    def adversary_step(self, batch: Batch) -> Dict[str, float]:
        """Train the adversaries one step on ``batch.y_detached``; returns logged losses."""
        return self._train_attacker(batch)

    def filter_loss(self, batch: Batch, y: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The method's loss for the filter output ``y`` (with gradients) and the values to log."""
        raise NotImplementedError

    def hyperparameters(self) -> Dict[str, Any]:
        """The method's resolved hyper-parameters (saved in the checkpoint and the bundle)."""
        return dict(self.params)

    def state_dict(self) -> Dict[str, Any]:
        """Adversary weights and optimizer states, for exact resume."""
        return {"modules": {k: m.state_dict() for k, m in self.modules.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])

    def train(self) -> None:
        for m in self.modules.values():
            m.train()

    def eval(self) -> None:
        for m in self.modules.values():
            m.eval()


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
