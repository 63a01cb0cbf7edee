"""The training methods of the five papers, one module each, chosen by ``method.name``.

=============  ==========  ==========================================================
name           paper       filter objective
=============  ==========  ==========================================================
``aioi``       000         KL to frozen utility posteriors + λ·max(KL_s − k, 0)²
``labelflip``  003         cross-entropy against the attacker's flipped prediction
``maxent``     001 / 002   maximum entropy of the attacker's posterior (1 bit)
``filtergen``  002         filter (max entropy) + generator inserting a sampled s'
``advrec``     004         maximize a decoder adversary's reconstruction loss
=============  ==========  ==========================================================

Example::

    from privsdk.train.methods import build_method
    method = build_method("aioi", ctx, {"lam": 10.0, "k": 0.05})
"""
from __future__ import annotations

from typing import Any, Dict, Type

from privsdk.errors import InputError

from .advrec import AdvRec
from .aioi import AIOI
from .base import Batch, FrozenModel, Method, MethodContext
from .filtergen import FilterGen
from .labelflip import LabelFlip
from .maxent import MaxEnt

METHODS: Dict[str, Type[Method]] = {m.name: m for m in (AIOI, LabelFlip, MaxEnt, FilterGen, AdvRec)}

__all__ = ["METHODS", "build_method", "Batch", "FrozenModel", "Method", "MethodContext"]


def build_method(name: str, ctx: MethodContext, params: Dict[str, Any]) -> Method:
    """Instantiate the method ``name`` with its hyper-parameters."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name](ctx, dict(params or {}))
