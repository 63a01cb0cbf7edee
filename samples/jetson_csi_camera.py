"""Live privacy filtering of a Jetson CSI camera (e.g. the Raspberry Pi v2 module on a Jetson Nano/Orin).

Needs JetPack's OpenCV (built with GStreamer; do not let pip replace it). The
capture pipeline is nvarguscamerasrc → nvvidconv → BGR appsink, keeping only the
newest frame. Shows the result with an FPS overlay, or streams it with --sink.

Example::

    python samples/jetson_csi_camera.py --sensor 0 --width 1280 --height 720 --fps 30
    python samples/jetson_csi_camera.py --sink rtsp://localhost:8554/privsdk
"""
from __future__ import annotations

import argparse
import time

from privsdk import Filter
from privsdk.io import open_sink, open_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("Example::")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filter", default="emotion", help="bundled filter name or bundle path")
    parser.add_argument("--sensor", type=int, default=0, help="CSI sensor id (default: 0)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--flip", type=int, default=0, help="nvvidconv flip-method (0-7)")
    parser.add_argument("--sink", default="window", help="window, out.mp4, rtsp://... (default: window)")
    args = parser.parse_args()

    flt = Filter(args.filter, regions="faces")            # backend auto: TensorRT / CUDA when present
    print(f"{flt!r}")
    uri = f"csi://{args.sensor}?width={args.width}&height={args.height}&fps={args.fps}&flip={args.flip}"
    with open_source(uri) as camera, open_sink(args.sink, fps=args.fps) as sink:
        t_last = time.perf_counter()
        for frame in flt.stream(camera):                   # failures come out black, never raw
            sink.write(frame)
            if sink.stopped:                               # q or Esc in the window
                break
            now = time.perf_counter()
            print(f"\r{1.0 / max(now - t_last, 1e-6):5.1f} FPS, {flt.stats.faces} faces, "
                  f"{flt.stats.blanked} blanked", end="", flush=True)
            t_last = now
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
