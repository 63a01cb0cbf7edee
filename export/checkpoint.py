"""Read and check a training checkpoint before export (format of CONTRIBUTING.md).

A checkpoint is ``torch.save`` of a dict with ``"format": "privsdk-checkpoint/1"``;
anything else (another format, version or kind, a file that is not a
checkpoint) is refused with an :class:`~privsdk.errors.InputError` naming the
file and the mismatch.

Example::

    from privsdk.export.checkpoint import read_checkpoint, build_module
    ckpt = read_checkpoint("runs/emotion/best.pt")
    module = build_module(ckpt, "runs/emotion/best.pt")   # eval mode, weights loaded
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import numpy as np

from privsdk.errors import DependencyError, InputError
from privsdk.log import get_logger

_log = get_logger(__name__)

CHECKPOINT_FORMAT = "privsdk-checkpoint/1"
KINDS = ("unet", "lite")


def _fail(source: str, what: str) -> InputError:
    return InputError(f"checkpoint {source}: {what}")


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Load ``path`` with torch and validate it; returns the checkpoint dict.

    Checkpoints are pickles: load only files you trust (your own training runs).
    """
    import torch

    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise _fail(source, "no such file" if not path.exists() else "is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise _fail(source, f"is not a torch checkpoint ({type(exc).__name__}: {exc}); "
                            f"expected a file written by 'privsdk train' ({CHECKPOINT_FORMAT})") from None
    return validate_checkpoint(ckpt, source)


def validate_checkpoint(ckpt: Any, source: str = "<checkpoint>") -> Dict[str, Any]:
    """Check the structure export relies on; raise :class:`InputError` naming the first problem."""
    if not isinstance(ckpt, dict):
        raise _fail(source, f"holds a {type(ckpt).__name__}, expected a {CHECKPOINT_FORMAT} dict")
    fmt = ckpt.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise _fail(source, f"format is {fmt!r}; this privsdk exports {CHECKPOINT_FORMAT!r} checkpoints")
    flt = ckpt.get("filter")
    if not isinstance(flt, dict) or not isinstance(flt.get("state_dict"), dict):
        raise _fail(source, "has no 'filter' section with a 'state_dict'")
    kind = flt.get("kind")
    if kind not in KINDS:
        raise _fail(source, f"filter kind is {kind!r}; export supports {KINDS}")
    if not isinstance(flt.get("arch", {}), dict):
        raise _fail(source, f"filter.arch must be a dict of build_filter arguments, got {flt.get('arch')!r}")
    if not isinstance(ckpt.get("method"), str):
        raise _fail(source, f"method must be the training method's name, got {ckpt.get('method')!r}")
    inp = ckpt.get("input")
    if not isinstance(inp, dict) or not all(isinstance(inp.get(k), int) and inp[k] > 0 for k in ("height", "width")):
        raise _fail(source, f"input must give a positive integer height and width, got {inp!r}")
    if inp.get("colour_order", "RGB") != "RGB":
        raise _fail(source, f"input.colour_order is {inp.get('colour_order')!r}; training works in RGB")
    hw = (inp["height"], inp["width"])
    if kind == "unet":
        norm = ckpt.get("norm")
        if not isinstance(norm, dict):
            raise _fail(source, "a unet checkpoint needs 'norm': {'mean', 'std'} maps")
        for key in ("mean", "std"):
            m = np.asarray(norm.get(key) if not hasattr(norm.get(key), "numpy") else norm[key].numpy())
            if m.shape != (3, *hw):
                raise _fail(source, f"norm.{key} has shape {m.shape}; expected (3, {hw[0]}, {hw[1]})")
            if not np.isfinite(m).all():
                raise _fail(source, f"norm.{key} contains NaN or infinity")
            if key == "std" and (m <= 0).any():
                raise _fail(source, "norm.std has values ≤ 0; expected positive standard deviations")
        noise = ckpt.get("noise_inputs")
        if not isinstance(noise, list) or not noise:
            raise _fail(source, "a unet checkpoint needs 'noise_inputs': [{'name': 'noise', 'shape': [C, h, w]}]")
        for i, n in enumerate(noise):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str) or \
                    not isinstance(n.get("shape"), (list, tuple)) or len(n["shape"]) != 3 or \
                    not all(int(d) == d and d > 0 for d in n["shape"]):
                raise _fail(source, f"noise_inputs[{i}] must be {{'name': str, 'shape': [C, h, w]}}, got {n!r}")
    return ckpt


def norm_arrays(ckpt: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """The checkpoint's per-location ``mean`` and ``std`` maps as float32 numpy (unet only)."""
    out = {}
    for key in ("mean", "std"):
        v = ckpt["norm"][key]
        out[key] = np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v),
                                        dtype=np.float32)
    return out


def build_module(ckpt: Dict[str, Any], source: str = "<checkpoint>") -> Any:
    """Rebuild the filter network of ``ckpt`` with ``privsdk.train.networks.build_filter``, in eval mode."""
    try:
        from privsdk.train.networks import build_filter
    except ImportError as exc:
        raise DependencyError(f"exporting {source} needs privsdk.train.networks.build_filter ({exc})") from None
    flt = ckpt["filter"]
    try:
        module = build_filter(flt["kind"], **dict(flt.get("arch") or {}))
        module.load_state_dict(flt["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise _fail(source, f"its weights do not fit a {flt['kind']!r} filter with arch {flt.get('arch')!r} "
                            f"({type(exc).__name__}: {exc})") from None
    module.eval()
    if flt["kind"] == "unet":
        want = tuple(int(d) for d in ckpt["noise_inputs"][0]["shape"])
        got = tuple(int(d) for d in getattr(module, "noise_shape", want))
        if got != want:
            raise _fail(source, f"noise_inputs[0].shape is {list(want)} but the network expects {list(got)}")
    return module
