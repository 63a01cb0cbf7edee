"""Export a filter network to ONNX: named image + noise inputs, dynamic batch.

The graph has inputs ``image`` (N×3×H×W float32, normalized) and one named
input per noise tensor (N×C×h×w float32, N(0, 1) drawn by the runtime -- never a
random op inside the graph), and one output ``filtered`` (N×3×H×W, RGB in
[0, 1]). The batch axis is dynamic.

The exporter is torch's ``torch.export``-based one (``dynamo=True``, needs
onnxscript); when it fails, the legacy TorchScript exporter is tried, and the
manifest records which one produced the graph.

Example::

    from privsdk.export.onnx_graph import export_onnx, check_onnx
    data, exporter = export_onnx(module, (64, 64), [{"name": "noise", "shape": [8, 4, 4]}])
    check_onnx(data)
"""
from __future__ import annotations

import io
import warnings
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from privsdk.errors import BackendError, InputError
from privsdk.log import get_logger

_log = get_logger(__name__)

IMAGE_INPUT = "image"
OUTPUT = "filtered"
DEFAULT_OPSET = 18
MIN_OPSET = 17
EXAMPLE_BATCH = 2
EXPORTERS = ("auto", "dynamo", "torchscript")


def _graph_module(module: Any) -> Any:
    """Wrap ``module`` as ``forward(image, *noise)`` so that every noise tensor is a graph input."""
    import torch

    class FilterGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.filter = module

        def forward(self, image: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
            return self.filter(image, *noise)

    return FilterGraph().eval()


def example_inputs(input_hw: Tuple[int, int], noise_inputs: Sequence[Dict[str, Any]], batch: int = EXAMPLE_BATCH,
                   seed: int = 0) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Reproducible example inputs: an image batch and N(0, 1) noise of the manifest's shapes."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((batch, 3, *input_hw)).astype(np.float32)
    noise = [rng.standard_normal((batch, *[int(d) for d in n["shape"]])).astype(np.float32) for n in noise_inputs]
    return image, noise


def export_onnx(module: Any, input_hw: Tuple[int, int], noise_inputs: Sequence[Dict[str, Any]],
                opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Tuple[bytes, str]:
    """Export ``module`` (``forward(image, *noise)``) to ONNX bytes; returns (bytes, exporter name).

    ``exporter``: ``"dynamo"`` (torch.export-based), ``"torchscript"`` (legacy, much faster, deprecated
    by torch) or ``"auto"`` (dynamo, falling back to torchscript when it fails).
    """
    import torch

    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise InputError(f"opset: expected an integer ≥ {MIN_OPSET}, got {opset!r}")
    if exporter not in EXPORTERS:
        raise InputError(f"exporter: expected one of {EXPORTERS}, got {exporter!r}")
    names = [n["name"] for n in noise_inputs]
    if IMAGE_INPUT in names or OUTPUT in names or len(set(names)) != len(names):
        raise InputError(f"noise input names must be unique and differ from {IMAGE_INPUT!r}/{OUTPUT!r}, got {names}")
    graph = _graph_module(module)
    image, noise = example_inputs(input_hw, noise_inputs)
    args = (torch.from_numpy(image), *[torch.from_numpy(z) for z in noise])
    input_names = [IMAGE_INPUT, *names]
    errors = []
    if exporter in ("auto", "dynamo"):
        try:
            return _export_dynamo(graph, args, input_names, opset), "torch.onnx.export(dynamo=True)"
        except Exception as exc:  # the new exporter fails on some graphs; the legacy one may still work
            errors.append(f"dynamo exporter: {type(exc).__name__}: {exc}")
            if exporter == "dynamo":
                raise BackendError(f"ONNX export failed: {errors[0]}") from None
            _log.warning("torch.export-based ONNX export failed (%s); trying the TorchScript exporter", exc)
    try:
        return _export_torchscript(graph, args, input_names, opset), "torch.onnx.export(dynamo=False)"
    except Exception as exc:
        errors.append(f"TorchScript exporter: {type(exc).__name__}: {exc}")
    raise BackendError("ONNX export failed: " + " | ".join(errors))


def _export_dynamo(graph: Any, args: Tuple[Any, ...], input_names: List[str], opset: int) -> bytes:
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic_shapes = ({0: batch}, tuple({0: batch} for _ in args[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, args, None, input_names=input_names, output_names=[OUTPUT],
                                    dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True,
                                    external_data=False, optimize=True, verify=False, verbose=False)
    model = program.model_proto
    return _rename_batch_axis(model).SerializeToString()


def _export_torchscript(graph: Any, args: Tuple[Any, ...], input_names: List[str], opset: int) -> bytes:
    import torch

    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in [*input_names, OUTPUT]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, buf, input_names=input_names, output_names=[OUTPUT],
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def _rename_batch_axis(model: Any) -> Any:
    """Name the symbolic batch dimension ``batch`` on every input and output (the exporter says ``s0``)."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = "batch"
    return model


def check_onnx(data: bytes) -> Dict[str, Any]:
    """Run ``onnx.checker`` (full check, with shape inference); return a summary of the graph's I/O."""
    import onnx

    model = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise BackendError(f"the exported ONNX graph fails onnx.checker: {exc}") from None

    def shape(v: Any) -> List[Any]:
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return {"inputs": {v.name: shape(v) for v in model.graph.input},
            "outputs": {v.name: shape(v) for v in model.graph.output},
            "opset": opset, "nodes": len(model.graph.node)}


def ort_session(data: bytes) -> Any:
    """An onnxruntime CPU session on the graph bytes (deterministic, single-threaded)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
