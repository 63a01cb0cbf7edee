"""The torch backend: runs a training checkpoint directly (no export needed).

torch is imported here only, when this backend is created; ``import privsdk``
never imports it. The checkpoint is read by
``privsdk.train.checkpoint.load_filter``.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from ..errors import BackendError, DependencyError
from ..log import get_logger
from .base import Backend, NetworkSpec

_log = get_logger(__name__)


def import_torch() -> Any:
    """Import torch or raise :class:`DependencyError` saying how to get it."""
    try:
        import torch
    except ImportError as exc:
        raise DependencyError(f"the torch backend needs torch: 'pip install privsdk[train]' (import failed: {exc})") from None
    return torch


class TorchBackend(Backend):
    """A filter module from a checkpoint, in eval mode, under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, spec: NetworkSpec, device: str = "auto") -> None:
        if spec.module is None:
            raise BackendError(f"filter {spec.source}: the torch backend runs training checkpoints (.pt); "
                               "this is an exported bundle -- use backend='onnxruntime' (or 'auto')")
        torch = import_torch()
        self.torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} was requested for the torch backend, but torch sees no CUDA "
                               "device; expected device='cpu' or a CUDA build of torch")
        self.device = torch.device(device)
        self.module = spec.module.to(self.device).eval()
        self.spec = spec
        self.provider = f"torch {torch.__version__} on {self.device}"
        self._lock = threading.Lock()
        _log.info("Running on %s", self.provider)

    def run(self, image: np.ndarray, noise: Sequence[np.ndarray]) -> np.ndarray:
        torch = self.torch
        with self._lock, torch.inference_mode():
            try:
                x = torch.from_numpy(image).to(self.device)
                z = torch.from_numpy(noise[0]).to(self.device) if noise else None
                y = self.module(x, z)
            except Exception as exc:
                raise BackendError(f"filter {self.spec.source}: the torch module failed ({exc})") from None
            return y.detach().to("cpu", torch.float32).numpy()
