"""Make privsdk's bundled demo clip from the public-domain NASA astronaut portrait.

The portrait (Eileen Collins, NASA, public domain) ships with scikit-image as
``skimage.data.astronaut()``. The clip is a slow pan and zoom over it, 640×480,
so that the face moves and changes size like in a real video. scikit-image is
needed only to run this script, not at runtime: the clip is committed under
``sdk/privsdk/data/``.

Example::

    python samples/make_demo_clip.py --out sdk/privsdk/data/demo_astronaut.mp4
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "sdk" / "privsdk" / "data" / "demo_astronaut.mp4"


def portrait() -> np.ndarray:
    """The astronaut portrait as a 512×512 BGR uint8 image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., ::-1])


def frames(image: np.ndarray, n: int, size: tuple) -> list:
    """``n`` frames of ``size`` (w, h): the camera zooms from the full portrait onto the face and back
    while drifting sideways (a smooth affine path, no cuts)."""
    out_w, out_h = size
    h, w = image.shape[:2]
    face_cx, face_cy = 230.0, 130.0          # centre of the astronaut's face in the portrait
    result = []
    for i in range(n):
        t = i / max(1, n - 1)
        zoom = 1.0 + 0.8 * math.sin(math.pi * t)            # 1 → 1.8 → 1
        # view centre moves from the image centre towards the face and drifts
        cx = (1 - 0.6 * math.sin(math.pi * t)) * (w / 2) + 0.6 * math.sin(math.pi * t) * face_cx \
            + 25 * math.sin(2 * math.pi * t)
        cy = (1 - 0.6 * math.sin(math.pi * t)) * (h / 2) + 0.6 * math.sin(math.pi * t) * face_cy
        s = zoom * out_h / h
        m = np.array([[s, 0, out_w / 2 - s * cx], [0, s, out_h / 2 - s * cy]], np.float32)
        result.append(cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT101))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("Example::")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output video (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second (default: %(default)s)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fourcc", default="mp4v", help="encoder FourCC (default: %(default)s)")
    args = parser.parse_args()
    n = int(round(args.seconds * args.fps))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*args.fourcc), args.fps, (args.width, args.height))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {out} with FourCC {args.fourcc!r}")
    for frame in frames(portrait(), n, (args.width, args.height)):
        writer.write(frame)
    writer.release()
    print(f"wrote {out}: {n} frames, {args.width}×{args.height} at {args.fps:g} FPS, {out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
