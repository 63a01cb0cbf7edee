"""Filter a folder (or glob) of images into another folder, keeping each file's name.

Face crops (images about the filter's input shape) are filtered whole; larger
photos are searched for faces (regions="auto"). Unreadable images are written
black and reported, never copied through.

Example::

    python samples/image_folder.py photos/ photos_filtered/
    python samples/image_folder.py "faces/*.jpg" out/ --ext .jpg
"""
from __future__ import annotations

import argparse

from tqdm import tqdm

from privsdk import Filter
from privsdk.io import ImageFolderSink, open_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("Example::")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a folder, a glob or one image")
    parser.add_argument("output", help="output folder")
    parser.add_argument("--filter", default="emotion", help="bundled filter name or bundle path")
    parser.add_argument("--ext", default=".png", help="output image type (default: .png, lossless)")
    args = parser.parse_args()

    flt = Filter(args.filter, regions="auto")
    images = open_source(args.input)
    sink = ImageFolderSink(args.output, ext=args.ext)
    for frame in tqdm(images, total=images.frame_count, unit="image"):
        item = flt.apply_safe(frame)                 # one image at a time: no hold-over between photos
        flt.reset()
        sink.write(item.frame, name=images.current_name)
        if item.blanked:
            print(f"{images.current_name}: written black ({item.error})")
    print(f"{sink.frames_written} images -> {args.output}; {flt.stats.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
