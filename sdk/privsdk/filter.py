"""``Filter``: the one-line API of privsdk -- load a filter, sanitize frames.

Example::

    import numpy as np
    from privsdk import Filter
    f = Filter("emotion")                     # a bundled filter, or Filter("path/to/bundle")
    frame = np.zeros((480, 640, 3), np.uint8) # any H×W×3 uint8 BGR frame
    clean = f.apply(frame)                    # a new array: faces filtered, the rest untouched
    for clean in f.stream("video.mp4"):       # or "csi://0", "/dev/video0", 0, "photos/*.jpg"
        ...
    print(f.info["name"], f.stats.summary())

The path for one frame (DESIGN.md): region finder -> fused pre-kernel per
region (crop, resize, BGR->RGB, per-location normalization, fresh noise) into a
preallocated N×3×H×W batch -> backend -> fused post-kernel back into the frame.
A *lite* filter has no network: the pre-kernel with its learned maps is the
whole filter.

Regions (``regions=``)
----------------------
* ``"full"``  -- the whole frame is one region.
* ``"faces"`` -- faces found by OpenCV's Haar cascade (``"yunet:PATH"`` for
  YuNet), each grown to cover the whole face, with temporal hold-over
  (``hold`` frames, or ``hold_seconds``).
* ``"auto"``  -- per frame: a frame that is already face-crop-like -- both
  sides at most ``max(256, 4 × input size)`` pixels and an aspect ratio within
  25 % of the filter's input -- is filtered whole; any other frame goes to the
  face finder.
* a :class:`privsdk.regions.RegionFinder`, or the name of a registered plugin.

Head levelling
--------------
A bundle with ``input.level_head`` (``emotion``, ``emotion-lite-levelled``, ``emotion-lite-erased``)
cuts each face out turned level: its upper part is registered onto the bundle's template face, the
crop is turned back by the roll found, and the filtered face is pasted back level. The head's roll in
the picture is given up so that it cannot give the secret away (``privsdk.regions.level``). A face
that cannot be registered is filtered as it sits and counted in ``stats.unlevelled``.

Failing closed
--------------
``apply`` raises a :class:`privsdk.PrivsdkError` (and blanks ``out=`` if one
was given) on any problem -- bad input, region-finder or backend failure. It
never returns the input unfiltered. ``stream`` yields a blanked (all-black)
frame instead and counts it in ``stats.blanked``.

Threads: a ``Filter`` may be shared between threads; calls are serialized by a
lock (its buffers are preallocated and reused). For parallel work create one
``Filter`` per thread. ``stream`` is pipelined: a worker thread reads the next
frame and finds its faces while the caller's thread filters the current one
(frames stay in order, and each frame is filtered with its own regions, never
with a neighbour's), so the face detector and the network overlap on a
multi-core CPU or a CPU + GPU device.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import registry
from .errors import BackendError, InputError, PrivsdkError, describe_array
from .log import get_logger

_log = get_logger(__name__)

REGION_MODES = ("auto", "full", "faces")
STAGES = ("capture", "regions", "pre", "network", "erase", "post")  # capture: waiting for a stream's next frame


@dataclass
class FilterStats:
    """Counters of a Filter since it was created (or ``stats.reset()``)."""

    frames: int = 0
    faces: int = 0
    blanked: int = 0
    #: faces a levelling filter could not register, filtered as they sat (see privsdk.regions.level)
    unlevelled: int = 0
    #: total seconds spent per stage
    seconds: Dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    last_error: Optional[str] = None

    def reset(self) -> None:
        self.frames = self.faces = self.blanked = self.unlevelled = 0
        self.seconds = {s: 0.0 for s in STAGES}
        self.last_error = None

    def per_frame_ms(self) -> Dict[str, float]:
        """Mean milliseconds per frame of each stage."""
        n = max(1, self.frames)
        return {s: 1000.0 * t / n for s, t in self.seconds.items()}

    def summary(self) -> Dict[str, Any]:
        """A JSON-able summary: frames, regions, blanked frames and per-stage ms per frame."""
        return {"frames": self.frames, "regions": self.faces, "blanked": self.blanked, "unlevelled": self.unlevelled,
                "ms_per_frame": {k: round(v, 3) for k, v in self.per_frame_ms().items()},
                "last_error": self.last_error}


@dataclass
class StreamItem:
    """One frame of :meth:`Filter.stream_results`: the sanitized (or blanked) frame and what was done."""

    index: int
    frame: np.ndarray
    regions: list
    blanked: bool
    error: Optional[str] = None
    #: the source's name of the frame (an image file of a folder source), if it has one
    name: Optional[str] = None
    #: ``time.perf_counter()`` when the frame was read from the source (latency = now − this)
    captured_at: Optional[float] = None


def blank_like(shape: Tuple[int, ...]) -> np.ndarray:
    """An all-black frame: what a failing stream emits instead of raw pixels."""
    return np.zeros(shape, np.uint8)


class _Network:
    """What a Filter runs: maps, noise shapes, backend (None for lite), and a manifest-like info."""

    def __init__(self, info: Dict[str, Any], maps: Dict[str, np.ndarray], spec: Any, lite: bool,
                 level_template: Optional[np.ndarray] = None, eraser: Any = None) -> None:
        self.info, self.maps, self.spec, self.lite = info, maps, spec, lite
        self.level_template, self.eraser = level_template, eraser


def _load_bundle_network(path: Path) -> _Network:
    from .backends.base import NetworkSpec, NoiseInput
    from .bundle import load_bundle

    bundle = load_bundle(path)
    onnx = bundle.manifest.get("onnx") or {}
    spec = NetworkSpec(source=bundle.source, input_hw=bundle.input_size,
                       image_input=str(onnx.get("image_input", "image")), output=str(onnx.get("output", "filtered")),
                       noise_inputs=[NoiseInput(n["name"], tuple(int(d) for d in n["shape"]))
                                     for n in bundle.noise_inputs],
                       onnx_bytes=bundle.onnx_bytes, onnx_sha256=bundle.onnx_sha256)
    colour = bundle.manifest["input"].get("colour_order", "RGB")
    info = dict(bundle.manifest)
    info["_swap_rb"] = colour == "RGB"
    return _Network(info, bundle.maps, spec, bundle.kind == "lite", bundle.level_template, bundle.eraser)


def _load_checkpoint_network(path: Path) -> _Network:
    from .backends.base import NetworkSpec, NoiseInput

    try:
        from privsdk.train.checkpoint import load_filter
    except ImportError as exc:
        raise BackendError(f"checkpoint {path}: running a training checkpoint needs privsdk[train] "
                           f"(privsdk.train.checkpoint could not be imported: {exc})") from None
    module, ckpt = load_filter(path)
    inp = ckpt.get("input", {})
    hw = (int(inp["height"]), int(inp["width"]))
    kind = ckpt["filter"]["kind"]
    info = {"name": path.stem, "version": f"checkpoint epoch {ckpt.get('epoch')}", "kind": kind,
            "secret": ckpt.get("secret", []), "utility": ckpt.get("utility", []),
            "input": {"height": hw[0], "width": hw[1], "colour_order": "RGB"},
            "method": {"name": ckpt.get("method"), "hyperparameters": ckpt.get("hyperparameters", {})},
            "source": str(path), "_swap_rb": True}
    if (ckpt.get("data") or {}).get("face_crop"):
        info["input"]["face_crop"] = ckpt["data"]["face_crop"]
    if kind == "lite":
        maps = {k: np.ascontiguousarray(v, np.float32) for k, v in module.maps().items()}
        return _Network(info, maps, None, True)
    mean = np.asarray(ckpt["norm"]["mean"], np.float32)
    std = np.asarray(ckpt["norm"]["std"], np.float32)
    maps = {"scale": np.ascontiguousarray(1.0 / std), "shift": np.ascontiguousarray(-mean / std),
            "sigma": np.zeros_like(mean)}
    spec = NetworkSpec(source=str(path), input_hw=hw,
                       noise_inputs=[NoiseInput(n["name"], tuple(n["shape"])) for n in ckpt.get("noise_inputs", [])],
                       module=module)
    return _Network(info, maps, spec, False)


class Filter:
    """A privacy filter, ready to sanitize frames.

    Args:
        name_or_path: a bundled filter name (see :func:`privsdk.filters`), a bundle
            directory or ``.zip``, or a training checkpoint (``.pt``, torch backend).
        backend: ``"auto"`` (the fastest available, said in the log), ``"onnxruntime"``,
            ``"tensorrt"`` or ``"torch"``. Ignored by lite filters (no network).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``/``"cuda:N"`` or ``"tensorrt"`` (onnxruntime's EP).
        regions: ``"auto"``, ``"full"``, ``"faces"``, ``"yunet:PATH"``, a plugin name or a RegionFinder.
        seed: a fixed noise seed -- for tests only; by default the noise is keyed from
            the OS entropy source so it cannot be replayed.
        hold: frames a lost face stays covered (temporal hold-over); ``hold_seconds`` overrides it.
        margin: extra fraction of a detected face box added on each side. By default a bundle that
            records how its training faces were framed (``input.face_crop``) gets faces framed the
            same way by the Haar finder; otherwise the finder's margin (0.25, plus 0.15 below).
        max_batch: regions run through the network together.
        threads: intra-op threads of the backend (default: all cores).
        region_options: extra keywords for the face finder, e.g. ``{"detect_width": 320,
            "min_size": 24}`` for :class:`privsdk.regions.faces.HaarFaces` (faster, misses small faces).
    """

    def __init__(self, name_or_path: Union[str, Path], backend: str = "auto", device: str = "auto",
                 regions: Any = "auto", seed: Optional[int] = None, *, hold: int = 5,
                 hold_seconds: Optional[float] = None, margin: Optional[float] = None, max_batch: int = 8,
                 threads: Optional[int] = None, region_options: Optional[Dict[str, Any]] = None) -> None:
        from .backends import create_backend, normalize_device
        from .kernels import NoiseSource, PreparedMaps

        if not isinstance(max_batch, int) or max_batch < 1:
            raise InputError(f"max_batch: expected an int ≥ 1, got {max_batch!r}")
        device = normalize_device(device)
        path = registry.resolve(name_or_path)
        net = _load_checkpoint_network(path) if registry.is_checkpoint(path) else _load_bundle_network(path)
        self._info = net.info
        self._maps = net.maps
        # Checked once here: the fused pre-kernel then skips its per-call scan of the maps' values.
        self._pre_maps = PreparedMaps(net.maps["scale"], net.maps["shift"], net.maps["sigma"])
        self._swap_rb = bool(net.info.pop("_swap_rb", True))
        self._lite = net.lite
        self._rng = NoiseSource(seed)
        self.input_size: Tuple[int, int] = (int(net.info["input"]["height"]), int(net.info["input"]["width"]))
        self._leveller = None
        if net.level_template is not None:   # the bundle asks for each face to be cut out level (input.level_head)
            from .regions.level import HeadLeveller

            self._leveller = HeadLeveller.from_manifest(net.info["input"]["level_head"], net.level_template)
            self._level_crop = np.empty((*self.input_size, 3), np.uint8)
        self._eraser = net.eraser   # the bundle's linear eraser of the secret (its `erase` section), or None
        self.backend = None
        if not self._lite:
            self.backend = create_backend(backend, net.spec, device, threads)
        elif backend not in ("auto", None):
            _log.info("filter %s is a lite filter: it runs in the fused kernel alone, backend=%r is not used",
                      self.name, backend)
        cap = max_batch if self.backend is None or self.backend.max_batch is None else \
            min(max_batch, self.backend.max_batch)
        self.max_batch = cap if not self._lite else 1
        h, w = self.input_size
        self._batch = np.empty((self.max_batch, 3, h, w), np.float32)
        self._noise = [np.empty((self.max_batch, *n.shape), np.float32) for n in (net.spec.noise_inputs if net.spec else [])]
        self._region_spec = regions
        self._hold, self._hold_seconds, self._margin = hold, hold_seconds, margin
        self._region_options = dict(region_options or {})
        self._finders: Dict[str, Any] = {}
        if not (isinstance(regions, str) and regions == "auto"):
            self._finder_for(regions)  # build it now, so a bad region spec fails here
        self._lock = threading.Lock()
        self._region_lock = threading.Lock()  # finders keep hold-over state: one frame at a time, in order
        self.stats = FilterStats()
        self.last_regions: list = []
        self._last_shape: Optional[Tuple[int, ...]] = None
        _log.info("filter %s %s (%s, input %d×%d) ready: %s; regions=%s%s", self.name, net.info.get("version", "?"),
                  "lite" if self._lite else "network", w, h, self.describe_backend(), self._region_label(),
                  (f"; {self._leveller.describe()}" if self._leveller is not None else "")
                  + (f"; {self._eraser.describe()} of {net.info.get('erase', {}).get('secret')}"
                     if self._eraser is not None else ""))

    # ------------------------------------------------------------------ info
    @property
    def info(self) -> Dict[str, Any]:
        """The filter's manifest (name, version, secret, utility, method, evaluation, files...)."""
        return dict(self._info)

    @property
    def name(self) -> str:
        return str(self._info.get("name", "?"))

    @property
    def kind(self) -> str:
        return "lite" if self._lite else str(self._info.get("kind", "unet"))

    def describe_backend(self) -> str:
        """What runs the filter, in words (e.g. ``onnxruntime on CPUExecutionProvider``)."""
        if self.backend is None:
            from . import kernels

            return f"fused kernel only ({kernels.IMPLEMENTATION})"
        return self.backend.describe()

    def _region_label(self) -> str:
        spec = self._region_spec
        return spec if isinstance(spec, str) else type(spec).__name__

    def __repr__(self) -> str:
        return f"<Filter {self.name} ({self.kind}) on {self.describe_backend()}, regions={self._region_label()}>"

    # ------------------------------------------------------------------ regions
    def _finder_for(self, spec: Any) -> Any:
        from .regions import make_finder

        key = spec if isinstance(spec, str) else id(spec)
        finder = self._finders.get(key)
        if finder is None:
            h, w = self.input_size
            opts = {**self._face_crop_options(spec), **self._region_options} if spec != "full" else {}
            finder = make_finder(spec, aspect=w / h, margin=self._margin, hold=self._hold,
                                 hold_seconds=self._hold_seconds, **opts)
            self._finders[key] = finder
        return finder

    def _face_crop_options(self, spec: Any) -> Dict[str, Any]:
        """Frame faces as the training faces were (the bundle's ``input.face_crop``), unless told otherwise.

        The layout was measured with the Haar finder, so it is used for ``faces``/``haar`` only; an
        explicit ``margin`` or ``region_options["crop"]`` wins.
        """
        layout = (self._info.get("input") or {}).get("face_crop")
        if not layout or spec not in ("faces", "haar") or self._margin is not None \
                or "crop" in self._region_options or "margin" in self._region_options:
            return {}
        if layout.get("detector") != "haar":
            _log.info("filter %s: its face crop layout was measured with %r, not the Haar finder; using the "
                      "default margin", self.name, layout.get("detector"))
            return {}
        _log.info("filter %s: faces framed as in training: crop %s of the Haar box", self.name, layout["box"])
        return {"crop": tuple(layout["box"])}

    def is_crop_like(self, shape: Tuple[int, ...]) -> bool:
        """The ``regions="auto"`` rule: is a frame of this shape already a face crop (filtered whole)?"""
        fh, fw = int(shape[0]), int(shape[1])
        h, w = self.input_size
        limit = max(256, 4 * max(h, w))
        ratio = (fw / fh) / (w / h)
        return fh <= limit and fw <= limit and 0.8 <= ratio <= 1.25

    def _finder(self, frame: np.ndarray) -> Any:
        spec = self._region_spec
        if isinstance(spec, str) and spec == "auto":
            spec = "full" if self.is_crop_like(frame.shape) else "faces"
        return self._finder_for(spec)

    def reset(self) -> None:
        """Forget the regions held from earlier frames (call between unrelated streams)."""
        with self._lock, self._region_lock:
            for f in self._finders.values():
                f.reset()

    # ------------------------------------------------------------------ core
    def _check_frame(self, frame: Any, name: str = "frame") -> np.ndarray:
        from .kernels.reference import check_frame

        if frame is None:
            raise InputError(f"{name}: got None (an unreadable or missing frame); expected an H×W×3 uint8 BGR array")
        return check_frame(frame, name)

    def _flush(self, jobs: List[Tuple[np.ndarray, Tuple[int, int, int, int]]]) -> None:
        """Run the network on the batch slots filled for ``jobs`` and write each result back."""
        from .kernels import post

        n = len(jobs)
        if n == 0:
            return
        filtered = self._network(n)
        t0 = time.perf_counter()
        ps, pt = self._maps.get("post_scale"), self._maps.get("post_shift")
        for i, (out, roi) in enumerate(jobs):
            post(filtered[i], out, roi, ps, pt, swap_rb=self._swap_rb)
        self.stats.seconds["post"] += time.perf_counter() - t0

    def _network(self, n: int) -> np.ndarray:
        """The network (none for lite) and the eraser on the first ``n`` batch slots: what post receives."""
        t0 = time.perf_counter()
        if self._lite:
            filtered = self._batch[:n]
        else:
            filtered = self.backend.run(self._batch[:n], [z[:n] for z in self._noise])
            if filtered.shape != (n, 3, *self.input_size):
                raise BackendError(f"the backend returned {describe_array(filtered)}; expected float32 "
                                   f"({n}, 3, {self.input_size[0]}, {self.input_size[1]})")
        t1 = time.perf_counter()
        self.stats.seconds["network"] += t1 - t0
        if self._eraser is not None:
            # a backend may hand back a read-only or strided view of its own buffer: erase a copy of it then
            filtered = self._eraser.apply(np.require(filtered, np.float32, ["C", "W"]))
            self.stats.seconds["erase"] += time.perf_counter() - t1
        return filtered

    def network_outputs(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """What the post-kernel receives for each face crop: N×3×H×W float32 in the bundle's output convention.

        Each crop (H'×W'×3 uint8 BGR, the whole image taken as the face) goes through everything
        :meth:`apply` runs before the post-kernel: levelling, the pre-kernel, the network and the eraser.
        This is the space a bundle's eraser is fit in (``privsdk export BUNDLE --erase-secret``).

        Example::

            import numpy as np
            from privsdk import Filter
            face = np.full((64, 64, 3), 128, np.uint8)
            Filter("emotion-lite").network_outputs([face]).shape     # (1, 3, 64, 64)
        """
        h, w = self.input_size
        result = np.empty((len(crops), 3, h, w), np.float32)
        with self._lock:
            for start in range(0, len(crops), self.max_batch):
                chunk = crops[start:start + self.max_batch]
                for slot, crop in enumerate(chunk):
                    source = self._check_frame(crop, f"crops[{start + slot}]")
                    if self._leveller is not None:
                        source, roll = self._leveller.crop(source, None, out=self._level_crop)
                        self.stats.unlevelled += int(roll is None)
                    self._pre_maps.pre(source, None, out=self._batch[slot],
                                       noise_outputs=[z[slot] for z in self._noise], rng=self._rng,
                                       swap_rb=self._swap_rb)
                result[start:start + len(chunk)] = self._network(len(chunk))
        return result

    def _find_regions(self, frame: np.ndarray) -> list:
        """The regions of one (checked) frame; frames must come in stream order (hold-over)."""
        t0 = time.perf_counter()
        with self._region_lock:
            regions = self._finder(frame).find(frame)
        self.stats.seconds["regions"] += time.perf_counter() - t0
        return regions

    def _process(self, frames: Sequence[np.ndarray], outs: Sequence[np.ndarray],
                 found: Optional[Sequence[list]] = None) -> List[list]:
        jobs: List[Tuple[np.ndarray, Tuple[int, int, int, int]]] = []
        all_regions: List[list] = []
        for i, (frame, out) in enumerate(zip(frames, outs)):
            regions = found[i] if found is not None else self._find_regions(frame)
            t1 = time.perf_counter()
            all_regions.append(regions)
            for r in regions:
                slot = len(jobs)
                source, roi = frame, r.roi
                if self._leveller is not None:
                    # cut out level (a 2-D warp of the frame); the filtered face is pasted back level by post
                    source, roll = self._leveller.crop(frame, r.roi, out=self._level_crop)
                    roi = None
                    self.stats.unlevelled += int(roll is None)
                self._pre_maps.pre(source, roi, out=self._batch[slot], noise_outputs=[z[slot] for z in self._noise],
                                   rng=self._rng, swap_rb=self._swap_rb)
                jobs.append((out, r.roi))
                if len(jobs) == self.max_batch:
                    t2 = time.perf_counter()
                    self.stats.seconds["pre"] += t2 - t1
                    self._flush(jobs)
                    jobs = []
                    t1 = time.perf_counter()
            self.stats.seconds["pre"] += time.perf_counter() - t1
        self._flush(jobs)
        return all_regions

    def _run(self, frames: Sequence[Any], outs: Optional[Sequence[Optional[np.ndarray]]],
             found: Optional[Sequence[list]] = None) -> Tuple[List[np.ndarray], List[list]]:
        checked = [self._check_frame(f, f"frames[{i}]" if len(frames) > 1 else "frame") for i, f in enumerate(frames)]
        results: List[np.ndarray] = []
        for i, frame in enumerate(checked):
            out = outs[i] if outs is not None else None
            if out is None:
                results.append(frame.copy())
                continue
            if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != frame.shape \
                    or not out.flags.writeable:
                raise InputError(f"out: expected a writeable uint8 array of the frame's shape {frame.shape}, "
                                 f"got {describe_array(out)}")
            if out is not frame:
                np.copyto(out, frame)
            results.append(out)
        with self._lock:
            try:
                regions = self._process(checked, results, found)
            except Exception as exc:
                for r in results:  # fail closed: whatever was written is not returned
                    r[...] = 0
                self.stats.last_error = str(exc)
                if isinstance(exc, PrivsdkError):
                    raise
                raise BackendError(f"filtering failed ({type(exc).__name__}: {exc}); nothing unfiltered was "
                                   "returned") from exc
            self.stats.frames += len(checked)
            self.stats.faces += sum(len(r) for r in regions)
            self.last_regions = regions[-1] if regions else []
        return results, regions

    # ------------------------------------------------------------------ public
    def apply(self, frame: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Sanitize one H×W×3 uint8 BGR frame: a new array, or ``out`` filled in place (may be ``frame``).

        Raises a :class:`privsdk.PrivsdkError` on any failure (``out`` is then blanked).
        """
        results, _ = self._run([frame], [out] if out is not None else None)
        return results[0]

    def apply_batch(self, frames: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Sanitize several frames; their regions share network batches. Returns new arrays."""
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        if not isinstance(frames, (list, tuple)):
            raise InputError(f"frames: expected a list of H×W×3 uint8 frames (or an N×H×W×3 array), "
                             f"got {type(frames).__name__}")
        if not frames:
            return []
        results, _ = self._run(frames, None)
        return results

    def apply_safe(self, frame: Any, index: int = 0) -> StreamItem:
        """Sanitize one frame of a stream, never raising for a bad frame: on any failure the
        result is a blanked frame, counted in ``stats.blanked`` (hold-over state is kept)."""
        return self._safe(frame, index)

    def _safe(self, frame: Any, index: int, found: Optional[list] = None, failure: Optional[BaseException] = None,
              name: Optional[str] = None, captured_at: Optional[float] = None) -> StreamItem:
        """``apply_safe`` with the regions already found (``found``) or the finder's failure (``failure``)."""
        try:
            if failure is not None:
                raise failure
            results, _ = self._run([frame], None, [found] if found is not None else None)
            clean = results[0]
            self._last_shape = clean.shape
            return StreamItem(index, clean, list(self.last_regions), False, name=name, captured_at=captured_at)
        except Exception as exc:
            with self._lock:
                self.stats.blanked += 1
                self.stats.frames += 1
                self.stats.last_error = str(exc)
            _log.warning("frame %d blanked: %s", index, exc)
            if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.size:
                shape = frame.shape
            else:
                shape = self._last_shape or (*self.input_size, 3)
            return StreamItem(index, blank_like(shape), [], True, str(exc), name, captured_at)

    def stream_results(self, source: Any, max_frames: Optional[int] = None,
                       pipelined: bool = True) -> Iterator[StreamItem]:
        """Like :meth:`stream`, with what was filtered: yields :class:`StreamItem`.

        A frame that cannot be filtered (unreadable, wrong shape, backend or finder
        failure) is replaced by a blanked frame and counted in ``stats.blanked``.
        ``pipelined=False`` reads, finds and filters each frame in the caller's thread.
        """
        frames, close = _frames_of(source)
        self.reset()
        try:
            if pipelined:
                yield from self._pipelined(frames, max_frames)
            else:
                for index, frame, name, t1 in self._read(frames, max_frames):
                    yield self._safe(frame, index, name=name, captured_at=t1)
        finally:
            if close is not None:
                close()

    def _read(self, frames: Iterable[Any], max_frames: Optional[int],
              stop: Optional[threading.Event] = None) -> Iterator[Tuple[int, Any, Optional[str], float]]:
        """``(index, frame, name, read time)`` of each frame of a stream; the wait counts as "capture"."""
        it = iter(frames)
        index = 0
        while (stop is None or not stop.is_set()) and (max_frames is None or index < max_frames):
            t0 = time.perf_counter()
            frame = next(it, _END)
            t1 = time.perf_counter()
            self.stats.seconds["capture"] += t1 - t0
            if frame is _END:
                return
            yield index, frame, getattr(frames, "current_name", None), t1
            index += 1

    def _pipelined(self, frames: Iterable[Any], max_frames: Optional[int]) -> Iterator[StreamItem]:
        """Two stages: a worker thread reads frames and finds their regions; this thread filters."""
        handoff: "queue.Queue[Any]" = queue.Queue(maxsize=2)  # bounded: live sources keep low latency
        stop = threading.Event()

        def put(item: Any) -> None:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def work() -> None:
            try:
                for index, frame, name, t1 in self._read(frames, max_frames, stop):
                    found, failure = None, None
                    try:
                        found = self._find_regions(self._check_frame(frame))
                    except Exception as exc:  # filtered as a failure (blanked) by the consumer
                        failure = exc
                    put((index, frame, found, failure, name, t1))
            except BaseException as exc:  # the source itself failed: re-raised in the caller's thread
                put(_SourceFailure(exc))
            finally:
                put(_END)

        worker = threading.Thread(target=work, name="privsdk-regions", daemon=True)
        worker.start()
        try:
            while True:
                item = handoff.get()
                if item is _END:
                    break
                if isinstance(item, _SourceFailure):
                    raise item.exc
                index, frame, found, failure, name, t1 = item
                yield self._safe(frame, index, found=found, failure=failure, name=name, captured_at=t1)
        finally:
            stop.set()
            deadline = time.monotonic() + 5.0
            while worker.is_alive():  # unblock a worker waiting to hand over a frame
                try:
                    handoff.get(timeout=0.05)
                except queue.Empty:
                    pass
                worker.join(timeout=0.05)
                if time.monotonic() > deadline:  # stuck in the source's read: it is a daemon, let it go
                    _log.warning("the stream's reader thread did not stop within 5 s (blocked in the source)")
                    break

    def stream(self, source: Any, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
        """Yield sanitized frames from ``source``: a URI/path/index (see :func:`privsdk.io.open_source`;
        opened and closed here), a :class:`privsdk.io.Source` or any iterable of frames (left open).
        Never yields raw pixels."""
        for item in self.stream_results(source, max_frames):
            yield item.frame

    def close(self) -> None:
        """Release the backend."""
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> "Filter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_END = object()


class _SourceFailure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _frames_of(source: Any) -> Tuple[Iterable[Any], Optional[Any]]:
    if isinstance(source, (str, int, Path)):
        from .io import open_source

        src = open_source(source)
        return src, src.close
    if isinstance(source, np.ndarray) and source.ndim == 3:
        raise InputError("source: got a single frame; expected a source, an iterable of frames or an N×H×W×3 "
                         "array -- use Filter.apply for one frame")
    if hasattr(source, "__iter__"):
        return source, None  # the caller owns what it passed in, and closes it
    raise InputError(f"source: expected a URI/path/camera index, a privsdk.io.Source or an iterable of frames, "
                     f"got {type(source).__name__}")


__all__ = ["Filter", "FilterStats", "StreamItem", "blank_like", "REGION_MODES"]
