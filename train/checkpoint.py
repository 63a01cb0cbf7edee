"""Training checkpoints: the ``privsdk-checkpoint/1`` dict (CONTRIBUTING.md) and loading a filter from one.

A checkpoint is ``torch.save`` of a dict::

    {"format": "privsdk-checkpoint/1", "method", "hyperparameters", "config",
     "epoch", "step", "filter": {"kind", "arch", "state_dict"},
     "input": {"height", "width", "colour_order": "RGB"},
     "norm": {"mean", "std"}            # 3×H×W float32 numpy; unet only
     "noise_inputs": [{"name": "noise", "shape": [C, h, w]}],   # unet only
     "secret": [...], "utility": [...], "data": {...},
     "resume": {...}}                  # optimizer/scheduler/RNG/aux-model states (training only)

Example::

    from privsdk.train.checkpoint import load_filter
    module, ckpt = load_filter("runs/emotion/filter.pt")
    print(ckpt["method"], ckpt["filter"]["kind"], ckpt["input"])
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from privsdk.errors import InputError
from privsdk.log import get_logger

from .networks import build_filter

log = get_logger(__name__)

CHECKPOINT_FORMAT = "privsdk-checkpoint/1"
PathLike = Union[str, os.PathLike]


def make_checkpoint(*, method: str, hyperparameters: Dict[str, Any], config: Dict[str, Any], epoch: int,
                    step: int, kind: str, arch: Dict[str, Any], filter_module: torch.nn.Module, size: int,
                    secret: Sequence[str], utility: Sequence[str], data: Dict[str, Any],
                    norm_mean: Optional[np.ndarray] = None, norm_std: Optional[np.ndarray] = None,
                    resume: Optional[Dict[str, Any]] = None, **extra: Any) -> Dict[str, Any]:
    """Assemble a checkpoint dict in the ``privsdk-checkpoint/1`` format.

    ``norm_mean``/``norm_std`` (3×H×W) are required for a unet filter. ``extra``
    keys (e.g. ``"metrics"``) are stored as they are.
    """
    state = {k: v.detach().cpu().clone() for k, v in filter_module.state_dict().items()}
    ckpt: Dict[str, Any] = {
        "format": CHECKPOINT_FORMAT, "method": str(method), "hyperparameters": dict(hyperparameters),
        "config": dict(config), "epoch": int(epoch), "step": int(step),
        "filter": {"kind": kind, "arch": dict(arch), "state_dict": state},
        "input": {"height": int(size), "width": int(size), "colour_order": "RGB"},
        "secret": list(secret), "utility": list(utility), "data": dict(data),
    }
    if kind == "unet":
        if norm_mean is None or norm_std is None:
            raise InputError("a unet checkpoint needs the per-location norm maps (mean, std); got None")
        ckpt["norm"] = {"mean": np.asarray(norm_mean, np.float32), "std": np.asarray(norm_std, np.float32)}
        ckpt["noise_inputs"] = [{"name": "noise", "shape": [int(d) for d in filter_module.noise_shape]}]
    if resume is not None:
        ckpt["resume"] = resume
    ckpt.update(extra)
    return ckpt


def save_checkpoint(ckpt: Dict[str, Any], path: PathLike) -> Path:
    """Write ``ckpt`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Load a checkpoint dict; :class:`InputError` if missing, unreadable or of another format."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; expected a file written by 'privsdk train'")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise InputError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                         f"expected a {CHECKPOINT_FORMAT} file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(f"checkpoint {path} has format {got!r}; expected {CHECKPOINT_FORMAT!r}")
    return ckpt


def load_filter(path: PathLike) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Rebuild the filter of a checkpoint: ``(module in eval mode on the CPU, checkpoint dict)``."""
    ckpt = read_checkpoint(path)
    flt = ckpt.get("filter")
    if not isinstance(flt, dict) or "kind" not in flt or "state_dict" not in flt:
        raise InputError(f"checkpoint {path} has no 'filter' section with 'kind' and 'state_dict'")
    module = build_filter(flt["kind"], **dict(flt.get("arch") or {}))
    try:
        module.load_state_dict(flt["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"checkpoint {path}: weights do not fit a {flt['kind']!r} filter with arch "
                         f"{flt.get('arch')}: {exc}") from None
    module.eval()
    return module, ckpt


def noise_input_names(ckpt: Dict[str, Any]) -> List[str]:
    """Names of a unet checkpoint's noise inputs (empty for lite)."""
    return [n["name"] for n in ckpt.get("noise_inputs", [])]
