"""Region finders: Haar faces on a real portrait, hold-over after a miss, the plugin point."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List

import numpy as np
import pytest

from privsdk import Filter, InputError
from privsdk.regions import (FullFrame, HoldOver, Region, RegionFinder, expand_to_aspect, iou, make_finder,
                             register_finder)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runtime"
_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles_regions", FIXTURES / "tiny_bundles.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


class Scripted(RegionFinder):
    """Returns a scripted list of boxes per call (a detector that misses on cue)."""

    name = "scripted"

    def __init__(self, script: List[List[Region]]) -> None:
        self.script, self.calls = script, 0

    def find(self, frame):
        out = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return out


FACE = Region(100, 50, 80, 80, 0.9)


def test_holdover_covers_a_missed_face_for_n_frames_then_drops_it():
    frame = np.zeros((240, 320, 3), np.uint8)
    finder = HoldOver(Scripted([[FACE], [], [], [], [], []]), frames=3)
    seen = [finder.find(frame) for _ in range(6)]
    assert [len(s) for s in seen] == [1, 1, 1, 1, 0, 0]
    assert [s[0].held for s in seen[:4]] == [False, True, True, True]
    assert all(s[0].roi == FACE.roi for s in seen[:4]) and len({s[0].track for s in seen[:4]}) == 1


def test_holdover_matches_moving_faces_by_iou_and_holds_by_seconds():
    now = [0.0]
    moved = Region(108, 54, 80, 80, 0.8)
    other = Region(10, 10, 40, 40, 0.7)
    finder = HoldOver(Scripted([[FACE, other], [moved], [], []]), frames=0, seconds=0.5, clock=lambda: now[0])
    frame = np.zeros((240, 320, 3), np.uint8)
    first = finder.find(frame)
    now[0] = 0.1
    second = finder.find(frame)
    assert {r.track for r in second if not r.held} == {first[0].track}, "the moved face keeps its track"
    assert any(r.held and r.roi == other.roi for r in second)
    now[0] = 0.55
    assert {r.roi for r in finder.find(frame)} == {moved.roi}, "within 0.5 s of its last sighting"
    now[0] = 0.7
    assert finder.find(frame) == []


def test_filter_keeps_filtering_a_face_the_detector_lost(tmp_path, astronaut_bgr):
    bundle = tiny.write_unet(tmp_path / "u")
    box = Region(150, 40, 150, 150, 0.9)
    f = Filter(bundle, regions=HoldOver(Scripted([[box], [], [], []]), frames=2), seed=0)
    outs = list(f.stream([astronaut_bgr] * 4))
    face = (slice(40, 190), slice(150, 300))
    for k in (0, 1, 2):
        assert np.any(outs[k][face] != astronaut_bgr[face], axis=-1).mean() > 0.9, f"frame {k} leaked the face"
    assert np.array_equal(outs[3], astronaut_bgr), "after the hold time the region is released"


def test_haar_finds_the_astronaut_face_and_squares_it(astronaut_bgr):
    regions = make_finder("faces", hold=0).find(astronaut_bgr)
    assert len(regions) == 1
    r = regions[0]
    assert r.w == r.h and r.x <= 200 and r.x + r.w >= 290 and r.y <= 60 and r.y + r.h >= 190
    assert 0.5 < r.score <= 1.0
    assert make_finder("faces", hold=0).find(np.zeros((240, 320, 3), np.uint8)) == []


def test_box_geometry():
    r = expand_to_aspect(100, 100, 50, 50, margin=0.2, chin=0.1, aspect=1.0, width=640, height=480)
    assert r.w == r.h and r.y + r.h >= 100 + 50 * 1.3 - 1
    edge = expand_to_aspect(0, 0, 50, 50, 0.5, 0.0, 1.0, 100, 100)
    assert edge.x == 0 and edge.y == 0
    assert iou(FACE, FACE) == 1.0 and iou(FACE, Region(0, 0, 10, 10)) == 0.0


def test_face_crop_layout_places_the_box():
    from privsdk.regions.base import check_face_crop

    assert expand_to_aspect(100, 100, 50, 50, 0.25, 0.15, 1.0, 640, 480, crop=(0, 0, 1, 1)).roi == (100, 100, 50, 50)
    tight = expand_to_aspect(100, 100, 100, 100, 0.25, 0.15, 1.0, 640, 480, crop=(0.1, 0.2, 0.9, 1.0))
    assert tight.roi == (110, 120, 80, 80)  # the layout wins over margin and chin
    loose = expand_to_aspect(100, 100, 100, 100, 0.25, 0.15, 1.0, 640, 480)
    assert loose.w == 165 and loose.y == 75
    assert check_face_crop([0.1, 0.2, 0.9, 1.0]) == (0.1, 0.2, 0.9, 1.0)
    for bad in ([0.9, 0.2, 0.1, 1.0], [0, 0, 1], [0, 0, 1, float("nan")], "tight", None, [0, 0, 9, 9]):
        with pytest.raises(InputError, match=r"expected \(left, top, right, bottom\) in detector-box units"):
            check_face_crop(bad)


def _astronaut_box(frame):
    found = make_finder("faces", hold=0, crop=(0, 0, 1, 1)).find(frame)
    assert found, "the Haar finder should find the astronaut"
    return max(found, key=lambda r: r.w)  # scaled down, a false positive can appear beside the face


def test_measure_face_crop_recovers_the_layout_of_crops_cut_at_a_known_place(astronaut_bgr):
    """Crops cut at (0.1, 0.2, 0.9, 1.0) of the Haar box, at several scales and shifts: measured back."""
    cv2 = pytest.importorskip("cv2")
    from privsdk.regions.crop_layout import measure_face_crop

    crops = []
    for scale in (0.8, 0.9, 1.0, 1.1, 1.2):
        frame = cv2.resize(astronaut_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        b = _astronaut_box(frame)
        for dx, dy in ((0, 0), (-0.02, 0.01), (0.02, -0.01)):
            x0, y0 = int(round(b.x + (0.1 + dx) * b.w)), int(round(b.y + (0.2 + dy) * b.h))
            side = int(round(0.8 * b.w))
            crop = cv2.resize(frame[y0:y0 + side, x0:x0 + side], (64, 64), interpolation=cv2.INTER_AREA)
            crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    layout = measure_face_crop(np.stack(crops))
    assert layout is not None and layout["detector"] == "haar" and layout["faces_tried"] == 15
    assert layout["faces_found"] >= 10
    np.testing.assert_allclose(layout["box"], [0.1, 0.2, 0.9, 1.0], atol=0.05)
    noise = np.random.default_rng(0).integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    assert measure_face_crop(noise) is None  # no faces: no layout claimed
    with pytest.raises(InputError, match=r"expected uint8 N×S×S×3"):
        measure_face_crop(np.zeros((3, 64, 32, 3), np.uint8))


def test_filter_frames_faces_as_its_bundle_was_trained(tmp_path, astronaut_bgr):
    from privsdk.bundle import write_bundle
    from privsdk.errors import BundleError

    layout = {"detector": "haar", "box": [0.1, 0.2, 0.9, 1.0]}
    m = tiny.manifest("tight", "unet")
    m["input"]["face_crop"] = layout
    bundle = write_bundle(tmp_path / "tight", m, tiny.unet_maps(), onnx_bytes=tiny.unet_onnx_bytes())
    box = _astronaut_box(astronaut_bgr)
    want = expand_to_aspect(box.x, box.y, box.w, box.h, 0, 0, 1.0, astronaut_bgr.shape[1], astronaut_bgr.shape[0],
                           crop=layout["box"])
    f = Filter(bundle, regions="faces", hold=0, seed=0)
    f.apply(astronaut_bgr)
    assert [r.roi for r in f.last_regions] == [want.roi]
    g = Filter(bundle, regions="faces", hold=0, seed=0, margin=0.25)  # an explicit margin wins
    g.apply(astronaut_bgr)
    assert g.last_regions[0].w > 1.8 * want.w
    plain = Filter(tiny.write_unet(tmp_path / "plain"), regions="faces", hold=0, seed=0)
    plain.apply(astronaut_bgr)
    assert plain.last_regions[0].roi == g.last_regions[0].roi  # no layout: the default margin
    m["input"]["face_crop"] = {"detector": "haar", "box": [0.9, 0.2, 0.1, 1.0]}
    with pytest.raises(BundleError, match=r"input.face_crop.box is \[0.9, 0.2, 0.1, 1.0\]; expected"):
        Filter(write_bundle(tmp_path / "bad", m, tiny.unet_maps(), onnx_bytes=tiny.unet_onnx_bytes()))


def test_plugin_finders_and_unknown_names():
    register_finder("test-full", lambda **kw: FullFrame())
    finder = make_finder("test-full", hold=0)
    assert isinstance(finder, FullFrame)
    assert isinstance(make_finder("test-full", hold=2), HoldOver)
    with pytest.raises(InputError, match="unknown region finder 'plates'"):
        make_finder("plates")
    with pytest.raises(InputError, match="YuNet model"):
        make_finder("yunet:/nonexistent/model.onnx")


def test_yunet_finds_the_face_when_a_model_is_given(astronaut_bgr):
    import os

    model = os.environ.get("PRIVSDK_YUNET_MODEL")
    if not model or not os.path.isfile(model):
        pytest.skip("no YuNet model here: set PRIVSDK_YUNET_MODEL to face_detection_yunet_*.onnx "
                    "(OpenCV zoo; privsdk downloads nothing)")
    finder = make_finder(f"yunet:{model}", hold=0)
    regions = finder.find(astronaut_bgr)
    assert len(regions) == 1
    x, y, w, h = regions[0].roi
    assert x <= 230 < x + w and y <= 130 < y + h, "the box covers the astronaut's face"
