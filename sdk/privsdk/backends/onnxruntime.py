"""The onnxruntime backend: CPU, CUDA and TensorRT execution providers.

The provider actually in use is logged ("Running on CUDAExecutionProvider"). A
GPU provider that was requested but fails to load falls back to the CPU with
one clear warning -- never silently. Inputs and outputs are bound once per
batch size (IO binding over preallocated buffers), so a call allocates nothing.

Example::

    from privsdk.backends import create_backend
    backend = create_backend("onnxruntime", spec, device="cpu")
    y = backend.run(x, [z])
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BackendError, DependencyError
from ..log import get_logger, warn_once
from .base import Backend, NetworkSpec

_log = get_logger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU = "CPUExecutionProvider"


def import_onnxruntime() -> Any:
    """Import onnxruntime or raise :class:`DependencyError` saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyError("the onnxruntime backend needs onnxruntime: 'pip install onnxruntime' "
                              "(or onnxruntime-gpu; on Jetson the JetPack wheel) -- import failed: "
                              f"{exc}") from None
    return ort


def default_threads() -> int:
    """Intra-op threads: all cores of this process's CPU set (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def wanted_providers(device: str, available: Sequence[str]) -> List[str]:
    """Providers to request, best first, for ``device`` in auto | cpu | cuda[:N] | tensorrt."""
    if device == "cpu":
        return [CPU]
    if device.startswith("cuda"):
        return ["CUDAExecutionProvider", CPU]
    if device == "tensorrt":
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
    return [p for p in GPU_PROVIDERS if p in available] + [CPU]


def trt_provider_options(device_id: int = 0) -> Dict[str, Any]:
    """TensorRT EP options: FP16, and engines cached under the user's cache directory so that
    they are built once per device (``$XDG_CACHE_HOME/privsdk/ort-trt``; PRIVSDK_ENGINE_CACHE overrides)."""
    base = os.environ.get("PRIVSDK_ENGINE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "privsdk")
    cache = os.path.join(base, "ort-trt")
    os.makedirs(cache, exist_ok=True)
    return {"device_id": device_id, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache, "trt_timing_cache_enable": True, "trt_timing_cache_path": cache}


class OnnxRuntimeBackend(Backend):
    """An onnxruntime InferenceSession created once, run through IO binding."""

    name = "onnxruntime"

    def __init__(self, spec: NetworkSpec, device: str = "auto", threads: Optional[int] = None) -> None:
        if spec.onnx_bytes is None:
            raise BackendError(f"filter {spec.source}: the onnxruntime backend needs a filter.onnx; "
                               "this filter has none (a lite filter runs without a backend)")
        ort = import_onnxruntime()
        self.spec = spec
        available = ort.get_available_providers()
        wanted = wanted_providers(device, available)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or default_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # No busy-waiting of the intra-op pool after a run: on a small CPU it would steal the
        # cores from the post-kernel and the face finder that run right after the network.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        device_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        providers: List[Any] = []
        for p in wanted:
            if p == CPU:
                providers.append(p)
            elif p == "TensorrtExecutionProvider" and p in available:
                providers.append((p, trt_provider_options(device_id)))
            elif p in available:
                providers.append((p, {"device_id": device_id}))
            else:
                warn_once(f"ort-missing-{p}", f"{p} was requested (device={device!r}) but this onnxruntime "
                          f"build offers only {available}; falling back to {CPU}. Install onnxruntime-gpu "
                          "(or JetPack's onnxruntime) for the GPU.", _log)
        try:
            self.session = ort.InferenceSession(spec.onnx_bytes, sess_options=opts, providers=providers)
        except Exception as exc:
            raise BackendError(f"filter {spec.source}: onnxruntime could not load filter.onnx ({exc}); "
                               "expected a valid ONNX model with the inputs the manifest names") from None
        in_use = self.session.get_providers()
        self.provider = in_use[0]
        requested_gpu = [p for p in wanted if p != CPU and p in available]  # offered, so tried
        if requested_gpu and self.provider == CPU:
            warn_once("ort-gpu-fallback", f"the GPU execution providers {requested_gpu} failed to load; "
                      f"running on {CPU} (much slower). Check the CUDA/cuDNN/TensorRT libraries.", _log)
        _log.info("Running on %s (onnxruntime %s, %d intra-op threads)", self.provider, ort.__version__,
                  opts.intra_op_num_threads)
        self._check_io()
        self._bindings: Dict[int, Tuple[Any, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        expected = [self.spec.image_input] + [n.name for n in self.spec.noise_inputs]
        missing = [n for n in expected if n not in inputs]
        if missing or self.spec.output not in outputs:
            raise BackendError(f"filter {self.spec.source}: filter.onnx has inputs {sorted(inputs)} and outputs "
                               f"{sorted(outputs)}; the manifest expects inputs {expected} and output "
                               f"{self.spec.output!r}")
        extra = [n for n in inputs if n not in expected]
        if extra:
            raise BackendError(f"filter {self.spec.source}: filter.onnx has inputs {extra} that the manifest does "
                               f"not describe; expected only {expected}")
        batch = inputs[self.spec.image_input].shape[0]
        self.max_batch = batch if isinstance(batch, int) and batch > 0 else None

    def _binding(self, n: int) -> Tuple[Any, np.ndarray]:
        entry = self._bindings.get(n)
        if entry is None:
            h, w = self.spec.input_hw
            out = np.empty((n, 3, h, w), np.float32)
            binding = self.session.io_binding()
            binding.bind_output(self.spec.output, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
            entry = (binding, out)
            self._bindings[n] = entry
        return entry

    def run(self, image: np.ndarray, noise: Sequence[np.ndarray]) -> np.ndarray:
        n = int(image.shape[0])
        with self._lock:
            binding, out = self._binding(n)
            binding.bind_input(self.spec.image_input, "cpu", 0, np.float32, list(image.shape), image.ctypes.data)
            for spec, z in zip(self.spec.noise_inputs, noise):
                binding.bind_input(spec.name, "cpu", 0, np.float32, list(z.shape), z.ctypes.data)
            try:
                self.session.run_with_iobinding(binding)
            except Exception as exc:
                raise BackendError(f"filter {self.spec.source}: onnxruntime failed to run the network on "
                                   f"{self.provider} ({exc})") from None
            return out

    def close(self) -> None:
        self._bindings.clear()
        self.session = None
