"""Optional variants of an exported graph: simplification and FP16.

- :func:`simplify` runs onnxslim (or onnx-simplifier) when one is installed;
  the caller keeps the result only when parity still holds.
- :func:`export_fp16` exports the network with half-precision weights and
  arithmetic but float32 inputs and output (Cast nodes at the edges), so the
  runtime feeds it exactly like the fp32 graph.

Example::

    from privsdk.export.variants import simplify, export_fp16
    slim, tool = simplify(onnx_bytes)          # (None, reason) when no tool is installed
    fp16_bytes, exporter = export_fp16(module, (64, 64), noise_inputs)
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Sequence, Tuple

from privsdk.log import get_logger

from .onnx_graph import DEFAULT_OPSET, export_onnx

_log = get_logger(__name__)

FP16_FILE = "filter.fp16.onnx"


def simplify(data: bytes) -> Tuple[Optional[bytes], str]:
    """Simplify the graph with onnxslim or onnxsim; returns (bytes, tool) or (None, why not)."""
    import onnx

    model = onnx.load_from_string(data)
    try:
        import onnxslim  # type: ignore[import-not-found]
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        try:
            return onnxslim.slim(model).SerializeToString(), f"onnxslim {getattr(onnxslim, '__version__', '')}".strip()
        except Exception as exc:
            return None, f"onnxslim failed: {type(exc).__name__}: {exc}"
    try:
        import onnxsim  # type: ignore[import-not-found]
    except ImportError:
        return None, "neither onnxslim nor onnxsim is installed ('pip install onnxslim')"
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:
        return None, f"onnxsim failed: {type(exc).__name__}: {exc}"
    if not ok:
        return None, "onnxsim could not validate its simplified graph"
    return simplified.SerializeToString(), f"onnxsim {getattr(onnxsim, '__version__', '')}".strip()


def _half_precision(module: Any) -> Any:
    import torch

    inner = copy.deepcopy(module).half().eval()

    class HalfPrecisionFilter(torch.nn.Module):
        """The filter in float16 inside, float32 at its inputs and output."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
            return self.inner(image.half(), *[z.half() for z in noise]).float()

    return HalfPrecisionFilter().eval()


def export_fp16(module: Any, input_hw: Tuple[int, int], noise_inputs: Sequence[Dict[str, Any]],
                opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Tuple[bytes, str, Any]:
    """Export the FP16 variant; returns (ONNX bytes, exporter used, the half-precision torch module)."""
    half = _half_precision(module)
    data, exporter = export_onnx(half, input_hw, noise_inputs, opset, exporter)
    return data, exporter, half
