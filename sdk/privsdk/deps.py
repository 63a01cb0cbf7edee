"""Optional dependencies, imported on first use with an error that says how to get them."""
from __future__ import annotations

from typing import Any

from .errors import DependencyError


def import_cv2(purpose: str = "this feature") -> Any:
    """Import OpenCV or raise :class:`DependencyError` saying how to get it.

    Example::

        cv2 = import_cv2("face regions")
    """
    try:
        import cv2
    except ImportError as exc:
        raise DependencyError(f"{purpose} need(s) OpenCV: 'pip install privsdk[desktop]', or on Jetson "
                              f"JetPack's python3-opencv (which has GStreamer) -- import failed: {exc}") from None
    return cv2
