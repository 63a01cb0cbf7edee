"""The shortest live example: filter the default webcam (camera index 0) and show it.

Example::

    python samples/webcam.py
    python samples/webcam.py --camera 1 --filter emotion-lite
"""
from __future__ import annotations

import argparse

from privsdk import Filter
from privsdk.io import open_sink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("Example::")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filter", default="emotion", help="bundled filter name or bundle path")
    parser.add_argument("--camera", type=int, default=0, help="camera index (default: 0)")
    args = parser.parse_args()

    flt = Filter(args.filter)
    with open_sink("window") as window:                     # q or Esc quits
        for frame in flt.stream(args.camera):
            window.write(frame)
            if window.stopped:
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
