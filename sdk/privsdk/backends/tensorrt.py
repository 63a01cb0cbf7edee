"""The TensorRT engine backend (through :mod:`privsdk.trt_runner`).

Engines are never shipped: they are built on the target from the bundle's ONNX
(``privsdk export BUNDLE --format engine``) and cached, keyed by ONNX hash,
GPU, TensorRT version and precision. This backend runs a cached engine; where
TensorRT is absent it is unavailable (``backend="auto"`` skips it, asking for
it raises :class:`BackendError` with the reason).
"""
from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np

from ..errors import BackendError, DependencyError
from ..log import get_logger
from .base import Backend, NetworkSpec

_log = get_logger(__name__)


def unavailable_reason(spec: Optional[NetworkSpec] = None, precision: str = "fp16") -> Optional[str]:
    """Why the TensorRT engine backend cannot run here (None when it can)."""
    try:
        from .. import trt_runner
    except ImportError as exc:
        return f"privsdk.trt_runner is not available ({exc})"
    try:
        trt_runner.require_tensorrt()
    except Exception as exc:
        return str(exc)
    if spec is not None:
        if spec.onnx_sha256 is None:
            return "the filter has no filter.onnx to build an engine from"
        try:
            key = trt_runner.EngineKey.for_current_device(spec.onnx_sha256, precision=precision)
            if trt_runner.EngineCache().lookup(key) is None:
                return (f"no cached TensorRT engine for this filter ({precision}); build one with "
                        f"'privsdk export {spec.source} --format engine --precision {precision}'")
        except Exception as exc:
            return f"the TensorRT engine cache could not be read ({exc})"
    return None


class TensorRTBackend(Backend):
    """A cached TensorRT engine for the filter's ONNX."""

    name = "tensorrt"

    def __init__(self, spec: NetworkSpec, device: str = "auto", precision: str = "fp16") -> None:
        reason = unavailable_reason(spec, precision)
        if reason is not None:
            raise BackendError(f"the TensorRT engine backend is unavailable: {reason}")
        from .. import trt_runner

        key = trt_runner.EngineKey.for_current_device(spec.onnx_sha256, precision=precision)
        entry = trt_runner.EngineCache().lookup(key)
        try:
            self.runner = trt_runner.EngineRunner(entry.engine_bytes, source=str(entry.engine_path))
        except (DependencyError, BackendError):
            raise
        except Exception as exc:
            raise BackendError(f"TensorRT engine {entry.engine_path} failed to load ({exc})") from None
        self.spec = spec
        self.max_batch = int(entry.max_batch) if getattr(entry, "max_batch", None) else None
        self.provider = f"TensorRT {trt_runner.tensorrt_version()} engine ({precision}) on {trt_runner.gpu_name()}"
        self._lock = threading.Lock()
        _log.info("Running on %s", self.provider)

    def run(self, image: np.ndarray, noise: Sequence[np.ndarray]) -> np.ndarray:
        feeds = {self.spec.image_input: image}
        feeds.update({n.name: z for n, z in zip(self.spec.noise_inputs, noise)})
        with self._lock:
            try:
                out = self.runner.run(feeds)[self.spec.output]
            except Exception as exc:
                raise BackendError(f"TensorRT engine for {self.spec.source} failed to run ({exc})") from None
        return np.asarray(out, dtype=np.float32)
