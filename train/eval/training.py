"""Train one attacker or utility model to saturation (paper 003's verification protocol).

A model is trained on *filtered* training images, re-filtered every epoch when
the filter is stochastic (fresh noise), and early-stopped on a fixed filtered
validation set: training stops once the validation loss has not improved for
``patience`` epochs, and the best epoch's weights are kept. Classes are
balanced by loss weights; the balanced model's probabilities are then mapped
back to the training prior and temperature-scaled on the validation set, so
that its cross-entropy is an honest (tight) bound for the leakage estimate.

Example::

    import numpy as np
    from privsdk.train.eval.training import TrainSettings, train_model
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8); y = (x.mean((1, 2, 3)) > 127).astype(int)
    m = train_model("linear", "classify", x, y, x, y, settings=TrainSettings(max_epochs=5))
    m.predict_proba(x).shape                          # (64, 2)
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from privsdk.errors import InputError
from privsdk.log import get_logger

from .models import build_model

_log = get_logger(__name__)
TASKS = ("classify", "regress")


@dataclass
class TrainSettings:
    """Optimisation settings of one model; recorded in the report."""

    max_epochs: int = 100
    patience: int = 6
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    min_delta: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    width: int = 16
    min_steps_per_epoch: int = 20   # tiny sets: several passes between two validation checks
    # 0: a constant learning rate. N: after every N epochs without a better validation loss, go back to
    # the best weights and halve the learning rate (the validation loss of small attackers jumps from
    # epoch to epoch; a smaller step settles into the minimum the best epoch only touched). Off by default:
    # on SMILEsmileD it left the attackers weaker, which would flatter a filter (docs/design-changes.md #11)
    lr_drop_patience: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class TrainedModel:
    """A trained model with what the report needs about its training."""

    arch: str
    task: str
    model: Any = field(repr=False)
    epochs_used: int
    best_epoch: int
    stopped_early: bool
    history: List[float]
    seconds: float
    device: str
    prior: Optional[np.ndarray] = None          # training class frequencies (classify)
    temperature: float = 1.0                    # fitted on validation (classify)
    target_mean: Optional[np.ndarray] = None    # standardization of regression targets
    target_std: Optional[np.ndarray] = None
    lr_drops: int = 0                           # times the learning rate was halved (lr_drop_patience)
    fit: Optional[Dict[str, Any]] = None        # how a closed-form / convex fit went (the logistic attacker)

    def _outputs(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        import torch

        self.model.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                xb = _to_tensor(images[i:i + batch_size], self.device)
                outs.append(self.model(xb).float().cpu().numpy())
        return np.concatenate(outs).astype(np.float64)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities under the training prior, temperature-scaled (N×K)."""
        if self.task != "classify":
            raise InputError(f"predict_proba: this {self.arch} model regresses; expected a classifier")
        return _calibrated(self._outputs(images), self.temperature, self.prior)

    def predict_balanced(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities of the balanced (class-weighted) model, for balanced accuracy (N×K)."""
        return _softmax(self._outputs(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Regression outputs in the targets' units (N×D)."""
        if self.task != "regress":
            raise InputError(f"predict: this {self.arch} model classifies; expected a regressor")
        return self._outputs(images) * self.target_std + self.target_mean

    def summary(self) -> Dict[str, Any]:
        if self.fit is not None:     # fit to convergence: no epochs, nothing to saturate
            return {"arch": self.arch, "task": self.task, **self.fit, "seconds": round(self.seconds, 2),
                    "temperature": self.temperature}
        return {"arch": self.arch, "task": self.task, "epochs_used": self.epochs_used,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "val_loss_history": [round(v, 6) for v in self.history], "seconds": round(self.seconds, 2),
                "temperature": self.temperature, "lr_drops": self.lr_drops}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _calibrated(logits: np.ndarray, temperature: float, prior: Optional[np.ndarray]) -> np.ndarray:
    z = logits / temperature
    if prior is not None:
        z = z + np.log(np.clip(prior, 1e-12, None))
    return _softmax(z)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, prior: Optional[np.ndarray]) -> float:
    """The temperature minimizing the cross-entropy of the prior-corrected probabilities."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    idx = np.arange(len(labels))
    losses = [-np.mean(np.log(np.clip(_calibrated(logits, t, prior)[idx, labels], 1e-12, 1))) for t in grid]
    return float(grid[int(np.argmin(losses))])


def _to_tensor(images: np.ndarray, device: str):
    import torch

    # contiguous NCHW: a channels-last view made torch 2.13's CPU conv backward abort (double free)
    return (torch.as_tensor(np.ascontiguousarray(images), device=device).permute(0, 3, 1, 2).float() / 255.0
            ).contiguous()


def pick_device(requested: Optional[str] = None) -> str:
    """``requested`` or CUDA when present, else CPU."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _class_counts(y_train: np.ndarray, y_val: np.ndarray):
    """The number of classes and the training split's count of each; refuses a class missing from training."""
    k = int(max(y_train.max(), y_val.max()) + 1)
    counts = np.bincount(y_train, minlength=k).astype(np.float64)
    if (counts == 0).any():
        raise InputError(f"training labels lack class(es) {np.flatnonzero(counts == 0).tolist()}; "
                         "expected every class in the training split")
    return k, counts


def train_model(arch: str, task: str, train_images: np.ndarray, train_targets: np.ndarray,
                val_images: np.ndarray, val_targets: np.ndarray,
                filter_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None, refilter: bool = True,
                settings: Optional[TrainSettings] = None, desc: str = "", progress: bool = False) -> TrainedModel:
    """Train ``arch`` for ``task`` until the validation loss stops improving.

    ``train_images`` are *unfiltered*; ``filter_fn`` (when given) is applied to them
    once, or every epoch when ``refilter`` (a stochastic filter). ``val_images`` are
    already filtered (one fixed draw shared by all attackers). Targets: int class
    labels (classify) or N×D floats (regress).
    """
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    s = settings or TrainSettings()
    if task not in TASKS:
        raise InputError(f"task {task!r}: expected one of {TASKS}")
    if len(train_images) != len(train_targets) or len(val_images) != len(val_targets):
        raise InputError(f"train/val images and targets differ in length: {len(train_images)} vs "
                         f"{len(train_targets)}, {len(val_images)} vs {len(val_targets)}; expected equal")
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    device = s.device
    hw = tuple(train_images.shape[1:3])
    started = time.time()

    prior = target_mean = target_std = None
    if task == "classify":
        y_train = np.asarray(train_targets).astype(np.int64)
        y_val = np.asarray(val_targets).astype(np.int64)
        k, counts = _class_counts(y_train, y_val)
        prior = counts / counts.sum()
        weights = torch.as_tensor(counts.sum() / (k * counts), dtype=torch.float32, device=device)
        loss_fn: nn.Module = nn.CrossEntropyLoss(weight=weights)
        t_train = torch.as_tensor(y_train, device=device)
        t_val = torch.as_tensor(y_val, device=device)
        outputs = k
    else:
        y_train = np.asarray(train_targets, dtype=np.float64).reshape(len(train_targets), -1)
        y_val = np.asarray(val_targets, dtype=np.float64).reshape(len(val_targets), -1)
        target_mean, target_std = y_train.mean(0), y_train.std(0) + 1e-8
        loss_fn = nn.MSELoss()
        t_train = torch.as_tensor((y_train - target_mean) / target_std, dtype=torch.float32, device=device)
        t_val = torch.as_tensor((y_val - target_mean) / target_std, dtype=torch.float32, device=device)
        outputs = y_train.shape[1]

    model = build_model(arch, outputs, hw, s.width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    x_val = _to_tensor(val_images, device)
    flip = arch == "cnn" and task == "classify"

    def val_loss() -> float:
        model.eval()
        with torch.no_grad():
            total = 0.0
            for i in range(0, len(x_val), 512):
                total += float(loss_fn(model(x_val[i:i + 512]), t_val[i:i + 512])) * len(x_val[i:i + 512])
        return total / len(x_val)

    best, best_state, best_epoch, bad, history, lr_drops = np.inf, None, 0, 0, [], 0
    x_epoch = train_images if filter_fn is None else filter_fn(train_images)
    bar = tqdm(range(1, s.max_epochs + 1), desc=desc or f"{arch} {task}", leave=False, disable=not progress)
    epoch = 0
    for epoch in bar:
        if filter_fn is not None and refilter and epoch > 1:
            x_epoch = filter_fn(train_images)  # fresh noise every epoch
        model.train()
        passes = max(1, -(-s.min_steps_per_epoch * s.batch_size // len(x_epoch)))
        order = np.concatenate([rng.permutation(len(x_epoch)) for _ in range(passes)])
        for i in range(0, len(order), s.batch_size):
            idx = order[i:i + s.batch_size]
            if len(idx) < 2:
                continue
            xb = _to_tensor(x_epoch[idx], device)
            if flip:
                mask = torch.as_tensor(rng.random(len(idx)) < 0.5, device=device)
                xb = torch.where(mask[:, None, None, None], xb.flip(3), xb)
            loss = loss_fn(model(xb), t_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        v = val_loss()
        history.append(v)
        bar.set_postfix(val_loss=f"{v:.4f}", best=best_epoch)
        if v < best - s.min_delta:
            best, best_epoch, bad = v, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= s.patience:
                break
            if s.lr_drop_patience and bad % s.lr_drop_patience == 0 and best_state is not None:
                model.load_state_dict(best_state)
                for group in opt.param_groups:
                    group["lr"] *= 0.5
                lr_drops += 1
    if best_state is not None:
        model.load_state_dict(best_state)
    trained = TrainedModel(arch=arch, task=task, model=model.eval(), epochs_used=epoch, best_epoch=best_epoch,
                           stopped_early=bad >= s.patience, history=history, seconds=time.time() - started,
                           device=device, prior=prior, target_mean=target_mean, target_std=target_std,
                           lr_drops=lr_drops)
    if task == "classify":
        trained.temperature = fit_temperature(trained._outputs(val_images), y_val, prior)
    _log.debug("%s: %d epochs (best %d), %.1fs", desc or arch, epoch, best_epoch, trained.seconds)
    return trained


# the L2 weights the logistic attacker tries, strongest first (each fit starts from the previous one's solution)
LOGISTIC_WEIGHT_DECAYS = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


def lbfgs_logistic(x: np.ndarray, y: np.ndarray, classes: int, weight_decay: float, init=None,
                   max_iter: int = 300, tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9):
    """One class-weighted logistic regression, ``CE(x w + b) + weight_decay·|w|²``, by L-BFGS (float64).

    ``init``: ``(w, b)`` to start from (a warm start along a path of weights). Returns ``(w, b, iterations)``
    as numpy arrays (D×K, K) and the number of L-BFGS iterations taken.
    """
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.int64)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weights = torch.as_tensor(counts.sum() / (classes * np.maximum(counts, 1.0)))
    w0, b0 = init if init is not None else (np.zeros((x.shape[1], classes)), np.zeros(classes))
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=tolerance_grad,
                            tolerance_change=tolerance_change, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt, weight=weights) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy(), int(opt.state[w].get("n_iter", 0))


def _pixels(images: np.ndarray) -> np.ndarray:
    """The linear attackers' input, as :class:`LinearPixels` sees it: NCHW order, centred and scaled."""
    x = np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2).reshape(len(images), -1)
    return (x / 255.0 - 0.5) / 0.25


def fit_logistic(train_images: np.ndarray, train_targets: np.ndarray, val_images: np.ndarray,
                 val_targets: np.ndarray, filter_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 settings: Optional[TrainSettings] = None, weight_decays=LOGISTIC_WEIGHT_DECAYS,
                 max_iter: int = 500) -> TrainedModel:
    """A class-weighted, L2-regularised logistic regression on the pixels, fit to convergence.

    The ``linear`` attacker is the same model trained by SGD and stopped early; where its noisy validation
    loss happens to dip decides what it reads (0.61-0.63 over three seeds on ``emotion-lite`` 0.3.0). This
    one is fit by L-BFGS to convergence for every weight decay in ``weight_decays`` and keeps the one with
    the lowest validation loss (the same class-weighted cross-entropy that stops the other attackers), so
    it is deterministic and reads what a tuned linear model can (0.64 there). With more pixels than
    training faces it is solved in the span of the training faces, where the L2 solution lies (the
    representer theorem), so its cost grows with the number of faces, not pixels. A stochastic filter is
    applied once: the fit sees one draw of its noise.

    Example::

        import numpy as np
        from privsdk.train.eval.training import fit_logistic
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8); y = (x[:, :4].mean((1, 2, 3)) > 127).astype(int)
        m = fit_logistic(x, y, x, y)
        m.summary()["weight_decay"], m.predict_balanced(x).shape   # (..., (64, 2))
    """
    import torch

    from .models import build_model

    s = settings or TrainSettings()
    started = time.time()
    y_train = np.asarray(train_targets).astype(np.int64)
    y_val = np.asarray(val_targets).astype(np.int64)
    if len(train_images) != len(y_train) or len(val_images) != len(y_val):
        raise InputError(f"train/val images and targets differ in length: {len(train_images)} vs "
                         f"{len(y_train)}, {len(val_images)} vs {len(y_val)}; expected equal")
    k, counts = _class_counts(y_train, y_val)
    prior = counts / counts.sum()
    class_weights = counts.sum() / (k * counts)
    x_train = _pixels(train_images if filter_fn is None else filter_fn(train_images))
    x_val = _pixels(val_images)
    mean = x_train.mean(axis=0)
    x_train -= mean
    x_val -= mean
    n, d = x_train.shape
    gram = torch.from_numpy(x_train) @ torch.from_numpy(x_train).T if n < d else None
    if gram is not None and float(gram.abs().max()) > 0:    # all-equal faces (a blank filter) have no span
        # w = basis @ v with basis = X^T U S^-1 (orthonormal columns spanning the training faces): ||w|| = ||v||
        evals, evecs = torch.linalg.eigh(gram.double())
        keep = evals > evals.max() * 1e-10
        scale = evals[keep].sqrt()
        z_train = (evecs[:, keep] * scale).numpy()                        # X basis = U S
        basis = (torch.from_numpy(x_train).T.double() @ (evecs[:, keep] / scale)).float().numpy()
        z_val = x_val @ basis
    else:
        basis, z_train, z_val = None, x_train, x_val
    val_losses: List[float] = []
    best: Optional[Dict[str, Any]] = None
    solution = None
    for wd in weight_decays:
        w, b, iterations = lbfgs_logistic(z_train, y_train, k, wd, init=solution, max_iter=max_iter,
                                          tolerance_grad=1e-9, tolerance_change=1e-12)
        solution = (w, b)
        v = float(torch.nn.functional.cross_entropy(torch.from_numpy(z_val.astype(np.float64) @ w + b),
                                                    torch.from_numpy(y_val), weight=torch.from_numpy(class_weights)))
        val_losses.append(v)
        if best is None or v < best["val"] - s.min_delta:
            best = {"val": v, "wd": wd, "w": w, "b": b, "iterations": iterations, "converged": iterations < max_iter}
    assert best is not None
    weight = best["w"] if basis is None else basis.astype(np.float64) @ best["w"]   # d×k
    bias = best["b"] - mean.astype(np.float64) @ weight       # undo the centring
    model = build_model("linear", k, tuple(train_images.shape[1:3]))
    with torch.no_grad():
        model.linear.weight.copy_(torch.as_tensor(weight.T, dtype=torch.float32))
        model.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    fit = {"fit": "L-BFGS to convergence, the L2 weight picked on the validation loss",
           "weight_decay": best["wd"], "weight_decays": list(weight_decays),
           "val_loss_by_weight_decay": [round(v, 6) for v in val_losses],
           "iterations": best["iterations"], "converged": best["converged"]}
    trained = TrainedModel(arch="logistic", task="classify", model=model.eval(), epochs_used=0, best_epoch=0,
                           stopped_early=True, history=val_losses, seconds=time.time() - started, device="cpu",
                           prior=prior, fit=fit)
    trained.temperature = fit_temperature(trained._outputs(val_images), y_val, prior)
    return trained
