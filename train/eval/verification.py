"""Face verification across people with an unchanged face descriptor (dlib's, by default).

The question: can a face-recognition system that was never retrained still tell
whether a *filtered* probe shows the same person as a *clean* enrolled image?
Every probe gets one genuine pair (an enrolled image of the same person) and one
impostor pair (an enrolled image of another person), so the pairs are balanced;
the verifier accepts a pair when the descriptor distance is below dlib's 0.6.

Two ways to form pairs:

- **labelled** (:func:`labelled_pairs`, a set with identity labels such as an
  ``identity-folder`` set): genuine = another photo of the same person.
- **unlabelled** (:func:`unlabelled_pairs`, SMILEsmileD / GENKI-4K, which have no
  identity labels): genuine = the probe's own clean photo, impostor = a random
  other photo. Different photos are *assumed* to show different people (in
  LFW-derived SMILEsmileD a few impostor pairs are in fact the same person), and
  the genuine pair shares the photo, so this is easier than real verification.

Numbers per pair set (:func:`verification_metrics`): accuracy at 0.6 (balanced),
the best accuracy over all thresholds (threshold chosen on these same pairs, so
optimistic) and ROC AUC of −distance. The clean reference is measured on the
same pairs with a clean probe; in the unlabelled case the clean probe is the
mirrored clean photo (:func:`mirrored`), since the photo itself is trivially at
distance 0.

Example::

    import numpy as np
    from privsdk.train.eval.verification import unlabelled_pairs, pair_distances, verification_metrics
    enrolled = np.random.default_rng(0).normal(size=(10, 128)) * 0.1
    pairs = unlabelled_pairs(10, seed=0)
    verification_metrics(pair_distances(enrolled, enrolled + 0.01, pairs), pairs.same)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import numpy as np

from privsdk.errors import InputError

from .metrics import roc_auc

THRESHOLD = 0.6  # dlib's documented same-person threshold for its ResNet descriptor

UNLABELLED_CAVEAT = ("no identity labels: genuine pair = (clean photo i, filtered photo i), impostor = (clean "
                     "photo j, filtered photo i) with j != i drawn at random (seeded); different photos are "
                     "assumed to be different people (in LFW-derived SMILEsmileD a few impostor pairs are the "
                     "same person), and genuine pairs share the photo, so this is easier than verification "
                     "across photos. Clean reference: the mirrored clean photo i as the probe.")
LABELLED_NOTE = ("identity labels: genuine pair = (clean photo of person A, filtered other photo of A), "
                 "impostor = (clean photo of person B != A, the same filtered probe). Clean reference: the "
                 "clean probe photo.")


@dataclass
class Pairs:
    """Verification pairs: ``probe[k]`` against ``enrolled[k]``; ``same[k]`` says whether they are one person."""

    probe: np.ndarray      # int64 indices of probe images (filtered, or clean for the reference)
    enrolled: np.ndarray   # int64 indices of enrolled images (always clean)
    same: np.ndarray       # bool

    def __len__(self) -> int:
        return int(len(self.same))

    def compact(self) -> Tuple[np.ndarray, np.ndarray, "Pairs"]:
        """``(probe_images, enrolled_images, pairs)``: the distinct image indices each side uses, and
        the same pairs re-indexed into them (so only those images need descriptors)."""
        probe_images, probe = np.unique(self.probe, return_inverse=True)
        enrolled_images, enrolled = np.unique(self.enrolled, return_inverse=True)
        return probe_images, enrolled_images, Pairs(probe.astype(np.int64), enrolled.astype(np.int64), self.same)


@dataclass
class LabelledFaces:
    """Faces with identity labels for verification (e.g. an ``identity-folder`` set)."""

    name: str
    images: np.ndarray       # uint8 N×H×W×3 RGB, like the evaluation data
    identities: np.ndarray   # int64 person index per image
    info: Dict[str, Any] = field(default_factory=dict)

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "images": int(len(self.images)),
                "people": int(len(np.unique(self.identities))), **self.info}


def unlabelled_pairs(n: int, seed: int = 0) -> Pairs:
    """For each of ``n`` photos i: a genuine pair (i, i) and an impostor pair (i, j), j ≠ i random."""
    if n < 2:
        raise InputError(f"verification pairs: expected at least 2 faces, got {n}")
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    other = (idx + rng.integers(1, n, size=n)) % n   # uniform over j != i
    return Pairs(probe=np.concatenate([idx, idx]), enrolled=np.concatenate([idx, other]),
                 same=np.concatenate([np.ones(n, bool), np.zeros(n, bool)]))


def labelled_pairs(identities: np.ndarray, n_probes: int, seed: int = 0) -> Pairs:
    """Up to ``n_probes`` probes, each with a genuine pair (another photo of the same person)
    and an impostor pair (a photo of another person), drawn at random (seeded)."""
    ids = np.asarray(identities).reshape(-1)
    people, counts = np.unique(ids, return_counts=True)
    eligible = np.flatnonzero(np.isin(ids, people[counts >= 2]))
    if len(eligible) == 0 or len(people) < 2:
        raise InputError(f"labelled verification pairs: expected at least 2 people and one with 2+ photos, got "
                         f"{len(people)} people, the most photos of one being {int(counts.max(initial=0))}")
    rng = np.random.default_rng(seed)
    probes = np.sort(rng.choice(eligible, size=min(n_probes, len(eligible)), replace=False))
    genuine = np.array([rng.choice(np.flatnonzero((ids == ids[p]) & (np.arange(len(ids)) != p))) for p in probes])
    impostor = np.array([rng.choice(np.flatnonzero(ids != ids[p])) for p in probes])
    n = len(probes)
    return Pairs(probe=np.concatenate([probes, probes]), enrolled=np.concatenate([genuine, impostor]),
                 same=np.concatenate([np.ones(n, bool), np.zeros(n, bool)]))


def pair_distances(enrolled_descriptors: np.ndarray, probe_descriptors: np.ndarray, pairs: Pairs) -> np.ndarray:
    """Euclidean descriptor distance of every pair (descriptor arrays are indexed like the images)."""
    return np.linalg.norm(np.asarray(enrolled_descriptors)[pairs.enrolled]
                          - np.asarray(probe_descriptors)[pairs.probe], axis=1)


def verification_metrics(distances: np.ndarray, same: np.ndarray, threshold: float = THRESHOLD) -> Dict[str, Any]:
    """Accuracy at ``threshold`` (balanced over genuine / impostor), best-threshold accuracy, ROC AUC."""
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    y = np.asarray(same, dtype=bool).reshape(-1)
    if d.shape != y.shape or y.all() or not y.any():
        raise InputError(f"verification_metrics: expected one distance per pair and both genuine and impostor "
                         f"pairs, got {d.shape} distances for {y.shape} pairs ({int(y.sum())} genuine)")

    def balanced(t: float) -> float:
        return 0.5 * (float(np.mean(d[y] < t)) + float(np.mean(d[~y] >= t)))

    # "accept if d < t": accepting none, the midpoints between distinct distances, accepting all
    u = np.unique(d)
    candidates = np.concatenate([u[:1], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    scores = np.array([balanced(t) for t in candidates])
    best = int(scores.argmax())
    return {"accuracy_at_threshold": balanced(threshold), "threshold": threshold,
            "true_accept_rate": float(np.mean(d[y] < threshold)),
            "false_accept_rate": float(np.mean(d[~y] < threshold)),
            "best_threshold_accuracy": float(scores[best]), "best_threshold": float(candidates[best]),
            "auc": roc_auc(y.astype(np.int64), -d),
            "genuine_mean_distance": float(d[y].mean()), "impostor_mean_distance": float(d[~y].mean()),
            "n_pairs": int(len(d))}


def mirrored(images: np.ndarray) -> np.ndarray:
    """Left-right mirrored copies of uint8 N×H×W×3 images: the clean reference's second view of a face."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])
