"""A residual U-Net bundle that keeps a share of what its network changes, made from an existing one.

A residual U-Net (``filter.arch.residual``) puts out ``clamp(x01 + head(x), 0, 1)``: the face it read (with
``lower_fill``, the face with its lower part filled) plus the change its last 1×1 convolution, the *head*,
makes. :func:`residual_scale_bundle` multiplies the head's weights and bias by ``scale``, so the new bundle
puts out ``clamp(x01 + scale · head(x), 0, 1)``: 1 is the filter as trained, 0 the fill alone. Nothing else
changes; the graph keeps its nodes, so it runs exactly as fast.

Why: training places a filter at one point of the privacy-utility trade-off, and a CPU run takes an hour.
Scaling its change draws the curve between the fill alone and the trained filter in minutes, at no cost
per face. Measured on ``emotion`` 0.7.0 (levelled, 200 SMILEsmileD test faces), identity kept by dlib's
descriptor rises from 70.5% at scale 1 to 86% at 0.75 and 90% at 0.5: the network's change to the eyes
costs identity faster than it adds privacy near 1 (``docs/emotion-methods.md``, "Scaling the network's
change"); with the eraser refit, S = 0.5 is the bundled ``emotion`` 0.9.0. A bundle's eraser
(``--erase-secret``) is fit on its outputs, so scale first, then erase, then evaluate.

Example::

    from privsdk.export.residual_scale import residual_scale_bundle
    residual_scale_bundle("runs/bundles/emotion-0.7.0", "runs/bundles/emotion-s50", scale=0.5)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from privsdk.bundle import NORM, ONNX, load_bundle, write_bundle
from privsdk.errors import InputError
from privsdk.log import get_logger

from .derived import derived_manifest

_log = get_logger(__name__)

#: float32 rounding of y0 + s·(y1 − y0) against the scaled graph, on outputs in 0-1
INTERPOLATION_TOLERANCE = 1e-5


def _producers(graph: Any) -> Dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def _uses(graph: Any, name: str) -> int:
    return sum(list(node.input).count(name) for node in graph.node) + sum(o.name == name for o in graph.output)


def find_head(model: Any) -> Any:
    """The Conv node whose output the graph adds to the face before its final clamp (the residual head).

    Expected at the graph's output: ``Clip(Add(face, Conv(...)))`` in either order of ``Add``'s inputs, with
    the Conv's output used by that Add only; anything else is refused, naming what was found.
    """
    graph = model.graph
    producers = _producers(graph)
    if len(graph.output) != 1:
        raise InputError(f"--residual-scale: the graph has {len(graph.output)} outputs; expected one, the filtered face")
    clip = producers.get(graph.output[0].name)
    add = producers.get(clip.input[0]) if clip is not None and clip.op_type == "Clip" else None
    heads: List[Any] = [] if add is None or add.op_type != "Add" else \
        [producers[i] for i in add.input if i in producers and producers[i].op_type == "Conv"]
    if len(heads) != 1 or _uses(graph, heads[0].output[0]) != 1:
        found = clip.op_type if clip is not None else "a graph input"
        raise InputError(f"--residual-scale: the graph's output is made by {found}, not clamp(face + Conv(...)); "
                         "expected a residual U-Net bundle (filter.arch.residual) exported by privsdk")
    return heads[0]


def scale_head(onnx_bytes: bytes, scale: float) -> bytes:
    """``onnx_bytes`` with the residual head's weight and bias (initializers) multiplied by ``scale``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    head = find_head(model)
    inits = {init.name: init for init in model.graph.initializer}
    params = [name for name in head.input[1:] if name]
    for name in params:
        if name not in inits or _uses(model.graph, name) != 1:
            # a weight computed in the graph, or shared with another node, cannot be scaled alone
            raise InputError(f"--residual-scale: the head's input {name!r} is not an initializer of its own; "
                             "expected a residual U-Net bundle exported by privsdk")
        value = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array((value * np.float32(scale)).astype(value.dtype), name))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_interpolation(bundle: Any, scaled_bytes: bytes, scale: float, faces: int = 8, seed: int = 0) -> float:
    """The largest gap between the scaled graph and ``y0 + scale · (y1 − y0)`` where no output clamps.

    ``y1`` is the source graph's output and ``y0`` that of the graph with its head zeroed (the face with its
    fill), on ``faces`` seeded inputs and noise through onnxruntime. Where ``y0``, ``y1`` and the scaled
    output all lie inside (0, 1) the clamp is idle and the three must agree to float rounding.
    """
    import onnxruntime as ort

    h, w = bundle.input_size
    rng = np.random.default_rng(seed)
    feeds = {bundle.manifest["onnx"]["image_input"]: rng.standard_normal((faces, 3, h, w)).astype(np.float32)}
    for spec in bundle.noise_inputs:
        feeds[spec["name"]] = rng.standard_normal((faces, *spec["shape"])).astype(np.float32)

    def run(data: bytes) -> np.ndarray:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    y1, y0, ys = run(bundle.onnx_bytes), run(scale_head(bundle.onnx_bytes, 0.0)), run(scaled_bytes)
    inside = (y0 > 0) & (y0 < 1) & (y1 > 0) & (y1 < 1) & (ys > 0) & (ys < 1)
    if not inside.any():
        raise InputError("--residual-scale: every output of the check clamps; expected a filter whose outputs lie "
                         "inside 0-1 somewhere")
    return float(np.abs(ys - (y0 + scale * (y1 - y0)))[inside].max())


def kept_share(bundle: Any) -> float:
    """The share of its trained network's change that ``bundle`` keeps: 1 unless made by ``--residual-scale``."""
    step = ((bundle.manifest.get("export") or {}).get("residual_scale") or {})
    return float(step.get("scale", 1.0))


def residual_scale_bundle(source: Union[str, Path], output: Union[str, Path], scale: float,
                          name: Optional[str] = None, version: Optional[str] = None,
                          description: Optional[str] = None) -> Path:
    """Write ``output``: ``source``'s residual U-Net keeping the share ``scale`` of its network's change.

    ``scale`` is always the share of the change the network *as trained* makes: on a bundle that already
    keeps a share s0 (made by this function), its head is multiplied by ``scale / s0``, so a curve over the
    share can be drawn from any point of it (e.g. 0.75 and 1 from a bundle kept at 0.5). A bundle that keeps
    none of the change (s0 = 0) can only be kept at 0.
    """
    scale = float(scale)
    if not 0.0 <= scale <= 1.0:
        raise InputError(f"--residual-scale {scale!r}: expected the share of the network's change to keep, in [0, 1]")
    bundle = load_bundle(source)
    if Path(output).resolve() == Path(source).resolve():
        raise InputError(f"--residual-scale writes a new bundle: give -o DIR other than the source {source}")
    arch = ((bundle.manifest.get("architecture") or {}).get("arch") or {})
    if bundle.kind != "unet" or not arch.get("residual"):
        raise InputError(f"--residual-scale: {source} is a {bundle.kind} bundle without a residual network "
                         "(architecture.arch.residual); expected a residual U-Net, whose output is the face plus a change")
    if bundle.eraser is not None:
        raise InputError(f"--residual-scale: {source} has an eraser fit on its outputs, which scaling changes; "
                         "scale the bundle before --erase-secret")
    before = kept_share(bundle)
    if before == 0.0 and scale > 0.0:
        raise InputError(f"--residual-scale {scale}: {source} keeps none of its network's change (it was scaled by 0), "
                         "so none can be given back; scale the bundle it was made from")
    factor = scale / before if before else 0.0
    onnx_bytes = scale_head(bundle.onnx_bytes, factor)
    gap = check_interpolation(bundle, onnx_bytes, factor)
    if gap > INTERPOLATION_TOLERANCE:
        raise InputError(f"--residual-scale: the scaled graph is {gap:.2g} away from the source's output scaled by "
                         f"{factor:g} (tolerance {INTERPOLATION_TOLERANCE}); expected the head to add to the face linearly")
    source_description = str(bundle.manifest.get("description", ""))
    if before != 1.0:     # the source's own sentence about the share it kept is no longer true
        source_description = source_description.replace(_sentence(before), "").strip()
    manifest = derived_manifest(
        bundle, "residual_scale", suffix=f"-s{int(round(scale * 100))}", name=name, version=version,
        description=description or f"{source_description} {_sentence(scale)}".strip(), sentence="")
    manifest["export"]["residual_scale"].update(scale=scale, max_abs_vs_interpolation=gap,
                                                **({"source_scale": before, "factor": factor} if before != 1.0 else {}))
    # an fp16 copy of the old graph would no longer be this filter: it is left out, not carried over unscaled
    extra = {k: v for k, v in bundle.files.items() if k not in (NORM, ONNX) and not k.endswith(".onnx")}
    if (manifest["export"].get("fp16") or {}).get("file"):
        _log.warning("%s: its FP16 graph is left out (it is the unscaled network)", source)
        manifest["export"]["fp16"] = None
    out = write_bundle(output, manifest, dict(bundle.maps), onnx_bytes=onnx_bytes, extra_files=extra)
    _log.info("wrote %s: %s keeping %.0f%% of its network's change", out, bundle.name, 100 * scale)
    return out


def _sentence(scale: float) -> str:
    return f"It keeps {scale:.0%} of the change its network makes to each face."


__all__ = ["residual_scale_bundle", "kept_share", "scale_head", "find_head", "check_interpolation"]
