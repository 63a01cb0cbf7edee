"""TensorRT engines for the runtime: the engine cache and the engine runner.

TensorRT engines are never shipped in a bundle (DESIGN.md): they are built on
the target from the bundle's ``filter.onnx`` and cached under the user's cache
directory (``$XDG_CACHE_HOME/privsdk/engines`` or ``~/.cache/privsdk/engines``;
``PRIVSDK_ENGINE_CACHE`` overrides it). Each engine ``<stem>.engine`` has a
side-file ``<stem>.json`` holding its :class:`EngineKey` (ONNX SHA-256, GPU name,
TensorRT version, precision), the engine's own SHA-256, the batch range of its
optimization profile and the figures measured when it was built. An engine
whose side-file is missing, unreadable or does not match the requested key is
*stale or foreign*: it is never deserialized, only rebuilt.

This module never imports ``tensorrt`` (nor torch or cuda-python) at import
time; :func:`require_tensorrt` does, and says clearly when it is missing.

Example (on a machine with an NVIDIA GPU and TensorRT 10)::

    import numpy as np
    from privsdk.bundle import load_bundle
    from privsdk.trt_runner import EngineCache, EngineKey, EngineRunner, runner_for_bundle
    bundle = load_bundle("bundles/emotion")
    x = np.zeros((1, 3, *bundle.input_size), np.float32)
    z = np.random.standard_normal((1, *bundle.noise_inputs[0]["shape"])).astype(np.float32)

    # the runtime's way: the cached engine for this GPU, built on first use
    runner = runner_for_bundle(bundle, precision="fp16")
    out = runner.run({"image": x, "noise": z})["filtered"]

    # or look the cache up yourself
    key = EngineKey.for_current_device(bundle.onnx_sha256, precision="fp16")
    entry = EngineCache().lookup(key)          # None when absent, stale or foreign
    if entry is not None:
        out = EngineRunner(entry.engine_bytes, source=str(entry.engine_path)).run({"image": x, "noise": z})
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import BackendError, DependencyError, InputError
from .log import get_logger

_log = get_logger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
SIDE_FILE_FORMAT = "privsdk-engine/1"
TENSORRT_MISSING = (
    "TensorRT is not installed: building or running a TensorRT engine needs the "
    "'tensorrt' Python package (TensorRT 10, e.g. JetPack's python3-libnvinfer or "
    "'pip install tensorrt-cu12') and an NVIDIA GPU. Use the ONNX bundle with "
    "onnxruntime (CPU, CUDA or TensorRT execution provider) instead"
)


def require_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module, or raise :class:`DependencyError` saying so."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DependencyError(f"{TENSORRT_MISSING} (import failed: {exc})") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise DependencyError(f"TensorRT {trt.__version__} is installed; privsdk needs TensorRT 10 or newer "
                              "(the execute_async_v3 / tensor-address API)")
    return trt


def tensorrt_version() -> Optional[str]:
    """The installed TensorRT version, or None when it is not installed (imports nothing else)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - python < 3.8
        return None
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_libs"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def gpu_name(device: int = 0) -> str:
    """The name of CUDA device ``device`` (via torch or cuda-python), or raise :class:`BackendError`."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device))
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[import-not-found,no-redef]
        except ImportError:
            cudart = None  # type: ignore[assignment]
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = props.name
            return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")
    raise BackendError(f"no CUDA device {device} found (asked torch.cuda and cuda-python); "
                       "a TensorRT engine needs an NVIDIA GPU")


def default_cache_dir() -> Path:
    """``$PRIVSDK_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/privsdk/engines``, else ``~/.cache/privsdk/engines``."""
    explicit = os.environ.get("PRIVSDK_ENGINE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "privsdk" / "engines"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """What an engine was built from and for. Two engines are interchangeable only if keys are equal."""

    onnx_sha256: str
    gpu: str
    tensorrt: str
    precision: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256 or ""):
            raise InputError(f"onnx_sha256: expected a 64-digit lowercase hex SHA-256, got {self.onnx_sha256!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if not self.gpu or not self.tensorrt:
            raise InputError(f"gpu and tensorrt must be non-empty, got gpu={self.gpu!r}, tensorrt={self.tensorrt!r}")

    @classmethod
    def for_current_device(cls, onnx_sha256: str, precision: str = "fp32", device: int = 0) -> "EngineKey":
        """The key for this machine's GPU ``device`` and installed TensorRT."""
        trt = require_tensorrt()
        return cls(onnx_sha256, gpu_name(device), str(trt.__version__), precision)

    @property
    def stem(self) -> str:
        """File stem of this key in the cache: readable and unique per key."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.onnx_sha256[:16]}-{_slug(self.gpu)}-trt{_slug(self.tensorrt)}-{self.precision}-{digest}"

    def mismatches(self, other: Mapping[str, Any]) -> List[str]:
        """Human-readable differences between this key and a recorded one (empty when equal)."""
        out = []
        for name, want in asdict(self).items():
            got = other.get(name)
            if got != want:
                out.append(f"{name} is {got!r}, expected {want!r}")
        return out


@dataclass
class CachedEngine:
    """A verified cache entry: the engine bytes and its side-file record."""

    engine_path: Path
    record: Dict[str, Any]
    engine_bytes: bytes

    @property
    def max_batch(self) -> int:
        return int(self.record["profile"]["max_batch"])


class EngineCache:
    """Engines on disk, keyed by :class:`EngineKey`; anything stale or foreign is reported, never used."""

    def __init__(self, directory: Union[str, Path, None] = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def paths(self, key: EngineKey) -> Tuple[Path, Path]:
        """(engine file, side-file) for ``key``."""
        return self.directory / f"{key.stem}.engine", self.directory / f"{key.stem}.json"

    def timing_cache_path(self, key: EngineKey) -> Path:
        """TensorRT's timing cache, shared by the builds for one GPU and TensorRT version."""
        return self.directory / f"timing-{_slug(key.gpu)}-trt{_slug(key.tensorrt)}.cache"

    def verify(self, key: EngineKey, engine_path: Union[str, Path], side_path: Union[str, Path, None] = None
               ) -> CachedEngine:
        """Check an engine file against its side-file and ``key``; raise :class:`BackendError` naming the mismatch."""
        engine_path = Path(engine_path)
        side_path = Path(side_path) if side_path is not None else engine_path.with_suffix(".json")
        if not engine_path.is_file():
            raise BackendError(f"TensorRT engine {engine_path}: no such file")
        if not side_path.is_file():
            raise BackendError(f"TensorRT engine {engine_path}: its key side-file {side_path.name} is missing; "
                               "an engine of unknown origin is never trusted")
        try:
            record = json.loads(side_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BackendError(f"TensorRT engine {engine_path}: side-file {side_path} is unreadable ({exc})") from None
        if not isinstance(record, dict) or record.get("format") != SIDE_FILE_FORMAT or \
                not isinstance(record.get("key"), dict):
            raise BackendError(f"TensorRT engine {engine_path}: side-file {side_path} is not a "
                               f"{SIDE_FILE_FORMAT!r} record")
        problems = key.mismatches(record["key"])
        if problems:
            raise BackendError(f"TensorRT engine {engine_path} was built for another target: "
                               + "; ".join(problems))
        data = engine_path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.get("engine_sha256"):
            raise BackendError(f"TensorRT engine {engine_path} has SHA-256 {digest[:16]}…, its side-file says "
                               f"{str(record.get('engine_sha256'))[:16]}…; the engine was modified or truncated")
        profile = record.get("profile")
        if not isinstance(profile, dict) or not isinstance(profile.get("max_batch"), int):
            raise BackendError(f"TensorRT engine {engine_path}: side-file lacks profile.max_batch")
        return CachedEngine(engine_path, record, data)

    def lookup(self, key: EngineKey, min_batch_capacity: int = 1) -> Optional[CachedEngine]:
        """The cached engine for ``key``, or None when absent, stale, foreign or too small a batch profile."""
        engine_path, side_path = self.paths(key)
        if not engine_path.exists() and not side_path.exists():
            return None
        try:
            entry = self.verify(key, engine_path, side_path)
        except BackendError as exc:
            _log.warning("%s; it will be rebuilt", exc)
            return None
        if entry.max_batch < min_batch_capacity:
            _log.info("cached engine %s takes batches up to %d, %d requested; it will be rebuilt",
                      engine_path, entry.max_batch, min_batch_capacity)
            return None
        return entry

    def store(self, key: EngineKey, engine_bytes: bytes, profile: Mapping[str, int],
              info: Optional[Mapping[str, Any]] = None) -> CachedEngine:
        """Write ``engine_bytes`` and its side-file atomically; return the verified entry."""
        self.directory.mkdir(parents=True, exist_ok=True)
        engine_path, side_path = self.paths(key)
        record = {"format": SIDE_FILE_FORMAT, "key": asdict(key),
                  "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
                  "profile": dict(profile), "info": dict(info or {})}
        tmp_engine = engine_path.with_suffix(".engine.tmp")
        tmp_engine.write_bytes(engine_bytes)
        os.replace(tmp_engine, engine_path)
        self.write_record(side_path, record)
        return self.verify(key, engine_path, side_path)

    def update_info(self, entry: CachedEngine, info: Mapping[str, Any]) -> None:
        """Merge ``info`` (e.g. measured error and latency) into an entry's side-file."""
        entry.record.setdefault("info", {}).update(info)
        self.write_record(entry.engine_path.with_suffix(".json"), entry.record)

    @staticmethod
    def write_record(side_path: Path, record: Mapping[str, Any]) -> None:
        tmp = side_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, side_path)


# ---------------------------------------------------------------- device memory

class _TorchDevice:
    """Device buffers and a stream through torch.cuda."""

    name = "torch.cuda"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise BackendError("torch is installed but sees no CUDA device")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.stream_handle = int(self.stream.cuda_stream)

    def empty(self, shape: Tuple[int, ...], dtype: np.dtype) -> Any:
        tdtype = {np.dtype(np.float32): self.torch.float32, np.dtype(np.float16): self.torch.float16,
                  np.dtype(np.int32): self.torch.int32, np.dtype(np.int8): self.torch.int8,
                  np.dtype(np.bool_): self.torch.bool, np.dtype(np.int64): self.torch.int64}[np.dtype(dtype)]
        return self.torch.empty(shape, dtype=tdtype, device="cuda")

    @staticmethod
    def pointer(buf: Any) -> int:
        return int(buf.data_ptr())

    @staticmethod
    def free(buf: Any) -> None:
        """Nothing to do: torch's caching allocator reclaims the tensor."""

    def upload(self, buf: Any, host: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            buf.copy_(self.torch.from_numpy(np.ascontiguousarray(host)), non_blocking=False)

    def download(self, buf: Any) -> np.ndarray:
        with self.torch.cuda.stream(self.stream):
            out = buf.cpu()
        return out.numpy()

    def synchronize(self) -> None:
        self.stream.synchronize()


class _CudaPythonDevice:
    """Device buffers and a stream through cuda-python's runtime API."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
        except ImportError:
            from cuda import cudart  # type: ignore[import-not-found,no-redef]
        self.cudart = cudart
        self.stream_handle = int(self._check(cudart.cudaStreamCreate(), "cudaStreamCreate"))
        self._allocations: List[int] = []

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"{what} failed with CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def empty(self, shape: Tuple[int, ...], dtype: np.dtype) -> Any:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(self._check(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
        self._allocations.append(ptr)
        return (ptr, tuple(shape), np.dtype(dtype))

    @staticmethod
    def pointer(buf: Any) -> int:
        return int(buf[0])

    def free(self, buf: Any) -> None:
        if buf[0] in self._allocations:
            self._allocations.remove(buf[0])
            self.cudart.cudaFree(buf[0])

    def upload(self, buf: Any, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host, dtype=buf[2])
        self._check(self.cudart.cudaMemcpyAsync(buf[0], host.ctypes.data, host.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                                self.stream_handle), "cudaMemcpyAsync(host→device)")
        self.synchronize()

    def download(self, buf: Any) -> np.ndarray:
        out = np.empty(buf[1], dtype=buf[2])
        self._check(self.cudart.cudaMemcpyAsync(out.ctypes.data, buf[0], out.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                                self.stream_handle), "cudaMemcpyAsync(device→host)")
        self.synchronize()
        return out

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self.stream_handle), "cudaStreamSynchronize")

    def __del__(self) -> None:  # pragma: no cover - needs a GPU
        for ptr in getattr(self, "_allocations", []):
            self.cudart.cudaFree(ptr)


def open_device() -> Any:
    """Device memory + CUDA stream through torch.cuda, else cuda-python; :class:`DependencyError` when neither."""
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            return _TorchDevice()
        reasons.append(f"torch {torch.__version__} sees no CUDA device")
    except ImportError:
        reasons.append("torch is not installed")
    try:
        return _CudaPythonDevice()
    except ImportError:
        reasons.append("cuda-python is not installed")
    except BackendError as exc:
        reasons.append(f"cuda-python: {exc}")
    raise DependencyError("running a TensorRT engine needs device memory from torch.cuda or cuda-python "
                          "('pip install cuda-python'); " + "; ".join(reasons))


class EngineRunner:
    """Run a serialized TensorRT 10 engine: tensor addresses + ``execute_async_v3`` on a CUDA stream.

    Inputs and outputs are host numpy arrays, keyed by tensor name; the batch
    axis may vary within the engine's optimization profile.
    """

    def __init__(self, engine_bytes: bytes, source: str = "<engine>") -> None:
        trt = require_tensorrt()
        self.trt = trt
        self.source = source
        self.device = open_device()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise BackendError(f"TensorRT engine {source}: deserialization failed (built by another TensorRT "
                               "version or for another GPU?); rebuild it with 'privsdk export BUNDLE --format engine'")
        self.context = self.engine.create_execution_context()
        self.inputs: List[str] = []
        self.outputs: List[str] = []
        self.dtypes: Dict[str, np.dtype] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self.dtypes[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
            else:
                self.outputs.append(name)
        self._buffers: Dict[str, Tuple[Tuple[int, ...], Any]] = {}
        _log.info("TensorRT engine %s: inputs %s, outputs %s, device memory via %s",
                  source, self.inputs, self.outputs, self.device.name)

    def _buffer(self, name: str, shape: Tuple[int, ...]) -> Any:
        """The device buffer of tensor ``name``, reused while its shape stays the same."""
        held = self._buffers.get(name)
        if held is not None and held[0] == shape:
            return held[1]
        if held is not None:
            self.device.free(held[1])
        buf = self.device.empty(shape, self.dtypes[name])
        self._buffers[name] = (shape, buf)
        return buf

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Copy ``feeds`` to the GPU, run the engine on its stream, return the outputs on the host."""
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise InputError(f"TensorRT engine {self.source}: missing inputs {missing}; expected {self.inputs}")
        buffers = {}
        for name in self.inputs:
            host = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            if not self.context.set_input_shape(name, tuple(host.shape)):
                raise InputError(f"TensorRT engine {self.source}: input {name!r} of shape {host.shape} is outside "
                                 "the engine's optimization profile")
            buf = self._buffer(name, tuple(host.shape))
            self.device.upload(buf, host)
            buffers[name] = buf
        for name in self.outputs:
            buffers[name] = self._buffer(name, tuple(int(d) for d in self.context.get_tensor_shape(name)))
        for name, buf in buffers.items():
            self.context.set_tensor_address(name, self.device.pointer(buf))
        if not self.context.execute_async_v3(self.device.stream_handle):
            raise BackendError(f"TensorRT engine {self.source}: execute_async_v3 failed")
        self.device.synchronize()
        return {name: self.device.download(buffers[name]) for name in self.outputs}


def runner_for_bundle(bundle: Any, precision: str = "fp16", max_batch: int = 1,
                      cache_dir: Union[str, Path, None] = None, device: int = 0) -> EngineRunner:
    """The runtime's TensorRT entry point: an :class:`EngineRunner` for a loaded bundle.

    Uses the cached engine for this bundle's ONNX hash, GPU, TensorRT version and
    ``precision`` ("fp32" or "fp16"), building it on first use (minutes on a Jetson);
    a stale or foreign cache entry is rebuilt. INT8 engines need calibration images:
    build them with ``privsdk export BUNDLE --format engine --int8 --calib DIR``.
    """
    if precision not in ("fp32", "fp16"):
        raise InputError(f"precision: the runtime builds 'fp32' or 'fp16' engines, got {precision!r}; "
                         "build INT8 engines with 'privsdk export BUNDLE --format engine --int8 --calib DIR'")
    if getattr(bundle, "onnx_bytes", None) is None:
        raise InputError(f"filter bundle {getattr(bundle, 'source', bundle)}: has no ONNX network "
                         "(a lite filter runs in the fused kernel alone)")
    require_tensorrt()
    from privsdk.export.engine import EngineRequest, ensure_engine  # the builder lives in privsdk.export

    entry = ensure_engine(bundle, EngineRequest(bundle.source, precision=precision, max_batch=max_batch,
                                                cache_dir=cache_dir, device=device))
    return EngineRunner(entry.engine_bytes, source=str(entry.engine_path))


__all__ = ["EngineKey", "EngineCache", "CachedEngine", "EngineRunner", "runner_for_bundle", "require_tensorrt",
           "tensorrt_version", "gpu_name", "default_cache_dir", "open_device", "PRECISIONS", "TENSORRT_MISSING"]
