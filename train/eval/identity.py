"""Identity kept by an unchanged face-recognition model: dlib's ResNet descriptor.

Optional: needs the ``dlib-bin`` and ``face-recognition-models`` packages
(``pip install 'privsdk[eval]'``), which ship the weights, so it runs offline.

How it is applied to 64×64 face crops (what was found to work): the crop is
already a face, so the whole image is the face rectangle; dlib's 5-point shape
predictor finds the landmarks inside it, ``dlib.get_face_chip`` aligns a
150×150 chip (padding 0.25), and ``face_recognition_model_v1`` computes the
128-D descriptor of the chip. On GENKI-4K crops this puts different people at
0.6–0.9 apart and a grey-converted copy of a face within 0.1–0.25 of its
original, consistent with dlib's 0.6 same-person threshold. Each image (the
original and the filtered one) is aligned on its own landmarks, as the
unchanged pipeline would. Cost: ≈0.15 s per face on one CPU core.

Verification across people (:mod:`.verification`): the unchanged descriptor
compares a filtered probe with a clean enrolled image of the same / another
person; :class:`IdentityEvaluator` measures both numbers for each filter of a run.

Example::

    from privsdk.train.eval.identity import DlibDescriptor, IdentityEvaluator, identity_kept
    d = DlibDescriptor()                                  # DependencyError if dlib is absent
    identity_kept(d, originals, filtered)                 # {"share_within_0.6": ..., ...}
    ev = IdentityEvaluator(d, test_images, n_faces=100)   # unlabelled pairs (no identity labels)
    ev(filter_fn, filter_fn(test_images))["verification"]["filtered"]["accuracy_at_threshold"]
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable, Dict, Optional

import numpy as np

from privsdk.errors import DependencyError
from privsdk.log import get_logger

from . import verification as ver

_log = get_logger(__name__)
THRESHOLD = ver.THRESHOLD  # dlib's same-person threshold, 0.6
_INSTALL = "expected `pip install dlib-bin face-recognition-models` (or `pip install 'privsdk[eval]'`)"


def _models_dir() -> str:
    # face_recognition_models' __init__ imports pkg_resources, which recent setuptools
    # no longer ship; locate its data files without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(f"the identity metric needs the face-recognition-models package; {_INSTALL}")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def available() -> bool:
    """Whether dlib and the descriptor weights are installed."""
    try:
        DlibDescriptor._load()
        return True
    except DependencyError:
        return False


class DlibDescriptor:
    """dlib's face descriptor (ResNet, 128-D) of uint8 H×W×3 RGB face crops."""

    _cache: Optional[tuple] = None

    @classmethod
    def _load(cls) -> tuple:
        if cls._cache is None:
            try:
                import dlib
            except ImportError as exc:
                raise DependencyError(f"the identity metric needs dlib ({exc}); {_INSTALL}") from exc
            d = _models_dir()
            rec_path = os.path.join(d, "dlib_face_recognition_resnet_model_v1.dat")
            sp_path = os.path.join(d, "shape_predictor_5_face_landmarks.dat")
            for p in (rec_path, sp_path):
                if not os.path.isfile(p):
                    raise DependencyError(f"dlib weights missing at {p}; {_INSTALL}")
            cls._cache = (dlib, dlib.face_recognition_model_v1(rec_path), dlib.shape_predictor(sp_path))
        return cls._cache

    def __init__(self) -> None:
        self.dlib, self.recognizer, self.predictor = self._load()

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        img = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        rect = self.dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
        chip = self.dlib.get_face_chip(img, self.predictor(img, rect), size=150, padding=0.25)
        return np.asarray(self.recognizer.compute_face_descriptor(chip), dtype=np.float64)

    def batch(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self(im) for im in images])


def identity_kept(descriptor: DlibDescriptor, originals: np.ndarray, filtered: np.ndarray,
                  threshold: float = THRESHOLD) -> Dict[str, float]:
    """Share of faces whose filtered descriptor is within ``threshold`` of the original's."""
    a, b = descriptor.batch(originals), descriptor.batch(filtered)
    dist = np.linalg.norm(a - b, axis=1)
    return {"share_within_0.6": float(np.mean(dist < threshold)), "mean_distance": float(dist.mean()),
            "median_distance": float(np.median(dist)), "threshold": threshold, "n": int(len(dist))}


class IdentityEvaluator:
    """Identity kept and verification across people, for many filters on one fixed face sample.

    The sample (``n_faces`` test images, seeded; with ``labelled`` faces also ``n_faces``
    verification probes from them), its clean descriptors, the verification pairs and
    the clean reference are computed once; each call costs the filtered
    descriptors only (≈0.15 s per face; twice that with ``labelled`` faces, whose probes
    are filtered too).
    """

    def __init__(self, descriptor: DlibDescriptor, test_images: np.ndarray, n_faces: int, seed: int = 0,
                 labelled: Optional[ver.LabelledFaces] = None) -> None:
        self.descriptor, self.test_images, self.labelled = descriptor, test_images, labelled
        n = min(int(n_faces), len(test_images))
        self.idx = np.random.default_rng(seed).choice(len(test_images), n, replace=False)
        self.clean = descriptor.batch(test_images[self.idx])
        if labelled is None:
            self.pairs = ver.unlabelled_pairs(n, seed)
            # the photo itself is at distance 0: the clean probe is its mirrored copy
            clean_probes = descriptor.batch(ver.mirrored(test_images[self.idx]))
            self.enrolled = self.clean
        else:
            pairs = ver.labelled_pairs(labelled.identities, int(n_faces), seed)
            self.probe_idx, enrolled_idx, self.pairs = pairs.compact()
            self.enrolled = descriptor.batch(labelled.images[enrolled_idx])
            clean_probes = descriptor.batch(labelled.images[self.probe_idx])
        self.clean_verification = ver.verification_metrics(
            ver.pair_distances(self.enrolled, clean_probes, self.pairs), self.pairs.same)

    def __call__(self, filter_fn: Callable[[np.ndarray], np.ndarray], filtered_test: np.ndarray) -> Dict[str, Any]:
        """The identity numbers of one filter; ``filtered_test`` is its output on all test images."""
        filtered = self.descriptor.batch(filtered_test[self.idx])
        dist = np.linalg.norm(self.clean - filtered, axis=1)
        if self.labelled is None:
            probes = filtered
            pairs_info: Dict[str, Any] = {"pairs": "unlabelled", "data": "test split", "note": ver.UNLABELLED_CAVEAT}
        else:
            probes = self.descriptor.batch(filter_fn(self.labelled.images[self.probe_idx]))
            pairs_info = {"pairs": "labelled", "data": self.labelled.describe(), "note": ver.LABELLED_NOTE}
        verification = {**pairs_info,
                        "filtered": ver.verification_metrics(ver.pair_distances(self.enrolled, probes, self.pairs),
                                                             self.pairs.same),
                        "clean": self.clean_verification}
        return {"share_within_0.6": float(np.mean(dist < THRESHOLD)), "mean_distance": float(dist.mean()),
                "median_distance": float(np.median(dist)), "threshold": THRESHOLD, "n": int(len(dist)),
                "descriptor": "dlib_face_recognition_resnet_model_v1 (5-point aligned 150px chip)",
                "verification": verification}
