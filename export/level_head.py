"""A levelling bundle from an existing one: the same filter, with each face cut out level first.

:func:`level_bundle` copies a bundle's network and maps byte for byte and adds ``level.npz`` (the
template face the runtime registers each face onto, :mod:`privsdk.regions.level`) and
``input.level_head``. The template is the mean grey face of the training split of the set the
bundle was trained on (its manifest's ``training.config.data``: name, root, split seed and
fractions; extra sets in ``data.also`` are not used, because their crops sit differently). The new
bundle's files differ from the source's, so it carries no evaluation until one of its own is
embedded (``privsdk eval`` then ``privsdk export BUNDLE --report``).

Example::

    from privsdk.export.level_head import level_bundle
    level_bundle("sdk/privsdk/filters/emotion-lite", "bundles/emotion-lite-levelled",
                 name="emotion-lite-levelled", version="0.1.0")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np

from privsdk.bundle import LEVEL, NORM, ONNX, load_bundle, serialize_maps, write_bundle
from privsdk.errors import InputError
from privsdk.log import get_logger
from privsdk.regions.level import MAX_ROLL_DEG, MAX_SHIFT_SHARE, UPPER_SHARE, grey01

from .derived import derived_manifest

_log = get_logger(__name__)


def training_template(data_config: Mapping[str, Any], size: int) -> Dict[str, Any]:
    """The mean grey face (H×W float32, 0-1) of the training split named by a config's ``data`` section.

    Returns ``{"template": array, "source": {...}}``, the source saying which faces it is the mean of.
    """
    from privsdk.train.data import config_splits, load_dataset

    name, root = data_config.get("name"), data_config.get("root")
    if not name or not root or not Path(str(root)).exists():
        raise InputError(f"the head-levelling template is the mean of the bundle's training faces, but its training "
                         f"data ({name!r} at {root!r}) is not here; expected the data at the recorded root")
    ds = load_dataset(str(name), str(root), int(data_config.get("size", size)))
    fractions = tuple(float(f) for f in data_config.get("fractions", (0.7, 0.15, 0.15)))
    seed = int(data_config.get("split_seed", 0))
    train = config_splits(ds, data_config)["train"]
    total = np.zeros(ds.images.shape[1:3], np.float64)
    for i in range(0, len(train), 1024):   # in chunks: the float copy of a whole set would be GBs
        total += grey01_batch(ds.images[np.sort(train[i:i + 1024])]).sum(axis=0)
    template = (total / len(train)).astype(np.float32)
    return {"template": template,
            "source": {"data": str(name), "root": str(root), "split": "train", "split_seed": seed,
                       "fractions": list(fractions), "faces": int(len(train)), "what": "mean grey face",
                       **({"train_share": float(data_config["train_share"])}
                          if data_config.get("train_share") is not None else {})}}


def grey01_batch(images: np.ndarray) -> np.ndarray:
    """N×H×W×C uint8 → N×H×W float64 in 0-1 (the channels' mean, as :func:`privsdk.regions.level.grey01`)."""
    return np.stack([grey01(im) for im in images]).astype(np.float64)


def level_bundle(source: Union[str, Path], output: Union[str, Path], name: Optional[str] = None,
                 version: Optional[str] = None, description: Optional[str] = None,
                 template: Optional[np.ndarray] = None) -> Path:
    """Write ``output``: ``source``'s bundle with head levelling (see the module's docstring).

    Args:
        source: a bundle directory or .zip.
        output: the new bundle's directory (must not be the source).
        name, version, description: for the new manifest (default: the source's name + ``-levelled``,
            its version, its description with a sentence on levelling).
        template: H×W float32 0-1 template face; default the mean face of the source's training split.
    """
    bundle = load_bundle(source)
    if Path(output).resolve() == Path(source).resolve():
        raise InputError(f"--level-head writes a new bundle: give -o DIR other than the source {source}")
    if bundle.level_head:
        raise InputError(f"filter bundle {source} already levels heads (input.level_head)")
    h, w = bundle.input_size
    origin: Dict[str, Any] = {"what": "given"}
    if template is None:
        data_config = ((bundle.manifest.get("training") or {}).get("config") or {}).get("data") or {}
        made = training_template(data_config, h)
        template, origin = made["template"], made["source"]
    template = np.ascontiguousarray(template, np.float32)
    if template.shape != (h, w):
        raise InputError(f"head-levelling template is {template.shape}; the bundle's input is {(h, w)}")
    manifest = derived_manifest(
        bundle, "level_head", suffix="-levelled", name=name, version=version, description=description,
        sentence="Each face is first cut out turned level (its upper part registered onto the training faces' mean "
                 "face) and pasted back level: the head's roll is given up.")
    manifest["input"] = dict(manifest["input"], level_head={
        "template": LEVEL, "upper_share": UPPER_SHARE, "max_roll_deg": MAX_ROLL_DEG,
        "max_shift_share": MAX_SHIFT_SHARE, "template_source": origin})
    extra = {NORM: bundle.files[NORM], LEVEL: serialize_maps({"template": template})}
    extra.update({k: v for k, v in bundle.files.items() if k not in (NORM, ONNX)})
    out = write_bundle(output, manifest, bundle.maps, onnx_bytes=bundle.onnx_bytes, extra_files=extra)
    _log.info("wrote %s: %s with head levelling (template: %s)", out, bundle.name, origin)
    return out


__all__ = ["level_bundle", "training_template"]
