"""An erasing bundle from an existing one: the same filter, with the secret's linear trace projected out.

:func:`erase_bundle` runs the source bundle (through :class:`privsdk.Filter`, exactly as a device runs it:
levelling, pre-kernel, network) on the training and validation splits of the set it was trained on, fits
LEACE to the outputs (:mod:`privsdk.train.erasure`) and writes a new bundle: the source's files byte for
byte plus ``erase.npz`` and an ``erase`` section in the manifest. The runtime applies it between the
network and the post-kernel (:mod:`privsdk.erase`). The data is named by the source's manifest
(``training.config.data``: name, root, split seed and fractions; extra sets in ``data.also`` are not
used) unless ``data`` names one or more sets, each split with the manifest's seed and fractions. The new bundle carries no evaluation until one of its own is embedded.

Example::

    from privsdk.export.erase_secret import erase_bundle
    erase_bundle("sdk/privsdk/filters/emotion-lite-levelled", "bundles/emotion-lite-erased",
                 name="emotion-lite-erased", version="0.1.0")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from privsdk.bundle import ERASE, NORM, ONNX, load_bundle, serialize_maps, write_bundle
from privsdk.errors import InputError
from privsdk.log import get_logger

from .derived import derived_manifest

_log = get_logger(__name__)

#: faces run through the filter at a time (their float outputs are 48 KB each at 64×64)
CHUNK = 512
#: noise draws of a stochastic bundle's outputs averaged per training face before the eraser is fit. One (the
#: recipe every shipped eraser was made with): on `emotion` 0.10.0 four draws and the ridge judged on a fresh
#: one took the logistic attacker from 0.568 to 0.517 but let the retrained CNN read 0.691 instead of 0.606
#: (docs/emotion-methods.md, "The eraser fit on one noise draw"), so it is an option, not the default
DRAWS = 1


def _data_configs(bundle: Any, data: Optional[Sequence[str]]) -> List[Dict[str, Any]]:
    """One data config per set to fit on: the manifest's, or each ``NAME=ROOT`` of ``data`` with its split."""
    recorded = dict(((bundle.manifest.get("training") or {}).get("config") or {}).get("data") or {})
    recorded.pop("also", None)
    configs = [recorded]
    if data:
        configs = []
        for spec in data:
            name, sep, root = spec.partition("=")
            if not sep or not name or not root:
                raise InputError(f"--erase-data {spec!r}: expected NAME=ROOT, e.g. "
                                 "smilesmiled=../shared/data/SMILEsmileD")
            configs.append(dict(recorded, name=name, root=root))
    for config in configs:
        name, root = config.get("name"), config.get("root")
        if not name or not root or not Path(str(root)).exists():
            raise InputError(f"the eraser is fit on the bundle's training faces, but its training data ({name!r} at "
                             f"{root!r}) is not here; expected the data at the recorded root, or --erase-data NAME=ROOT")
    return configs


def filter_outputs(source: Union[str, Path], images_rgb: np.ndarray, desc: str = "faces", seed: int = 0) -> np.ndarray:
    """N×H×W×3 uint8 RGB faces → N×3×H×W float32: what the bundle's post-kernel receives for each (one draw of
    a stochastic bundle's noise, from ``seed``)."""
    from tqdm.auto import tqdm

    from privsdk.filter import Filter

    from privsdk.bundle import load_bundle

    # onnxruntime on the CPU, as `privsdk eval` runs a bundle (a lite bundle has no network to run)
    backend = "auto" if load_bundle(source).kind == "lite" else "onnxruntime"
    flt = Filter(str(source), backend=backend, regions="full", seed=seed)
    h, w = flt.input_size
    out = np.empty((len(images_rgb), 3, h, w), np.float32)
    for i in tqdm(range(0, len(images_rgb), CHUNK), desc=desc, unit="chunk"):
        chunk = images_rgb[i:i + CHUNK]
        out[i:i + len(chunk)] = flt.network_outputs([np.ascontiguousarray(f[..., ::-1]) for f in chunk])
    return out


#: how the faces an eraser is fit on are framed: each set's own crops, or re-cut as ``Filter`` cuts camera faces
FRAMINGS = ("data", "runtime")
#: a set whose runtime re-cut moves no side of its crops by more than this share of the image (under a
#: pixel at 64 px) is the same faces under both framings: it is fit once, not as two groups
SAME_FRAMING = 0.01


def _framings(framing: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"runtime"`` / ``["data", "runtime"]`` → the checked framings, runtime first, each once."""
    asked = [framing] if isinstance(framing, str) else list(framing)
    bad = [f for f in asked if f not in FRAMINGS]
    if not asked or bad:
        raise InputError(f"--erase-framing {' '.join(map(str, bad or asked)) or '(none)'!r}: expected one or more of "
                         f"{', '.join(FRAMINGS)}")
    return tuple(f for f in ("runtime", "data") if f in asked)


def _face_box(source: Union[str, Path]) -> Tuple[float, ...]:
    box = ((load_bundle(source).manifest.get("input") or {}).get("face_crop") or {}).get("box")
    if box is None:
        raise InputError(f"--erase-framing runtime: filter bundle {source} does not record how its training faces "
                         "were framed (input.face_crop); expected a bundle with one ('privsdk export BUNDLE "
                         "--face-crop' adds it)")
    return tuple(float(v) for v in box)


def training_outputs(source: Union[str, Path], data_config: Mapping[str, Any], secret: str,
                     size: int, framing: str = "data", draws: int = 1
                     ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], Dict[str, Any]]:
    """The bundle's outputs and secret labels on the train and val splits of ``data_config``.

    ``framing="runtime"`` re-cuts every face first as ``Filter`` would cut it from a camera frame for this
    bundle (:mod:`privsdk.train.eval.framing`; the set's layout measured on its train split), so that the
    eraser meets the class means of the faces a device feeds it, not of the set's own crops. With
    ``draws`` > 1 (a stochastic bundle) ``train`` is the mean of that many noise draws per face and
    ``fresh`` one more draw of the same faces, on which the eraser's ridge is judged.
    """
    if int(draws) < 1:
        raise InputError(f"--erase-draws {draws}: expected a number of noise draws >= 1")
    from privsdk.train.data import config_splits, load_dataset

    ds = load_dataset(str(data_config["name"]), str(data_config["root"]), int(data_config.get("size", size)))
    if secret not in ds.labels:
        raise InputError(f"the data {data_config['name']} has no {secret!r} labels (it has {sorted(ds.labels)}); "
                         "expected a set labelled with the bundle's secret")
    fractions = tuple(float(f) for f in data_config.get("fractions", (0.7, 0.15, 0.15)))
    seed = int(data_config.get("split_seed", 0))
    _framings(framing)
    splits = config_splits(ds, data_config, secret)   # the network's own training faces (data.train_share)
    crop = None
    if framing == "runtime":
        from privsdk.train.eval.framing import crop_and_resize, runtime_framing

        data_box, crop = runtime_framing(ds.images[np.sort(splits["train"])], _face_box(source),
                                         f"{data_config['name']} train")
        _log.info("%s: faces re-cut as Filter cuts them, %s of each image (the set's faces sit at %s of the Haar "
                  "box)", data_config["name"], [round(v, 4) for v in crop], [round(v, 4) for v in data_box])
    outputs, labels = {}, {}
    for split in ("train", "val"):
        idx = np.sort(splits[split])
        faces = ds.images[idx] if crop is None else crop_and_resize(ds.images[idx], crop)
        labels[split] = np.asarray(ds.labels[secret])[idx]
        if split == "val" or draws == 1:
            outputs[split] = filter_outputs(source, faces, desc=f"filtering the {split} faces")
            continue
        total = filter_outputs(source, faces, desc=f"filtering the {split} faces, draw 1 of {draws}")
        for seed in range(1, int(draws)):
            total += filter_outputs(source, faces, desc=f"draw {seed + 1} of {draws}", seed=seed)
        outputs[split] = total / np.float32(draws)
        # another draw for judging the ridge, from a seed none of the averaged draws used
        outputs["fresh"] = filter_outputs(source, faces, desc="a fresh draw", seed=int(draws))
    where = {"data": str(data_config["name"]), "root": str(data_config["root"]), "split": "train",
             "ridge_picked_on": "val", "split_seed": seed, "fractions": list(fractions),
             "faces": int(len(labels["train"])), "val_faces": int(len(labels["val"])),
             "framing": {"mode": "data"} if crop is None else
             {"mode": "runtime", "crop": [round(v, 4) for v in crop], "data_box": [round(v, 4) for v in data_box]}}
    if data_config.get("train_share") is not None:
        where["train_share"] = float(data_config["train_share"])
    if draws > 1:
        where["noise_draws"] = int(draws)
    return outputs, labels, where


def without_eraser(source: Union[str, Path], directory: Union[str, Path]) -> Path:
    """Write ``directory``: the bundle an erasing bundle ``source`` was made from, its eraser dropped.

    Its files are ``source``'s without ``erase.npz``, and they must be, byte for byte, the files the eraser was
    fit behind (``export.erase_secret.from``): a bundle changed by another step after its eraser (whose eraser
    would then be fit on other outputs than the runtime feeds it) is refused. The name and version are the
    ones recorded there; the manifest carries no evaluation.
    """
    bundle = load_bundle(source)
    origin = (bundle.manifest.get("export") or {}).get("erase_secret", {}).get("from")
    if not bundle.manifest.get("erase") or not isinstance(origin, dict) or not isinstance(origin.get("files"), dict):
        raise InputError(f"filter bundle {source} has no eraser made by `privsdk export --erase-secret` "
                         "(expected an erase section and export.erase_secret.from); there is nothing to refit")
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("files", "erase", "evaluation")}
    manifest["export"] = {k: v for k, v in bundle.manifest["export"].items() if k != "erase_secret"}
    manifest.update(name=origin["name"], version=origin["version"], evaluation=None)
    extra = {k: v for k, v in bundle.files.items() if k not in (ONNX, ERASE)}
    out = write_bundle(directory, manifest, bundle.maps, onnx_bytes=bundle.onnx_bytes, extra_files=extra)
    written = load_bundle(out).manifest["files"]
    if written != origin["files"]:
        changed = sorted(set(written.items()) ^ set(origin["files"].items()))
        raise InputError(f"filter bundle {source}: its files without {ERASE} are not the ones its eraser was fit "
                         f"behind (export.erase_secret.from; differing: {sorted({n for n, _ in changed})}); a step "
                         "after the eraser changed them, so it cannot be refit here: erase the bundle before that step")
    return out


def erase_bundle(source: Union[str, Path], output: Union[str, Path], name: Optional[str] = None,
                 version: Optional[str] = None, description: Optional[str] = None,
                 data: Optional[Sequence[str]] = None, framing: Union[str, Sequence[str]] = "data",
                 refit: bool = False, draws: int = DRAWS) -> Path:
    """Write ``output``: ``source``'s bundle with a linear eraser of its secret (see the module's docstring).

    Args:
        source: a bundle directory or .zip (without an eraser, unless ``refit``).
        output: the new bundle's directory (must not be the source).
        name, version, description: for the new manifest (default: the source's name + ``-erased``, its
            version, its description with a sentence on the eraser).
        data: ``NAME=ROOT`` of each set of faces to fit on (default: the set the source's manifest names).
            With several, the classes' means meet within each set (its training split; the ridge is
            picked on all their validation splits).
        framing: ``"data"`` fits on each set's own crops; ``"runtime"`` on its faces re-cut as ``Filter`` cuts
            camera faces for this bundle (its ``input.face_crop``): what a device feeds the eraser. Both
            (``["data", "runtime"]``) fit on every set under each framing, each its own group, so the class
            means meet on the set's crops and on its re-cut faces alike; a set whose re-cut is its crops to
            within :data:`SAME_FRAMING` (the set the filter was trained on) is fit once.
        refit: ``source`` has an eraser: drop it (:func:`without_eraser`) and fit a new one on the outputs it
            was fit on; the new bundle keeps ``source``'s name and version unless given.
        draws: for a stochastic bundle, the noise draws averaged per training face; the ridge is then judged
            by the class-mean difference left on one more draw (:func:`privsdk.train.erasure.fit_linear_eraser`).
            A deterministic bundle is run once.
    """
    if isinstance(data, str):
        data = [data]
    framings = _framings(framing)
    if Path(output).resolve() == Path(source).resolve():
        raise InputError(f"--erase-secret writes a new bundle: give -o DIR other than the source {source}")
    if refit:
        import tempfile

        erased = load_bundle(source)
        with tempfile.TemporaryDirectory(prefix="privsdk-refit-") as tmp:
            parent = without_eraser(source, Path(tmp) / "without-eraser")
            return erase_bundle(parent, output, name=name or erased.name,
                                version=version or str(erased.manifest.get("version")),
                                description=description or erased.manifest.get("description"),
                                data=data, framing=framings, draws=draws)
    bundle = load_bundle(source)
    if bundle.manifest.get("erase"):
        raise InputError(f"filter bundle {source} already erases its secret (its manifest has an erase section); "
                         "--erase-refit replaces its eraser with one fit afresh")
    return _erase(bundle, source, output, name, version, description, data, framings, draws)


def _erase(bundle: Any, source: Union[str, Path], output: Union[str, Path], name: Optional[str],
           version: Optional[str], description: Optional[str], data: Optional[Sequence[str]],
           framings: Tuple[str, ...], draws: int) -> Path:
    from privsdk.train.erasure import fit_linear_eraser

    if len(bundle.manifest["secret"]) != 1:
        raise InputError(f"filter bundle {source} names secrets {bundle.manifest['secret']}; the eraser is fit for "
                         "one secret, expected exactly one")
    secret = str(bundle.manifest["secret"][0])
    draws = int(draws) if bundle.stochastic else 1   # a deterministic filter gives the same outputs every run
    train, fresh, val, labels, groups, fitted_on = [], [], [], [], [], []
    for config in _data_configs(bundle, data):
        for mode in framings:
            outputs, secret_labels, where = training_outputs(source, config, secret, bundle.input_size[0], mode,
                                                             draws=draws)
            crop = where["framing"].get("crop")
            if crop is not None and "data" in framings and max(abs(c - f) for c, f in zip(crop, (0, 0, 1, 1))) \
                    <= SAME_FRAMING:
                # the re-cut is the set's own crops: one group stands for both framings
                where["framing"]["same_as_data"] = True
                _log.info("%s: the runtime re-cut is its own crops to within %g; fit once", config["name"],
                          SAME_FRAMING)
            train.append(outputs["train"])
            fresh.append(outputs.get("fresh"))
            val.append(outputs["val"])
            labels.append(secret_labels["train"])
            groups.append(np.full(len(secret_labels["train"]), len(fitted_on)))
            fitted_on.append(where)
            del outputs
            if where["framing"].get("same_as_data"):
                break
    faces = sum(len(x) for x in labels)
    _log.info("fitting the eraser of %s on %d faces (%s)", secret, faces, ", ".join(w["data"] for w in fitted_on))
    fit = fit_linear_eraser(np.concatenate(train), np.concatenate(labels), np.concatenate(val),
                            groups=np.concatenate(groups), fresh_outputs=None if draws == 1 else np.concatenate(fresh))
    del train, fresh, val
    manifest = derived_manifest(
        bundle, "erase_secret", suffix="-erased", name=name, version=version, description=description,
        sentence=f"What is left of the {secret} that a linear model could read is projected out of every face "
                 "(LEACE, fit on the training faces' outputs).")
    manifest["erase"] = {
        "file": ERASE, "secret": secret, "method": "LEACE (Belrose et al. 2023), closed form",
        "space": "the network's output (output.convention), before the post-kernel", **fit.describe(),
        "noise_draws": draws, "fitted_on": fitted_on}
    extra = {k: v for k, v in bundle.files.items() if k not in (NORM, ONNX)}
    extra.update({NORM: bundle.files[NORM], ERASE: serialize_maps(fit.eraser.arrays())})
    out = write_bundle(output, manifest, bundle.maps, onnx_bytes=bundle.onnx_bytes, extra_files=extra)
    _log.info("wrote %s: %s with a rank-%d eraser of %s (ridge %g)", out, bundle.name, fit.eraser.rank, secret,
              fit.ridge)
    return out


__all__ = ["DRAWS", "FRAMINGS", "SAME_FRAMING", "erase_bundle", "filter_outputs", "training_outputs",
           "without_eraser"]
