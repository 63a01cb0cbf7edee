"""privsdk: sanitize camera frames on the device, before they leave it.

Example::

    import numpy as np
    from privsdk import Filter
    frame = np.zeros((480, 640, 3), np.uint8)        # a BGR frame from any camera
    clean = Filter("emotion").apply(frame)            # faces filtered, the rest untouched

Importing privsdk is light: it never imports torch or onnx, and OpenCV and
onnxruntime are imported only when a filter or a camera is first used.
"""
from __future__ import annotations

from typing import Any

from .errors import (BackendError, BundleError, DependencyError, InputError, PrivsdkError,
                     RegionError, SourceError)

__version__ = "0.1.0"

# Public names that pull in heavier modules are resolved on first use (PEP 562).
_LAZY = {
    "Filter": ("privsdk.filter", "Filter"),
    "filters": ("privsdk.registry", "filters"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'privsdk' has no attribute {name!r}")


__all__ = ["Filter", "filters", "PrivsdkError", "InputError", "BundleError", "BackendError",
           "SourceError", "RegionError", "DependencyError", "__version__"]
