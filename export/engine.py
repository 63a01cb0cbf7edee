"""Bundle → TensorRT engine: build (FP32 / FP16 / INT8), check against onnxruntime, cache.

Uses the TensorRT 10 Python API: ``OnnxParser`` on the bundle's ``filter.onnx``,
a builder config with a workspace limit, an optimization profile over the
dynamic batch axis (1 … ``max_batch``), a timing cache kept beside the engines,
and for INT8 an ``IInt8EntropyCalibrator2`` fed by
:class:`~privsdk.export.calibration.CalibrationSet` (real images through the
fused pre-kernel). The engine goes into the :class:`~privsdk.trt_runner.EngineCache`
(never into the bundle); it is then run by :class:`~privsdk.trt_runner.EngineRunner`
against onnxruntime on the same inputs, and the error and latencies are written
into the engine's side-file.

Example::

    from privsdk.export.engine import EngineRequest, build_engine
    record = build_engine(EngineRequest("bundles/emotion", precision="fp16", max_batch=8))
    print(record["check"])
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from privsdk.bundle import Bundle, load_bundle
from privsdk.errors import BackendError, InputError
from privsdk.log import get_logger
from privsdk.trt_runner import (PRECISIONS, CachedEngine, EngineCache, EngineKey, EngineRunner, gpu_name,
                                open_device, require_tensorrt)

from .calibration import CalibrationSet
from .onnx_graph import IMAGE_INPUT, example_inputs, ort_session

_log = get_logger(__name__)

TOLERANCES = {"fp32": 1e-3, "fp16": 2e-2, "int8": 1e-1}


@dataclass
class EngineRequest:
    """What to build: a bundle, a precision and the engine's limits."""

    bundle: Union[str, Path]
    precision: str = "fp32"
    max_batch: int = 8
    workspace_mb: int = 1024
    calib_dir: Optional[Union[str, Path]] = None
    calib_batch: int = 8
    cache_dir: Optional[Union[str, Path]] = None
    rebuild: bool = False
    device: int = 0


def check_request(req: EngineRequest) -> Bundle:
    """Everything that can be checked without TensorRT: bundle hashes, kind, options, calibration folder."""
    if req.precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {PRECISIONS}, got {req.precision!r}")
    if not isinstance(req.max_batch, int) or req.max_batch < 1:
        raise InputError(f"--max-batch: expected a positive integer, got {req.max_batch!r}")
    if not isinstance(req.workspace_mb, int) or req.workspace_mb < 16:
        raise InputError(f"--workspace: expected at least 16 MB, got {req.workspace_mb!r}")
    bundle = load_bundle(req.bundle)  # refuses a bundle whose hashes do not match
    if bundle.kind != "unet" or bundle.onnx_bytes is None:
        raise InputError(f"filter bundle {req.bundle}: a {bundle.kind} filter has no ONNX network to build an "
                         "engine from; it runs in the fused kernel alone")
    if req.precision == "int8":
        if req.calib_dir is None:
            raise InputError("--int8 needs --calib DIR: a folder of real images to calibrate the INT8 ranges")
        CalibrationSet(req.calib_dir, bundle, batch_size=min(req.calib_batch, req.max_batch))
    elif req.calib_dir is not None:
        _log.warning("--calib is used by --int8 only; ignored for a %s engine", req.precision)
    return bundle


def _int8_calibrator(trt: Any, calib: CalibrationSet, cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``calib``; its cache is keyed by the images' fingerprint."""
    device = open_device()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(calib.batches())
            self._buffers = {name: device.empty(shape, np.float32) for name, shape in calib.shapes().items()}
            self._done = 0

        def get_batch_size(self) -> int:
            return calib.batch_size

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            try:
                feeds = next(self._batches)
            except StopIteration:
                return None
            for name in names:
                device.upload(self._buffers[name], feeds[name])
            self._done += 1
            _log.info("INT8 calibration batch %d/%d", self._done, len(calib))
            return [device.pointer(self._buffers[name]) for name in names]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _serialize(trt: Any, bundle: Bundle, req: EngineRequest, cache: EngineCache, key: EngineKey) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(bundle.onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT's ONNX parser rejects {bundle.source}/filter.onnx: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, req.workspace_mb << 20)
    if req.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 would cost ~1e-3 of accuracy
    if req.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    opt = min(req.max_batch, max(1, req.calib_batch if req.precision == "int8" else 1))
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(int(d) for d in tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise BackendError(f"{bundle.source}/filter.onnx: input {tensor.name!r} has a dynamic axis other than "
                               f"the batch ({tuple(tensor.shape)}); expected fixed C×H×W")
        profile.set_shape(tensor.name, (1, *rest), (opt, *rest), (req.max_batch, *rest))
    config.add_optimization_profile(profile)
    calibrator = None  # referenced here until the build is over: TensorRT calls back into it
    if req.precision == "int8":
        assert req.calib_dir is not None  # check_request refused INT8 without a calibration folder
        # TensorRT calibrates at the profile's opt shape, which is the calibration batch
        calib = CalibrationSet(req.calib_dir, bundle, batch_size=opt)
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_calibration_profile(profile)
        calib_cache = cache.directory / f"calib-{key.onnx_sha256[:16]}-{calib.fingerprint[:16]}.cache"
        calibrator = _int8_calibrator(trt, calib, calib_cache)
        config.int8_calibrator = calibrator
    timing_path = cache.timing_cache_path(key)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    if not config.set_timing_cache(timing, ignore_mismatch=False):
        _log.warning("timing cache %s does not fit this TensorRT/GPU; starting a fresh one", timing_path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    _log.info("building a %s TensorRT %s engine for %s (batch 1…%d, workspace %d MB)…",
              req.precision, trt.__version__, key.gpu, req.max_batch, req.workspace_mb)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build a {req.precision} engine from {bundle.source}/filter.onnx "
                           "(see the TensorRT log above)")
    _log.info("engine built in %.1f s%s", time.perf_counter() - start,
              f" ({calibrator._done} calibration batches)" if calibrator is not None else "")
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    timing_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _median_ms(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def compare_with_onnxruntime(runner: EngineRunner, bundle: Bundle, precision: str, batch: int,
                             repeats: int = 50) -> Dict[str, Any]:
    """Run engine and onnxruntime (CPU) on the same inputs: max abs error and median latencies."""
    image, noise = example_inputs(bundle.input_size, bundle.noise_inputs, batch=batch, seed=1)
    onnx = bundle.manifest["onnx"]
    feeds = {onnx.get("image_input", IMAGE_INPUT): image, **{n["name"]: z for n, z in zip(bundle.noise_inputs, noise)}}
    session = ort_session(bundle.onnx_bytes)  # type: ignore[arg-type]
    want = session.run(None, feeds)[0]
    got = runner.run(feeds)[onnx["output"]]
    err = float(np.abs(got.astype(np.float32) - want).max())
    result = {"batch": batch, "max_abs_error_vs_onnxruntime": err, "tolerance": TOLERANCES[precision],
              "trt_latency_ms_median_with_copies": _median_ms(lambda: runner.run(feeds), repeats),
              "onnxruntime_cpu_latency_ms_median": _median_ms(lambda: session.run(None, feeds), repeats)}
    if not err <= TOLERANCES[precision]:
        raise BackendError(f"the {precision} TensorRT engine and onnxruntime disagree: max abs error {err:.3g}, "
                           f"expected ≤ {TOLERANCES[precision]:g}")
    return result


def ensure_engine(bundle: Bundle, req: EngineRequest) -> CachedEngine:
    """The verified cached engine for ``bundle`` on this GPU/TensorRT/precision, built when absent or stale."""
    trt = require_tensorrt()
    onnx_sha256 = str(bundle.onnx_sha256)  # a unet bundle always lists filter.onnx (validate_manifest)
    key = EngineKey(onnx_sha256, gpu_name(req.device), str(trt.__version__), req.precision)
    cache = EngineCache(req.cache_dir)
    entry: Optional[CachedEngine] = None if req.rebuild else cache.lookup(key, req.max_batch)
    if entry is not None:
        _log.info("using cached engine %s", entry.engine_path)
        return entry
    data = _serialize(trt, bundle, req, cache, key)
    return cache.store(key, data, {"min_batch": 1, "max_batch": req.max_batch},
                       {"bundle": bundle.source, "bundle_name": bundle.name, "workspace_mb": req.workspace_mb})


def build_engine(req: EngineRequest) -> Dict[str, Any]:
    """Build (or reuse a verified cached) engine for ``req``, check it against onnxruntime; return its record."""
    bundle = check_request(req)
    require_tensorrt()
    entry = ensure_engine(bundle, req)
    runner = EngineRunner(entry.engine_bytes, source=str(entry.engine_path))
    try:
        check = compare_with_onnxruntime(runner, bundle, req.precision, batch=min(4, req.max_batch))
    except BackendError:
        entry.engine_path.unlink(missing_ok=True)  # a wrong engine must not be served from the cache
        entry.engine_path.with_suffix(".json").unlink(missing_ok=True)
        raise
    EngineCache(req.cache_dir).update_info(entry, {"check": check})
    return {"engine": str(entry.engine_path), **entry.record}
