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

from .lazy import lazy_getattr
from .errors import (BackendError, BundleError, DependencyError, InputError, PrivsdkError,
                     RegionError, SourceError)

__version__ = "0.1.0"

# Public names that pull in heavier modules are resolved on first use (PEP 562).
_LAZY = {
    "Filter": ("privsdk.filter", "Filter"),
    "filters": ("privsdk.registry", "filters"),
}


__getattr__ = lazy_getattr(globals(), _LAZY)


__all__ = ["Filter", "filters", "PrivsdkError", "InputError", "BundleError", "BackendError",
           "SourceError", "RegionError", "DependencyError", "__version__"]
