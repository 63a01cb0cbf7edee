"""Backends: what runs a filter network, behind one small interface (:class:`Backend`).

* ``onnxruntime`` -- CPU, CUDA and TensorRT execution providers when present;
* ``tensorrt``    -- a cached TensorRT engine built on this device (privsdk.trt_runner);
* ``torch``       -- a training checkpoint, directly.

``create_backend("auto", spec)`` picks the fastest one available and says which.

Example::

    from privsdk.backends import available_backends, create_backend
    print(available_backends())                 # {"onnxruntime": None, "tensorrt": "TensorRT is not installed ...", ...}
    backend = create_backend("auto", spec)      # logs "Running on CPUExecutionProvider"
"""
from __future__ import annotations

from typing import Dict, Optional

from ..errors import InputError
from ..log import get_logger
from .base import Backend, NetworkSpec, NoiseInput

_log = get_logger(__name__)

NAMES = ("auto", "onnxruntime", "tensorrt", "torch")
ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "engine": "tensorrt"}
DEVICES = ("auto", "cpu", "cuda", "tensorrt")


def normalize_device(device: str) -> str:
    """Check ``device`` (auto | cpu | cuda | cuda:N | tensorrt) and return it lower-cased."""
    d = str(device).lower()
    if d in DEVICES or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise InputError(f"device: expected one of {DEVICES} or 'cuda:N', got {device!r}")


def available_backends(spec: Optional[NetworkSpec] = None) -> Dict[str, Optional[str]]:
    """Each backend name -> None when it can run here, else the reason it cannot."""
    from .tensorrt import unavailable_reason

    out: Dict[str, Optional[str]] = {}
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        out["onnxruntime"] = "onnxruntime is not installed ('pip install onnxruntime')"
    else:
        out["onnxruntime"] = None if spec is None or spec.onnx_bytes is not None else "the filter has no ONNX"
    out["tensorrt"] = unavailable_reason(spec)
    try:
        torch_found = importlib.util.find_spec("torch") is not None
    except ValueError:
        torch_found = False
    if not torch_found:
        out["torch"] = "torch is not installed"
    elif spec is not None and spec.module is None:
        out["torch"] = "runs training checkpoints only, and this filter is a bundle"
    else:
        out["torch"] = None
    return out


def create_backend(name: str, spec: NetworkSpec, device: str = "auto", threads: Optional[int] = None) -> Backend:
    """Create the backend ``name`` (or the fastest available for ``auto``) for ``spec``."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in NAMES:
        raise InputError(f"backend: expected one of {NAMES} (or {sorted(ALIASES)}), got {name!r}")
    device = normalize_device(device)
    if key == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(spec, device, threads)
    if key == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(spec, device)
    if key == "torch":
        from .torch import TorchBackend

        return TorchBackend(spec, device)
    # auto: a checkpoint runs on torch; a bundle on a cached TensorRT engine when one can
    # run here (GPU), else onnxruntime with its best execution provider.
    if spec.module is not None:
        from .torch import TorchBackend

        backend: Backend = TorchBackend(spec, device)
    else:
        reasons = available_backends(spec)
        if reasons.get("tensorrt") is None and device != "cpu":
            from .tensorrt import TensorRTBackend

            backend = TensorRTBackend(spec, device)
        else:
            from .onnxruntime import OnnxRuntimeBackend

            _log.debug("TensorRT engine backend skipped: %s", reasons.get("tensorrt"))
            backend = OnnxRuntimeBackend(spec, device, threads)
    _log.info("backend auto: chose %s", backend.describe())
    return backend


__all__ = ["Backend", "NetworkSpec", "NoiseInput", "create_backend", "available_backends", "normalize_device", "NAMES"]
