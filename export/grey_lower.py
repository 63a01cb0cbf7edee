"""A bundle whose faces leave the runtime with the bottom of the crop flat grey, made from an existing one.

:func:`grey_lower_bundle` copies a bundle's files byte for byte but ``norm.npz``, to which it adds (or in
which it composes) the post-kernel's per-location maps ``post_scale`` / ``post_shift``: 0 and mid-grey over
the bottom ``share`` of the crop's rows, so the post-kernel writes flat grey there whatever the network
(and the eraser) put out. The rows are those a lite filter's ``lower_fill`` of that share fills (a row is
grey when its centre lies in the bottom ``share`` of the height).

Why: hiding more of the face can only take information from a retrained attacker, the post-kernel already
has the maps for it (it costs nothing per face), and behind ``emotion-lite-erased``'s flat grey the identity
descriptor still finds 95.5% of people. An eraser fit on the network's outputs (``--erase-secret``) stays
valid: it makes the classes' mean outputs equal over every pixel, so over the rows left as well. Measured
behind ``emotion`` 0.8.0 (``docs/emotion-methods.md``, "The eraser after the U-Net"), 55% grey kept *fewer*
identities (61% against 67-69.5%): behind the U-Net's blurred eyes the grey leaves the descriptor too
little, so no bundle ships it.

Example::

    from privsdk.export.grey_lower import grey_lower_bundle
    grey_lower_bundle("runs/bundles/emotion-erased", "runs/bundles/emotion-grey", share=0.55)
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from privsdk.bundle import NORM, ONNX, load_bundle, write_bundle
from privsdk.errors import InputError
from privsdk.log import get_logger

from .derived import derived_manifest

_log = get_logger(__name__)

#: the grey written, in the network's output convention (rgb01): 0.5, i.e. 128 in the frame
GREY = 0.5


def grey_rows(height: int, share: float) -> np.ndarray:
    """A bool per row: True for the rows the fill makes grey (their centre in the bottom ``share``).

    >>> grey_rows(8, 0.25).tolist()
    [False, False, False, False, False, False, True, True]
    """
    if not 0.0 < float(share) < 1.0:
        raise InputError(f"--grey-lower {share!r}: expected the share of the crop's rows to make grey, in (0, 1)")
    return (np.arange(height) + 0.5) / height >= 1.0 - float(share)


def grey_lower_bundle(source: Union[str, Path], output: Union[str, Path], share: float,
                      name: Optional[str] = None, version: Optional[str] = None,
                      description: Optional[str] = None) -> Path:
    """Write ``output``: ``source``'s bundle with the bottom ``share`` of every face flat grey (module docstring)."""
    bundle = load_bundle(source)
    if Path(output).resolve() == Path(source).resolve():
        raise InputError(f"--grey-lower writes a new bundle: give -o DIR other than the source {source}")
    h, w = bundle.input_size
    grey = grey_rows(h, share)[None, :, None]                 # 1×H×1, broadcast over channels and columns
    maps: Dict[str, np.ndarray] = {k: np.asarray(v) for k, v in bundle.maps.items()}
    scale = maps.get("post_scale", np.ones((3, h, w), np.float32))
    shift = maps.get("post_shift", np.zeros((3, h, w), np.float32))
    maps["post_scale"] = np.where(grey, 0.0, scale).astype(np.float32)
    maps["post_shift"] = np.where(grey, GREY, shift).astype(np.float32)
    rows = int(grey.sum())
    manifest = derived_manifest(
        bundle, "grey_lower", suffix=f"-grey{int(round(share * 100))}", name=name, version=version,
        description=description,
        sentence=f"The bottom {share:.0%} of every face's crop ({rows} of {h} rows) leaves it flat grey.")
    manifest["export"]["grey_lower"].update(share=float(share), rows=rows, value=GREY)
    extra = {k: v for k, v in bundle.files.items() if k not in (NORM, ONNX)}
    out = write_bundle(output, manifest, maps, onnx_bytes=bundle.onnx_bytes, extra_files=extra)
    _log.info("wrote %s: %s with the bottom %d of %d rows grey", out, bundle.name, rows, h)
    return out


__all__ = ["grey_lower_bundle", "grey_rows", "GREY"]
