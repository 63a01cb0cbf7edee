"""Live privacy filtering of a USB (V4L2) camera: a webcam on a laptop, or a USB camera on a Jetson.

The camera is opened through V4L2 and asked for MJPEG (most USB cameras reach
their full frame rate only in MJPEG). Only the newest frame is kept, so the
output stays live however slow the filter is. Shows the result, or writes it.

Example::

    python samples/usb_camera.py                       # /dev/video0, window
    python samples/usb_camera.py --device /dev/video1 --width 640 --height 480 --sink out.mp4
"""
from __future__ import annotations

import argparse

from privsdk import Filter
from privsdk.io import open_sink, open_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("Example::")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filter", default="emotion", help="bundled filter name or bundle path")
    parser.add_argument("--device", default="/dev/video0", help="/dev/videoN, v4l2://N or an index (default: /dev/video0)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--sink", default="window", help="window, out.mp4 or an image folder (default: window)")
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    args = parser.parse_args()

    flt = Filter(args.filter, regions="faces")
    with open_source(args.device, width=args.width, height=args.height, fps=args.fps) as camera, \
            open_sink(args.sink, fps=args.fps) as sink:
        for frame in flt.stream(camera, max_frames=args.frames):
            sink.write(frame)
            if sink.stopped:
                break
    print(flt.stats.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
