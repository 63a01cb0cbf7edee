"""One training run: data, frozen clean models, the filter, the method's adversarial loop, logs, checkpoints.

Per batch: draw N(0, 1) noise, filter y = f(x, z), train the method's adversaries
on y (detached), then step the filter on the method's loss plus the common
terms (distortion budget, pose keeping, identity keeping). Per epoch: validate
(the run's attacker and the fixed clean attacker on filtered validation images,
the frozen utility models on them, distortion / PSNR), log a CSV row (and
TensorBoard), and write ``RUN_DIR/last.pt`` with everything needed to resume
exactly (weights, optimizers, scheduler, RNG states, epoch/step; the data
order is a function of seed and epoch). The end of a run is ``RUN_DIR/filter.pt``
(``privsdk-checkpoint/1``), ``splits.json``, ``config.yaml``, ``log.csv``,
``curves.png``.

Mixed precision (bfloat16 autocast) on CUDA when ``train.amp``; under ``torchrun``
the batches of each epoch are sharded across ranks (as a DistributedSampler does)
and gradients are all-reduced; rank 0 logs and writes files.

Example::

    from privsdk.train.config import load_config
    from privsdk.train.trainer import Trainer
    cfg = load_config("configs/smoke.yaml")
    Trainer(cfg, "runs/smoke").run()
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from privsdk.errors import DependencyError, InputError
from privsdk.log import get_logger

from .checkpoint import make_checkpoint, read_checkpoint, save_checkpoint
from .config import RunConfig, save_config
from .data import FaceSet, config_splits, join_datasets, load_dataset, splits_from_json, splits_to_json
from .frozen import (class_prior, evaluate_model, load_descriptor, load_frozen, save_frozen, to_x01,
                     train_clean_model)
from .losses import (balanced_accuracy, distortion_penalty, distortion_per_image, psnr, region_distortion_penalty,
                     roc_auc, ssim_penalty)
from .methods import Batch, FrozenModel, MethodContext, build_method
from .networks import build_filter
from .runlog import RunLog

log = get_logger(__name__)
POSE_LABELS = ("yaw", "pitch", "roll")


# ----------------------------------------------------------------------------- distributed helpers

def _dist_info() -> tuple:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0, 0
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _allreduce_grads(module: torch.nn.Module, world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _requires_grad(method: Any, flag: bool) -> None:
    for module in method.modules.values():
        for p in module.parameters():
            p.requires_grad_(flag)


def norm_maps(images: np.ndarray, min_std: float = 1e-2) -> tuple:
    """Per-location mean and std (3×H×W float32) of x01 over a uint8 N×H×W×3 set."""
    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=0).transpose(2, 0, 1)
    std = x.std(axis=0).transpose(2, 0, 1)
    return mean.astype(np.float32), np.maximum(std, min_std).astype(np.float32)


def framed_like(more: FaceSet, more_train: np.ndarray, first: FaceSet, first_train: np.ndarray) -> FaceSet:
    """``more`` with every face re-cut to sit in the Haar box as ``first``'s faces sit (``data.also``'s
    ``framing: runtime``).

    ``first``'s layout is what export writes as ``input.face_crop``, so these are the faces ``Filter`` cuts
    from a camera frame for the filter: a set cropped looser (GENKI-4K at the Haar box itself) is trained on
    as a device will show it, not as its own crops show it. Both layouts are measured on the train splits.
    """
    from privsdk.train.eval.framing import crop_and_resize, data_layout, runtime_framing

    first_box = data_layout(first.images[np.sort(first_train)], f"{first.name} train")
    data_box, crop = runtime_framing(more.images[np.sort(more_train)], first_box, f"{more.name} train")
    log.info("%s re-cut as %s's faces sit in the Haar box (at %s of it; its own at %s): %s of each image", more.name,
             first.name, [round(v, 4) for v in first_box], [round(v, 4) for v in data_box],
             [round(v, 4) for v in crop])
    return dataclasses.replace(more, images=crop_and_resize(more.images, crop))


class Trainer:
    """A training run (see the module docstring).

    Args:
        cfg: the resolved config.
        out_dir: the run directory.
        resume: continue from ``out_dir/last.pt`` (exactly: same weights as an uninterrupted run).
        dataset: an in-memory :class:`FaceSet` to use instead of loading ``cfg.data`` (tests, notebooks).
    """

    def __init__(self, cfg: RunConfig, out_dir: Union[str, os.PathLike], resume: bool = False,
                 dataset: Optional[FaceSet] = None):
        self.cfg = cfg.validate()
        self.out = Path(out_dir)
        self.resume = resume
        self._dataset = dataset
        self.world, self.rank, self.local_rank = _dist_info()
        self.is_main = self.rank == 0

    # ------------------------------------------------------------------ setup
    def _device(self) -> torch.device:
        want = self.cfg.train.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise InputError(f"train.device is {want!r} but CUDA is not available; expected 'cpu' or 'auto'")
            if self.world > 1:
                want = f"cuda:{self.local_rank}"
            torch.cuda.set_device(torch.device(want))
        return torch.device(want)

    def _init_distributed(self, device: torch.device) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            log.info("distributed: rank %d of %d on %s", self.rank, self.world, device)

    def _load_data(self) -> Tuple[FaceSet, Dict[str, np.ndarray]]:
        """The training set and its train/val/test indices (``data.also`` sets joined, see :func:`join_datasets`)."""
        d = self.cfg.data
        if self._dataset is not None:
            ds = self._dataset
        else:
            ds = load_dataset(d.name, d.root, d.size, cache_dir=d.cache_dir, limit=d.limit)
        parts = [(ds, config_splits(ds, vars(d)))]
        for extra in d.also:
            more = load_dataset(extra["name"], extra["root"], d.size, cache_dir=d.cache_dir)
            if d.secret not in more.labels:
                raise InputError(f"data.also set {more.name!r} has no secret label {d.secret!r}; "
                                 f"expected one of {sorted(more.labels)}")
            more_splits = config_splits(more, vars(d))
            if extra.get("framing") == "runtime":
                more = framed_like(more, more_splits["train"], ds, parts[0][1]["train"])
            parts.append((more, more_splits))
        if len(parts) > 1:
            ds, splits = join_datasets(parts)
            log.info("training on %s: %s", ds.name, ", ".join(f"{p.name} {len(s['train'])} train" for p, s in parts))
        else:
            splits = parts[0][1]
        return ds, self._splits(ds, splits)

    def _splits(self, ds: FaceSet, splits: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        path = self.out / "splits.json"
        if self.resume and path.is_file():
            return splits_from_json(json.loads(path.read_text())["splits"])
        d = self.cfg.data
        if self.is_main:
            path.write_text(json.dumps({"dataset": ds.name, "root": str(d.root), "also": list(d.also),
                                        "stratify": d.secret, "fractions": list(d.fractions), "seed": d.split_seed,
                                        "train_share": d.train_share,
                                        "splits": splits_to_json(splits)}))
        return splits

    def _face_crop(self, images: np.ndarray, train: np.ndarray) -> Optional[Dict[str, Any]]:
        """How the training faces sit in the runtime Haar finder's box (exported as ``input.face_crop``)."""
        if not self.is_main:
            return None
        from privsdk.regions.crop_layout import MAX_FACES, measure_face_crop

        # a sample of the training faces (indexing them all would copy the whole set)
        pick = np.sort(np.random.default_rng(self.cfg.data.split_seed).permutation(train)[:MAX_FACES])
        try:
            layout = measure_face_crop(images[pick], seed=self.cfg.data.split_seed)
        except DependencyError as exc:  # OpenCV without the Haar cascades: the runtime default margin applies
            log.warning("face crop layout not measured: %s", exc)
            return None
        if layout is not None:
            log.info("training faces sit at %s of a Haar face box (%d of %d crops measured)", layout["box"],
                     layout["faces_found"], layout["faces_tried"])
        return layout

    def _frozen_models(self, images: torch.Tensor, labels: Dict[str, torch.Tensor], splits: Dict[str, np.ndarray],
                       device: torch.device, ds: FaceSet) -> Dict[str, Any]:
        """Utility models, the fixed secret attacker and the pose regressor: loaded or trained clean."""
        t = self.cfg.train
        tr, va = torch.as_tensor(splits["train"]), torch.as_tensor(splits["val"])

        def get(label: str, file: str, kind: str, outputs: int, targets: torch.Tensor,
                given: Optional[str] = None) -> FrozenModel:
            path = Path(given) if given else self.out / file
            if path.is_file() and (given or self.resume):  # a fresh run retrains its own clean models
                log.info("using frozen %s model %s", label, path)
                return load_frozen(path, device)
            if given:
                raise InputError(f"frozen model for {label!r} at {given} does not exist; expected a saved estimator")
            if self.world > 1 and not self.is_main:  # rank 0 trains and saves it; the others load it
                _barrier()
                return load_frozen(path, device)
            log.info("training the clean %s model (%d epochs) -> %s", label, t.pretrain_epochs, path)
            model = train_clean_model(images[tr], targets[tr], kind=kind, outputs=outputs, width=t.estimator_width,
                                      epochs=t.pretrain_epochs, batch_size=t.batch_size, lr=t.adversary_lr, device=device,
                                      seed=t.seed + 17, desc=f"clean {label}", val=(images[va], targets[va]),
                                      max_steps_per_epoch=t.max_steps_per_epoch)
            metric = evaluate_model(model, images[va], targets[va], kind=kind, device=device)
            if self.is_main:
                save_frozen(path, model, label=label, kind=kind, metrics={"val": metric})
            if self.world > 1:
                _barrier()
            return FrozenModel(model, kind, outputs)

        utility: Dict[str, FrozenModel] = {}
        for name in self.cfg.data.utility:
            y = labels[name]
            if y.dtype == torch.int64:
                utility[name] = get(name, f"utility_{name}.pt", "class", int(y.max()) + 1, y,
                                    t.utility_models.get(name))
            else:
                utility[name] = get(name, f"utility_{name}.pt", "reg", 1, y.view(-1, 1), t.utility_models.get(name))
        s = labels[self.cfg.data.secret]
        fixed_secret = get(self.cfg.data.secret, "fixed_secret.pt", "class", int(s.max()) + 1, s,
                           t.utility_models.get("fixed_secret"))
        pose = None
        if self.cfg.losses.pose_weight > 0:
            if self.cfg.losses.pose_model:
                pose = load_frozen(self.cfg.losses.pose_model, device)
            elif all(k in labels for k in POSE_LABELS):
                pose = get("pose", "pose.pt", "reg", 3, torch.stack([labels[k] for k in POSE_LABELS], dim=1))
            else:
                raise InputError(f"losses.pose_weight > 0 needs losses.pose_model or a data set with "
                                 f"{list(POSE_LABELS)} labels (GENKI-4K); {ds.name!r} has {sorted(ds.labels)}")
        identity = None
        if self.cfg.losses.identity_weight > 0:
            if not self.cfg.losses.identity_model:
                raise InputError("losses.identity_weight > 0 needs losses.identity_model "
                                 "(a TorchScript or torch.export .pt2 face descriptor)")
            identity = load_descriptor(self.cfg.losses.identity_model, device)
        return {"utility": utility, "fixed_secret": fixed_secret, "pose": pose, "identity": identity}

    # ------------------------------------------------------------------ run
    def run(self, max_epochs: Optional[int] = None) -> Path:
        """Train; returns the path of ``filter.pt``.

        ``max_epochs`` stops after that many epochs in this call (a time-sliced job, or an
        interruption in tests); ``resume=True`` later continues exactly where it stopped.
        """
        cfg, t = self.cfg, self.cfg.train
        if t.num_threads:
            torch.set_num_threads(int(t.num_threads))
        device = self._device()
        self._init_distributed(device)
        self.out.mkdir(parents=True, exist_ok=True)
        last_path = self.out / "last.pt"
        if self.resume and not last_path.is_file():
            raise InputError(f"cannot resume: {last_path} does not exist; expected a run directory with last.pt")
        random.seed(t.seed)
        np.random.seed(t.seed)
        torch.manual_seed(t.seed)
        if self.is_main:
            save_config(cfg, self.out / "config.yaml")

        ds, splits = self._load_data()
        if cfg.data.secret not in ds.labels:
            raise InputError(f"secret {cfg.data.secret!r} is not a label of {ds.name!r}; expected one of {sorted(ds.labels)}")
        for u in cfg.data.utility:
            ds.label(u)
        if ds.images.shape[1] != cfg.data.size or ds.images.shape[2] != cfg.data.size:
            raise InputError(f"data set images are {ds.images.shape[1:3]}; expected data.size {cfg.data.size}")
        size = cfg.data.size
        images = torch.from_numpy(np.ascontiguousarray(ds.images)).to(device)
        labels = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in ds.labels.items()}
        k_secret = int(ds.labels[cfg.data.secret].max()) + 1
        prior = class_prior(ds.labels[cfg.data.secret][splits["train"]], k_secret)
        mean, std = norm_maps(ds.images[splits["train"]])
        mean_t, std_t = torch.from_numpy(mean).to(device), torch.from_numpy(std).to(device)

        # a lite filter with fixed maps (the fill alone) is built from the mean face: no models to train for it
        nothing_to_learn = cfg.filter.kind == "lite" and not dict(cfg.filter.arch).get("learn_maps", True)
        frozen = None if nothing_to_learn else self._frozen_models(images, labels, splits, device, ds)
        amp = t.amp and device.type == "cuda"

        def autocast():
            return torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()

        torch.manual_seed(t.seed)
        arch = {"size": size, **dict(cfg.filter.arch)}
        flt = build_filter(cfg.filter.kind, **arch).to(device)
        if hasattr(flt, "set_input_norm"):
            flt.set_input_norm(mean_t, std_t)
        if getattr(flt, "lower_fill_rank", 0):
            # a closed-form fit on the training faces (a resumed run loads the same buffers below)
            train_idx = torch.from_numpy(splits["train"]).to(device)
            fit = flt.fit_lower_fill(images[train_idx].permute(0, 3, 1, 2), labels[cfg.data.secret][train_idx])
            log.info("predicted lower fill (rank %d): explains %.1f%% of the filled rows' brightness variance",
                     flt.lower_fill_rank, 100 * fit["explained"])
        if nothing_to_learn:
            # e.g. a lite filter with learn_maps false: the fill alone, fixed once the mean face is known
            if self.is_main:
                final = self.out / "filter.pt"
                save_checkpoint(make_checkpoint(
                    method="fill", hyperparameters={"learned": False, **dict(cfg.filter.arch)}, config=cfg.to_dict(), epoch=0, step=0,
                    kind=cfg.filter.kind, arch=arch, filter_module=flt, size=size, secret=[cfg.data.secret],
                    utility=[], data=self._data_meta(ds, splits, prior), norm_mean=mean, norm_std=std, resume=None,
                    metrics={}), final)
                log.info("the %s filter has no trainable parameters (filter.arch %s): nothing to train; "
                         "wrote it as built from the training faces to %s", cfg.filter.kind, dict(cfg.filter.arch), final)
            if self.world > 1:
                _barrier()
            return self.out / "filter.pt"
        ctx = MethodContext(device=device, size=size, num_secret_classes=k_secret,
                            secret_prior=torch.from_numpy(prior).to(device), utility=frozen["utility"],
                            fixed_secret=frozen["fixed_secret"], estimator_width=t.estimator_width,
                            adversary_linear_branch=t.adversary_linear_branch, adversary_lr=t.adversary_lr,
                            autocast=autocast, world_size=self.world)
        method = build_method(cfg.method.name, ctx, cfg.method.params)
        opt = torch.optim.Adam(flt.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        n_train = len(splits["train"])
        per_rank = n_train // self.world
        steps_per_epoch = max(1, per_rank // t.batch_size)
        if t.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, t.max_steps_per_epoch)
        total_steps = steps_per_epoch * t.epochs
        if t.lr_schedule == "cosine":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total_steps) / total_steps)))
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
        noise_gen = torch.Generator(device=device).manual_seed(t.seed + 1)

        start_epoch, step = 0, 0
        if self.resume:
            ck = read_checkpoint(last_path)
            r = ck["resume"]
            flt.load_state_dict(ck["filter"]["state_dict"])
            opt.load_state_dict(r["optimizer"])
            sched.load_state_dict(r["scheduler"])
            method.load_state_dict(r["method"])
            noise_gen.set_state(r["noise_rng"])
            torch.set_rng_state(r["torch_rng"])
            if device.type == "cuda" and r.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(r["cuda_rng"], device)
            np.random.set_state(r["numpy_rng"])
            random.setstate(r["python_rng"])
            start_epoch, step = int(ck["epoch"]), int(ck["step"])
            log.info("resuming %s at epoch %d (step %d)", self.out, start_epoch + 1, step)
            if start_epoch >= t.epochs:
                log.info("run already finished (%d epochs)", start_epoch)
        runlog = RunLog(self.out, keep_until_epoch=start_epoch if self.resume else 0) if self.is_main else None

        hyper = {**method.hyperparameters(), "losses": dict(vars(cfg.losses)), "lr": t.lr,
                 "adversary_lr": t.adversary_lr, "batch_size": t.batch_size, "epochs": t.epochs,
                 "adversary_steps": t.adversary_steps}
        utility_names = list(cfg.data.utility) + (["pose"] if frozen["pose"] is not None else []) + \
            (["identity"] if frozen["identity"] is not None else [])
        data_meta = self._data_meta(ds, splits, prior)

        def checkpoint(epoch: int, metrics: Dict[str, Any], with_resume: bool) -> Dict[str, Any]:
            resume_state = None
            if with_resume:
                resume_state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                "method": method.state_dict(), "noise_rng": noise_gen.get_state(),
                                "torch_rng": torch.get_rng_state(),
                                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                "numpy_rng": np.random.get_state(), "python_rng": random.getstate()}
            return make_checkpoint(method=cfg.method.name, hyperparameters=hyper, config=cfg.to_dict(),
                                   epoch=epoch, step=step, kind=cfg.filter.kind, arch=arch, filter_module=flt,
                                   size=size, secret=[cfg.data.secret], utility=utility_names, data=data_meta,
                                   norm_mean=mean, norm_std=std, resume=resume_state, metrics=metrics)

        tr_idx = torch.as_tensor(splits["train"], device=device)
        metrics: Dict[str, Any] = {}
        from tqdm import tqdm

        end_epoch = t.epochs if max_epochs is None else min(t.epochs, start_epoch + int(max_epochs))
        for epoch in range(start_epoch, end_epoch):
            t0 = time.time()
            flt.train()
            order = torch.randperm(n_train, generator=torch.Generator().manual_seed(t.seed * 100003 + epoch))
            order = order[self.rank::self.world].to(device)
            sums: Dict[str, float] = {}
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{t.epochs}", unit="step", leave=False,
                       disable=not self.is_main)
            for i in bar:
                idx = tr_idx[order[i * t.batch_size:(i + 1) * t.batch_size]]
                x = to_x01(images[idx])
                batch = Batch(x=x, s=labels[cfg.data.secret][idx], u={u: labels[u][idx] for u in cfg.data.utility})
                z = torch.randn((x.shape[0], *flt.noise_shape), generator=noise_gen, device=device)
                xin = (x - mean_t) / std_t if cfg.filter.kind == "unet" else x
                with autocast():
                    y = flt(xin, z).float()
                batch.y_detached = y.detach()
                logs: Dict[str, float] = {}
                method.train()
                for _ in range(t.adversary_steps):
                    logs.update(method.adversary_step(batch))
                _requires_grad(method, False)  # the filter step computes no adversary weight gradients
                loss_m, mlogs = method.filter_loss(batch, y)
                logs.update(mlogs)
                if step < t.warmup_steps:  # start the filter near the identity before the adversarial game
                    loss_m = F.mse_loss(y, x) * 100.0
                loss = loss_m + distortion_penalty(y, x, cfg.losses.distortion_eps, cfg.losses.distortion_weight)
                if cfg.losses.region_budgets:
                    region_loss = region_distortion_penalty(y, x, cfg.losses.region_budgets)
                    loss = loss + region_loss
                    logs["region_penalty"] = float(region_loss.detach())
                if cfg.losses.ssim_weight > 0:
                    ssim_loss = ssim_penalty(y, x, cfg.losses.ssim_weight)
                    loss = loss + ssim_loss
                    logs["ssim_penalty"] = float(ssim_loss.detach())
                logs["mse"] = float(distortion_per_image(y.detach(), x).mean())
                if frozen["pose"] is not None:
                    with torch.no_grad():
                        p_ref = frozen["pose"].module(x)
                    pose_loss = F.mse_loss(frozen["pose"].module(y).float(), p_ref.float())
                    loss = loss + cfg.losses.pose_weight * pose_loss
                    logs["pose_mse"] = float(pose_loss.detach())
                if frozen["identity"] is not None:
                    with torch.no_grad():
                        d_ref = frozen["identity"](x)
                    id_loss = ((frozen["identity"](y).float() - d_ref.float()) ** 2).sum(dim=1).mean()
                    loss = loss + cfg.losses.identity_weight * id_loss
                    logs["identity_dist2"] = float(id_loss.detach())
                if not torch.isfinite(loss):
                    raise InputError(f"filter loss became {float(loss)} at epoch {epoch + 1} step {i}; "
                                     "expected a finite loss (lower train.lr or the loss weights)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                _allreduce_grads(flt, self.world)
                opt.step()
                _requires_grad(method, True)
                sched.step()
                step += 1
                logs["loss"] = float(loss.detach())
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{logs['loss']:.3f}")
            train_means = {f"train_{k}": v / steps_per_epoch for k, v in sums.items()}
            val = self.validate(flt, method, frozen, images, labels, splits["val"], mean_t, std_t, device, autocast)
            metrics = {"epoch": epoch + 1, "step": step, "seconds": round(time.time() - t0, 3),
                       "lr": sched.get_last_lr()[0], **train_means, **val}
            if self.is_main:
                log.info("epoch %d/%d: loss %.4f, attacker bacc %.3f AUC %.3f, fixed attacker bacc %.3f "
                         "(clean %.3f), PSNR %.2f dB (%.1f s)", epoch + 1, t.epochs,
                         train_means.get("train_loss", float("nan")), val["val_attacker_bacc"], val["val_attacker_auc"],
                         val["val_fixed_attacker_bacc"], val["val_fixed_attacker_clean_bacc"], val["val_psnr"],
                         metrics["seconds"])
                runlog.write(metrics)
                if epoch == start_epoch and val["val_fixed_attacker_clean_bacc"] < 0.6:
                    # a plain cross-entropy model on imbalanced data can sit on the majority class: its number
                    # on filtered images then says nothing about privacy (privsdk eval trains balanced ones)
                    log.warning("the fixed (clean-trained) %s attacker reaches only %.3f balanced accuracy on clean "
                                "validation images, near chance: 'fixed attacker bacc' will say little; train it "
                                "longer (train.pretrain_epochs) or judge with `privsdk eval`", cfg.data.secret,
                                val["val_fixed_attacker_clean_bacc"])
                if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == end_epoch:
                    save_checkpoint(checkpoint(epoch + 1, metrics, True), last_path)
                    if cfg.method.name == "filtergen":
                        torch.save(method.generator.state_dict(), self.out / "generator.pt")

        final = self.out / "filter.pt"
        if self.is_main:
            if not metrics and runlog.rows:
                metrics = dict(runlog.rows[-1])
            save_checkpoint(checkpoint(max(start_epoch, end_epoch), metrics, False), final)
            runlog.plot(self.out / "curves.png")
            runlog.close()
            log.info("wrote %s", final)
        if self.world > 1:
            _barrier()
        return final

    def _data_meta(self, ds, splits: Dict[str, np.ndarray], prior: np.ndarray) -> Dict[str, Any]:
        """What the checkpoint records about the training data (its manifest's ``data``)."""
        return {"name": ds.name, "root": str(self.cfg.data.root), "size": self.cfg.data.size, "n_images": len(ds),
                "splits": {k: len(v) for k, v in splits.items()}, "splits_file": "splits.json",
                "secret_prior": [float(p) for p in prior], "secret_classes": len(prior),
                "face_crop": self._face_crop(ds.images, splits["train"])}

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, flt, method, frozen, images, labels, idx_np, mean_t, std_t, device, autocast) -> Dict[str, float]:
        """Secret (run attacker, fixed clean attacker) and utility on filtered validation images."""
        cfg = self.cfg
        flt.eval()
        method.eval()
        gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 2)
        idx_all = torch.as_tensor(idx_np, device=device)
        s_true = labels[cfg.data.secret][idx_all].cpu().numpy()
        preds: Dict[str, List[np.ndarray]] = {"attacker": [], "fixed": [], "fixed_clean": []}
        scores: Dict[str, List[np.ndarray]] = {"attacker": [], "fixed": []}
        util_out: Dict[str, List[torch.Tensor]] = {u: [] for u in frozen["utility"]}
        util_clean: Dict[str, List[torch.Tensor]] = {u: [] for u in frozen["utility"]}
        mse_sum, pose_err = 0.0, 0.0
        bs = max(cfg.train.batch_size, 256)
        for i in range(0, len(idx_all), bs):
            idx = idx_all[i:i + bs]
            x = to_x01(images[idx])
            z = torch.randn((x.shape[0], *flt.noise_shape), generator=gen, device=device)
            xin = (x - mean_t) / std_t if cfg.filter.kind == "unet" else x
            with autocast():
                y = flt(xin, z).float()
                att = method.attacker(y).float()
                preds["attacker"].append(att.argmax(1).cpu().numpy())
                scores["attacker"].append(torch.softmax(att, 1).cpu().numpy())
                fix = frozen["fixed_secret"].module(y).float()
                preds["fixed"].append(fix.argmax(1).cpu().numpy())
                scores["fixed"].append(torch.softmax(fix, 1).cpu().numpy())
                preds["fixed_clean"].append(frozen["fixed_secret"].module(x).float().argmax(1).cpu().numpy())
                for u, m in frozen["utility"].items():
                    util_out[u].append(m.module(y).float().cpu())
                    util_clean[u].append(m.module(x).float().cpu())
                if frozen["pose"] is not None:
                    pose_err += float((frozen["pose"].module(y).float() - frozen["pose"].module(x).float())
                                      .abs().mean(dim=1).sum())
            mse_sum += float(distortion_per_image(y, x).sum())
        n = len(idx_all)
        out = {"val_attacker_bacc": balanced_accuracy(np.concatenate(preds["attacker"]), s_true),
               "val_attacker_auc": roc_auc(np.concatenate(scores["attacker"]), s_true),
               "val_fixed_attacker_bacc": balanced_accuracy(np.concatenate(preds["fixed"]), s_true),
               "val_fixed_attacker_auc": roc_auc(np.concatenate(scores["fixed"]), s_true),
               "val_fixed_attacker_clean_bacc": balanced_accuracy(np.concatenate(preds["fixed_clean"]), s_true),
               "val_mse": mse_sum / n, "val_psnr": psnr(mse_sum / n)}
        for u, m in frozen["utility"].items():
            truth = labels[u][idx_all].cpu()
            o, c = torch.cat(util_out[u]), torch.cat(util_clean[u])
            if m.kind == "class":
                out[f"val_utility_{u}_bacc"] = balanced_accuracy(o.argmax(1).numpy(), truth.numpy())
                out[f"val_utility_{u}_clean_bacc"] = balanced_accuracy(c.argmax(1).numpy(), truth.numpy())
            else:
                out[f"val_utility_{u}_mae"] = float((o.view(-1) - truth.float()).abs().mean())
                out[f"val_utility_{u}_clean_mae"] = float((c.view(-1) - truth.float()).abs().mean())
        if frozen["pose"] is not None:
            out["val_pose_change_mae"] = pose_err / n
        return out
