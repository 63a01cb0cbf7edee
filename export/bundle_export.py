"""Checkpoint → filter bundle: ONNX export, parity checks, maps and manifest (DESIGN.md "Filter bundle").

:func:`export_checkpoint` reads a training checkpoint and writes a verified
bundle directory through :func:`privsdk.bundle.write_bundle`:

- U-Net: ``filter.onnx`` (inputs ``image`` + named noise, output ``filtered``,
  dynamic batch), ``norm.npz`` with ``scale = 1/std``, ``shift = −mean/std``,
  ``σ = 0``, and optionally ``filter.fp16.onnx``;
- lite: ``norm.npz`` with the module's own maps, no ONNX.

Every export runs ``onnx.checker``, onnxruntime vs PyTorch (fp32 within 1e-4)
and the end-to-end fused-kernel check, and records the figures under the
manifest's ``export`` key; a failed check writes nothing. ``norm.npz`` is
written deterministically, so exporting the same checkpoint twice gives the
same file hashes (and an evaluation report of the first export still applies).

Example::

    from privsdk.export.bundle_export import ExportOptions, export_checkpoint
    result = export_checkpoint("runs/emotion/best.pt", "bundles/emotion", ExportOptions(name="emotion"))
    print(result.manifest["export"]["checks"])
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from privsdk import __version__ as privsdk_version
from privsdk.bundle import FORMAT, MANIFEST, MAP_KEYS, NORM, ONNX, sha256_bytes, serialize_maps, sha256_file, write_bundle
from privsdk.errors import BackendError, BundleError, InputError
from privsdk.log import get_logger

from . import parity
from .checkpoint import build_module, norm_arrays, read_checkpoint
from .onnx_graph import DEFAULT_OPSET, IMAGE_INPUT, OUTPUT, check_onnx, export_onnx, ort_session
from .report import check_report_matches, warn_if_fewer_training_faces
from .variants import FP16_FILE, export_fp16, simplify

_log = get_logger(__name__)

BUNDLE_FILES = (MANIFEST, ONNX, NORM, FP16_FILE)


@dataclass
class ExportOptions:
    """What to write besides the network itself."""

    name: Optional[str] = None          # default: the output directory's name
    version: str = "1.0.0"
    description: str = ""
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"              # "auto" (dynamo, then torchscript), "dynamo" or "torchscript"
    fp16: bool = False
    simplify: bool = False
    report: Optional[Dict[str, Any]] = None
    report_source: str = "<report>"


@dataclass
class ExportResult:
    directory: Path
    manifest: Dict[str, Any]
    files: Dict[str, str] = field(default_factory=dict)


# One serializer for norm.npz: byte-reproducible (fixed timestamps, sorted keys, float32).
npz_bytes = serialize_maps


def jsonable(value: Any) -> Any:
    """Plain-JSON copy of checkpoint metadata (numpy scalars/arrays, tuples, paths, tensors)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
        return f"<array shape={list(getattr(value, 'shape', []))}>" if getattr(value, "size", 0) > 64 \
            else jsonable(value.tolist())
    return str(value)


def _versions() -> Dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from privsdk import kernels

    return {"privsdk": privsdk_version, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "kernels": kernels.IMPLEMENTATION}


def unet_maps(ckpt: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Pre-kernel maps of a U-Net: per-location normalization, no noise on the image."""
    norm = norm_arrays(dict(ckpt))
    scale = (1.0 / norm["std"]).astype(np.float32)
    return {"scale": scale, "shift": (-norm["mean"] * scale).astype(np.float32),
            "sigma": np.zeros_like(scale)}


def lite_maps(module: Any, input_hw: Tuple[int, int], source: str) -> Dict[str, np.ndarray]:
    """The lite module's own per-location affine + noise maps, checked."""
    raw = module.maps()
    maps = {}
    for key in MAP_KEYS:
        if key not in raw:
            raise InputError(f"checkpoint {source}: the lite filter's maps() lacks {key!r}; expected {MAP_KEYS}")
        v = raw[key]
        m = np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32)
        if m.shape != (3, *input_hw) or not np.isfinite(m).all():
            raise InputError(f"checkpoint {source}: lite map {key!r} is {m.shape} (finite: {np.isfinite(m).all()}); "
                             f"expected finite float32 (3, {input_hw[0]}, {input_hw[1]})")
        maps[key] = m
    if (maps["sigma"] < 0).any():
        raise InputError(f"checkpoint {source}: lite map 'sigma' has negative values; expected σ ≥ 0")
    return maps


def _manifest(ckpt: Mapping[str, Any], options: ExportOptions, name: str, onnx_section: Optional[Dict[str, Any]],
              checkpoint_info: Dict[str, Any]) -> Dict[str, Any]:
    inp = ckpt["input"]
    training = {k: jsonable(ckpt[k]) for k in ("epoch", "step", "data", "config", "seed", "versions", "metrics")
                if k in ckpt}
    training["checkpoint"] = checkpoint_info
    return {
        "format": FORMAT, "name": name, "version": options.version, "description": options.description,
        "kind": ckpt["filter"]["kind"],
        "secret": jsonable(list(ckpt.get("secret") or [])), "utility": jsonable(list(ckpt.get("utility") or [])),
        "input": {"height": int(inp["height"]), "width": int(inp["width"]), "channels": 3,
                  "colour_order": "RGB", "layout": "NCHW", "dtype": "float32",
                  **({"face_crop": jsonable(crop)} if (crop := _face_crop(ckpt)) else {})},
        "onnx": onnx_section,
        "output": {"convention": "rgb01"},
        "method": {"name": ckpt["method"], "hyperparameters": jsonable(ckpt.get("hyperparameters") or {})},
        "architecture": {"kind": ckpt["filter"]["kind"], "arch": jsonable(ckpt["filter"].get("arch") or {})},
        "training": training,
        "evaluation": None,
    }


def _face_crop(ckpt: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The training faces' layout in the Haar box: from the checkpoint, else measured on its training data.

    Checkpoints written before the trainer measured it carry none; their training data is then read
    again (the config's ``data`` section) when it is still where it was, else the bundle has no layout
    and the runtime frames faces with its default margin (said in a warning).
    """
    data = ckpt.get("data") or {}
    if data.get("face_crop"):
        return dict(data["face_crop"])
    cfg = (ckpt.get("config") or {}).get("data") or {}
    roots = [(cfg.get("name"), cfg.get("root"))] + [(e.get("name"), e.get("root")) for e in cfg.get("also") or []]
    if not cfg or not all(name and root and Path(root).exists() for name, root in roots):
        _log.warning("the checkpoint has no face crop layout and its training data (%s) is not here: the bundle gets "
                     "none, so the runtime frames faces with its default margin", roots)
        return None
    from privsdk.regions.crop_layout import MAX_FACES, measure_face_crop
    from privsdk.train.data import config_splits, load_dataset

    seed = int(cfg.get("split_seed", 0))
    sets = []
    for name, root in roots:
        ds = load_dataset(name, root, int(cfg.get("size", 64)))
        train = config_splits(ds, cfg)["train"]
        sets.append((ds, train))
    # a sample of the training faces, each set in its share of training (a copy of all of them could be GBs)
    total = sum(len(train) for _, train in sets)
    rng = np.random.default_rng(seed)
    faces = [ds.images[np.sort(rng.permutation(train)[:max(1, round(MAX_FACES * len(train) / total))])]
             for ds, train in sets]
    layout = measure_face_crop(np.concatenate(faces), seed=seed)
    _log.info("face crop layout measured on the checkpoint's training data %s: %s", roots, layout)
    return layout


def embed_face_crop(bundle_dir: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """Measure the face crop layout of a bundle's training data (its manifest's ``training`` section)
    and write it into ``input.face_crop``; the network and maps stay byte-identical (an embedded
    report stays valid). For bundles exported before layouts were measured."""
    from .report import rewrite_manifest

    found: Dict[str, Any] = {}

    def put(manifest: Dict[str, Any], bundle: Any) -> None:
        training = dict(manifest.get("training") or {})
        training["data"] = {k: v for k, v in (training.get("data") or {}).items() if k != "face_crop"}
        layout = _face_crop(training)
        if layout is None:
            raise InputError(f"filter bundle {bundle_dir}: no face crop layout could be measured: its training "
                             f"data ({(training.get('config') or {}).get('data')}) is not here or holds no "
                             f"faces the Haar finder finds; expected the data at the recorded root")
        manifest["input"] = dict(manifest["input"], face_crop=jsonable(layout))
        found.update(layout)

    rewrite_manifest(bundle_dir, put, "writing the face crop layout")
    return found


def _input_hw(ckpt: Mapping[str, Any]) -> Tuple[int, int]:
    return int(ckpt["input"]["height"]), int(ckpt["input"]["width"])


def _export_unet(module: Any, ckpt: Mapping[str, Any], options: ExportOptions, source: str):
    input_hw = _input_hw(ckpt)
    noise_inputs = [{"name": str(n["name"]), "shape": [int(d) for d in n["shape"]]} for n in ckpt["noise_inputs"]]
    maps = unet_maps(ckpt)
    norm = norm_arrays(dict(ckpt))
    data, exporter = export_onnx(module, input_hw, noise_inputs, options.opset, options.exporter)
    summary = check_onnx(data)
    expected_inputs = [IMAGE_INPUT, *[n["name"] for n in noise_inputs]]
    if list(summary["inputs"]) != expected_inputs or list(summary["outputs"]) != [OUTPUT]:
        raise BackendError(f"exported graph has inputs {list(summary['inputs'])} and outputs "
                           f"{list(summary['outputs'])}; expected {expected_inputs} and [{OUTPUT!r}]")
    session = ort_session(data)
    checks: Dict[str, Any] = {
        "onnx_checker": {"passed": True, **summary},
        "onnxruntime_vs_torch_max_abs": parity.onnx_vs_torch(module, session, input_hw, noise_inputs),
        "onnxruntime_vs_torch_tolerance": parity.FP32_TOLERANCE,
        "end_to_end_max_abs_uint8": parity.unet_end_to_end(module, session, maps, norm, noise_inputs),
        "end_to_end_tolerance_uint8": parity.UINT8_TOLERANCE,
    }
    simplified: Dict[str, Any] = {"requested": options.simplify, "applied": False}
    if options.simplify:
        slim, tool = simplify(data)
        simplified["tool"] = tool
        if slim is None:
            _log.warning("graph simplification skipped: %s; keeping the exported graph", tool)
        else:
            try:
                check_onnx(slim)
                s2 = ort_session(slim)
                err = parity.onnx_vs_torch(module, s2, input_hw, noise_inputs, what="simplified fp32")
                e2e = parity.unet_end_to_end(module, s2, maps, norm, noise_inputs, what="simplified fp32")
            except BackendError as exc:
                simplified["rejected"] = str(exc)
                _log.warning("%s simplified the graph but broke parity (%s); keeping the unsimplified graph",
                             tool, exc)
            else:
                data, session = slim, s2
                simplified.update(applied=True, onnxruntime_vs_torch_max_abs=err, end_to_end_max_abs_uint8=e2e)
                checks["onnxruntime_vs_torch_max_abs"], checks["end_to_end_max_abs_uint8"] = err, e2e
    extra: Dict[str, bytes] = {}
    fp16_info: Optional[Dict[str, Any]] = None
    if options.fp16:
        data16, exporter16, _ = export_fp16(module, input_hw, noise_inputs, options.opset, options.exporter)
        check_onnx(data16)
        s16 = ort_session(data16)
        fp16_info = {
            "file": FP16_FILE, "exporter": exporter16, "io_dtype": "float32", "compute_dtype": "float16",
            "onnxruntime_vs_torch_fp32_max_abs": parity.onnx_vs_torch(
                module, s16, input_hw, noise_inputs, tolerance=parity.FP16_TOLERANCE, what="fp16"),
            "onnxruntime_vs_torch_fp32_tolerance": parity.FP16_TOLERANCE,
            "end_to_end_max_abs_uint8": parity.unet_end_to_end(
                module, s16, maps, norm, noise_inputs, tolerance=parity.UINT8_TOLERANCE + 2, what="fp16"),
        }
        extra[FP16_FILE] = data16
    onnx_section = {"image_input": IMAGE_INPUT, "noise_inputs": noise_inputs, "output": OUTPUT,
                    "opset": summary["opset"], "batch": "dynamic"}
    export_info = {"exporter": exporter, "checks": checks, "simplify": simplified, "fp16": fp16_info}
    return maps, data, extra, onnx_section, export_info


def _export_lite(module: Any, ckpt: Mapping[str, Any], options: ExportOptions, source: str):
    input_hw = _input_hw(ckpt)
    for flag, set_ in (("--fp16", options.fp16), ("--simplify", options.simplify)):
        if set_:
            _log.warning("%s ignored: a lite filter has no ONNX graph, only maps for the fused kernel", flag)
    maps = lite_maps(module, input_hw, source)
    checks = parity.lite_end_to_end(module, maps)
    return maps, None, {}, None, {"exporter": None, "checks": checks, "simplify": None, "fp16": None}


def _prepare_directory(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir}: exists and is not a directory; expected a new or bundle directory")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in BUNDLE_FILES)
        if foreign:
            raise InputError(f"output {out_dir}: holds files that are not part of a bundle ({', '.join(foreign[:5])}); "
                             "expected an empty directory or a previous bundle to replace")


def _install(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by the verified ``tmp`` bundle (old bundle kept until the new one is in place)."""
    backup = None
    if out_dir.exists():
        backup = out_dir.with_name(out_dir.name + ".old-bundle")
        if backup.exists():
            shutil.rmtree(backup)
        out_dir.rename(backup)
    tmp.rename(out_dir)
    if backup is not None:
        shutil.rmtree(backup)


def export_filter(module: Any, ckpt: Mapping[str, Any], out_dir: Union[str, Path],
                  options: Optional[ExportOptions] = None, source: str = "<checkpoint>",
                  checkpoint_info: Optional[Dict[str, Any]] = None) -> ExportResult:
    """Export an already built ``module`` of checkpoint ``ckpt`` into the bundle directory ``out_dir``."""
    options = options or ExportOptions()
    out_dir = Path(out_dir)
    _prepare_directory(out_dir)
    kind = ckpt["filter"]["kind"]
    if options.report is not None:  # fail fast, before the ONNX export, when the maps already differ
        early = unet_maps(ckpt) if kind == "unet" else lite_maps(module, _input_hw(ckpt), source)
        check_report_matches(options.report, {NORM: sha256_bytes(npz_bytes(early))}, options.report_source,
                             str(out_dir), partial=True)
    if kind == "unet":
        maps, onnx_bytes, extra, onnx_section, export_info = _export_unet(module, ckpt, options, source)
    else:
        maps, onnx_bytes, extra, onnx_section, export_info = _export_lite(module, ckpt, options, source)
    norm = npz_bytes(maps)
    contents = {NORM: norm, **extra}
    if onnx_bytes is not None:
        contents[ONNX] = onnx_bytes
    files = {k: sha256_bytes(v) for k, v in sorted(contents.items())}
    name = options.name or out_dir.name
    manifest = _manifest(ckpt, options, name, onnx_section, checkpoint_info or {"file": source})
    export_info.update(_versions())
    export_info["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest["export"] = jsonable(export_info)
    if options.report is not None:
        check_report_matches(options.report, files, options.report_source, str(out_dir))
        warn_if_fewer_training_faces(options.report, options.report_source)
        manifest["evaluation"] = dict(options.report)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_bundle(tmp, manifest, maps, onnx_bytes=onnx_bytes, extra_files=extra)
        written = json.loads((tmp / MANIFEST).read_text(encoding="utf-8"))["files"]
        if written != files:  # pragma: no cover - guards write_bundle's behaviour
            raise BundleError(f"filter bundle {out_dir}: written hashes {written} differ from the exported {files}")
        _install(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    _log.info("wrote %s bundle %s (%s)", kind, out_dir, ", ".join(sorted(files)))
    return ExportResult(out_dir, {**manifest, "files": files}, files)


def export_checkpoint(checkpoint: Union[str, Path], out_dir: Union[str, Path],
                      options: Optional[ExportOptions] = None) -> ExportResult:
    """Read, check and export a training checkpoint file into a bundle directory."""
    source = str(checkpoint)
    ckpt = read_checkpoint(checkpoint)
    module = build_module(ckpt, source)
    info = {"file": Path(checkpoint).name, "sha256": sha256_file(checkpoint)}
    return export_filter(module, ckpt, out_dir, options, source, info)
