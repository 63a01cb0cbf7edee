"""The one small interface every backend implements, and what it is given.

A backend runs a filter network on a batch: ``run(image, noise) -> filtered``
where ``image`` is N×3×H×W float32 (normalized, from the fused pre-kernel),
``noise`` the network's noise inputs (N×C×h×w each, N(0, 1)) and the result
N×3×H×W float32 RGB in [0, 1]. The returned array may be a buffer the backend
reuses on the next call: copy it if you keep it. Sessions are created once, in
the constructor.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class NoiseInput:
    """A noise input of the network: its graph name and shape without the batch axis."""

    name: str
    shape: Tuple[int, ...]


@dataclass
class NetworkSpec:
    """What a backend needs to know about a filter network."""

    source: str
    input_hw: Tuple[int, int]
    image_input: str = "image"
    output: str = "filtered"
    noise_inputs: List[NoiseInput] = field(default_factory=list)
    onnx_bytes: Optional[bytes] = None
    onnx_sha256: Optional[str] = None
    #: a torch module (``forward(image, noise) -> rgb01``) for checkpoints; None for bundles
    module: Any = None


class Backend(abc.ABC):
    """A loaded network, ready to run batches. Subclasses set ``name`` and ``provider``."""

    #: backend family: "onnxruntime", "tensorrt" or "torch"
    name: str = "?"
    #: what actually executes it, said out loud (e.g. "CPUExecutionProvider")
    provider: str = "?"
    #: the largest batch one call accepts (None: any)
    max_batch: Optional[int] = None

    @abc.abstractmethod
    def run(self, image: np.ndarray, noise: Sequence[np.ndarray]) -> np.ndarray:
        """Run one batch; returns N×3×H×W float32 RGB in [0, 1] (possibly a reused buffer)."""

    def close(self) -> None:
        """Release the session (the backend is unusable afterwards)."""

    def describe(self) -> str:
        """One line saying what runs the network."""
        return f"{self.name} on {self.provider}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
