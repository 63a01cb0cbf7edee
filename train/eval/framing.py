"""Frame a data set's faces as ``Filter`` frames camera faces (``privsdk eval --framing runtime``).

The protocol scores each set's own crops. They are not what a filter sees on a device:
there the runtime's Haar finder boxes each face and cuts the crop the filter's bundle asks
for (``input.face_crop``: where its training faces sat in that box). SMILEsmileD's crops
are that crop already; GENKI-4K's are the Haar box itself, so looser: a filter trained on
SMILEsmileD that fills the bottom 60% of its crop reaches GENKI-4K's eyes in the protocol,
but not on a camera. This module measures where a set's faces sit in the same Haar box
(:func:`privsdk.regions.crop_layout.measure_face_crop`, as training does), and re-cuts
every image to the crop the runtime would take, resized back to the set's size.

Example::

    import numpy as np
    from privsdk.train.eval.framing import runtime_crop, crop_and_resize
    # a set cropped at the Haar box itself, a filter trained on faces at [0.11, 0.2, 0.87, 0.96] of it
    crop = runtime_crop([0.0, 0.0, 1.0, 1.0], [0.11, 0.2, 0.87, 0.96])    # fractions of each image
    faces = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    framed = crop_and_resize(faces, crop)                                    # still 4×64×64×3
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from privsdk.errors import InputError
from privsdk.log import get_logger

if TYPE_CHECKING:
    from .filters import FilterUnderEval
    from .protocol import EvalData

_log = get_logger(__name__)

#: filters whose boxes differ by more than this (in Haar-box units) frame faces differently: separate runs
BOX_TOLERANCE = 0.03

Box = Tuple[float, float, float, float]


def _box(value: Any, what: str) -> Box:
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
        raise InputError(f"{what}: got {value!r}; expected [left, top, right, bottom] with right > left and "
                         "bottom > top")
    return box  # type: ignore[return-value]


def runtime_crop(data_box: Sequence[float], filter_box: Sequence[float]) -> Box:
    """The filter's crop in fractions of a data image, both boxes given in units of the same Haar face box.

    ``data_box`` is where the set's images sit in the box, ``filter_box`` where the filter wants its crop.
    """
    dl, dt, dr, db = _box(data_box, "the data's face layout")
    fl, ft, fr, fb = _box(filter_box, "the filter's face crop")
    w, h = dr - dl, db - dt
    return ((fl - dl) / w, (ft - dt) / h, (fr - dl) / w, (fb - dt) / h)


def crop_and_resize(images: np.ndarray, crop: Sequence[float]) -> np.ndarray:
    """Each image's ``crop`` (fractions; may reach outside, where the border is replicated) at the same size.

    One affine warp per image (OpenCV, bilinear), like the runtime's crop-and-resize.
    """
    import cv2

    left, top, right, bottom = _box(crop, "crop")
    n, h, w = images.shape[:3]
    sx, sy = (right - left), (bottom - top)
    # output pixel (u, v) samples the source at (left*w + u*sx, top*h + v*sy), pixel centres aligned
    matrix = np.array([[sx, 0.0, left * w + 0.5 * sx - 0.5], [0.0, sy, top * h + 0.5 * sy - 0.5]], np.float64)
    out = np.empty_like(images)
    for i in range(n):
        out[i] = cv2.warpAffine(images[i], matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def filters_face_box(filters: Sequence["FilterUnderEval"]) -> Tuple[Box, List[str]]:
    """The face crop the filters under evaluation were trained on (baselines have none), and who has one.

    Refuses filters that frame faces differently (they need one run each) and a set with no such filter.
    """
    boxes = {f.name: _box(f.info["face_crop"]["box"], f"{f.name}: input.face_crop.box")
             for f in filters if (f.info.get("face_crop") or {}).get("box") is not None}
    if not boxes:
        raise InputError("--framing runtime: no filter under evaluation records how its training faces were framed "
                         "(a bundle's input.face_crop, a checkpoint's data.face_crop); expected a privsdk bundle or "
                         "checkpoint (`privsdk export BUNDLE --face-crop` adds it to an older bundle)")
    arr = np.array(list(boxes.values()))
    spread = float((arr.max(axis=0) - arr.min(axis=0)).max())
    if spread > BOX_TOLERANCE:
        raise InputError(f"--framing runtime: the filters frame faces differently ({boxes}, up to {spread:.3f} "
                         f"apart; expected within {BOX_TOLERANCE}); evaluate them in separate runs")
    return tuple(float(v) for v in arr.mean(axis=0)), sorted(boxes)  # type: ignore[return-value]


def data_layout(images: np.ndarray, what: str) -> Box:
    """Where ``images``' faces sit in the runtime Haar finder's box (measured; refused if too few are found)."""
    from privsdk.regions.crop_layout import measure_face_crop

    layout = measure_face_crop(images, seed=0)
    if layout is None:
        raise InputError(f"runtime framing: the Haar finder found too few single faces in {what} to measure "
                         "where its faces sit; expected face crops (or frame them as the data does: --framing data, "
                         "--erase-framing data, framing: data)")
    return _box(layout["box"], what)


def runtime_framing(images: np.ndarray, filter_box: Sequence[float], what: str) -> Tuple[Box, Box]:
    """Where ``images``' faces sit in the Haar box (measured) and the crop of each image ``Filter`` would cut.

    ``filter_box`` is the filter's ``input.face_crop.box``. Returns ``(data_box, crop)``; re-cut the images
    (this set's, or any cut alike) with :func:`crop_and_resize` ``(images, crop)``.
    """
    layout = data_layout(images, what)
    return layout, runtime_crop(layout, filter_box)


def frame_as_runtime(data: "EvalData", filters: Sequence["FilterUnderEval"]) -> "EvalData":
    """``data`` with every image re-cut as ``Filter`` would cut the face for these filters.

    The layout of the training set is measured on its train split (train and val are cut alike) and, in a
    cross-set run, the test set's on its test split. ``data.info["framing"]`` records both and the crops.
    """
    from .protocol import EvalData

    filter_box, owners = filters_face_box(filters)
    cross = data.info.get("test_set", data.name) != data.info.get("train_set", data.name)
    layouts, crops = {}, {}
    layouts["train"], crops["train"] = runtime_framing(data.images["train"], filter_box, f"{data.name} train")
    layouts["test"], crops["test"] = (runtime_framing(data.images["test"], filter_box, f"{data.name} test")
                                      if cross else (layouts["train"], crops["train"]))
    images = {s: crop_and_resize(data.images[s], crops["test" if s == "test" else "train"])
              for s in ("train", "val", "test")}
    framing: Dict[str, Any] = {
        "mode": "runtime", "filter_box": [round(v, 4) for v in filter_box], "from_filters": owners,
        "data_box": {r: [round(v, 4) for v in b] for r, b in layouts.items()},
        "crop": {r: [round(v, 4) for v in c] for r, c in crops.items()}}
    _log.info("framing as the runtime does for %s: %s images re-cut to %s of each image (test: %s)",
              ", ".join(owners), data.name, framing["crop"]["train"], framing["crop"]["test"])
    return EvalData(data.name, data.secret, images, data.labels, {**data.info, "framing": framing})


def describe_framing(info: Optional[Dict[str, Any]]) -> str:
    """A few words for tables and plot titles: empty for each set's own crops."""
    if not info or info.get("mode") != "runtime":
        return ""
    return "faces re-cut as Filter frames them"
