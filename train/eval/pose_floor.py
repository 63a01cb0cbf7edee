"""How well the head pose alone predicts the secret: the floor under a filter that keeps the pose.

A filter judged on keeping the face "in the same pose" must leave the pose readable, so an
attacker that reads only the pose can never be pushed below what the pose itself says about
the secret. On face sets this is not chance: people tilt their heads when they smile for a
photo. This module measures that floor from the data, before any filter:

- **From pose labels** (GENKI-4K's yaw, pitch, roll): a classifier that sees only the three
  angles.
- **From the head's geometry in the crop** (sets without pose labels, e.g. SMILEsmileD): the
  roll and shift of each face's upper half, found by registering it (OpenCV's ECC, a rotation
  and a shift) onto the mean face of the training split. Only the upper half is registered so
  that the mouth, where the smile is drawn, does not move the estimate. (A full affine
  registration lost a quarter of SMILEsmileD's faces to implausible scales and shears; the
  scale it found carried nothing of the smile.)

The classifier is a class-weighted logistic regression on the standardized features, their
squares and pairwise products (a quadratic boundary: a tilt either way can mean a smile),
its weight decay picked on the validation split by balanced accuracy, scored on the test split.

Example::

    import numpy as np
    from privsdk.train.eval.pose_floor import secret_from_features
    rng = np.random.default_rng(0)
    y = {s: rng.integers(0, 2, n) for s, n in (("train", 400), ("val", 100), ("test", 100))}
    roll = {s: 3.0 * (2 * v - 1) + rng.normal(0, 3, len(v)) for s, v in y.items()}
    floor = secret_from_features({s: r[:, None] for s, r in roll.items()}, y, ["roll"])
    floor["balanced_accuracy"]          # 0.92: this "pose" gives the secret away
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from privsdk.errors import InputError
from privsdk.regions.level import HeadLeveller

from .metrics import classification_metrics
from .training import _softmax, lbfgs_logistic

SPLITS = ("train", "val", "test")
GEOMETRY_FEATURES = ("roll_deg", "shift_x_px", "shift_y_px")
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)


def quadratic_features(features: np.ndarray) -> np.ndarray:
    """``[f, f², f_i·f_j (i < j)]`` of an N×D feature array."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise InputError(f"features: expected an N×D array, got shape {f.shape}")
    pairs = [f[:, i] * f[:, j] for i in range(f.shape[1]) for j in range(i + 1, f.shape[1])]
    return np.concatenate([f, f ** 2] + ([np.stack(pairs, axis=1)] if pairs else []), axis=1)


def secret_from_features(features: Dict[str, np.ndarray], labels: Dict[str, np.ndarray],
                         names: Sequence[str]) -> Dict[str, Any]:
    """Balanced accuracy and AUC of the secret predicted from a few features (e.g. the pose).

    Args:
        features: per split (``train``, ``val``, ``test``) an N×D array; non-finite rows are
            replaced by the training medians (a failed estimate carries no information).
        labels: per split the secret's class indices (0..K-1).
        names: the D feature names, recorded in the result.

    Returns:
        ``{"balanced_accuracy", "auc", "val_balanced_accuracy", "weight_decay", "features",
        "model", "n_train", "n_test"}``; the test split's numbers.
    """
    for s in SPLITS:
        if s not in features or s not in labels:
            raise InputError(f"secret_from_features: expected features and labels for the splits {SPLITS}; "
                             f"{s!r} is missing")
        if len(features[s]) != len(labels[s]) or len(labels[s]) == 0:
            raise InputError(f"secret_from_features: split {s!r} has {len(features[s])} feature rows and "
                             f"{len(labels[s])} labels; expected the same non-zero number")
    raw = {s: np.asarray(features[s], dtype=np.float64).reshape(len(features[s]), -1) for s in SPLITS}
    if raw["train"].shape[1] != len(names):
        raise InputError(f"secret_from_features: {raw['train'].shape[1]} feature columns but {len(names)} names")
    finite = np.isfinite(raw["train"])
    median = np.array([np.median(raw["train"][finite[:, j], j]) if finite[:, j].any() else 0.0
                       for j in range(raw["train"].shape[1])])
    for s in SPLITS:
        raw[s] = np.where(np.isfinite(raw[s]), raw[s], median)
    quad = {s: quadratic_features(raw[s]) for s in SPLITS}
    mean, std = quad["train"].mean(axis=0), quad["train"].std(axis=0) + 1e-9
    x = {s: (quad[s] - mean) / std for s in SPLITS}
    y = {s: np.asarray(labels[s]).astype(np.int64) for s in SPLITS}
    classes = int(max(v.max() for v in y.values())) + 1
    if len(np.unique(y["train"])) < 2:
        raise InputError("secret_from_features: the training split has one class; expected at least two")
    best: Optional[Dict[str, Any]] = None
    for wd in WEIGHT_DECAYS:
        w, b, _ = lbfgs_logistic(x["train"], y["train"], classes, wd)
        val = classification_metrics(y["val"], _softmax(x["val"] @ w + b))["balanced_accuracy"]
        if best is None or val > best["val"]:
            best = {"val": val, "wd": wd, "w": w, "b": b}
    assert best is not None
    test = classification_metrics(y["test"], _softmax(x["test"] @ best["w"] + best["b"]))
    return {"balanced_accuracy": test["balanced_accuracy"], "auc": test["auc"],
            "val_balanced_accuracy": float(best["val"]), "weight_decay": best["wd"],
            "features": list(names), "model": "class-weighted logistic regression on the features, "
            "their squares and pairwise products (weight decay picked on val)",
            "n_train": int(len(y["train"])), "n_test": int(len(y["test"]))}


def _grey(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim not in (3, 4) or x.shape[0] == 0:
        raise InputError(f"head_geometry: expected N×H×W or N×H×W×C images with N > 0, got shape {x.shape}")
    # uint8 is 0-255; a float array is taken as 0-1 unless its values say 0-255
    unit = 255.0 if x.dtype == np.uint8 or (x.size and float(np.nanmax(x)) > 1.5) else 1.0
    x = x.astype(np.float32)
    if x.ndim == 4:
        x = x.mean(axis=3)
    return x / unit


def head_geometry(images: np.ndarray, template: Optional[np.ndarray] = None,
                  upper_share: float = 0.5) -> np.ndarray:
    """Roll and shift of each face's upper part against a template face (N×3, NaN where ECC fails).

    The registration is the runtime's own (:class:`privsdk.regions.level.HeadLeveller`), the one a
    levelling bundle runs on camera faces.

    Args:
        images: N×H×W(×C) uint8 (0-255) or float (0-1) face crops.
        template: H×W grey face in the same range; default the images' mean.
        upper_share: the top share of rows that is registered (0.5: down to the nose tip on
            aligned crops, above the mouth).

    Returns:
        float64 N×3: roll in degrees (positive: the face turned clockwise in the picture) and the
        shift of the crop's centre in x and y in pixels (:data:`GEOMETRY_FEATURES`, against the
        template); a row is NaN when the registration fails or lands
        implausibly far (|roll| > 30°, shift beyond an eighth of the side).
    """
    x = _grey(images)
    n, h, w = x.shape
    t = x.mean(axis=0) if template is None else _grey(np.asarray(template)[None])[0]
    if t.shape != (h, w):
        raise InputError(f"head_geometry: template is {t.shape}, images are {(h, w)}; expected the same size")
    if not 0.1 <= upper_share <= 1.0:
        raise InputError(f"head_geometry: upper_share {upper_share} is invalid; expected 0.1-1")
    leveller = HeadLeveller(np.clip(t, 0.0, 1.0), upper_share)
    out = np.full((n, len(GEOMETRY_FEATURES)), np.nan)
    for i in range(n):
        found = leveller.register(x[i])
        if found is not None:
            out[i] = found
    return out


def level_heads(images: np.ndarray, template: np.ndarray, upper_share: float = 0.5) -> np.ndarray:
    """Each face turned back by its registered roll (:func:`head_geometry`): its eyes sit level like the template's.

    The way through the pose floor, at the cost of the pose: what a levelling bundle does to each face
    before hiding the rest (it is the runtime's :meth:`privsdk.regions.level.HeadLeveller.crop` on the
    whole image). A face whose registration fails is returned as it is. Turns about the crop's centre,
    edges replicated.

    Args:
        images: N×H×W×C (or N×H×W) uint8 face crops.
        template: H×W grey face (0-1 or 0-255), e.g. the training split's mean face.

    Returns:
        uint8 array of the images' shape.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise InputError(f"level_heads: expected uint8 images, got {x.dtype}")
    t = _grey(np.asarray(template)[None])[0]
    if t.shape != x.shape[1:3]:
        raise InputError(f"level_heads: template is {t.shape}, images are {x.shape[1:3]}; expected the same size")
    leveller = HeadLeveller(np.clip(t, 0.0, 1.0), upper_share)
    out = np.empty_like(x)
    for i in range(len(x)):
        leveller.crop(np.ascontiguousarray(x[i]), None, out=out[i])
    return out


def secret_from_pose(images: Dict[str, np.ndarray], labels: Dict[str, Dict[str, np.ndarray]],
                     secret: str) -> Dict[str, Any]:
    """The floor: the secret read from the pose labels when the data has them, else from the head's geometry.

    Args:
        images: per split the face crops (only used without pose labels).
        labels: per split the label arrays, with ``secret`` and, when present, ``yaw``/``pitch``/``roll``
            (radians).
        secret: the secret label's name.

    Returns:
        :func:`secret_from_features`'s result, plus ``"source"`` (``"pose labels"`` or
        ``"head geometry"``) and, for the geometry, the share of faces whose registration failed.
    """
    y = {s: labels[s][secret] for s in SPLITS}
    pose_names = ("yaw", "pitch", "roll")
    if all(k in labels[s] for k in pose_names for s in SPLITS):
        feats = {s: np.degrees(np.stack([np.asarray(labels[s][k], np.float64) for k in pose_names], axis=1))
                 for s in SPLITS}
        return {**secret_from_features(feats, y, [f"{k}_deg" for k in pose_names]), "source": "pose labels"}
    template = _grey(images["train"]).mean(axis=0)
    feats = {s: head_geometry(images[s], template) for s in SPLITS}
    failed = float(np.mean(np.concatenate([~np.isfinite(f).all(axis=1) for f in feats.values()])))
    result = secret_from_features(feats, y, list(GEOMETRY_FEATURES))
    means: Dict[str, Optional[List[float]]] = {}   # None: no face of that class was registered
    for c in np.unique(y["train"]):
        rows = feats["train"][y["train"] == c]
        rows = rows[np.isfinite(rows).all(axis=1)]
        means[str(int(c))] = [float(v) for v in rows.mean(axis=0)] if len(rows) else None
    return {**result, "source": "head geometry", "registration_failed_share": failed,
            "train_feature_means_by_class": means}
