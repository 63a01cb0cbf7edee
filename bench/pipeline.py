"""``privsdk bench pipeline``: the whole filter path, frames per second and per-stage milliseconds.

Stages: capture (how long the loop waits for the next frame of a video file
from privsdk.io; decoding runs ahead on the source's reader thread), regions (face finder), pre (fused pre-kernel), network (backend)
and post (fused post-kernel). Scenes are 640×480 and 1280×720 frames with 1 and
5 real faces (the NASA astronaut portrait's face tiled on a cluttered, face-free
background: boxes, lines and texture, as busy as a room),
run on each backend available here, through ``Filter.stream_results`` in both
modes: ``pipelined`` (what ``privsdk run`` does: the next frame's faces are
found on a worker thread while the current frame is filtered, so FPS can exceed
1 / the sum of the stages) and ``serial`` (one thread). Prints a table and writes JSON.

Example::

    privsdk bench pipeline --filter emotion --frames 60 --out bench/results/pipeline.json
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

MODES = ("pipelined", "serial")
HELP = "frames per second and per-stage ms of the whole filter path"

COLUMNS = [("backend", "backend", "s"), ("mode", "mode", "s"), ("size", "size", "s"), ("faces", "faces", "d"),
           ("found", "found/frame", ".2f"), ("fps", "FPS", ".1f"), ("capture", "capture ms", ".2f"),
           ("regions", "regions ms", ".2f"), ("pre", "pre ms", ".2f"), ("network", "network ms", ".2f"),
           ("post", "post ms", ".2f")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filter", default="emotion", help="bundled filter name or bundle path (default: %(default)s)")
    parser.add_argument("--sizes", default="640x480,1280x720", help="frame sizes WxH, comma-separated")
    parser.add_argument("--faces", default="1,5", help="faces per frame, comma-separated (default: %(default)s)")
    parser.add_argument("--backends", default="available",
                        help="comma-separated backends, or 'available' for every one that can run here")
    parser.add_argument("--frames", type=int, default=60, help="timed frames per case (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="backend intra-op threads (default: all cores)")
    parser.add_argument("--detect-width", type=int, default=None,
                        help="face detection width (default: the finder's, 640)")
    parser.add_argument("--min-face", type=int, default=None, help="smallest face in detection pixels (default: 40)")
    parser.add_argument("--background", default="cluttered", choices=("cluttered", "smooth"),
                        help="scene behind the faces (default: %(default)s; a smooth wall makes detection cheap)")
    parser.add_argument("--modes", default="pipelined,serial",
                        help="stream modes to time, comma-separated (default: %(default)s)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")


def face_tile() -> np.ndarray:
    """A BGR crop of the astronaut's face (from scikit-image when installed, else the bundled demo clip)."""
    try:
        from skimage import data

        portrait = np.ascontiguousarray(data.astronaut()[..., ::-1])
        return portrait[10:250, 110:350].copy()
    except ImportError:
        from privsdk.commands.demo import DEMO_CLIP
        from privsdk.io import open_source

        with open_source(str(DEMO_CLIP)) as src:
            first = src.read()
        return first[0:190, 230:420].copy()  # the portrait at 480 px high: face near (x 320, y 95)


def cluttered_background(size: Tuple[int, int], seed: int = 0) -> np.ndarray:
    """A seeded, face-free "room": boxes, lines and multi-scale texture (about as costly for the Haar
    detector as the demo clip's real photograph).

    A face detector works much harder on clutter than on a smooth wall (more windows pass its early
    stages), so a smooth background would overstate the frame rate a camera gets.
    """
    import cv2

    w, h = size
    rng = np.random.default_rng(seed)
    texture = np.zeros((h, w), np.float32)
    for octave in (4, 16, 64):  # 1/f-like texture: coarse shading plus fine grain
        small = rng.normal(0, 1, (max(2, h // octave), max(2, w // octave))).astype(np.float32)
        texture += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * (octave / 64.0) * 25
    frame = np.clip(120 + texture, 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    frame = np.ascontiguousarray(frame)
    for _ in range(12):  # furniture, shelves, posters
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        colour = tuple(int(c) for c in rng.integers(20, 235, 3))
        cv2.rectangle(frame, (x0, y0), (x1, y1), colour, -1 if rng.random() < 0.5 else int(rng.integers(1, 5)))
    for _ in range(8):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(frame, p0, p1, tuple(int(c) for c in rng.integers(0, 255, 3)), int(rng.integers(1, 4)))
    grain = rng.normal(0, 3, frame.shape)
    return np.clip(frame + grain, 0, 255).astype(np.uint8)


def make_scene(size: Tuple[int, int], faces: int, tile: np.ndarray, background: str = "cluttered") -> np.ndarray:
    """A ``size`` (w, h) frame with ``faces`` copies of the face tile on a ``cluttered`` or ``smooth`` background."""
    import cv2

    w, h = size
    if background == "cluttered":
        frame = cluttered_background(size)
    elif background == "smooth":
        yy, xx = np.mgrid[0:h, 0:w]
        frame = np.empty((h, w, 3), np.uint8)
        frame[..., 0] = (90 + 60 * xx / w).astype(np.uint8)
        frame[..., 1] = (110 + 40 * yy / h).astype(np.uint8)
        frame[..., 2] = 120
    else:
        raise ValueError(f"background {background!r}: expected 'cluttered' or 'smooth'")
    cols = min(faces, 3 if h < 600 else 5) if faces > 1 else 1
    rows = (faces + cols - 1) // cols
    side = int(min(0.9 * w / cols, 0.9 * h / rows, 0.45 * h))
    face = cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA)
    gap_x, gap_y = (w - cols * side) // (cols + 1), (h - rows * side) // (rows + 1)
    for k in range(faces):
        r, c = divmod(k, cols)
        x, y = gap_x + c * (side + gap_x), gap_y + r * (side + gap_y)
        frame[y:y + side, x:x + side] = face
    return frame


def write_clip(path: Path, frame: np.ndarray, n: int, fps: float = 30.0) -> None:
    """An MJPG clip of ``n`` copies of ``frame`` (each slightly shifted, so decoding is real work)."""
    import cv2

    h, w = frame.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for i in range(n):
        writer.write(np.roll(frame, i % 4, axis=1))
    writer.release()


def bench_case(filter_path: str, backend: str, clip: Path, frames: int, warmup: int,
               threads: Optional[int], region_options: Optional[Dict[str, Any]] = None,
               mode: str = "pipelined") -> Dict[str, Any]:
    """Stream one clip through a Filter; FPS over the whole loop and mean ms per stage."""
    from privsdk import Filter
    from privsdk.io import open_source

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    flt = Filter(filter_path, backend=backend, regions="faces", threads=threads, region_options=region_options)
    with open_source(str(clip)) as src:
        for _ in range(warmup):
            flt.apply(src.read())
        flt.stats.reset()
        t_start = time.perf_counter()
        for _ in flt.stream_results(src, frames, pipelined=mode == "pipelined"):
            pass
        wall = time.perf_counter() - t_start
    n = max(1, flt.stats.frames)
    per = flt.stats.per_frame_ms()
    return {"backend": flt.describe_backend(), "mode": mode, "fps": n / wall, "found": flt.stats.faces / n, **per}


def main(args: argparse.Namespace) -> int:
    from privsdk import registry
    from privsdk.backends import available_backends
    from privsdk.bench.common import format_table, write_json
    from privsdk.filter import Filter

    path = str(registry.resolve(args.filter))
    probe = Filter(path, regions="full")
    if probe.kind == "lite":
        backends = ["auto"]
    elif args.backends == "available":
        from privsdk.filter import _load_bundle_network

        spec = _load_bundle_network(Path(path)).spec if not registry.is_checkpoint(Path(path)) else None
        backends = [b for b, why in available_backends(spec).items() if why is None]
    else:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    face_counts = [int(v) for v in args.faces.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        from privsdk.errors import InputError

        raise InputError(f"--modes: unknown mode(s) {bad}; expected some of {', '.join(MODES)}")
    tile = face_tile()
    region_options: Dict[str, Any] = {}
    if args.detect_width:
        region_options["detect_width"] = args.detect_width
    if args.min_face:
        region_options["min_size"] = args.min_face
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="privsdk-bench-") as tmp:
        for (w, h) in sizes:
            for faces in face_counts:
                clip = Path(tmp) / f"scene_{w}x{h}_{faces}.avi"
                write_clip(clip, make_scene((w, h), faces, tile, args.background), args.frames + args.warmup)
                for backend in backends:
                    for mode in modes:
                        row = bench_case(path, backend, clip, args.frames, args.warmup, args.threads,
                                         region_options, mode)
                        row.update({"size": f"{w}x{h}", "faces": faces, "filter": probe.name, "kind": probe.kind})
                        rows.append(row)
                        print(format_table([row], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(format_table(rows, COLUMNS))
    if args.out:
        from privsdk import kernels

        write_json(args.out, {"benchmark": "pipeline", "filter": probe.info.get("name"), "path": path,
                              "region_options": region_options, "background": args.background,
                              "kernels": kernels.IMPLEMENTATION, "frames": args.frames, "rows": rows})
        print(f"wrote {args.out}")
    return 0
