"""The fused pre/post kernels: the C++ extension when built, else the numpy reference.

``pre``, ``post`` and ``NoiseSource`` have the semantics documented in
:mod:`privsdk.kernels.reference`. ``IMPLEMENTATION`` says which one is in use
("cpp" or "numpy"); a missing extension is reported once, never silently.
:class:`PreparedMaps` checks a filter's maps once, for repeated ``pre`` calls
without the per-call scan of their values.

Example::

    import numpy as np
    from privsdk.kernels import pre, post, NoiseSource
    frame = np.zeros((480, 640, 3), np.uint8)
    scale = np.ones((3, 64, 64), np.float32); shift = np.zeros_like(scale)
    x = pre(frame, (100, 50, 128, 128), scale, shift, rng=NoiseSource())
    post(x, frame, (100, 50, 128, 128))
"""
from __future__ import annotations

from ..log import get_logger, warn_once
from . import reference

_log = get_logger(__name__)

try:  # the compiled extension, built by scikit-build-core from cpp_ext/
    from .. import _fused  # type: ignore[attr-defined]
except ImportError as exc:  # pragma: no cover - exercised when the build is absent
    _fused = None
    _import_error = exc
else:
    _import_error = None

if _fused is not None:
    from ._cpp import NoiseSource, post, pre  # noqa: F401

    IMPLEMENTATION = "cpp"
else:
    NoiseSource = reference.NoiseSource
    pre = reference.pre
    post = reference.post
    IMPLEMENTATION = "numpy"
    warn_once(
        "fused-missing",
        f"privsdk._fused (the C++ fused kernel) is not available ({_import_error}); "
        "using the numpy reference, which is several times slower. Reinstall privsdk "
        "with a C++17 compiler to build it.",
        _log,
    )

from .prepared import PreparedMaps  # noqa: E402  (it picks the implementation chosen above)

__all__ = ["pre", "post", "NoiseSource", "PreparedMaps", "IMPLEMENTATION", "reference"]
