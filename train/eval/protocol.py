"""The evaluation protocol of privsdk (DESIGN.md, "How privacy and utility are measured").

For a fixed filter and a data split:

1. **Clean reference**: each attacker architecture trained and tested on clean
   images (the "clean" row), and chance (0.5 balanced accuracy; the
   majority-class rate beside it).
2. **Retrained attackers** (paper 003's verification protocol): each
   architecture trained from scratch on filtered training images (re-filtered
   every epoch when the filter is stochastic), early-stopped on filtered
   validation images, each trained ``restarts`` times from different seeds
   with the lowest validation loss kept, scored on filtered test images
   (balanced accuracy, AUC);
   and a logistic regression on the pixels fit to convergence, its L2 weight
   picked on the validation loss (``logistic``; deterministic where SGD's early
   stop is not). The strongest attacker is the headline; leakage in bits is
   H(S) − its calibrated test cross-entropy (a lower bound on I(S; Y));
   InfoScrub's mean attacker entropy (bits) is reported beside it.
3. **Fixed attackers**: the clean-trained attackers applied to filtered test images.
4. **Utility**: PSNR / SSIM against the originals; when the data has head pose
   (GENKI-4K), a clean-trained pose regressor applied unchanged to filtered
   images (MAE in degrees, and its ratio to the clean MAE) and one retrained on
   filtered images; identity by dlib's unchanged descriptor (optional): kept
   (filtered vs. its own original) and verification across people (a filtered
   probe vs. clean enrolled photos of the same / another person).
5. **Bounds** (paper 000): with a categorical utility label (the yaw tercile on
   GENKI-4K), Lemma 2.2 / 2.3 from the secret × utility contingency table, and
   each filter's empirical point (I(S; Y), I(U; X | Y)) in nats, I(U; X | Y)
   estimated by a utility classifier retrained on filtered images.
6. **Pose floor**: the secret predicted from the head pose alone (the pose labels
   when the data has them, else the head's roll and shift registered from
   the upper face): what a filter that keeps the pose cannot hide
   (:mod:`.pose_floor`).

Example::

    from privsdk.train.eval import EvalData, ProtocolSettings, baseline, evaluate
    data = EvalData.from_arrays("toy", images, {"smile": labels}, secret="smile")
    report = evaluate([baseline("identity"), baseline("blur", 4)], data, ProtocolSettings(quick=True))
    report["results"][1]["privacy"]["worst_attacker"]["balanced_accuracy"]
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from privsdk.errors import DependencyError, InputError
from privsdk.log import get_logger

from . import bounds as bounds_mod
from . import report as report_mod
from .filters import FilterUnderEval, check_images, level_only
from .metrics import (balanced_accuracy, classification_metrics, image_fidelity, label_entropy_bits,
                      majority_rate)
from .training import TrainedModel, TrainSettings, fit_logistic, pick_device, train_model
from .verification import LabelledFaces

_log = get_logger(__name__)
SPLITS = ("train", "val", "test")
POSE = ("yaw", "pitch", "roll")
LN2 = float(np.log(2.0))
REPORT_FORMAT = "privsdk-eval-report/1"


# ------------------------------------------------------------------ data

@dataclass
class EvalData:
    """Images and labels of the three splits (uint8 N×H×W×3 RGB), plus where they came from."""

    name: str
    secret: str
    images: Dict[str, np.ndarray]
    labels: Dict[str, Dict[str, np.ndarray]]
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in SPLITS:
            if split not in self.images or split not in self.labels:
                raise InputError(f"EvalData {self.name}: split {split!r} is missing; expected {SPLITS}")
            check_images(self.images[split], f"{self.name} {split} images")
            if self.secret not in self.labels[split]:
                raise InputError(f"EvalData {self.name}: split {split} has no secret label {self.secret!r}; "
                                 f"has {sorted(self.labels[split])}")
            for key, v in self.labels[split].items():
                if len(v) != len(self.images[split]):
                    raise InputError(f"EvalData {self.name}: {split} label {key!r} has {len(v)} values for "
                                     f"{len(self.images[split])} images; expected one per image")

    @classmethod
    def from_arrays(cls, name: str, images: np.ndarray, labels: Dict[str, np.ndarray], secret: str,
                    fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                    indices: Optional[Dict[str, np.ndarray]] = None) -> "EvalData":
        """Split in-memory arrays (stratified on the secret) or use the given ``indices`` per split."""
        images = check_images(images)
        if indices is None:
            indices = stratified_split(np.asarray(labels[secret]), fractions, seed)
        return cls(name=name, secret=secret,
                   images={s: images[indices[s]] for s in SPLITS},
                   labels={s: {k: np.asarray(v)[indices[s]] for k, v in labels.items()} for s in SPLITS},
                   info={"split": {s: np.asarray(indices[s]).tolist() for s in SPLITS},
                         "fractions": list(fractions), "seed": seed})

    @classmethod
    def from_dataset(cls, dataset: Any, splits: Dict[str, np.ndarray], secret: str,
                     test_dataset: Any = None, test_splits: Optional[Dict[str, np.ndarray]] = None) -> "EvalData":
        """From ``privsdk.train.data`` data sets; a ``test_dataset`` gives a cross-set evaluation
        (attackers trained on ``dataset``'s filtered images, tested on ``test_dataset``'s)."""
        images = {s: dataset.images[np.asarray(splits[s])] for s in ("train", "val")}
        labels = {s: {k: np.asarray(v)[np.asarray(splits[s])] for k, v in dataset.labels.items()}
                  for s in ("train", "val")}
        src, src_splits = (dataset, splits) if test_dataset is None else (test_dataset, test_splits)
        if src_splits is None:
            raise InputError("from_dataset: a test_dataset needs its test_splits")
        idx = np.asarray(src_splits["test"])
        images["test"] = src.images[idx]
        labels["test"] = {k: np.asarray(v)[idx] for k, v in src.labels.items()}
        if test_dataset is not None:  # only labels both sets share are comparable
            shared = set(labels["train"]) & set(labels["test"])
            labels = {s: {k: v for k, v in labels[s].items() if k in shared} for s in SPLITS}
        name = dataset.name if test_dataset is None else f"{dataset.name}->{test_dataset.name}"
        info = {"train_set": dataset.name, "test_set": src.name,
                "split": {s: np.asarray(splits[s]).tolist() for s in ("train", "val")}}
        info["split"]["test"] = idx.tolist()
        return cls(name=name, secret=secret, images=images, labels=labels, info=info)

    def subset(self, max_per_split: int, seed: int = 0) -> "EvalData":
        """At most ``max_per_split`` images per split (stratified on the secret), for quick runs."""
        rng = np.random.default_rng(seed)
        images, labels, kept = {}, {}, {}
        for s in SPLITS:
            n = len(self.images[s])
            if n <= max_per_split:
                idx = np.arange(n)
            else:
                y = self.labels[s][self.secret]
                idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c),
                                                         max(1, int(round(max_per_split * np.mean(y == c)))),
                                                         replace=False) for c in np.unique(y)]))
            images[s] = self.images[s][idx]
            labels[s] = {k: v[idx] for k, v in self.labels[s].items()}
            kept[s] = idx.tolist()
        return EvalData(self.name, self.secret, images, labels, {**self.info, "subset": kept})

    def held_out(self, seed: int = 0) -> "EvalData":
        """The attackers' faces moved off the filter's training split (``privsdk eval --held-out-attacker``).

        The protocol trains its attackers on the filtered *training* images: the faces a filter's network
        was trained on and its closed-form stages (the linear eraser) were fit on. A stage fit so can hide
        the secret on those faces better than on any other, and an attacker with faces of their own does
        not train on ours (``docs/design-changes.md`` #22). Here the attackers train on the validation
        split, are early-stopped on one stratified half of the test split and scored on the other half.
        """
        rng = np.random.default_rng(seed)
        y = np.asarray(self.labels["test"][self.secret])
        if len(y) < 4:
            raise InputError(f"EvalData {self.name}: --held-out-attacker halves the test split, which has {len(y)} "
                             "images; expected at least 4")
        first = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[: (int(np.sum(y == c)) + 1) // 2]
                                        for c in np.unique(y)]))
        second = np.setdiff1d(np.arange(len(y)), first)
        picks = {"train": ("val", slice(None)), "val": ("test", first), "test": ("test", second)}
        images = {s: self.images[src][idx] for s, (src, idx) in picks.items()}
        labels = {s: {k: np.asarray(v)[idx] for k, v in self.labels[src].items()} for s, (src, idx) in picks.items()}
        info = {**self.info, "held_out": {
            "attackers_trained_on": "the val split: faces no filter stage was fit on",
            "early_stopped_on": "one stratified half of the test split", "scored_on": "the other half",
            "seed": seed, "val_from_test": first.tolist(), "test_from_test": second.tolist()}}
        return EvalData(self.name, self.secret, images, labels, info)

    def describe(self) -> Dict[str, Any]:
        y = {s: self.labels[s][self.secret].astype(np.int64) for s in SPLITS}
        return {"name": self.name, "secret": self.secret, "image_size": list(self.images["train"].shape[1:3]),
                "sizes": {s: int(len(self.images[s])) for s in SPLITS},
                "positives": {s: int((y[s] == 1).sum()) for s in SPLITS},
                "labels": sorted(self.labels["train"]), **self.info}


def stratified_split(labels: np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                     seed: int = 0) -> Dict[str, np.ndarray]:
    """Deterministic stratified train/val/test indices (for in-memory arrays)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise InputError(f"fractions: expected three positive numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: Dict[str, List[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {s: np.sort(np.concatenate(parts[s])) for s in SPLITS}


# ------------------------------------------------------------------ settings

@dataclass
class ProtocolSettings:
    """What the protocol runs; every field is recorded in ``report["protocol"]``."""

    attackers: Sequence[str] = ("cnn", "linear", "logistic")
    train: TrainSettings = field(default_factory=TrainSettings)
    quick: bool = False
    fixed_attackers: bool = True
    pose: bool = True                      # when the data has yaw/pitch/roll
    retrain_utility: bool = True           # utility models retrained on filtered images
    identity: Optional[bool] = None        # None: when dlib is installed
    identity_faces: int = 200
    bounds: bool = True                    # when a categorical utility label exists
    pose_floor: bool = True                # the secret read from the pose alone (pose_floor.py)
    # every SGD-trained attacker (cnn, linear) is trained this many times from different seeds and the run with
    # the lowest validation loss is kept: one run's reading depends on where its noisy validation loss dipped
    # (one filter's CNN read 0.56-0.66 over seeds), and an attacker who retrains would retrain more than once
    restarts: int = 3
    utility_label: Optional[str] = None    # None: "yaw_tercile" when yaw is present
    seed: int = 0
    progress: bool = True

    @classmethod
    def quick_settings(cls, **overrides: Any) -> "ProtocolSettings":
        """Few epochs, small models: a smoke run, not a measurement."""
        train = TrainSettings(max_epochs=4, patience=2, width=8, batch_size=64, min_steps_per_epoch=5)
        base = dict(quick=True, train=train, identity_faces=20, restarts=1)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["attackers"] = list(self.attackers)
        return d


# ------------------------------------------------------------------ helpers

def _yaw_terciles(data: EvalData) -> Optional[Dict[str, np.ndarray]]:
    if "yaw" not in data.labels["train"] or "yaw" not in data.labels["test"]:
        return None
    edges = np.quantile(data.labels["train"]["yaw"], [1 / 3, 2 / 3])
    return {s: np.digitize(data.labels[s]["yaw"], edges).astype(np.int64) for s in SPLITS}


def _pose_targets(data: EvalData, split: str) -> np.ndarray:
    return np.stack([np.asarray(data.labels[split][k], np.float64) for k in POSE], axis=1)


def _pose_mae_degrees(model: TrainedModel, images: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
    err = np.degrees(np.abs(model.predict(images) - targets)).mean(axis=0)
    return {**{k: float(e) for k, e in zip(POSE, err)}, "mean": float(err.mean())}


def _attack(model: TrainedModel, images: np.ndarray, labels: np.ndarray) -> Dict[str, Any]:
    return classification_metrics(labels, model.predict_proba(images), model.predict_balanced(images))


def _pose_floor(data: EvalData) -> Dict[str, Any]:
    from .pose_floor import secret_from_pose

    started = time.time()
    floor = secret_from_pose(data.images, data.labels, data.secret)
    _log.info("pose floor: the secret read from the %s alone at balanced accuracy %.3f (AUC %.3f)",
              floor["source"], floor["balanced_accuracy"], floor["auc"])
    return {**floor, "seconds": round(time.time() - started, 2)}


def _has_pose(data: EvalData) -> bool:
    return all(k in data.labels[s] for k in POSE for s in SPLITS)


# ------------------------------------------------------------------ the protocol

class Evaluator:
    """Runs the protocol on one data split; clean reference models are trained once and shared."""

    def __init__(self, data: EvalData, settings: Optional[ProtocolSettings] = None,
                 identity_set: Optional[LabelledFaces] = None) -> None:
        self.data = data
        self.s = settings or ProtocolSettings()
        self.s.train.device = pick_device(self.s.train.device if self.s.train.device != "cpu" else None)
        self.y = {sp: data.labels[sp][data.secret].astype(np.int64) for sp in SPLITS}
        self.utility_labels = None
        if self.s.bounds:
            if self.s.utility_label:
                self.utility_labels = {sp: data.labels[sp][self.s.utility_label].astype(np.int64) for sp in SPLITS}
            else:
                self.utility_labels = _yaw_terciles(data)
        self._clean: Optional[Dict[str, Any]] = None
        self._levelled_cache: Dict[str, np.ndarray] = {}   # test faces turned level, per levelling bundle
        self.identity_set = identity_set
        self._identity: Any = None   # identity.IdentityEvaluator, built on first use (dlib is optional)

    def _settings(self, offset: int) -> TrainSettings:
        return TrainSettings(**{**self.s.train.to_dict(), "seed": self.s.seed + offset})

    def _train_attacker(self, arch: str, flt: Optional[FilterUnderEval], val_images: np.ndarray, desc: str,
                        offset: int, test_images: np.ndarray) -> Tuple[TrainedModel, Dict[str, Any]]:
        """The attacker ``arch`` retrained ``restarts`` times (seeds apart by 1000), the lowest validation loss kept.

        Returns the kept model and its report entry: test metrics, its training, and every restart's best
        validation loss and test balanced accuracy (the spread the kept run was drawn from).
        """
        n = 1 if arch == "logistic" else max(1, int(self.s.restarts))
        runs = []
        for r in range(n):
            label = desc if n == 1 else f"{desc} (run {r + 1}/{n})"
            m = self._train(arch, "classify", self.y, flt, val_images, label, offset + 1000 * r)
            runs.append((min(m.history) if m.history else np.inf, r, m))
        _, kept_index, kept = min(runs, key=lambda t: (t[0], t[1]))
        tested = [_attack(m, test_images, self.y["test"]) for _, _, m in runs]
        entry = {**tested[kept_index], "training": kept.summary()}
        if n > 1:
            entry["restarts"] = [{"seed": self.s.seed + offset + 1000 * r, "best_val_loss": round(float(v), 6),
                                  "best_epoch": m.best_epoch, "kept": r == kept_index,
                                  "test_balanced_accuracy": tested[r]["balanced_accuracy"]}
                                 for v, r, m in runs]
        return kept, entry

    def _train(self, arch: str, task: str, targets: Dict[str, np.ndarray], flt: Optional[FilterUnderEval],
               val_images: np.ndarray, desc: str, offset: int) -> TrainedModel:
        if arch == "logistic":
            if task != "classify":
                raise InputError(f"the logistic attacker classifies; {task!r} needs 'cnn' or 'linear'")
            return fit_logistic(self.data.images["train"], targets["train"], val_images, targets["val"],
                                filter_fn=flt, settings=self._settings(offset))
        return train_model(arch, task, self.data.images["train"], targets["train"], val_images, targets["val"],
                           filter_fn=flt, refilter=bool(flt is not None and flt.stochastic),
                           settings=self._settings(offset), desc=desc, progress=self.s.progress)

    # -- clean reference
    def clean(self) -> Dict[str, Any]:
        """Clean attackers (= the fixed attackers), clean utility models, chance and label entropy."""
        if self._clean is not None:
            return self._clean
        d, imgs = self.data, self.data.images
        out: Dict[str, Any] = {"attackers": {}, "models": {}}
        for i, arch in enumerate(self.s.attackers):
            out["models"][arch], out["attackers"][arch] = self._train_attacker(
                arch, None, imgs["val"], f"clean {arch} attacker", i, imgs["test"])
        best = max(out["attackers"], key=lambda a: out["attackers"][a]["balanced_accuracy"])
        out["worst_attacker"] = {"arch": best, **{k: out["attackers"][best][k] for k in
                                                  ("balanced_accuracy", "auc", "leakage_bits")}}
        if self.s.pose and _has_pose(d):
            targets = {sp: _pose_targets(d, sp) for sp in SPLITS}
            m = self._train("cnn", "regress", targets, None, imgs["val"], "clean pose regressor", 100)
            out["models"]["pose"] = m
            out["pose_mae_deg"] = _pose_mae_degrees(m, imgs["test"], targets["test"])
            # the "chance" of pose: always predicting the training mean
            err = np.degrees(np.abs(targets["train"].mean(0) - targets["test"])).mean(0)
            out["pose_mae_deg_mean_predictor"] = {**{k: float(e) for k, e in zip(POSE, err)}, "mean": float(err.mean())}
            out["pose_training"] = m.summary()
        if self.utility_labels is not None:
            m = self._train("cnn", "classify", self.utility_labels, None, imgs["val"], "clean utility classifier", 200)
            out["models"]["utility"] = m
            out["utility_classifier"] = {**_attack(m, imgs["test"], self.utility_labels["test"]),
                                         "training": m.summary()}
        self._clean = out
        return out

    def _identity_metric(self, flt: FilterUnderEval, filtered_test: np.ndarray) -> Optional[Dict[str, Any]]:
        want = self.s.identity
        if want is False:
            return None
        from . import identity as ident

        if self._identity is None:
            try:
                descriptor = ident.DlibDescriptor()
            except DependencyError as exc:
                if want:
                    raise
                _log.warning("identity metric skipped: %s", exc)
                self.s.identity = False
                return None
            self._identity = ident.IdentityEvaluator(descriptor, self.data.images["test"], self.s.identity_faces,
                                                     seed=self.s.seed, labelled=self.identity_set)
        return self._identity(flt, filtered_test)

    # -- one filter
    def evaluate_filter(self, flt: FilterUnderEval) -> Dict[str, Any]:
        """Every number of the protocol for one filter (the clean reference is trained on first use)."""
        clean = self.clean()
        d, imgs = self.data, self.data.images
        started = time.time()
        val_f, test_f = flt(imgs["val"]), flt(imgs["test"])
        attackers: Dict[str, Any] = {}
        for i, arch in enumerate(self.s.attackers):
            _, attackers[arch] = self._train_attacker(arch, flt, val_f, f"{flt.name}: {arch} attacker", 10 + i,
                                                      test_f)
        privacy = report_mod.retrained_privacy(attackers)
        if self.s.fixed_attackers:
            privacy["fixed_attackers"] = {arch: _attack(clean["models"][arch], test_f, self.y["test"])
                                          for arch in self.s.attackers}
        utility: Dict[str, Any] = {"fidelity": image_fidelity(imgs["test"], test_f)}
        level = flt.info.get("level_head")
        if level:   # a levelling filter: also what it paints, apart from the turn it gives every face
            utility["fidelity_to_levelled"] = {**image_fidelity(self._levelled_test(level.get("bundle")
                                                                                    or flt.info["source"]), test_f),
                                               "reference": "the test faces turned level by the filter's own "
                                                            "registration, nothing else"}
        if "pose" in clean["models"]:
            targets = {sp: _pose_targets(d, sp) for sp in SPLITS}
            fixed = _pose_mae_degrees(clean["models"]["pose"], test_f, targets["test"])
            pose: Dict[str, Any] = {"clean_mae_deg": clean["pose_mae_deg"], "fixed_mae_deg": fixed,
                                    "mean_predictor_mae_deg": clean["pose_mae_deg_mean_predictor"],
                                    "fixed_mae_ratio": fixed["mean"] / max(clean["pose_mae_deg"]["mean"], 1e-9)}
            if self.s.retrain_utility:
                m = self._train("cnn", "regress", targets, flt, val_f, f"{flt.name}: pose regressor", 110)
                pose["retrained_mae_deg"] = _pose_mae_degrees(m, test_f, targets["test"])
                pose["retrained_training"] = m.summary()
            utility["pose"] = pose
        ident = self._identity_metric(flt, test_f)
        if ident is not None:
            utility["identity"] = ident
        result: Dict[str, Any] = {"filter": flt.describe(), "privacy": privacy, "utility": utility}
        if self.utility_labels is not None:
            result["tradeoff_nats"] = self._tradeoff_point(flt, val_f, test_f, privacy["leakage_bits"])
        result["seconds"] = round(time.time() - started, 2)
        return result

    def _levelled_test(self, bundle: str) -> np.ndarray:
        """The test faces turned level by ``bundle``'s registration (once per bundle)."""
        if bundle not in self._levelled_cache:
            self._levelled_cache[bundle] = level_only(bundle)(self.data.images["test"])
        return self._levelled_cache[bundle]

    def _tradeoff_point(self, flt: FilterUnderEval, val_f: np.ndarray, test_f: np.ndarray,
                        leakage_bits: float) -> Dict[str, Any]:
        u = self.utility_labels
        table = bounds_mod.contingency_table(u["train"], self.y["train"])
        fixed = self._clean["models"]["utility"]  # type: ignore[index]
        fixed_bacc = balanced_accuracy(u["test"], fixed.predict_balanced(test_f).argmax(1))
        point: Dict[str, Any] = {"I_SY_lower_nats": leakage_bits * LN2,
                                 "lemma22_min_I_UX_given_Y": float(bounds_mod.lemma22_lower_bound(table, leakage_bits * LN2)),
                                 "fixed_utility_balanced_accuracy": fixed_bacc}
        if self.s.retrain_utility:
            m = self._train("cnn", "classify", u, flt, val_f, f"{flt.name}: utility classifier", 210)
            met = _attack(m, test_f, u["test"])
            point["I_UX_given_Y_upper_nats"] = met["cross_entropy_bits"] * LN2   # H(U|Y) ≤ CE
            point["retrained_utility_balanced_accuracy"] = met["balanced_accuracy"]
        return point

    def chance(self) -> Dict[str, float]:
        return {"balanced_accuracy": 0.5 if len(np.unique(self.y["test"])) == 2 else
                1.0 / len(np.unique(self.y["test"])),
                "auc": 0.5, "majority_rate": majority_rate(self.y["test"]),
                "label_entropy_bits": label_entropy_bits(self.y["train"])}


def evaluate(filters: Sequence[FilterUnderEval], data: EvalData, settings: Optional[ProtocolSettings] = None,
             primary: Optional[FilterUnderEval] = None, identity_set: Optional[LabelledFaces] = None
             ) -> Dict[str, Any]:
    """Run the whole protocol on ``filters`` (filters under test and baselines) → the report dict.

    ``primary`` (default: the first non-baseline filter, else the first) is the one whose
    description, with its file hashes, goes into ``report["filter"]``. ``identity_set``
    (faces with identity labels) makes the identity verification use labelled pairs;
    without it, pairs of different test photos stand for different people.
    """
    from tqdm.auto import tqdm

    from .report import versions

    if not filters:
        raise InputError("evaluate: expected at least one filter (a checkpoint, a bundle or a baseline)")
    s = settings or ProtocolSettings()
    started = time.time()
    ev = Evaluator(data, s, identity_set)
    clean = ev.clean()
    results = [ev.evaluate_filter(f) for f in tqdm(filters, desc="filters", disable=not s.progress)]
    if primary is None:
        primary = next((f for f in filters if f.kind != "baseline"), filters[0])
    report: Dict[str, Any] = {
        "format": REPORT_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "protocol": {
            "description": "privsdk eval: fresh attackers trained on filtered train images (re-filtered every "
                           "epoch when stochastic), early-stopped on filtered val images (patience), each SGD-trained "
                           "attacker trained `restarts` times and the lowest val loss kept, plus a logistic "
                           "regression on pixels fit to convergence (L2 picked on val loss), scored on "
                           "filtered test images; balanced accuracy and AUC; worst attacker is the headline "
                           "(paper 003 verification protocol). Leakage bits = H(S) - calibrated test "
                           "cross-entropy (prior-corrected, temperature fitted on val). Bounds: paper 000 "
                           "Lemmas 2.2/2.3 in nats. Identity (dlib, unchanged): share of filtered faces within "
                           "0.6 of their original; verification of a filtered probe against clean enrolled "
                           "photos, balanced genuine/impostor pairs (labelled with --identity-data, else "
                           "different test photos taken as different people), accuracy at 0.6, best-threshold "
                           "accuracy (threshold chosen on the same pairs) and AUC, beside the clean probe.",
            "settings": s.to_dict(),
        },
        "versions": versions(),
        "data": data.describe(),
        "chance": ev.chance(),
        "clean": {k: v for k, v in clean.items() if k != "models"},
        "filter": primary.describe(),
        "results": results,
        "seconds": round(time.time() - started, 2),
    }
    if ev.utility_labels is not None:
        table = bounds_mod.contingency_table(ev.utility_labels["train"], ev.y["train"])
        report["bounds"] = {"utility_label": s.utility_label or "yaw_tercile",
                            **bounds_mod.tradeoff_bounds(table)}
    # cross-set, the floor would mix two sets' pose statistics: it is measured on each set alone
    if s.pose_floor and data.info.get("train_set", data.name) == data.info.get("test_set", data.name):
        report["pose_floor"] = _pose_floor(data)
    report["summary"] = report_mod.headline(report)
    report["unsaturated_models"] = report_mod.unsaturated_models(report)
    if report["unsaturated_models"]:
        _log.warning("%d model(s) stopped at the %d-epoch cap while maybe still learning (%s): their figures may "
                     "understate an attacker or the clean baseline; raise --max-epochs",
                     len(report["unsaturated_models"]), s.train.max_epochs, ", ".join(report["unsaturated_models"]))
    return report
