"""``privsdk demo``: filter the bundled sample clip of real faces (no camera needed).

The clip pans and zooms over the public-domain NASA astronaut portrait
(Eileen Collins, shipped by scikit-image). The result is written as a video
(default ./privsdk-demo.mp4), and a summary says what was filtered.

Example::

    privsdk demo
    privsdk demo --filter emotion-lite --out /tmp/demo.mp4
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "filter the bundled sample clip of real faces and write the result"
DESCRIPTION = __doc__.split("Example::")[0].strip()

#: the sample clip shipped in the package (made by samples/make_demo_clip.py)
DEMO_CLIP = Path(__file__).resolve().parent.parent / "data" / "demo_astronaut.mp4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .run import add_common_arguments

    parser.add_argument("--out", default="privsdk-demo.mp4", help="output video (default: %(default)s)")
    parser.add_argument("--show", action="store_true", help="also show the result in a window")
    parser.add_argument("--clip", default=str(DEMO_CLIP), help=argparse.SUPPRESS)
    add_common_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from ..errors import SourceError
    from .run import print_summary, run_pipeline

    if not Path(args.clip).is_file():
        raise SourceError(f"the demo clip {args.clip} is missing from this installation; expected it in "
                          "privsdk/data/ (regenerate it with samples/make_demo_clip.py)")
    summary = run_pipeline(args, args.clip, [args.out], args.show)
    print_summary(summary)
    print(f"the filtered demo clip is at {Path(args.out).resolve()}")
    return 0 if summary["blanked"] == 0 else 1
