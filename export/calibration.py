"""INT8 calibration data: real images through the same fused pre-kernel the runtime uses.

Each image of the calibration folder is read as a BGR frame, taken whole as
the region, and sent through :func:`privsdk.kernels.pre` with the bundle's
``norm.npz`` maps; the kernel fills the noise inputs in the same call. So the
calibrator sees exactly the tensors the engine will see on the device.

Example::

    from privsdk.bundle import load_bundle
    from privsdk.export.calibration import CalibrationSet
    calib = CalibrationSet("calib_images/", load_bundle("bundles/emotion"), batch_size=8)
    for feeds in calib.batches():       # {"image": 8×3×64×64, "noise": 8×8×4×4}
        ...
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

import numpy as np

from privsdk.bundle import Bundle
from privsdk.errors import InputError
from privsdk.log import get_logger

_log = get_logger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(directory: Union[str, Path]) -> List[Path]:
    """Image files of ``directory`` (recursively, sorted); :class:`InputError` when missing or empty."""
    directory = Path(directory)
    if not directory.exists():
        raise InputError(f"calibration folder {directory}: no such directory; expected a folder of real images "
                         "(e.g. face crops like those the filter will see)")
    if not directory.is_dir():
        raise InputError(f"calibration folder {directory}: is a file; expected a folder of images")
    paths = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"calibration folder {directory}: holds no images; expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    return paths


class CalibrationSet:
    """Fixed-size batches of pre-kernel output (and noise) from a folder of real images."""

    def __init__(self, directory: Union[str, Path], bundle: Bundle, batch_size: int = 8,
                 limit: Optional[int] = 512, seed: Optional[int] = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.directory = Path(directory)
        self.bundle = bundle
        self.batch_size = batch_size
        paths = list_images(directory)
        self.paths = paths[:limit] if limit else paths
        if len(self.paths) < batch_size:
            raise InputError(f"calibration folder {directory}: {len(self.paths)} image(s), expected at least "
                             f"one batch of {batch_size}")
        self.seed = seed
        self.input_name = (bundle.manifest.get("onnx") or {}).get("image_input", "image")

    def __len__(self) -> int:
        """Number of full batches."""
        return len(self.paths) // self.batch_size

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the file names and sizes used, to key a calibration cache."""
        h = hashlib.sha256()
        for p in self.paths[: len(self) * self.batch_size]:
            h.update(f"{p.name}:{p.stat().st_size}\n".encode())
        h.update(f"batch={self.batch_size}".encode())
        return h.hexdigest()

    def shapes(self) -> Dict[str, tuple]:
        """Per-input shape of one batch."""
        h, w = self.bundle.input_size
        out = {self.input_name: (self.batch_size, 3, h, w)}
        for n in self.bundle.noise_inputs:
            out[n["name"]] = (self.batch_size, *[int(d) for d in n["shape"]])
        return out

    def _read(self, path: Path) -> np.ndarray:
        import cv2

        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise InputError(f"calibration image {path}: OpenCV cannot decode it; expected a readable image")
        return frame

    def batches(self) -> Iterator[Dict[str, np.ndarray]]:
        """Yield ``{input name: float32 batch}`` for every full batch, in file order."""
        from privsdk import kernels

        maps = self.bundle.maps
        sigma = maps["sigma"] if bool((maps["sigma"] != 0).any()) else None
        rng = kernels.NoiseSource(self.seed)
        shapes = self.shapes()
        for b in range(len(self)):
            feeds = {name: np.empty(shape, np.float32) for name, shape in shapes.items()}
            for i, path in enumerate(self.paths[b * self.batch_size:(b + 1) * self.batch_size]):
                noise = [feeds[n["name"]][i] for n in self.bundle.noise_inputs]
                kernels.pre(self._read(path), None, maps["scale"], maps["shift"], sigma,
                            out=feeds[self.input_name][i], noise_outputs=noise, rng=rng)
            yield feeds
