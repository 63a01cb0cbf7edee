"""Per-face cost of the bundled filters on one CPU core (issue targets: ``emotion`` ≤ 2 ms,
``emotion-lite`` ≤ 0.1 ms per 64×64 face with onnxruntime).

For each filter: the fused pre-kernel, the network (onnxruntime, one intra-op thread, batch 1
and batch 64, reported per face) and the post-kernel, all single-threaded; for a levelling
bundle (``input.level_head``) the head levelling too (registration + the turned crop, on the
demo clip's face); for an erasing bundle (``erase``) the linear eraser of the secret
(numpy, batch 1); plus the whole ``Filter.apply`` on a 64×64 face crop with default settings.

Example::

    privsdk bench filters --out bench/results/filters.json
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, List

import numpy as np

HELP = "per-face latency of the bundled filters (pre, network, post) on one core"
COLUMNS = [("filter", "filter", "s"), ("kind", "kind", "s"), ("level_ms", "level ms", ".3f"), ("pre_ms", "pre ms", ".4f"),
           ("net_b1_ms", "net ms (b=1)", ".3f"), ("net_b64_ms_per_face", "net ms/face (b=64)", ".3f"),
           ("erase_ms", "erase ms", ".4f"), ("post_ms", "post ms", ".4f"), ("total_b1_ms", "total ms/face", ".3f"),
           ("apply_ms", "Filter.apply ms", ".3f")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filter", action="append", default=None,
                        help="bundled filter name or bundle path (repeatable; default: every bundled filter)")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per measurement (default 50)")
    parser.add_argument("--out", default="bench/results/filters.json", help="JSON output path")


def _demo_face(bundle: Any) -> np.ndarray:
    """The bundled demo clip's face (the astronaut), framed as the bundle frames faces, at its input size."""
    import cv2

    from privsdk.commands.demo import DEMO_CLIP
    from privsdk.regions.faces import HaarFaces

    capture = cv2.VideoCapture(str(DEMO_CLIP))
    ok, frame = capture.read()
    capture.release()
    crop = (bundle.manifest["input"].get("face_crop") or {}).get("box")
    faces = HaarFaces(crop=crop).find(frame) if ok else []
    if not faces:
        raise RuntimeError(f"no face found in the first frame of {DEMO_CLIP}")
    x, y, w, h = faces[0].roi
    hh, ww = bundle.input_size
    return cv2.resize(frame[y:y + h, x:x + w], (ww, hh), interpolation=cv2.INTER_AREA)


def _bench_one(name: str, repeat: int) -> Dict[str, Any]:
    import privsdk
    from privsdk import kernels
    from privsdk.bundle import load_bundle
    from privsdk.registry import resolve

    from .common import time_call

    bundle = load_bundle(resolve(name))
    h, w = bundle.input_size
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    level_ms = 0.0
    if bundle.level_template is not None:
        from privsdk.regions.level import HeadLeveller

        leveller = HeadLeveller.from_manifest(bundle.level_head or {}, bundle.level_template)
        face = _demo_face(bundle)   # a real face: a noise image fails the registration early, which is cheaper
        if leveller.crop(face, None)[1] is None:
            raise RuntimeError("the demo clip's face did not register; timing the levelling would time a failure")
        level_out = np.empty_like(face)
        threads = leveller.cv2.getNumThreads()
        leveller.cv2.setNumThreads(1)   # one core, like every other column
        try:
            level_ms = time_call(lambda: leveller.crop(face, None, out=level_out), repeat=repeat).median_ms
        finally:
            leveller.cv2.setNumThreads(threads)
    maps, noise_src = bundle.maps, kernels.NoiseSource()
    batch1 = np.empty((1, 3, h, w), np.float32)
    noises = [np.empty((1, *n["shape"]), np.float32) for n in bundle.noise_inputs]
    sigma = maps["sigma"] if bundle.kind == "lite" else None
    pre = time_call(lambda: kernels.pre(face, None, maps["scale"], maps["shift"], sigma, out=batch1[0],
                                        noise_outputs=[n[0] for n in noises], rng=noise_src, threads=1),
                    repeat=repeat)
    y = np.clip(batch1[0], 0, 1).astype(np.float32)
    out_face = face.copy()
    post = time_call(lambda: kernels.post(y, out_face, None, maps.get("post_scale"), maps.get("post_shift"),
                                          threads=1), repeat=repeat)
    row: Dict[str, Any] = {"filter": bundle.name, "kind": bundle.kind, "level_ms": level_ms, "pre_ms": pre.median_ms,
                           "post_ms": post.median_ms, "net_b1_ms": 0.0, "net_b64_ms_per_face": 0.0}
    if bundle.kind == "unet":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(bundle.onnx_bytes, opts, providers=["CPUExecutionProvider"])
        onnx = bundle.manifest["onnx"]

        def feeds(n: int) -> Dict[str, np.ndarray]:
            d = {onnx["image_input"]: rng.standard_normal((n, 3, h, w)).astype(np.float32)}
            for spec in bundle.noise_inputs:
                d[spec["name"]] = rng.standard_normal((n, *spec["shape"])).astype(np.float32)
            return d

        f1, f64 = feeds(1), feeds(64)
        row["net_b1_ms"] = time_call(lambda: sess.run(None, f1), repeat=repeat).median_ms
        row["net_b64_ms_per_face"] = time_call(lambda: sess.run(None, f64), repeat=max(3, repeat // 10)).median_ms / 64
    row["erase_ms"] = 0.0
    if bundle.eraser is not None:
        # two matrix-vector products of one face: too small for numpy's BLAS to spread over threads
        erased = np.ascontiguousarray(batch1)
        row["erase_ms"] = time_call(lambda: bundle.eraser.apply(erased), repeat=repeat).median_ms
    row["total_b1_ms"] = row["level_ms"] + row["pre_ms"] + row["net_b1_ms"] + row["erase_ms"] + row["post_ms"]
    filt = privsdk.Filter(name, regions="full")
    row["apply_ms"] = time_call(lambda: filt.apply(face), repeat=repeat).median_ms
    row["backend"] = getattr(filt, "backend_name", None) or str(getattr(filt, "backend", ""))
    return row


def main(args: argparse.Namespace) -> int:
    from privsdk.registry import available_names

    from .common import format_table, write_json

    names: List[str] = args.filter or available_names()
    if not names:
        print("no filters to benchmark: none are bundled and none were given with --filter")
        return 2
    rows = [_bench_one(n, args.repeat) for n in names]
    print(format_table(rows, COLUMNS))
    path = write_json(args.out, {"benchmark": "filters", "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=HELP)
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
