"""A differentiable identity descriptor distilled from dlib's (DESIGN.md "Keeping utility while training").

dlib's face descriptor (:class:`~privsdk.train.eval.identity.DlibDescriptor`,
128-D, same person within Euclidean distance 0.6) judges whether a filter keeps
identity, but it has no gradients. This module trains a small CNN (a
:class:`~privsdk.train.networks.SmallResNet` regressor) to predict dlib's
descriptor itself (same scale, so the 0.6 threshold keeps its meaning) from a
64×64 x01 face, and saves it as TorchScript for ``losses.identity_model``.

Data: ``faces`` faces of the trainer's TRAIN split (same stratified split as
``privsdk train``) and ``held_out`` faces of its VAL split. Each face also gets
one seeded *perturbed* copy (noise, blur, brightness / contrast, sometimes grey:
the kind of change a filter makes) whose dlib descriptor is computed too, so the
student learns dlib's response off the clean manifold, not an invariance. All
dlib descriptors are cached in ``OUT/dlib_cache.npz`` (keyed by the data set,
the indices and the perturbation seed), so a rerun does not recompute them.

Files written to ``OUT``: ``descriptor.pt`` (TorchScript; ``load_descriptor``
loads it), ``descriptor.json`` (metrics on the held-out faces), ``dlib_cache.npz``.

Example::

    from privsdk.train.data import load_dataset, make_splits
    from privsdk.train.identity_distill import distill_identity
    ds = load_dataset("smilesmiled", "../shared/data/SMILEsmileD", 64)
    report = distill_identity(ds, make_splits(ds, stratify="smile"), "runs/identity", faces=3000, epochs=15)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from privsdk.errors import InputError
from privsdk.log import get_logger

from .data import FaceSet
from .networks import SmallResNet

log = get_logger(__name__)
THRESHOLD = 0.6  # dlib's same-person distance
CACHE_FORMAT = "privsdk-dlib-descriptors/1"
REPORT_FORMAT = "privsdk-identity-student/1"
DESCRIPTOR_FILE, REPORT_FILE, CACHE_FILE = "descriptor.pt", "descriptor.json", "dlib_cache.npz"


# ----------------------------------------------------------------------------- perturbations

def perturb_faces(images: np.ndarray, seed: int) -> np.ndarray:
    """One random filter-like change per face (uint8 N×H×W×3 RGB → same), deterministic in ``seed``.

    Each face gets brightness (±0.15) and contrast (×0.75–1.25), with probability
    0.5 a Gaussian blur (σ 0.3–1.5 px), Gaussian noise (σ 0–0.10 of the range)
    and with probability 0.15 a grey conversion.
    """
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, im in enumerate(images):
        x = im.astype(np.float32) / 255.0
        x = (x - 0.5) * rng.uniform(0.75, 1.25) + 0.5 + rng.uniform(-0.15, 0.15)
        if rng.random() < 0.5:
            x = cv2.GaussianBlur(x, (0, 0), sigmaX=float(rng.uniform(0.3, 1.5)))
        x = x + rng.normal(0.0, rng.uniform(0.0, 0.10), size=x.shape).astype(np.float32)
        if rng.random() < 0.15:
            x = np.repeat(x @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(x.shape)
        out[i] = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Tiny online jitter (noise σ ≤ 0.02, brightness ±0.03) under which dlib's target is taken as unchanged."""
    n = x.shape[0]
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * 0.02
    shift = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.06
    return (x + sigma * torch.randn(x.shape, generator=gen) + shift).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- dlib descriptors

_WORKER: Any = None


def _worker_init() -> None:
    global _WORKER
    from .eval.identity import DlibDescriptor

    _WORKER = DlibDescriptor()


def _worker_batch(images: np.ndarray) -> np.ndarray:
    return _WORKER.batch(images)


def dlib_descriptors(images: np.ndarray, workers: int = 1, desc: str = "dlib descriptors",
                     chunk: int = 16) -> np.ndarray:
    """dlib's 128-D descriptors of uint8 N×H×W×3 RGB faces (float32 N×128), with a progress bar.

    ``workers > 1`` runs dlib in that many processes (dlib releases no GIL, so threads would not help).

    Raises:
        DependencyError: dlib or its weights are missing (``pip install 'privsdk[eval]'``).
    """
    from tqdm import tqdm

    from .eval.identity import DlibDescriptor

    descriptor = DlibDescriptor()  # raises DependencyError early, in the parent, with the install hint
    chunks = [images[i:i + chunk] for i in range(0, len(images), chunk)]
    out = []
    with tqdm(total=len(images), desc=desc, unit="face") as bar:
        if workers <= 1 or len(chunks) <= 1:
            for c in chunks:
                out.append(descriptor.batch(c))
                bar.update(len(c))
        else:
            import multiprocessing as mp

            # fork: the workers inherit the loaded modules; dlib holds no torch state
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers, initializer=_worker_init) as pool:
                for r in pool.imap(_worker_batch, chunks):
                    out.append(r)
                    bar.update(len(r))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 128), np.float32)


def _cache_key(ds: FaceSet, train_idx: np.ndarray, held_idx: np.ndarray, seed: int) -> str:
    h = hashlib.sha256(f"{CACHE_FORMAT}|{ds.name}|{ds.images.shape}|{seed}".encode())
    for a in (train_idx, held_idx):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        h.update(ds.images[a].tobytes())  # a changed image invalidates the cache
    return h.hexdigest()[:24]


def cached_descriptors(ds: FaceSet, train_idx: np.ndarray, held_idx: np.ndarray, cache: Union[str, os.PathLike],
                       *, seed: int = 0, workers: int = 1) -> Tuple[Dict[str, np.ndarray], bool]:
    """Clean and perturbed images of the chosen faces and their dlib descriptors, from ``cache`` or computed.

    Returns ``(arrays, computed)``: arrays ``train_clean``, ``train_pert``, ``held_clean``,
    ``held_pert`` (uint8 images) and ``d_train_clean`` … ``d_held_pert`` (float32 N×128);
    ``computed`` is False when they came from the cache.
    """
    cache = Path(cache)
    key = _cache_key(ds, train_idx, held_idx, seed)
    if cache.is_file():
        try:
            with np.load(cache) as z:
                if str(z["key"]) == key:
                    log.info("dlib descriptors of %d + %d faces loaded from %s", len(train_idx), len(held_idx), cache)
                    return {k: z[k] for k in z.files if k != "key"}, False
            log.info("dlib cache %s is for other faces; recomputing", cache)
        except (OSError, KeyError, ValueError) as exc:
            log.warning("ignoring unreadable dlib cache %s (%s)", cache, exc)
    arrays: Dict[str, np.ndarray] = {
        "train_clean": ds.images[train_idx], "held_clean": ds.images[held_idx],
        # different seeds for the two parts, so the held-out perturbations are not the training ones
        "train_pert": perturb_faces(ds.images[train_idx], seed), "held_pert": perturb_faces(ds.images[held_idx], seed + 1),
    }
    for part in ("train_clean", "train_pert", "held_clean", "held_pert"):
        arrays["d_" + part] = dlib_descriptors(arrays[part], workers, desc=f"dlib {part.replace('_', ' ')}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, key=np.array(key), **arrays)
    os.replace(tmp, cache)
    return arrays, True


# ----------------------------------------------------------------------------- the student

class DescriptorStudent(nn.Module):
    """x01 N×3×H×W → N×128 descriptor on dlib's scale; inputs of another size are resized to ``size``."""

    def __init__(self, width: int = 16, size: int = 64, outputs: int = 128):
        super().__init__()
        self.size = int(size)
        self.net = SmallResNet(outputs, width)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        if x01.shape[-1] != self.size or x01.shape[-2] != self.size:
            x01 = F.interpolate(x01, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(x01)


def _x01(images: np.ndarray) -> torch.Tensor:
    # contiguous NCHW: a channels-last batch made oneDNN's convolution backward crash (torch 2.13 CPU, 1 thread)
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


@torch.no_grad()
def student_descriptors(student: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The student's descriptors (float32 N×D) of uint8 N×H×W×3 RGB faces, in eval mode."""
    was = student.training
    student.eval()
    out = [student(_x01(images[i:i + batch_size])).float().numpy() for i in range(0, len(images), batch_size)]
    student.train(was)
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


def distill_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance (dlib's metric, squared) + (1 − cosine), averaged over the batch."""
    return ((pred - target) ** 2).sum(dim=1).mean() + (1.0 - F.cosine_similarity(pred, target, dim=1)).mean()


def train_student(images: np.ndarray, targets: np.ndarray, *, width: int = 16, epochs: int = 15,
                  batch_size: int = 64, lr: float = 2e-3, seed: int = 0, max_steps: Optional[int] = None,
                  val: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                  on_epoch: Optional[Callable[[int, float], None]] = None) -> DescriptorStudent:
    """Regress dlib descriptors ``targets`` (N×128) from uint8 N×H×W×3 faces; returns the student in eval mode.

    Adam with a cosine learning-rate decay; small online noise / brightness jitter.
    ``max_steps`` caps the total number of steps (tests). ``val=(images, targets)`` logs
    the mean held-out distance per epoch.
    """
    from tqdm import tqdm

    if len(images) != len(targets) or len(images) == 0:
        raise InputError(f"{len(images)} images and {len(targets)} descriptors; expected the same non-zero count")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    student = DescriptorStudent(width, images.shape[1], targets.shape[1])
    with torch.no_grad():  # start at the mean descriptor: the network learns the deviations
        student.net.fc.bias.copy_(torch.from_numpy(targets.mean(0)))
        student.net.fc.weight.mul_(0.1)
    x_all, t_all = _x01(images), torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    n = len(images)
    steps = max(1, math.ceil(n / batch_size))
    total = epochs * steps if max_steps is None else min(epochs * steps, int(max_steps))
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    step = 0
    for epoch in range(epochs):
        if step >= total:
            break
        student.train()
        perm = torch.randperm(n, generator=gen)
        bar = tqdm(range(steps), desc=f"student epoch {epoch + 1}/{epochs}", unit="step", leave=False)
        for i in bar:
            if step >= total:
                break
            idx = perm[i * batch_size:(i + 1) * batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = distill_loss(student(_augment(x_all[idx], gen)), t_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if val is not None:
            d = float(np.linalg.norm(student_descriptors(student, val[0]) - val[1], axis=1).mean())
            log.info("student epoch %d/%d: held-out mean |student - dlib| %.4f", epoch + 1, epochs, d)
            if on_epoch is not None:
                on_epoch(epoch + 1, d)
    return student.eval()


# ----------------------------------------------------------------------------- metrics

def _decision_stats(d_dlib: np.ndarray, d_student: np.ndarray) -> Dict[str, float]:
    same_dlib, same_student = d_dlib < THRESHOLD, d_student < THRESHOLD
    corr = float(np.corrcoef(d_dlib, d_student)[0, 1]) if len(d_dlib) > 1 and d_dlib.std() > 0 and d_student.std() > 0 else float("nan")
    return {"n": int(len(d_dlib)), "agreement": float(np.mean(same_dlib == same_student)),
            "same_rate_dlib": float(np.mean(same_dlib)), "same_rate_student": float(np.mean(same_student)),
            "mean_distance_dlib": float(d_dlib.mean()), "mean_distance_student": float(d_student.mean()),
            "distance_correlation": corr}


def agreement_metrics(d_clean: np.ndarray, d_pert: np.ndarray, s_clean: np.ndarray, s_pert: np.ndarray,
                      *, n_pairs: int = 2000, seed: int = 0) -> Dict[str, Any]:
    """How faithfully student descriptors ``s_*`` stand in for dlib's ``d_*`` (held-out faces, N×128 each).

    ``student_vs_dlib``: mean ‖student − dlib‖ on clean and perturbed faces; ``clean_vs_perturbed``:
    the same-person-within-0.6 decision on (clean i, perturbed i) by each, and how often they agree;
    ``clean_vs_clean``: the same on up to ``n_pairs`` random pairs (clean i, clean j), i ≠ j.
    """
    n = len(d_clean)
    err_c, err_p = np.linalg.norm(s_clean - d_clean, axis=1), np.linalg.norm(s_pert - d_pert, axis=1)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=n_pairs)
    j = (i + rng.integers(1, max(n, 2), size=n_pairs)) % max(n, 1)  # j ≠ i
    keep = i != j
    i, j = i[keep], j[keep]
    return {
        "n_faces": int(n), "threshold": THRESHOLD,
        "student_vs_dlib": {"clean_mean": float(err_c.mean()), "clean_median": float(np.median(err_c)),
                            "perturbed_mean": float(err_p.mean()), "perturbed_median": float(np.median(err_p))},
        "clean_vs_perturbed": _decision_stats(np.linalg.norm(d_clean - d_pert, axis=1),
                                              np.linalg.norm(s_clean - s_pert, axis=1)),
        "clean_vs_clean": _decision_stats(np.linalg.norm(d_clean[i] - d_clean[j], axis=1),
                                          np.linalg.norm(s_clean[i] - s_clean[j], axis=1)),
    }


# ----------------------------------------------------------------------------- saving and the whole run

def save_student(path: Union[str, os.PathLike], student: DescriptorStudent) -> Path:
    """Save the student as TorchScript (what ``losses.identity_model`` / ``load_descriptor`` take), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what load_descriptor reads
        torch.jit.save(torch.jit.script(student.eval()), str(tmp))
    os.replace(tmp, path)
    return path


def select_faces(splits: Dict[str, np.ndarray], faces: int, held_out: int, seed: int = 0
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """``faces`` seeded indices of the TRAIN split and ``held_out`` of the VAL split (fewer if the split is smaller)."""
    if faces < 2 or held_out < 2:
        raise InputError(f"faces={faces}, held_out={held_out}; expected at least 2 of each")
    rng = np.random.default_rng(seed)
    out = []
    for part, n in (("train", faces), ("val", held_out)):
        idx = np.asarray(splits.get(part, []), dtype=np.int64)
        if len(idx) < 2:
            raise InputError(f"the {part} split has {len(idx)} faces; expected at least 2")
        if len(idx) < n:
            log.warning("the %s split has only %d faces; using all of them (asked for %d)", part, len(idx), n)
        out.append(np.sort(rng.choice(idx, min(n, len(idx)), replace=False)))
    return out[0], out[1]


def distill_identity(ds: FaceSet, splits: Dict[str, np.ndarray], out: Union[str, os.PathLike], *,
                     faces: int = 3000, held_out: int = 300, epochs: int = 15, width: int = 16,
                     batch_size: int = 64, lr: float = 2e-3, workers: int = 1, seed: int = 0,
                     max_steps: Optional[int] = None, split_info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The whole distillation: choose faces, dlib descriptors (cached), train, measure, save.

    Writes ``OUT/descriptor.pt`` (TorchScript), ``OUT/descriptor.json`` (the returned report)
    and ``OUT/dlib_cache.npz``. The student trains on the clean and the perturbed copy of
    each training face, each with its own dlib descriptor.
    """
    out = Path(out)
    t0 = time.time()
    train_idx, held_idx = select_faces(splits, faces, held_out, seed)
    arrays, computed = cached_descriptors(ds, train_idx, held_idx, out / CACHE_FILE, seed=seed, workers=workers)
    t_dlib = time.time() - t0
    x = np.concatenate([arrays["train_clean"], arrays["train_pert"]])
    t = np.concatenate([arrays["d_train_clean"], arrays["d_train_pert"]])
    held = (arrays["held_clean"], arrays["d_held_clean"])

    def measure(student: nn.Module) -> Dict[str, Any]:
        return agreement_metrics(arrays["d_held_clean"], arrays["d_held_pert"],
                                 student_descriptors(student, arrays["held_clean"]),
                                 student_descriptors(student, arrays["held_pert"]), seed=seed)

    torch.manual_seed(seed)
    untrained = measure(DescriptorStudent(width, ds.images.shape[1]))
    history = []
    t1 = time.time()
    student = train_student(x, t, width=width, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                            max_steps=max_steps, val=held, on_epoch=lambda e, d: history.append([e, d]))
    t_train = time.time() - t1
    path = save_student(out / DESCRIPTOR_FILE, student)
    mean_desc = t.mean(0)
    report = {
        "format": REPORT_FORMAT, "descriptor": str(path.name),
        "teacher": "dlib_face_recognition_resnet_model_v1 (5-point aligned 150px chip), 128-D, threshold 0.6",
        "student": {"arch": "SmallResNet", "width": width, "input": f"x01 N×3×{ds.images.shape[1]}×{ds.images.shape[2]} RGB",
                    "outputs": int(t.shape[1]), "parameters": int(sum(p.numel() for p in student.parameters()))},
        "data": {"name": ds.name, "faces": int(len(train_idx)), "held_out": int(len(held_idx)),
                 "train_from": "train split", "held_out_from": "val split", "split": dict(split_info or {}),
                 "training_images": int(len(x)), "perturbation": "perturb_faces (one copy per face, seeded)"},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "max_steps": max_steps,
                  "loss": "|s-d|^2 + (1 - cos)", "held_out_distance_per_epoch": history},
        "held_out": measure(student),
        "baselines": {"untrained": untrained,
                      "mean_descriptor_distance": float(np.linalg.norm(arrays["d_held_clean"] - mean_desc, axis=1).mean())},
        "seconds": {"dlib": round(t_dlib, 1), "dlib_cached": not computed, "train": round(t_train, 1)},
    }
    tmp = out / (REPORT_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=True))
    os.replace(tmp, out / REPORT_FILE)
    return report
