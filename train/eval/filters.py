"""Filters under evaluation: callables ``uint8 N×H×W×3 RGB → uint8 N×H×W×3 RGB``.

Every filter the protocol measures is wrapped this way (CONTRIBUTING.md,
"Evaluation"): a training checkpoint, an exported bundle, or a baseline. Each
call draws fresh noise, so an attacker retrained on the output sees a new
draw every epoch.

Baselines and their strength (one number each; a sweep uses several):

=============  ==========================================================
``identity``   none (the unfiltered images)
``blur``       Gaussian blur σ in pixels of the 64×64 image
``pixelate``   block size in pixels
``lower_mask`` share of the image height masked from the bottom (mouth, cheeks)
``full_mask``  opacity of a grey mask over the whole image (1 = blank)
``noise``      σ of additive Gaussian noise in grey levels (0–255)
=============  ==========================================================

Example::

    import numpy as np
    from privsdk.train.eval.filters import make_filter
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    blurred = make_filter("blur:2")(images)          # also: a checkpoint .pt or a bundle path
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from privsdk.errors import DependencyError, InputError
from privsdk.log import get_logger

_log = get_logger(__name__)

GREY = 128
BASELINE_STRENGTHS: Dict[str, Tuple[float, ...]] = {
    "identity": (0.0,),
    "blur": (1.0, 2.0, 4.0, 8.0),
    "pixelate": (2.0, 4.0, 8.0, 16.0),
    "lower_mask": (0.25, 0.4, 0.55, 0.7),
    "full_mask": (0.5, 0.8, 0.95, 1.0),
    "noise": (16.0, 32.0, 64.0, 128.0),
}
QUICK_STRENGTHS: Dict[str, Tuple[float, ...]] = {
    "identity": (0.0,), "blur": (2.0, 8.0), "pixelate": (4.0, 16.0), "lower_mask": (0.4, 0.7),
    "full_mask": (0.8, 1.0), "noise": (32.0, 128.0),
}


def check_images(images: object, name: str = "images") -> np.ndarray:
    """Validate a uint8 N×H×W×3 RGB batch; return it as an ndarray."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        shape = getattr(images, "shape", None)
        raise InputError(f"{name}: expected a uint8 N×H×W×3 RGB array, got "
                         f"{type(images).__name__} dtype={getattr(images, 'dtype', None)} shape={shape}")
    return images


@dataclass
class FilterUnderEval:
    """A filter wrapped for the protocol: ``f(images) -> filtered`` with fresh noise per call.

    ``stochastic`` says whether two calls can differ (attackers then re-filter their
    training images every epoch); ``info`` goes into ``report["filter"]`` (for a
    bundle it holds ``files``: the SHA-256 of every file).
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    stochastic: bool
    kind: str
    strength: Optional[float] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        out = self.fn(images)
        if out.shape != images.shape or out.dtype != np.uint8:
            raise InputError(f"filter {self.name}: returned {out.dtype}{out.shape}; expected uint8{images.shape}")
        return out

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "strength": self.strength,
                "stochastic": self.stochastic, **self.info}


# ------------------------------------------------------------------ baselines

def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - cv2 is a train extra
        raise DependencyError("the blur and pixelate baselines need OpenCV; expected "
                              "`pip install opencv-python-headless`") from exc
    return cv2


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    cv2 = _cv2()
    return np.stack([cv2.GaussianBlur(im, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
                     for im in images])


def _pixelate(images: np.ndarray, block: float) -> np.ndarray:
    cv2 = _cv2()
    h, w = images.shape[1:3]
    b = max(1, int(round(block)))
    sh, sw = max(1, h // b), max(1, w // b)
    return np.stack([cv2.resize(cv2.resize(im, (sw, sh), interpolation=cv2.INTER_AREA), (w, h),
                                interpolation=cv2.INTER_NEAREST) for im in images])


def _lower_mask(images: np.ndarray, share: float) -> np.ndarray:
    out = images.copy()
    h = images.shape[1]
    start = int(round(h * (1.0 - share)))
    out[:, start:] = GREY
    return out


def _full_mask(images: np.ndarray, opacity: float) -> np.ndarray:
    mixed = images.astype(np.float32) * (1.0 - opacity) + GREY * opacity
    return np.clip(np.floor(mixed + 0.5), 0, 255).astype(np.uint8)


def baseline(kind: str, strength: Optional[float] = None, seed: Optional[int] = None) -> FilterUnderEval:
    """One baseline filter at one strength (see the module table); ``seed`` only for tests."""
    if kind not in BASELINE_STRENGTHS:
        raise InputError(f"baseline {kind!r}: expected one of {sorted(BASELINE_STRENGTHS)}")
    s = float(BASELINE_STRENGTHS[kind][-1] if strength is None else strength)
    limits = {"blur": (0, np.inf), "pixelate": (1, np.inf), "lower_mask": (0, 1), "full_mask": (0, 1),
              "noise": (0, np.inf), "identity": (-np.inf, np.inf)}[kind]
    if not limits[0] <= s <= limits[1]:
        raise InputError(f"baseline {kind}: strength {s} is outside the expected range {limits}")
    if kind == "identity":
        return FilterUnderEval("identity", lambda x: x.copy(), False, "baseline", None)
    if kind == "noise":
        rng = np.random.default_rng(seed)

        def add_noise(x: np.ndarray) -> np.ndarray:
            noisy = x.astype(np.float32) + rng.normal(0.0, s, size=x.shape).astype(np.float32)
            return np.clip(np.floor(noisy + 0.5), 0, 255).astype(np.uint8)

        return FilterUnderEval(f"noise:{s:g}", add_noise, True, "baseline", s)
    fn = {"blur": _blur, "pixelate": _pixelate, "lower_mask": _lower_mask, "full_mask": _full_mask}[kind]
    return FilterUnderEval(f"{kind}:{s:g}", lambda x: fn(x, s), False, "baseline", s)


def baseline_sweep(kinds: Optional[Sequence[str]] = None, quick: bool = False,
                   seed: Optional[int] = None) -> List[FilterUnderEval]:
    """Every baseline at each of its strengths (fewer with ``quick``)."""
    table = QUICK_STRENGTHS if quick else BASELINE_STRENGTHS
    kinds = list(table) if kinds is None else list(kinds)
    return [baseline(k, s, seed) for k in kinds for s in table[k]]


# ------------------------------------------------------------------ checkpoints

def _to_uint8(rgb01: np.ndarray) -> np.ndarray:
    """NCHW float in [0, 1] → N×H×W×3 uint8 (the post-kernel's rounding)."""
    q = np.floor(np.clip(rgb01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(q.transpose(0, 2, 3, 1))


def _resize_batch(images: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    if images.shape[1:3] == tuple(hw):
        return images
    cv2 = _cv2()
    return np.stack([cv2.resize(im, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for im in images])


def checkpoint_filter(path: str, device: str = "cpu", batch_size: int = 256,
                      seed: Optional[int] = None) -> FilterUnderEval:
    """Wrap a training checkpoint (``privsdk.train.checkpoint.load_filter``) as a filter.

    Network input is x01 normalized with ``ckpt["norm"]`` (unet) or x01 itself (lite);
    noise is fresh N(0, 1) of the checkpoint's noise shape, from the filter's own generator
    (``seed``, or unseeded as on a device); output rgb01 → uint8.
    """
    import torch

    try:
        from privsdk.train.checkpoint import load_filter
    except ImportError as exc:
        raise DependencyError(f"evaluating a checkpoint needs privsdk.train.checkpoint ({exc}); "
                              "expected the training part of privsdk to be installed") from exc
    module, ckpt = load_filter(path)
    module = module.to(device).eval()
    kind = ckpt.get("filter", {}).get("kind", "unet")
    hw = (int(ckpt["input"]["height"]), int(ckpt["input"]["width"]))
    mean = std = None
    if kind != "lite":
        mean = torch.as_tensor(np.asarray(ckpt["norm"]["mean"], np.float32), device=device)
        std = torch.as_tensor(np.asarray(ckpt["norm"]["std"], np.float32), device=device)
        noise_shape = tuple(int(d) for d in ckpt["noise_inputs"][0]["shape"])
    else:
        noise_shape = (3, *hw)

    # the filter's own generator, as a bundle has its own: drawing from torch's global one would move the
    # attackers' random stream, so the same attacker seed would train another attacker on a checkpoint
    noise_gen = torch.Generator(device=device)
    if seed is None:
        noise_gen.seed()
    else:
        noise_gen.manual_seed(int(seed))

    @torch.no_grad()
    def run(images: np.ndarray) -> np.ndarray:
        src_hw = images.shape[1:3]
        x = _resize_batch(images, hw)
        outs = []
        for i in range(0, len(x), batch_size):
            xb = (torch.as_tensor(x[i:i + batch_size], device=device).permute(0, 3, 1, 2).float() / 255.0).contiguous()
            if mean is not None:
                xb = (xb - mean) / std
            z = torch.randn((xb.shape[0], *noise_shape), device=device, generator=noise_gen)
            outs.append(module(xb, z).float().cpu().numpy())
        return _resize_batch(_to_uint8(np.concatenate(outs)), src_hw)

    from privsdk.bundle import sha256_file

    info = {"source": str(path), "format": "checkpoint", "method": ckpt.get("method"),
            "epoch": ckpt.get("epoch"), "secret": ckpt.get("secret"), "utility": ckpt.get("utility"),
            "files": {Path(path).name: sha256_file(path)}}
    if (ckpt.get("data") or {}).get("face_crop"):   # how its training faces were framed (--framing runtime)
        info["face_crop"] = ckpt["data"]["face_crop"]
    # runs/NAME/filter.pt (or last.pt, best.pt) is known by its run's name
    p = Path(path)
    name = p.parent.name if p.stem in ("filter", "last", "best") and p.parent.name else p.stem
    # a lite filter whose σ is 0 everywhere (the fill alone) gives the same output every time: its attackers
    # train on one filtered copy, as for the masks, instead of refiltering every epoch to the same images
    stochastic = kind != "lite" or bool(np.any(module.maps()["sigma"] != 0))
    return FilterUnderEval(name, run, stochastic, f"checkpoint-{kind}", None, info)


# ------------------------------------------------------------------ bundles

def _bundle_direct(path: str) -> Tuple[Callable[[np.ndarray], np.ndarray], Any]:
    """Run a bundle without privsdk.Filter: the pre/post kernels + onnxruntime, frame by frame."""
    from privsdk.bundle import load_bundle
    from privsdk.kernels import NoiseSource, post, pre

    b = load_bundle(path)
    maps = b.maps
    rng = NoiseSource()
    session = None
    if b.kind == "unet":
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DependencyError("evaluating a unet bundle needs onnxruntime; expected "
                                  "`pip install onnxruntime`") from exc
        session = ort.InferenceSession(b.onnx_bytes, providers=["CPUExecutionProvider"])
        onnx_info = b.manifest["onnx"]
    swap = b.manifest["input"].get("colour_order", "RGB") == "RGB"
    leveller = None
    if b.level_template is not None:   # cut out level, as Filter does (input.level_head)
        from privsdk.regions.level import HeadLeveller

        leveller = HeadLeveller.from_manifest(b.level_head or {}, b.level_template)

    def run(images: np.ndarray) -> np.ndarray:
        out = np.empty_like(images)
        for i, rgb in enumerate(images):
            frame = np.ascontiguousarray(rgb[..., ::-1])  # RGB → the runtime's BGR
            source = frame if leveller is None else leveller.crop(frame, None)[0]
            if session is None:
                x = pre(source, None, maps["scale"], maps["shift"], maps["sigma"], rng=rng, swap_rb=swap)
                y = x
            else:
                noises = [np.empty(n["shape"], np.float32) for n in onnx_info.get("noise_inputs", [])]
                x = pre(source, None, maps["scale"], maps["shift"], None, noise_outputs=noises, rng=rng,
                        swap_rb=swap)
                feeds = {onnx_info["image_input"]: x[None]}
                feeds.update({n["name"]: t[None] for n, t in zip(onnx_info.get("noise_inputs", []), noises)})
                y = session.run([onnx_info["output"]], feeds)[0][0].astype(np.float32)
            if b.eraser is not None:   # the bundle's linear eraser of the secret, as Filter runs it
                y = b.eraser.apply(np.array(y[None], np.float32))[0]
            post(y, frame, None, maps.get("post_scale"), maps.get("post_shift"), swap_rb=swap)
            out[i] = frame[..., ::-1]
        return out

    return run, b


def bundle_filter(path: str) -> FilterUnderEval:
    """Wrap a bundle: ``privsdk.Filter(path, regions="full")`` when the runtime has it, else the
    kernels + onnxruntime directly. ``info["files"]`` holds the bundle's SHA-256 per file."""
    from privsdk.bundle import load_bundle

    b = load_bundle(path)
    runner = "privsdk.kernels+onnxruntime"
    fn: Callable[[np.ndarray], np.ndarray]
    try:
        from privsdk.filter import Filter  # type: ignore[import-not-found]

        flt = Filter(str(path), backend="onnxruntime", regions="full", seed=None)

        def fn(images: np.ndarray) -> np.ndarray:
            bgr = np.ascontiguousarray(images[..., ::-1])
            return np.ascontiguousarray(np.asarray(flt.apply_batch(bgr))[..., ::-1])

        runner = "privsdk.Filter(onnxruntime)"
    except ImportError:
        fn, _ = _bundle_direct(str(path))
    info = {"source": str(path), "format": "bundle", "runner": runner, "version": b.manifest.get("version"),
            "method": b.manifest.get("method"), "secret": b.manifest.get("secret"),
            "utility": b.manifest.get("utility"), "files": dict(b.manifest["files"])}
    if b.manifest["input"].get("face_crop"):   # how its training faces were framed (--framing runtime)
        info["face_crop"] = b.manifest["input"]["face_crop"]
    if b.level_head:   # every face is cut out level before it is filtered: the report says so
        info["level_head"] = b.level_head
    if b.manifest.get("erase"):   # and its output passes through the bundle's linear eraser of the secret
        info["erase"] = {k: v for k, v in b.manifest["erase"].items() if k != "validation_rms_change"}
    return FilterUnderEval(b.name, fn, b.stochastic, f"bundle-{b.kind}", None, info)


def levelled(flt: FilterUnderEval, bundle_path: str) -> FilterUnderEval:
    """``flt`` on faces cut out level first, by the head levelling of a levelling bundle.

    The same registration, template and limits ``Filter`` runs for that bundle (its ``input.level_head``
    and ``level.npz``), so a baseline can be compared with a levelling filter on equal terms: both give
    up the head's roll. A face the registration fails on is filtered as it is, as the runtime does.

    Example::

        import numpy as np
        from privsdk.train.eval.filters import baseline, levelled
        faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
        mask = levelled(baseline("lower_mask", 0.55), "sdk/privsdk/filters/emotion-lite-levelled")
        mask.name, mask(faces).shape           # ('levelled lower_mask:0.55', (2, 64, 64, 3))
    """
    from privsdk.bundle import LEVEL, load_bundle
    from privsdk.regions.level import HeadLeveller

    b = load_bundle(bundle_path)
    if not b.level_head or b.level_template is None:
        raise InputError(f"levelling by {bundle_path}: its manifest has no input.level_head; expected a levelling "
                         "bundle (made by `privsdk export BUNDLE --level-head -o DIR`)")
    leveller = HeadLeveller.from_manifest(b.level_head, b.level_template)

    def run(images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        if images.shape[1:3] != leveller.size:   # the baseline must see faces the size the metrics compare
            raise InputError(f"levelling by {bundle_path}: faces are {images.shape[1]}×{images.shape[2]}, its template "
                             f"{leveller.size[0]}×{leveller.size[1]}; expected the data loaded at the bundle's size")
        level = np.empty((len(images), *leveller.size, 3), np.uint8)
        for i, face in enumerate(images):
            leveller.crop(face, None, out=level[i])   # a failed registration leaves the face as it is
        return flt(level)

    info = {**flt.info, "level_head": {**b.level_head, "bundle": str(bundle_path),
                                       "sha256": b.manifest["files"][LEVEL]}}
    return FilterUnderEval(f"levelled {flt.name}", run, flt.stochastic, flt.kind, flt.strength, info)


def level_only(bundle_path: str) -> FilterUnderEval:
    """The faces turned level by a levelling bundle's registration and nothing else.

    The reference a levelling filter's own change is measured against: SSIM to the original counts the
    turn, which moves every edge off the original's pixels; SSIM to this counts only what the filter
    paints (the report's ``utility.fidelity_to_levelled``).
    """
    return levelled(baseline("identity", 0.0), bundle_path)


# ------------------------------------------------------------------ one entry point

def make_filter(spec: str, device: str = "cpu", seed: Optional[int] = None) -> FilterUnderEval:
    """A filter from a spec: ``KIND[:STRENGTH]`` for a baseline, a ``.pt`` checkpoint, or a bundle
    (directory with ``filter.json`` or ``.zip``); ``NAME=PATH`` names a checkpoint or bundle. Names
    ``FAMILY:LABEL`` (like the baselines' ``blur:4``) are drawn as one curve in the trade-off plot."""
    p = Path(spec)
    label, sep, rest = spec.partition("=")
    if not p.exists() and sep and label and Path(rest).exists():  # NAME=PATH: the name shown in tables and plots
        f = make_filter(rest, device=device, seed=seed)
        f.name = label
        return f
    if p.exists():
        if p.is_dir() or p.suffix == ".zip":
            return bundle_filter(spec)
        return checkpoint_filter(spec, device=device, seed=seed)
    kind, _, strength = spec.partition(":")
    if kind in BASELINE_STRENGTHS:
        try:
            value = float(strength) if strength else None
        except ValueError:
            raise InputError(f"filter {spec!r}: strength {strength!r} is not a number; expected e.g. blur:2") from None
        return baseline(kind, value, seed)
    raise InputError(f"filter {spec!r}: not an existing checkpoint or bundle path, nor a baseline; expected a "
                     f"path or one of {sorted(BASELINE_STRENGTHS)} with an optional :STRENGTH")


def frame_mean(flt: FilterUnderEval, frames: int) -> FilterUnderEval:
    """What an attacker sees of a still face in a stream: the mean of ``frames`` filtered copies.

    The runtime draws fresh noise for every frame (DESIGN.md), so a face that holds still for ``frames``
    frames gives an attacker that many independent draws, and their mean cancels the noise (its σ falls
    by √frames) while keeping whatever the filter does the same way every time. A deterministic filter
    is returned unchanged: every copy is the same.

    Example::

        import numpy as np
        from privsdk.train.eval.filters import baseline, frame_mean
        faces = np.full((8, 64, 64, 3), 128, np.uint8)
        averaged = frame_mean(baseline("noise", 64.0), 16)    # "noise:64 (mean of 16 frames)"
        float((averaged(faces).astype(float) - 128).std())   # about 16 = 64 / √16
    """
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise InputError(f"frames averaged: got {frames!r}; expected a whole number ≥ 1")
    if frames == 1 or not flt.stochastic:
        return flt

    def mean_of_frames(images: np.ndarray) -> np.ndarray:
        total = np.zeros(images.shape, np.float32)
        for _ in range(frames):
            total += flt(images)
        return np.clip(np.rint(total / frames), 0, 255).astype(np.uint8)

    return FilterUnderEval(f"{flt.name} (mean of {frames} frames)", mean_of_frames, True, flt.kind, flt.strength,
                           {**flt.info, "frames_averaged": int(frames)})


def describe_filters(filters: Sequence[FilterUnderEval]) -> str:
    return json.dumps([f.describe() for f in filters])
