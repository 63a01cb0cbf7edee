"""Filter a video file: same frame rate and frame count, the sound copied (unfiltered) only with
--keep-audio, and a JSON side-file of the faces filtered in each frame.

Example::

    python samples/video_file.py input.mp4 output.mp4 --json output.faces.json
"""
from __future__ import annotations

import argparse

from tqdm import tqdm

from privsdk import Filter
from privsdk.io import SideFile, open_sink, open_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("Example::")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="input video")
    parser.add_argument("output", help="output video (.mp4, .avi, .mkv)")
    parser.add_argument("--filter", default="emotion", help="bundled filter name or bundle path")
    parser.add_argument("--encoder", default=None, help="FourCC: mp4v, avc1, MJPG, XVID ...")
    parser.add_argument("--json", default=None, help="write the faces filtered per frame here")
    parser.add_argument("--keep-audio", action="store_true",
                        help="copy the input's sound, unfiltered (needs ffmpeg or privsdk[audio])")
    args = parser.parse_args()

    flt = Filter(args.filter, regions="faces")
    side = SideFile(args.json, {"filter": flt.name, "source": args.input}) if args.json else None
    with open_source(args.input) as video, \
            open_sink(args.output, fps=video.fps, encoder=args.encoder, audio_from=args.input if args.keep_audio else None) as out:
        for item in tqdm(flt.stream_results(video), total=video.frame_count, unit="frame"):
            out.write(item.frame)
            if side is not None:
                side.add(item.index, item.regions, item.blanked, error=item.error)
    if side is not None:
        side.close(flt.stats.summary())
    print(flt.stats.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
