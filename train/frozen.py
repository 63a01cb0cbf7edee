"""Frozen models trained on *clean* images: utility classifiers / regressors, the fixed secret attacker, pose.

They are trained once at the start of a run (or loaded from a path), saved in
the run directory, then frozen (eval mode, no gradients to their weights) and
used inside the filter's loss (paper 000's fixed utility model) and for
validation ("fixed" attackers).

File format: ``torch.save({"format": "privsdk-estimator/1", "label", "kind",
"outputs", "width", "state_dict", "metrics"})``.

Example::

    from privsdk.train.frozen import train_clean_model, save_frozen, load_frozen
    model = train_clean_model(images, labels, kind="class", outputs=2, epochs=3)
    save_frozen("run/utility_gender.pt", model, label="gender")
    frozen = load_frozen("run/utility_gender.pt")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from privsdk.errors import InputError
from privsdk.log import get_logger

from .losses import balanced_accuracy
from .methods.base import FrozenModel
from .networks import SmallResNet

log = get_logger(__name__)
ESTIMATOR_FORMAT = "privsdk-estimator/1"


def to_x01(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×3 (tensor) → float32 N×3×H×W in [0, 1]."""
    # contiguous NCHW: a channels-last view here made torch 2.13's single-threaded CPU convolution
    # backward crash (double free) on 64×64 batches
    return images_u8.permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients for the weights (gradients still flow to the input)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def train_clean_model(images: torch.Tensor, targets: torch.Tensor, *, kind: str, outputs: int, width: int = 16,
                      epochs: int = 5, batch_size: int = 128, lr: float = 1e-3, device: Union[str, torch.device] = "cpu",
                      seed: int = 0, desc: str = "clean model", val: Optional[tuple] = None,
                      max_steps_per_epoch: Optional[int] = None) -> SmallResNet:
    """Train a :class:`SmallResNet` on clean uint8 N×H×W×3 images (on ``device``).

    ``kind="class"``: ``targets`` are int64 classes, cross-entropy; ``kind="reg"``: float
    targets N×outputs, MSE. ``val=(images, targets)`` logs a validation metric per epoch.
    Returns the model, frozen.
    """
    from tqdm import tqdm

    if kind not in ("class", "reg"):
        raise InputError(f"estimator kind {kind!r}; expected 'class' or 'reg'")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallResNet(outputs, width).to(device)
    weight = None
    if kind == "class":  # class-balanced cross-entropy: the metric is balanced accuracy
        counts = torch.bincount(targets.long().cpu(), minlength=outputs).float().clamp_min(1.0)
        weight = (counts.sum() / (outputs * counts)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = images.shape[0]
    steps = (n + batch_size - 1) // batch_size
    if max_steps_per_epoch:
        steps = min(steps, max_steps_per_epoch)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        bar = tqdm(range(steps), desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False, unit="step")
        for i in bar:
            idx = perm[i * batch_size:(i + 1) * batch_size].to(images.device)
            x = to_x01(images[idx]).to(device)
            t = targets[idx].to(device)
            out = model(x)
            loss = F.cross_entropy(out, t, weight=weight) if kind == "class" else F.mse_loss(out, t.float().view_as(out))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if val is not None:
            metric = evaluate_model(model, val[0], val[1], kind=kind, device=device)
            log.info("%s epoch %d: validation %s %.4f", desc, epoch + 1,
                     "balanced accuracy" if kind == "class" else "MAE", metric)
    return freeze(model)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, *, kind: str,
                   device: Union[str, torch.device] = "cpu", batch_size: int = 512) -> float:
    """Balanced accuracy (classes) or mean absolute error (regressions) on clean images."""
    was = model.training
    model.eval()
    outs = []
    for i in range(0, images.shape[0], batch_size):
        outs.append(model(to_x01(images[i:i + batch_size]).to(device)).float().cpu())
    model.train(was)
    out = torch.cat(outs)
    if kind == "class":
        return balanced_accuracy(out.argmax(1).numpy(), targets.cpu().numpy())
    return float((out - targets.float().view_as(out).cpu()).abs().mean())


def save_frozen(path: Union[str, os.PathLike], model: SmallResNet, *, label: str, kind: str,
                metrics: Optional[Dict[str, Any]] = None) -> Path:
    """Save a clean-trained estimator (atomic write)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": ESTIMATOR_FORMAT, "label": label, "kind": kind, "outputs": model.fc.out_features,
                "width": model.stem[0].out_channels, "state_dict": model.state_dict(),
                "metrics": dict(metrics or {})}, tmp)
    os.replace(tmp, path)
    return path


def load_frozen(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> FrozenModel:
    """Load an estimator saved by :func:`save_frozen`, frozen, as a :class:`FrozenModel`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"frozen model {path} does not exist; expected a file saved by privsdk train")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"frozen model {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != ESTIMATOR_FORMAT:
        raise InputError(f"{path} is not a privsdk estimator; expected format {ESTIMATOR_FORMAT!r}")
    model = SmallResNet(int(data["outputs"]), int(data["width"]))
    model.load_state_dict(data["state_dict"])
    return FrozenModel(freeze(model.to(device)), data["kind"], int(data["outputs"]))


def load_descriptor(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """Load a frozen, differentiable face-descriptor network (x01 N×3×H×W → N×D).

    Formats: TorchScript (``torch.jit.save``) or a ``torch.export`` archive (``.pt2``).

    This is the identity-keeping hook of DESIGN.md ("Keeping utility while
    training"): e.g. a small network distilled from dlib's descriptor.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"identity descriptor model {path} does not exist; expected a TorchScript file "
                         "(torch.jit.save of a module mapping x01 N×3×H×W to N×D descriptors)")
    import warnings

    try:
        if path.suffix == ".pt2":  # torch.export archive
            module = torch.export.load(str(path)).module().to(device)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript still loads in torch 2.x
                module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise InputError(f"cannot load identity descriptor {path} ({type(exc).__name__}: {exc}); "
                         "expected a TorchScript file or a torch.export .pt2 archive") from None
    if path.suffix == ".pt2":  # an exported program is traced in its mode already; it has no eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return module
    return freeze(module)


def class_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical class frequencies (float32, sums to 1)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    return (counts / max(counts.sum(), 1.0)).astype(np.float32)
