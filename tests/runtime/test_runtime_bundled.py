"""The filters shipped in the wheel: hashes, manifests, provenance of their numbers, behaviour."""
from __future__ import annotations

import numpy as np
import pytest

import privsdk
from privsdk.bundle import ERASE, LEVEL, NORM, ONNX, load_bundle
from privsdk.export.report import fewer_training_faces
from privsdk.registry import FILTERS_DIR, headline_numbers

BUNDLED = ("emotion", "emotion-lite", "emotion-lite-levelled", "emotion-lite-erased")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_filter_loads_with_matching_hashes(name: str) -> None:
    bundle = load_bundle(FILTERS_DIR / name)  # raises on any hash mismatch
    m = bundle.manifest
    assert m["name"] == name
    assert m["secret"] == ["smile"]
    assert bundle.input_size == (64, 64)
    assert bundle.kind == ("lite" if "-lite" in name else "unet")
    assert (ONNX in bundle.files) == (bundle.kind == "unet")
    # small enough to ship in the wheel
    assert sum(len(b) for b in bundle.files.values()) < 5 * 2**20


@pytest.mark.parametrize("name", BUNDLED)
def test_manifest_numbers_come_from_an_eval_of_the_shipped_files(name: str) -> None:
    """No number typed in by hand: the embedded report evaluated exactly these files."""
    bundle = load_bundle(FILTERS_DIR / name)
    report = bundle.manifest.get("evaluation")
    assert isinstance(report, dict), "bundled filters ship with their `privsdk eval` report"
    evaluated = report["filter"]["files"]
    for fname in (NORM, ONNX, LEVEL, ERASE):
        if fname in bundle.manifest["files"]:
            assert evaluated[fname] == bundle.manifest["files"][fname]
    assert report["protocol"], "the report names the protocol that produced it"
    # a levelling bundle was evaluated levelling: the report's filter carries the same level_head section
    assert report["filter"].get("level_head") == bundle.level_head
    # and an erasing one erasing, with the eraser the manifest describes
    erase = bundle.manifest.get("erase")
    assert report["filter"].get("erase") == ({k: v for k, v in erase.items() if k != "validation_rms_change"}
                                             if erase else None)
    listed = {f.name: f for f in privsdk.filters()}
    assert name in listed
    assert listed[name].numbers == headline_numbers(bundle.manifest)
    assert listed[name].numbers, "privsdk.filters() shows the measured numbers"


@pytest.mark.parametrize("name", BUNDLED)
def test_manifest_numbers_come_from_the_full_protocol(name: str) -> None:
    """Shortened attacker training (a low epoch cap or patience, one run, no converged linear model) reads less and
    made filters look more private."""
    pytest.importorskip("torch", reason="the protocol's defaults live in privsdk.train (needs torch)")
    from privsdk.train.eval.protocol import ProtocolSettings
    from privsdk.train.eval.report import unsaturated_models
    from privsdk.train.eval.training import TrainSettings

    report = load_bundle(FILTERS_DIR / name).manifest["evaluation"]
    used, default = report["protocol"]["settings"], TrainSettings()
    assert not used["quick"]
    assert used["train"]["max_epochs"] >= default.max_epochs and used["train"]["patience"] >= default.patience, \
        f"{name}'s report trained its attackers with {used['train']}: embed a report of the default protocol"
    assert set(used["attackers"]) >= {"cnn", "linear", "logistic"}, \
        f"{name}'s report lacks an attacker of the default protocol: {used['attackers']}"
    # one run per SGD attacker reads wherever its noisy validation loss dipped (docs/design-changes.md #14)
    assert used.get("restarts", 1) >= ProtocolSettings().restarts
    assert unsaturated_models(report) == []
    # attackers on a subset of the train split (--limit) read 0.10.0 at 0.528, on all of it at 0.606 (#21)
    weaker = fewer_training_faces(report)
    assert weaker is None, f"{name}'s report: {weaker}; embed a report whose attackers trained on the whole split"
    assert report["data"]["sizes"]["train"] == len(report["data"]["split"]["train"])


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_filter_changes_only_the_face(name: str, astronaut_bgr: np.ndarray) -> None:
    f = privsdk.Filter(name, regions="faces", seed=0)
    out = f.apply(astronaut_bgr)
    diff = np.any(out != astronaut_bgr, axis=2)
    assert diff.any(), "the face must be filtered"
    ys, xs = np.nonzero(diff)
    # the astronaut's face is in the upper middle of the portrait; nothing far from it changes
    assert xs.min() > 100 and xs.max() < 330 and ys.min() > 20 and ys.max() < 260
    assert astronaut_bgr[300:].tobytes() == out[300:].tobytes()


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_filter_on_face_crops_draws_fresh_noise(name: str, lfw_faces: np.ndarray) -> None:
    import cv2

    face = cv2.cvtColor(cv2.resize(lfw_faces[0], (64, 64)), cv2.COLOR_GRAY2BGR)
    f = privsdk.Filter(name, regions="full")
    a, b = f.apply(face), f.apply(face)
    assert a.shape == face.shape and a.dtype == np.uint8
    assert not np.array_equal(a, face)
    if name == "emotion" or np.asarray(load_bundle(FILTERS_DIR / name).maps["sigma"]).max() > 0:
        assert not np.array_equal(a, b), "unseeded filters must not replay their noise"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_filter_frames_faces_as_it_was_trained(name: str, astronaut_bgr: np.ndarray) -> None:
    """The manifest says where the training faces sit in a Haar box; Filter crops camera faces that way."""
    crop = load_bundle(FILTERS_DIR / name).manifest["input"].get("face_crop")
    assert crop and crop["detector"] == "haar" and crop["faces_found"] >= 100, "measured on real training faces"
    left, top, right, bottom = crop["box"]
    assert 0.0 < left < 0.2 and 0.1 < top < 0.3 and 0.8 < right < 1.0 and 0.9 < bottom < 1.05  # SMILEsmileD-like
    f = privsdk.Filter(name, regions="faces", hold=0, seed=0)
    f.apply(astronaut_bgr)
    loose = privsdk.Filter(name, regions="faces", hold=0, seed=0, margin=0.25)
    loose.apply(astronaut_bgr)
    (r,), (big,) = f.last_regions, loose.last_regions
    assert r.w < 0.6 * big.w and big.x < r.x and r.x + r.w < big.x + big.w  # tighter, inside the old crop


def test_bundled_emotion_never_reads_the_lower_face(lfw_faces: np.ndarray) -> None:
    """`emotion` cuts each face out level, fills the bottom half of that crop (the mouth) with the mean face before
    its network reads it, keeps half of the change its network makes, and erases the smile's linear trace from the output: two faces that differ only in the
    mouth and chin come out identical, whatever their mouths showed. (Rows from 38 down: the levelling turns the
    crop by a few degrees, so rows just above the fill's edge in the level crop come from lower rows at its sides.)"""
    import cv2

    bundle = load_bundle(FILTERS_DIR / "emotion")
    assert bundle.manifest["architecture"]["arch"]["lower_fill"] == 0.5
    assert bundle.level_head and bundle.eraser is not None
    scaled = bundle.manifest["export"]["residual_scale"]       # half of the network's change kept (0.9.0 on)
    assert scaled["scale"] == 0.5 and scaled["max_abs_vs_interpolation"] <= 1e-5
    erase = bundle.manifest["erase"]
    assert erase["secret"] == "smile" and erase["rank"] == 2
    assert [w["data"] for w in erase["fitted_on"]] == ["smilesmiled", "genki4k"]
    # 0.10.0: the network and the eraser both saw GENKI-4K's faces as Filter cuts them from a camera frame
    assert [w["framing"]["mode"] for w in erase["fitted_on"]] == ["runtime", "runtime"]
    assert bundle.manifest["training"]["config"]["data"]["also"][0]["framing"] == "runtime"
    grey = [cv2.cvtColor(cv2.resize(face, (64, 64)), cv2.COLOR_GRAY2BGR) for face in lfw_faces[:2]]
    mixed = grey[0].copy()
    mixed[38:] = grey[1][38:]          # another person's mouth and chin
    upper = grey[0].copy()
    upper[12:20] = grey[1][12:20]      # another person's eyes: those the network does read
    runs = [privsdk.Filter("emotion", regions="full", seed=7) for _ in range(3)]
    a, b, c = (f.apply(x) for f, x in zip(runs, (grey[0], mixed, upper)))
    assert runs[0].stats.unlevelled == runs[1].stats.unlevelled == 0, "the face was registered and cut out level"
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_bundled_emotion_lite_leaves_the_eyes_of_a_camera_face(astronaut_bgr: np.ndarray) -> None:
    """`emotion-lite` fills the bottom 60% of its crop; framed as it was trained, a camera face keeps its eyes above
    the fill (on GENKI-4K's looser crops the fill reaches them, which the evaluation there pays for)."""
    import cv2

    assert load_bundle(FILTERS_DIR / "emotion-lite").manifest["architecture"]["arch"]["lower_fill"] == 0.6
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    eyes = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml").detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=5, minSize=(15, 15))
    assert len(eyes) == 2, "the astronaut's two eyes"
    f = privsdk.Filter("emotion-lite", regions="faces", hold=0, seed=0)
    out = f.apply(astronaut_bgr)
    (face,) = f.last_regions
    change = np.abs(out.astype(int) - astronaut_bgr.astype(int)).mean(axis=2)
    for x, y, w, h in eyes:
        # the eye's middle half: only the crop's resampling touches it (a few grey levels at sharp edges)
        assert change[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4].mean() < 12
    mouth_rows = change[face.y + int(0.75 * face.h):face.y + int(0.85 * face.h), face.x:face.x + face.w]
    assert mouth_rows.mean() > 30, "the lower face is the mean face"


def test_bundled_levelled_filter_is_emotion_lite_on_a_level_face(lfw_faces: np.ndarray) -> None:
    """`emotion-lite-levelled` is `emotion-lite`'s maps, byte for byte, run on each face cut out level against the
    mean face of its training split -- what the evaluation's level_heads did before the same filter."""
    import cv2

    from privsdk.train.eval.pose_floor import level_heads

    levelled, lite = load_bundle(FILTERS_DIR / "emotion-lite-levelled"), load_bundle(FILTERS_DIR / "emotion-lite")
    assert levelled.manifest["files"][NORM] == lite.manifest["files"][NORM]
    source = levelled.level_head["template_source"]
    assert source["data"] == "smilesmiled" and source["split"] == "train" and source["faces"] > 9000
    faces = np.stack([cv2.cvtColor(cv2.resize(face, (64, 64)), cv2.COLOR_GRAY2BGR) for face in lfw_faces[:6]])
    turned = np.stack([cv2.warpAffine(f, cv2.getRotationMatrix2D((31.5, 31.5), a, 1.0), (64, 64),
                                      borderMode=cv2.BORDER_REPLICATE) for f, a in zip(faces, (-8, -4, 0, 3, 6, 9))])
    by_level = privsdk.Filter("emotion-lite-levelled", regions="full", seed=0)
    expected = privsdk.Filter("emotion-lite", regions="full", seed=0)
    on_level = level_heads(turned, levelled.level_template)
    assert not np.array_equal(on_level, turned), "some of the turned faces were levelled"
    for face, level in zip(turned, on_level):
        np.testing.assert_array_equal(by_level.apply(face), expected.apply(level))
    assert by_level.stats.unlevelled < len(turned)


def test_bundled_erased_filter_is_a_levelled_grey_mask_then_the_eraser(lfw_faces: np.ndarray) -> None:
    """`emotion-lite-erased`: faces cut out level, the bottom 55% of the crop flat grey, then LEACE. Its output
    has nothing left along the eraser's read-out (the erasure is a projection), the grey rows stay grey, and the
    eraser was fit on both sets' training faces."""
    import cv2

    bundle = load_bundle(FILTERS_DIR / "emotion-lite-erased")
    arch = bundle.manifest["architecture"]["arch"]
    assert (arch["lower_fill"], arch["lower_fill_feather"], arch["lower_fill_with"]) == (0.55, 0, "grey")
    assert bundle.level_head and bundle.level_head["template_source"]["data"] == "smilesmiled"
    erase = bundle.manifest["erase"]
    assert erase["secret"] == "smile" and erase["rank"] == 2
    assert [w["data"] for w in erase["fitted_on"]] == ["smilesmiled", "genki4k"]
    assert all(w["split"] == "train" and w["faces"] > 1500 for w in erase["fitted_on"])
    faces = [cv2.cvtColor(cv2.resize(face, (64, 64)), cv2.COLOR_GRAY2BGR) for face in lfw_faces[:8]]
    f = privsdk.Filter("emotion-lite-erased", regions="full", seed=0)
    out = f.network_outputs(faces)
    arrays = bundle.eraser.arrays()
    readout = (out - arrays["mean"]).reshape(len(out), -1) @ arrays["readout"].reshape(2, -1).T
    assert np.abs(readout).max() < 1e-3
    np.testing.assert_array_equal(out[:, :, 29:], 0.5)           # the mask: untouched by the eraser
    assert np.abs(out[:, :, :29] - 0.5).mean() > 0.05               # the eyes and brows are still there
    filtered = f.apply(faces[0])
    assert (filtered[40:] == 128).all()
