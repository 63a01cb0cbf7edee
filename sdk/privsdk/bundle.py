"""Filter bundles: the on-disk contract between export and the runtime (DESIGN.md).

A bundle is a directory (or a ``.zip`` of one) holding:

- ``filter.json`` -- the manifest (schema below), with the SHA-256 of every file;
- ``filter.onnx`` -- the network (absent for a lite filter);
- ``norm.npz``    -- per-location maps ``scale``, ``shift``, ``sigma`` (3×H×W float32)
  for the fused pre-kernel, and optionally ``post_scale``, ``post_shift`` for the
  post-kernel (identity when absent);
- ``level.npz``   -- only with ``input.level_head``: the H×W float32 ``template`` face
  (0-1 grey) the runtime registers each face onto to cut it out level
  (:mod:`privsdk.regions.level`).
- ``erase.npz``   -- only with an ``erase`` section: the linear eraser of the secret
  (``mean``, ``basis``, ``readout``) applied to the network's output before the post-kernel
  (:mod:`privsdk.erase`).

A bundle whose hashes do not match is refused with :class:`BundleError`.

Manifest (``format: "privsdk-filter/1"``)::

    {
      "format": "privsdk-filter/1",
      "name": "emotion", "version": "1.0.0", "description": "...",
      "kind": "unet" | "lite",
      "secret": ["smile"], "utility": ["identity", "pose"],
      "input": {"height": 64, "width": 64, "channels": 3, "colour_order": "RGB",
                "layout": "NCHW", "dtype": "float32",
                "face_crop": {"detector": "haar", "box": [l, t, r, b]},     # optional
                "level_head": {"template": "level.npz", "upper_share": 0.5,  # optional
                               "max_roll_deg": 30.0, "max_shift_share": 0.125}},
      "onnx": {"image_input": "image", "noise_inputs": [{"name": "noise", "shape": [8, 4, 4]}],
               "output": "filtered", "opset": 17} | null,
      "output": {"convention": "rgb01"},   # network output in [0, 1], RGB, NCHW
      "method": {"name": "aioi", "hyperparameters": {...}},
      "training": {...} ,                   # data, split, seed, epochs, versions
      "erase": {"file": "erase.npz", "secret": "smile", "rank": 1, ...},   # optional
      "evaluation": {...} | null,           # the `privsdk eval` report, verbatim
      "files": {"filter.onnx": "<sha256>", "norm.npz": "<sha256>", ...}
    }

Noise input shapes omit the batch axis; the runtime draws them fresh per call.

Example::

    from privsdk.bundle import load_bundle
    b = load_bundle("path/to/emotion")        # or "emotion.zip"
    print(b.name, b.kind, b.input_size, b.maps["scale"].shape)
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import BundleError, InputError
from .regions.base import check_face_crop

FORMAT = "privsdk-filter/1"
MANIFEST = "filter.json"
ONNX = "filter.onnx"
NORM = "norm.npz"
LEVEL = "level.npz"
ERASE = "erase.npz"
KINDS = ("unet", "lite")
MAP_KEYS = ("scale", "shift", "sigma")
OPTIONAL_MAP_KEYS = ("post_scale", "post_shift")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Bundle:
    """A loaded, verified filter bundle (all files read into memory)."""

    source: str
    manifest: Dict[str, Any]
    files: Dict[str, bytes] = field(repr=False)
    maps: Dict[str, np.ndarray] = field(repr=False)
    #: the H×W grey template face of ``input.level_head`` (None: faces are not levelled)
    level_template: Optional[np.ndarray] = field(default=None, repr=False)
    #: the linear eraser of the manifest's ``erase`` section (None: no erasure stage)
    eraser: Optional[Any] = field(default=None, repr=False)

    @property
    def level_head(self) -> Optional[Dict[str, Any]]:
        """The manifest's ``input.level_head`` section, or None."""
        return self.manifest["input"].get("level_head")

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width) of the network input."""
        return int(self.manifest["input"]["height"]), int(self.manifest["input"]["width"])

    @property
    def onnx_bytes(self) -> Optional[bytes]:
        return self.files.get(ONNX)

    @property
    def onnx_sha256(self) -> Optional[str]:
        return self.manifest["files"].get(ONNX)

    @property
    def noise_inputs(self) -> List[Dict[str, Any]]:
        onnx = self.manifest.get("onnx") or {}
        return list(onnx.get("noise_inputs", []))

    @property
    def stochastic(self) -> bool:
        """Whether two runs on one face can differ: the fused kernel's σ maps, or the network's noise inputs."""
        return bool(self.noise_inputs) or bool(np.any(np.asarray(self.maps["sigma"]) != 0))


def _fail(source: str, what: str) -> BundleError:
    return BundleError(f"filter bundle {source}: {what}")


def validate_manifest(manifest: Any, source: str = "<manifest>") -> Dict[str, Any]:
    """Check the manifest's structure; raise :class:`BundleError` naming the first problem."""
    if not isinstance(manifest, dict):
        raise _fail(source, f"{MANIFEST} must hold a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise _fail(source, f"format is {manifest.get('format')!r}; this privsdk reads {FORMAT!r}")
    for key, typ in (("name", str), ("version", str), ("kind", str), ("secret", list),
                     ("utility", list), ("input", dict), ("method", dict), ("files", dict)):
        if not isinstance(manifest.get(key), typ):
            raise _fail(source, f"manifest field {key!r} must be a {typ.__name__}, got {manifest.get(key)!r}")
    if manifest["kind"] not in KINDS:
        raise _fail(source, f"kind is {manifest['kind']!r}; expected one of {KINDS}")
    inp = manifest["input"]
    for key in ("height", "width"):
        if not isinstance(inp.get(key), int) or inp[key] <= 0:
            raise _fail(source, f"input.{key} must be a positive integer, got {inp.get(key)!r}")
    if inp.get("colour_order", "RGB") not in ("RGB", "BGR"):
        raise _fail(source, f"input.colour_order must be RGB or BGR, got {inp.get('colour_order')!r}")
    if "face_crop" in inp:
        crop = inp["face_crop"]
        if not isinstance(crop, dict) or not isinstance(crop.get("detector"), str):
            raise _fail(source, f"input.face_crop must be {{'detector': str, 'box': [left, top, right, bottom]}}, "
                                f"got {crop!r}")
        try:
            check_face_crop(crop.get("box"), "input.face_crop.box")
        except InputError as exc:
            raise _fail(source, str(exc)) from None
    if "level_head" in inp:
        level = inp["level_head"]
        if not isinstance(level, dict) or level.get("template") != LEVEL:
            raise _fail(source, f"input.level_head must be {{'template': {LEVEL!r}, 'upper_share': …}}, got {level!r}")
        if LEVEL not in manifest["files"]:
            raise _fail(source, f"input.level_head names {LEVEL}, but files does not list it")
        for key, low, high in (("upper_share", 0.1, 1.0), ("max_roll_deg", 0.0, 90.0), ("max_shift_share", 0.0, 0.5)):
            value = level.get(key)
            if value is not None and (not isinstance(value, (int, float)) or not low < value <= high):
                raise _fail(source, f"input.level_head.{key} is {value!r}; expected a number in ({low}, {high}]")
    if "erase" in manifest and manifest["erase"] is not None:
        erase = manifest["erase"]
        if not isinstance(erase, dict) or erase.get("file") != ERASE:
            raise _fail(source, f"erase must be {{'file': {ERASE!r}, 'secret': …}}, got {erase!r}")
        if ERASE not in manifest["files"]:
            raise _fail(source, f"erase names {ERASE}, but files does not list it")
    if NORM not in manifest["files"]:
        raise _fail(source, f"files must list {NORM}")
    if manifest["kind"] == "unet":
        onnx = manifest.get("onnx")
        if ONNX not in manifest["files"] or not isinstance(onnx, dict):
            raise _fail(source, f"a unet filter needs {ONNX} in files and an 'onnx' section")
        for key in ("image_input", "output"):
            if not isinstance(onnx.get(key), str):
                raise _fail(source, f"onnx.{key} must be a string, got {onnx.get(key)!r}")
        for i, n in enumerate(onnx.get("noise_inputs", [])):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str) or \
                    not isinstance(n.get("shape"), list) or not all(isinstance(d, int) and d > 0 for d in n["shape"]):
                raise _fail(source, f"onnx.noise_inputs[{i}] must be {{'name': str, 'shape': [positive ints]}}, got {n!r}")
    elif ONNX in manifest["files"]:
        raise _fail(source, f"a lite filter has no {ONNX}, but files lists one")
    for name, digest in manifest["files"].items():
        if not isinstance(digest, str) or len(digest) != 64:
            raise _fail(source, f"files[{name!r}] must be a SHA-256 hex digest, got {digest!r}")
    return manifest


def _read_members(path: Path) -> Dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    if path.is_file() and zipfile.is_zipfile(path):
        out: Dict[str, bytes] = {}
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                out[Path(info.filename).name] = z.read(info)
        return out
    if path.exists():
        raise BundleError(f"filter bundle {path}: expected a directory or a .zip of one, got another kind of file")
    raise BundleError(f"filter bundle {path}: no such file or directory")


def load_maps(data: bytes, input_hw: Tuple[int, int], source: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            maps = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:
        raise _fail(source, f"{NORM} is not a readable .npz ({exc})") from None
    expected = (3, *input_hw)
    for key in MAP_KEYS + OPTIONAL_MAP_KEYS:
        if key not in maps:
            if key in MAP_KEYS:
                raise _fail(source, f"{NORM} lacks the map {key!r}; expected {MAP_KEYS}")
            continue
        m = maps[key]
        if m.dtype != np.float32 or m.shape != expected:
            raise _fail(source, f"{NORM}[{key!r}] is {m.dtype} {m.shape}; expected float32 {expected}")
        if not np.isfinite(m).all():
            raise _fail(source, f"{NORM}[{key!r}] contains NaN or infinity")
        maps[key] = np.ascontiguousarray(m)
    if (maps["sigma"] < 0).any():
        raise _fail(source, f"{NORM}['sigma'] has negative values; expected σ ≥ 0")
    return maps


def load_bundle(path: Union[str, Path]) -> Bundle:
    """Read and verify a bundle directory or zip. Raises :class:`BundleError` on any problem."""
    path = Path(path)
    source = str(path)
    members = _read_members(path)
    if MANIFEST not in members:
        raise _fail(source, f"has no {MANIFEST}")
    try:
        manifest = json.loads(members[MANIFEST].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(source, f"{MANIFEST} is not valid JSON ({exc})") from None
    validate_manifest(manifest, source)
    files: Dict[str, bytes] = {}
    for name, digest in manifest["files"].items():
        if name not in members:
            raise _fail(source, f"{name} is listed in {MANIFEST} but missing")
        actual = sha256_bytes(members[name])
        if actual != digest:
            raise _fail(source, f"{name} has SHA-256 {actual[:16]}…, the manifest says {digest[:16]}…; "
                                "the bundle was modified or corrupted, refusing to load it")
        files[name] = members[name]
    input_hw = (manifest["input"]["height"], manifest["input"]["width"])
    maps = load_maps(files[NORM], input_hw, source)
    template = load_level_template(files[LEVEL], input_hw, source) if "level_head" in manifest["input"] else None
    eraser = None
    if manifest.get("erase"):
        from .erase import load_eraser

        eraser = load_eraser(files[ERASE], (3, *input_hw), source)
    return Bundle(source=source, manifest=manifest, files=files, maps=maps, level_template=template, eraser=eraser)


def load_level_template(data: bytes, input_hw: Tuple[int, int], source: str) -> np.ndarray:
    """The ``template`` of ``level.npz``: H×W float32 in 0-1, checked."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            template = np.asarray(npz["template"]) if "template" in npz.files else None
    except Exception as exc:
        raise _fail(source, f"{LEVEL} is not a readable .npz ({exc})") from None
    if template is None:
        raise _fail(source, f"{LEVEL} lacks the array 'template'")
    if template.dtype != np.float32 or template.shape != tuple(input_hw):
        raise _fail(source, f"{LEVEL}['template'] is {template.dtype} {template.shape}; expected float32 {tuple(input_hw)}")
    if not np.isfinite(template).all() or template.min() < 0 or template.max() > 1:
        raise _fail(source, f"{LEVEL}['template'] has values outside 0-1 or NaN; expected a grey face in 0-1")
    return np.ascontiguousarray(template)


def serialize_maps(maps: Mapping[str, np.ndarray]) -> bytes:
    """``norm.npz`` bytes, reproducible: the same maps always give the same bytes (and hash).

    ``np.savez`` stamps the current time into the zip; a fixed timestamp keeps
    re-exports byte-identical, so an evaluation report of a bundle stays valid.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for key in sorted(maps):
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(maps[key], dtype=np.float32), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, arr.getvalue())
    return buf.getvalue()


def write_bundle(directory: Union[str, Path], manifest: Mapping[str, Any], maps: Mapping[str, np.ndarray],
                 onnx_bytes: Optional[bytes] = None, extra_files: Optional[Mapping[str, bytes]] = None) -> Path:
    """Write a bundle directory: the files, then ``filter.json`` with their SHA-256.

    ``manifest`` holds everything but ``files``, which is computed here. Extra files
    (e.g. ``filter.fp16.onnx``) are hashed like the others; an ``extra_files``
    entry named ``norm.npz`` replaces the serialized maps.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    contents: Dict[str, bytes] = {NORM: serialize_maps(maps)}
    if onnx_bytes is not None:
        contents[ONNX] = onnx_bytes
    contents.update(extra_files or {})
    for name, data in contents.items():
        (directory / name).write_bytes(data)
    full = dict(manifest)
    full.setdefault("format", FORMAT)
    full["files"] = {name: sha256_bytes(data) for name, data in sorted(contents.items())}
    validate_manifest(full, str(directory))
    (directory / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    load_bundle(directory)  # read back: what we wrote must load
    return directory
