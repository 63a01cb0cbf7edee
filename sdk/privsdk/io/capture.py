"""What OpenCV can capture with here: GStreamer or not, said out loud."""
from __future__ import annotations

import functools
import re
from typing import Any

from ..deps import import_cv2 as _import_cv2


def import_cv2() -> Any:
    """OpenCV for capture and output (see :func:`privsdk.deps.import_cv2`)."""
    return _import_cv2("capture and output")


@functools.lru_cache(maxsize=1)
def gstreamer_available() -> bool:
    """Whether this cv2 was built with GStreamer (PyPI's wheels are not; JetPack's is)."""
    cv2 = import_cv2()
    m = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(m and m.group(1).upper() == "YES")


def gstreamer_missing_reason() -> str:
    cv2 = import_cv2()
    return (f"this OpenCV ({cv2.__version__}, {cv2.__file__}) was built without GStreamer -- PyPI's "
            "opencv-python wheels have none. On Jetson use JetPack's python3-opencv (do not let pip replace "
            "it); elsewhere build OpenCV with -DWITH_GSTREAMER=ON")
