"""``privsdk run``: filter a camera, video, stream or image folder, and show or save the result.

Sources: csi://0, /dev/video0 or v4l2://0, a camera index, file.mp4 (or
file://), rtsp://..., an image, a glob or a folder. Sinks: a video file, an
image folder, rtsp:// or gst:appsrc ! ..., and --show for a window with a live
FPS / latency overlay. Frames that cannot be filtered are blanked, never passed
through, and counted in the summary.

Example::

    privsdk run --source csi://0 --filter emotion --show
    privsdk run --source in.mp4 --filter emotion --sink out.mp4 --json regions.json
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Optional

HELP = "filter a camera, video or image folder (show, save or stream the result)"
DESCRIPTION = __doc__.split("Example::")[0].strip()


def add_common_arguments(parser: argparse.ArgumentParser, default_filter: Optional[str] = "emotion") -> None:
    """Options shared by ``run`` and ``demo``."""
    parser.add_argument("--filter", default=default_filter,
                        help="bundled filter name or bundle path (default: %(default)s)")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | tensorrt | torch (default: auto)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | tensorrt (default: auto)")
    parser.add_argument("--regions", default="faces",
                        help="faces | full | auto | yunet:MODEL.onnx | a plugin name (default: faces)")
    parser.add_argument("--hold", type=int, default=5, help="frames a lost face stays covered (default: 5)")
    parser.add_argument("--margin", type=float, default=None, help="extra fraction of a face box on each side (default: frame faces as the filter's "
                             "training faces were, when its bundle says; else 0.25)")
    parser.add_argument("--detect-width", type=int, default=None,
                        help="face detection runs on the frame scaled to this width (default: 640; 320 is faster but misses small faces)")
    parser.add_argument("--min-face", type=int, default=None,
                        help="smallest face side, in pixels of the detection image (default: 40)")
    parser.add_argument("--json", dest="side_file", default=None, metavar="PATH",
                        help="write a JSON side-file of what was filtered per frame")
    parser.add_argument("--encoder", default=None, help="FourCC of the video sink (mp4v, MJPG, avc1, ...)")
    parser.add_argument("--keep-audio", action="store_true",
                        help="copy a video file's sound, unfiltered, into the video sink (needs ffmpeg or "
                             "privsdk[audio]; off by default: voices identify people too)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--threads", type=int, default=None, help="backend intra-op threads (default: all cores)")
    parser.add_argument("--serial", action="store_true",
                        help="read, find faces and filter each frame on one thread (default: pipelined -- the next "
                             "frame's faces are found on a worker thread while this one is filtered)")
    parser.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True,
                        help="csi://N, /dev/videoN, v4l2://N, an index, a video, rtsp://..., an image, glob or folder")
    parser.add_argument("--sink", action="append", default=[],
                        help="out.mp4, an image folder, rtsp://... or gst:appsrc ! ... (repeatable)")
    parser.add_argument("--show", action="store_true", help="show the filtered frames in a window (q to quit)")
    parser.add_argument("--width", type=int, default=None, help="camera width")
    parser.add_argument("--height", type=int, default=None, help="camera height")
    parser.add_argument("--fps", type=float, default=None, help="camera FPS")
    add_common_arguments(parser)


def _overlay(frame: Any, fps: float, latency_ms: float, regions: int) -> Any:
    import cv2

    shown = frame.copy()
    text = f"{fps:5.1f} FPS  {latency_ms:5.1f} ms  {regions} region(s)"
    cv2.putText(shown, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(shown, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return shown


def _region_options(args: argparse.Namespace) -> Dict[str, Any]:
    opts: Dict[str, Any] = {}
    if getattr(args, "detect_width", None):
        opts["detect_width"] = args.detect_width
    if getattr(args, "min_face", None):
        opts["min_size"] = args.min_face
    return opts


def run_pipeline(args: argparse.Namespace, source_spec: Any, sink_specs: List[str], show: bool,
                 source_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``run`` path: open source, filter, sinks; returns the summary (also printed)."""
    from tqdm import tqdm

    from ..filter import Filter
    from ..io import SideFile, open_sink, open_source
    from ..io.sinks import WindowSink
    from ..log import get_logger

    log = get_logger("run")
    flt = Filter(args.filter, backend=args.backend, device=args.device, regions=args.regions, seed=args.seed,
                 hold=args.hold, margin=args.margin, threads=args.threads, region_options=_region_options(args))
    src = open_source(source_spec, **(source_options or {}))
    # sound is not filtered: it is copied only when asked for (voices can identify people too)
    audio_from = str(source_spec) if args.keep_audio and not src.live and src.frame_count \
        and isinstance(source_spec, str) else None
    sinks = [open_sink(s, fps=src.fps or 30.0, encoder=args.encoder, audio_from=audio_from) for s in sink_specs]
    window = WindowSink() if show else None
    side = SideFile(args.side_file, {"filter": flt.name, "source": str(source_spec)}) if args.side_file else None
    total = src.frame_count if not src.live else None
    if args.max_frames is not None and total is not None:
        total = min(total, args.max_frames)
    bar = tqdm(total=total, unit="frame", desc="privsdk run", disable=src.live or not sys.stderr.isatty() and total is None)
    write_s = 0.0
    t_start = time.perf_counter()
    ema_fps, last = 0.0, t_start
    # pipelined: the next frame is read and its faces found on a worker thread while this one is filtered
    items = flt.stream_results(src, args.max_frames, pipelined=not args.serial)
    try:
        for item in items:
            t2 = time.perf_counter()
            for sink in sinks:
                sink.write(item.frame, item.name)
            if side is not None:
                side.add(item.index, item.regions, item.blanked, item.name, item.error)
            if window is not None:
                dt = t2 - last
                ema_fps = (1.0 / dt if ema_fps == 0 else 0.9 * ema_fps + 0.1 / dt) if dt > 0 else ema_fps
                latency = t2 - (item.captured_at if item.captured_at is not None else t2)
                window.write(_overlay(item.frame, ema_fps, 1000 * latency, len(item.regions)))
                if window.stopped:
                    log.info("window closed by the user")
                    break
            last = t2
            write_s += time.perf_counter() - t2
            bar.update(1)
    finally:
        items.close()
        bar.close()
        src.close()
        for sink in sinks:
            sink.close()
        if window is not None:
            window.close()
    wall = time.perf_counter() - t_start
    stats = flt.stats
    n = max(1, stats.frames)
    summary = {
        "filter": flt.name, "backend": flt.describe_backend(), "source": src.description,
        "frames": stats.frames, "regions": stats.faces, "blanked": stats.blanked,
        "fps": round(stats.frames / wall, 2) if wall > 0 else 0.0,
        "ms_per_frame": {**{k: round(v, 3) for k, v in stats.per_frame_ms().items()},
                         "output": round(1000 * write_s / n, 3)},
        "outputs": [s.description for s in sinks] + ([str(side.path)] if side else []),
    }
    if getattr(src, "reconnect_count", 0):
        summary["reconnects"] = src.reconnect_count
    if flt.info["input"].get("level_head"):
        summary["unlevelled"] = stats.unlevelled
    if side is not None:
        side.close(summary)
    return summary


def print_summary(summary: Dict[str, Any]) -> None:
    ms = summary["ms_per_frame"]
    # a levelling filter says how many faces it filtered where they sat (not registered, so not levelled)
    unlevelled = f"{summary['unlevelled']} not levelled, " if summary.get("unlevelled") else ""
    print(f"{summary['frames']} frames, {summary['regions']} regions filtered, {unlevelled}{summary['blanked']} blanked, "
          f"{summary['fps']} FPS ({summary['backend']})")
    print("per frame: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
    for out in summary["outputs"]:
        print(f"output: {out}")


def main(args: argparse.Namespace) -> int:
    opts = {k: getattr(args, k) for k in ("width", "height", "fps") if getattr(args, k) is not None}
    if not args.sink and not args.show:
        print("privsdk run: nothing to output to; add --sink PATH and/or --show", file=sys.stderr)
        return 2
    summary = run_pipeline(args, args.source, args.sink, args.show, opts)
    print_summary(summary)
    return 1 if summary["frames"] and summary["blanked"] == summary["frames"] else 0
