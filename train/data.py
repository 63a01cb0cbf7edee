"""Face data sets for training and evaluating filters, and their splits.

Every loader returns a :class:`FaceSet`: RGB uint8 images N×H×W×3 (grey sets are
replicated to three channels), resized to ``size``×``size`` with ``INTER_AREA``,
a dict of labels, the image paths and the set's name.

Supported layouts (``load_dataset(name, root, size)``):

- ``smilesmiled``: ``SMILEs/positives/positives7/*.jpg`` (smile = 1) and
  ``SMILEs/negatives/negatives7/*.jpg`` (smile = 0). Label: ``smile``.
- ``genki4k``: ``files/fileNNNN.jpg`` + ``labels.txt`` whose line N is
  ``smile yaw pitch roll`` for ``fileNNNN.jpg``; lines without an image are
  skipped. Labels: ``smile`` (int64), ``yaw``, ``pitch``, ``roll`` (float32, radians).
- ``celeba``: ``img_align_celeba/``, ``list_attr_celeba.txt`` (40 attributes,
  ±1 mapped to 1/0), optional ``list_eval_partition.txt`` (label ``partition``).
  ``attributes=[...]`` restricts which attributes are kept, ``limit`` the count.
- ``identity-folder``: one sub-folder per person (FaceScrub / LFW layout);
  label ``identity`` (int64 index into ``FaceSet.classes["identity"]``).
- ``csv``: a CSV file (``root``) with a ``path`` column (relative to the CSV's
  folder or absolute) and numeric label columns.

Example::

    from privsdk.train.data import load_dataset, make_splits
    ds = load_dataset("smilesmiled", root="../shared/data/SMILEsmileD", size=64)
    splits = make_splits(ds, stratify="smile", fractions=(0.7, 0.15, 0.15), seed=0)
    x_train = ds.images[splits["train"]]
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from privsdk.errors import DependencyError, InputError
from privsdk.log import get_logger

log = get_logger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
DATASET_NAMES = ("smilesmiled", "genki4k", "celeba", "identity-folder", "csv")
CACHE_FORMAT = "privsdk-faceset-cache/1"

PathLike = Union[str, os.PathLike]


@dataclass
class FaceSet:
    """A face data set in memory.

    Attributes:
        images: uint8 N×H×W×3 RGB.
        labels: name -> array of length N (int64 for classes, float32 for regressions).
        paths: the source file of each image.
        name: the data set's name (e.g. ``"smilesmiled"``).
        classes: for categorical labels with names (``identity``), the class names by index.
    """

    images: np.ndarray
    labels: Dict[str, np.ndarray]
    paths: List[str]
    name: str
    classes: Dict[str, List[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def label(self, attribute: str) -> np.ndarray:
        """The label array of ``attribute``; :class:`InputError` naming the available ones if unknown."""
        if attribute not in self.labels:
            raise InputError(f"unknown attribute {attribute!r} in data set {self.name!r}; "
                             f"expected one of {sorted(self.labels)}")
        return self.labels[attribute]

    def subset(self, index: Sequence[int]) -> "FaceSet":
        """A new FaceSet with the images at ``index`` (in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        return FaceSet(images=self.images[idx], labels={k: v[idx] for k, v in self.labels.items()},
                       paths=[self.paths[i] for i in idx], name=self.name, classes=dict(self.classes))


# ----------------------------------------------------------------------------- image reading

def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - cv2 is part of privsdk[train]
        raise DependencyError(f"reading images needs OpenCV ({exc}); expected `pip install 'privsdk[train]'`") from None
    return cv2


def read_face(path: PathLike, size: int) -> np.ndarray:
    """Read one image file as RGB uint8 ``size``×``size``×3 (grey replicated, INTER_AREA resize).

    Raises :class:`InputError` if the file is missing or cannot be decoded.
    """
    cv2 = _cv2()
    data = np.fromfile(str(path), dtype=np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise InputError(f"image file {path} does not exist; expected a readable image file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputError(f"cannot decode image {path} ({data.size} bytes); expected a valid "
                         f"{'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} file")
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if min(img.shape[:2]) >= size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return np.ascontiguousarray(img)


def read_faces(paths: Sequence[str], size: int, desc: str = "reading images", workers: int = 4) -> np.ndarray:
    """Read many images into one uint8 N×size×size×3 array, with a progress bar."""
    from tqdm import tqdm

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = read_face(paths[i], size)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in tqdm(pool.map(one, range(len(paths))), total=len(paths), desc=desc, unit="img",
                      leave=False, disable=len(paths) < 500):
            pass
    return out


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(f"{what} folder {path} does not exist; expected the data set's layout there")
    return path


def _list_images(folder: Path) -> List[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: _natural_key(p.name))


def _natural_key(name: str) -> Tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


# ----------------------------------------------------------------------------- layouts

def _smilesmiled(root: Path) -> Tuple[List[str], Dict[str, np.ndarray], Dict[str, List[str]]]:
    smiles = _require_dir(root / "SMILEs", "SMILEsmileD 'SMILEs'") if (root / "SMILEs").exists() else root
    paths: List[str] = []
    smile: List[int] = []
    for cls, value in (("negatives", 0), ("positives", 1)):
        cls_dir = _require_dir(smiles / cls, f"SMILEsmileD '{cls}'")
        sub = cls_dir / f"{cls}7"
        folder = sub if sub.is_dir() else cls_dir
        files = _list_images(folder)
        if not files:
            raise InputError(f"no images in {folder}; expected SMILEsmileD's {cls}7/*.jpg")
        paths += [str(p) for p in files]
        smile += [value] * len(files)
    return paths, {"smile": np.asarray(smile, dtype=np.int64)}, {}


def _genki4k(root: Path) -> Tuple[List[str], Dict[str, np.ndarray], Dict[str, List[str]]]:
    files = _require_dir(root / "files", "GENKI-4K 'files'")
    labels_txt = root / "labels.txt"
    if not labels_txt.is_file():
        raise InputError(f"GENKI-4K labels file {labels_txt} does not exist; expected 'smile yaw pitch roll' per line")
    present = {p.name: p for p in _list_images(files)}
    paths, rows = [], []
    with open(labels_txt, "r", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            name = f"file{n:04d}.jpg"
            if name not in present:
                continue
            if len(fields) < 4:
                raise InputError(f"{labels_txt} line {n}: {line.strip()!r}; expected 'smile yaw pitch roll'")
            try:
                rows.append((int(float(fields[0])), float(fields[1]), float(fields[2]), float(fields[3])))
            except ValueError:
                raise InputError(f"{labels_txt} line {n}: {line.strip()!r}; expected numbers "
                                 f"'smile yaw pitch roll'") from None
            paths.append(str(present[name]))
    if not paths:
        raise InputError(f"no GENKI-4K image in {files} matches a line of {labels_txt}; expected fileNNNN.jpg files")
    arr = np.asarray(rows, dtype=np.float64)
    labels = {"smile": arr[:, 0].astype(np.int64), "yaw": arr[:, 1].astype(np.float32),
              "pitch": arr[:, 2].astype(np.float32), "roll": arr[:, 3].astype(np.float32)}
    return paths, labels, {}


def _celeba(root: Path, attributes: Optional[Sequence[str]] = None, limit: Optional[int] = None
            ) -> Tuple[List[str], Dict[str, np.ndarray], Dict[str, List[str]]]:
    img_dir = _require_dir(root / "img_align_celeba", "CelebA 'img_align_celeba'")
    attr_txt = root / "list_attr_celeba.txt"
    if not attr_txt.is_file():
        raise InputError(f"CelebA attribute file {attr_txt} does not exist; expected list_attr_celeba.txt")
    with open(attr_txt, "r", encoding="utf-8") as fh:
        lines = [ln.split() for ln in fh if ln.strip()]
    if len(lines) < 2:
        raise InputError(f"{attr_txt} is empty; expected a count line, a header of attribute names and rows")
    # The official file starts with the image count, then the header of attribute names.
    start = 1 if len(lines[0]) == 1 and lines[0][0].isdigit() else 0
    names = list(lines[start])
    body = lines[start + 1:]
    wanted = list(attributes) if attributes else names
    for a in wanted:
        if a not in names:
            raise InputError(f"unknown CelebA attribute {a!r}; expected one of {names}")
    cols = [names.index(a) for a in wanted]
    partition: Dict[str, int] = {}
    part_txt = root / "list_eval_partition.txt"
    if part_txt.is_file():
        with open(part_txt, "r", encoding="utf-8") as fh:
            for ln in fh:
                f = ln.split()
                if len(f) >= 2:
                    partition[f[0]] = int(f[1])
    paths, rows, parts = [], [], []
    for f in body:
        if limit is not None and len(paths) >= limit:
            break
        if len(f) != len(names) + 1:
            raise InputError(f"{attr_txt}: row {' '.join(f)[:60]!r} has {len(f) - 1} values; expected {len(names)}")
        p = img_dir / f[0]
        if not p.is_file():
            continue
        paths.append(str(p))
        rows.append([1 if int(f[1 + c]) > 0 else 0 for c in cols])
        parts.append(partition.get(f[0], -1))
    if not paths:
        raise InputError(f"no CelebA image listed in {attr_txt} exists in {img_dir}")
    arr = np.asarray(rows, dtype=np.int64)
    labels = {a: arr[:, j] for j, a in enumerate(wanted)}
    if partition:
        labels["partition"] = np.asarray(parts, dtype=np.int64)
    return paths, labels, {}


def _identity_folder(root: Path) -> Tuple[List[str], Dict[str, np.ndarray], Dict[str, List[str]]]:
    _require_dir(root, "identity")
    people = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda p: p.name)
    paths, ids, names = [], [], []
    for person in people:
        files = _list_images(person)
        if not files:
            continue
        names.append(person.name)
        paths += [str(p) for p in files]
        ids += [len(names) - 1] * len(files)
    if not paths:
        raise InputError(f"no images in the person folders of {root}; expected ROOT/<person>/*.jpg")
    return paths, {"identity": np.asarray(ids, dtype=np.int64)}, {"identity": names}


def _csv(root: Path) -> Tuple[List[str], Dict[str, np.ndarray], Dict[str, List[str]]]:
    if not root.is_file():
        raise InputError(f"CSV file {root} does not exist; expected a CSV with a 'path' column and label columns")
    with open(root, "r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise InputError(f"CSV {root} has columns {reader.fieldnames}; expected a 'path' column")
        columns = [c for c in reader.fieldnames if c != "path"]
        rows = list(reader)
    if not rows:
        raise InputError(f"CSV {root} has no rows; expected one row per image")
    paths = []
    for r in rows:
        p = Path(r["path"])
        paths.append(str(p if p.is_absolute() else root.parent / p))
    labels: Dict[str, np.ndarray] = {}
    for c in columns:
        values = [r[c] for r in rows]
        try:
            floats = np.asarray([float(v) for v in values], dtype=np.float64)
        except ValueError:
            raise InputError(f"CSV {root}: column {c!r} has a non-numeric value; expected numbers") from None
        labels[c] = floats.astype(np.int64) if np.all(floats == np.round(floats)) else floats.astype(np.float32)
    return paths, labels, {}


# ----------------------------------------------------------------------------- cache

def _cache_key(name: str, root: Path, size: int, paths: Sequence[str], extra: str) -> str:
    h = hashlib.sha256(f"{CACHE_FORMAT}|{name}|{root.resolve()}|{size}|{extra}".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_mtime_ns}|{st.st_size}\n".encode())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    """``$PRIVSDK_CACHE_DIR/datasets`` or ``~/.cache/privsdk/datasets``."""
    base = os.environ.get("PRIVSDK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "privsdk")
    return Path(base) / "datasets"


# ----------------------------------------------------------------------------- public

def load_dataset(name: str, root: PathLike, size: int = 64, *, cache_dir: Optional[PathLike] = None,
                 attributes: Optional[Sequence[str]] = None, limit: Optional[int] = None,
                 workers: int = 4) -> FaceSet:
    """Load a face data set in one of the supported layouts (see the module docstring).

    Args:
        name: one of ``smilesmiled``, ``genki4k``, ``celeba``, ``identity-folder``, ``csv``.
        root: the set's folder (the CSV file for ``csv``).
        size: images are resized to ``size``×``size``.
        cache_dir: if given, the decoded images are cached there as ``.npz``, keyed by the root,
            size and every file's path, mtime and size (so a changed file invalidates it).
        attributes: CelebA only: the attributes to keep (default all 40).
        limit: CelebA only: read at most this many images.
        workers: threads decoding images.

    Raises:
        InputError: unknown name, missing folder/file, unreadable image, unknown attribute.
    """
    if name not in DATASET_NAMES:
        raise InputError(f"unknown data set {name!r}; expected one of {list(DATASET_NAMES)}")
    if int(size) < 4:
        raise InputError(f"image size {size} is too small; expected at least 4 pixels")
    root = Path(root).expanduser()
    if name != "csv":
        _require_dir(root, f"{name} data set")
    if name == "smilesmiled":
        paths, labels, classes = _smilesmiled(root)
    elif name == "genki4k":
        paths, labels, classes = _genki4k(root)
    elif name == "celeba":
        paths, labels, classes = _celeba(root, attributes, limit)
    elif name == "identity-folder":
        paths, labels, classes = _identity_folder(root)
    else:
        paths, labels, classes = _csv(root)

    images = None
    cache_file = None
    if cache_dir is not None:
        key = _cache_key(name, root, size, paths, f"{attributes}|{limit}")
        cache_file = Path(cache_dir) / f"{name}-{size}-{key}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file) as z:
                    images = z["images"]
                log.debug("loaded %s images from cache %s", name, cache_file)
            except (OSError, KeyError, ValueError) as exc:
                log.warning("ignoring unreadable data set cache %s (%s)", cache_file, exc)
                images = None
    if images is None:
        images = read_faces(paths, size, desc=f"reading {name}", workers=workers)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp.npz")
            np.savez(tmp, images=images)
            os.replace(tmp, cache_file)
    log.info("loaded %s: %d images %dx%d from %s, labels %s", name, len(paths), size, size, root, sorted(labels))
    return FaceSet(images=images, labels=labels, paths=list(paths), name=name, classes=classes)


def make_splits(ds: FaceSet, stratify: Optional[str] = None,
                fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
                ) -> Dict[str, np.ndarray]:
    """Deterministic (stratified) train/val/test indices.

    Args:
        ds: the data set.
        stratify: a categorical label name whose class proportions each split keeps; None = no stratification.
        fractions: train, val, test shares (must sum to 1).
        seed: the permutation seed; same seed and data set -> same splits.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, sorted int64 arrays, disjoint, covering the set.
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise InputError(f"split fractions {fractions} are invalid; expected three non-negative numbers summing to 1")
    n = len(ds)
    if stratify is None:
        groups = [np.arange(n)]
    else:
        y = ds.label(stratify)
        if y.dtype.kind == "f":
            raise InputError(f"cannot stratify on {stratify!r}: it is continuous ({y.dtype}); expected a class label")
        groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    rng = np.random.default_rng(seed)
    out: Dict[str, List[np.ndarray]] = {"train": [], "val": [], "test": []}
    for g in groups:
        g = g[rng.permutation(len(g))]
        n_train = int(round(fr[0] * len(g)))
        n_val = int(round(fr[1] * len(g)))
        n_val = min(n_val, len(g) - n_train)
        out["train"].append(g[:n_train])
        out["val"].append(g[n_train:n_train + n_val])
        out["test"].append(g[n_train + n_val:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in out.items()}


def hold_back(splits: Dict[str, np.ndarray], labels: np.ndarray, share: Optional[float], seed: int = 0
              ) -> Dict[str, np.ndarray]:
    """Cut the train split to a stratified ``share``; the rest of it goes to ``"held_back"``.

    A filter fit on all of a public set's training faces is measured (DESIGN.md's protocol) by attackers
    trained on those same faces, where every fitted stage (the network, the eraser) hides the secret best.
    Training on a share leaves faces that no stage saw, for attackers with faces of their own
    (``privsdk eval --held-back-attacker``; ``docs/design-changes.md`` #22). val and test are unchanged, so the
    two readings are scored on the same test faces. ``share`` None or 1 returns the splits as they are.

    Example:
        >>> sp = {"train": np.arange(8), "val": np.array([8]), "test": np.array([9])}
        >>> cut = hold_back(sp, np.array([0, 1] * 5), 0.5)
        >>> len(cut["train"]), len(cut["held_back"]), sorted(set(cut["train"]) | set(cut["held_back"])) == list(range(8))
        (4, 4, True)
    """
    if share is None or float(share) == 1.0:
        return dict(splits)
    share = float(share)
    if not 0.0 < share < 1.0:
        raise InputError(f"data.train_share {share}: expected a share of the train split in (0, 1]")
    train = np.asarray(splits["train"], dtype=np.int64)
    y = np.asarray(labels)[train]
    rng = np.random.default_rng(seed)
    fit = [rng.permutation(np.flatnonzero(y == c))[:int(round(share * np.sum(y == c)))] for c in np.unique(y)]
    keep = np.zeros(len(train), bool)
    keep[np.concatenate(fit)] = True
    if keep.all() or not keep.any():
        raise InputError(f"data.train_share {share} of {len(train)} training faces leaves "
                         f"{int(keep.sum())} to fit on and {int((~keep).sum())} held back; expected some of each")
    return {**splits, "train": np.sort(train[keep]), "held_back": np.sort(train[~keep])}


def config_splits(ds: FaceSet, data_config: Mapping[str, Any], secret: Optional[str] = None
                  ) -> Dict[str, np.ndarray]:
    """The splits a training config's ``data`` section (a mapping, as a manifest records it) gives ``ds``.

    The one reading of ``fractions``, ``split_seed`` and ``train_share`` for every stage fit on a filter's
    training faces after the run (the levelling template, the eraser, the face-crop layout), so that each
    is fit on exactly the faces the network was.
    """
    secret = secret or str(data_config.get("secret", "smile"))
    seed = int(data_config.get("split_seed", 0))
    fractions = tuple(float(f) for f in data_config.get("fractions", (0.7, 0.15, 0.15)))
    splits = make_splits(ds, stratify=secret, fractions=fractions, seed=seed)
    return hold_back(splits, ds.label(secret), data_config.get("train_share"), seed)


def join_datasets(parts: Sequence[Tuple[FaceSet, Dict[str, np.ndarray]]]
                  ) -> Tuple[FaceSet, Dict[str, np.ndarray]]:
    """Join data sets that were each split on their own into one set with joined splits.

    Training on several sets must not leak any set's test split: each set is split with
    :func:`make_splits` exactly as ``privsdk eval`` splits it, and the joined splits are those
    splits shifted into the joined index range. Only labels every set has are kept (e.g. ``smile``
    for SMILEsmileD + GENKI-4K); the name is the set names joined by ``+``.

    Example:
        >>> a = FaceSet(np.zeros((4, 8, 8, 3), np.uint8), {"smile": np.array([0, 1, 0, 1])}, ["a"] * 4, "a")
        >>> b = FaceSet(np.ones((2, 8, 8, 3), np.uint8), {"smile": np.array([1, 0]), "yaw": np.zeros(2, np.float32)},
        ...             ["b"] * 2, "b")
        >>> ds, sp = join_datasets([(a, {"train": np.array([0, 1]), "val": np.array([2]), "test": np.array([3])}),
        ...                         (b, {"train": np.array([1]), "val": np.array([], np.int64), "test": np.array([0])})])
        >>> ds.name, sorted(ds.labels), sp["train"].tolist(), sp["test"].tolist()
        ('a+b', ['smile'], [0, 1, 5], [3, 4])
    """
    if not parts:
        raise InputError("join_datasets got no data sets; expected at least one (set, splits) pair")
    shape = parts[0][0].images.shape[1:]
    for ds, _ in parts:
        if ds.images.shape[1:] != shape:
            raise InputError(f"data set {ds.name!r} has images of shape {ds.images.shape[1:]}; expected {shape} "
                             f"like {parts[0][0].name!r} (the same data.size)")
    common = set(parts[0][0].labels)
    for ds, _ in parts[1:]:
        common &= set(ds.labels)
    labels = {}
    for k in sorted(common):
        kinds = {ds.labels[k].dtype.kind for ds, _ in parts}
        if len(kinds) > 1:
            raise InputError(f"label {k!r} is a class label in one set and a value in another ({sorted(kinds)}); "
                             f"expected the same kind in every joined set")
        labels[k] = np.concatenate([ds.labels[k] for ds, _ in parts])
    splits: Dict[str, List[np.ndarray]] = {"train": [], "val": [], "test": []}
    offset = 0
    for ds, sp in parts:
        for k in splits:
            splits[k].append(np.asarray(sp[k], dtype=np.int64) + offset)
        offset += len(ds)
    joined = FaceSet(images=np.concatenate([ds.images for ds, _ in parts]), labels=labels,
                     paths=[p for ds, _ in parts for p in ds.paths], name="+".join(ds.name for ds, _ in parts))
    return joined, {k: np.concatenate(v) for k, v in splits.items()}


def splits_to_json(splits: Dict[str, np.ndarray]) -> Dict[str, List[int]]:
    """Splits as JSON-able lists."""
    return {k: [int(i) for i in v] for k, v in splits.items()}


def splits_from_json(data: Dict[str, Sequence[int]]) -> Dict[str, np.ndarray]:
    """The inverse of :func:`splits_to_json`."""
    return {k: np.asarray(v, dtype=np.int64) for k, v in data.items()}
