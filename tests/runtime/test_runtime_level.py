"""Head levelling (privsdk.regions.level, input.level_head): faces cut out level, on real faces turned by known angles.

The astronaut's face is turned by OpenCV by known angles, inside a whole frame or as a crop; the
leveller must find the angle, cut the face out level (its own registration then reads about 0°),
leave a face it cannot register as it is, and a levelling bundle must run that in Filter, hash-check
its template and refuse a broken one.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import privsdk
from privsdk.bundle import LEVEL, load_bundle, serialize_maps, write_bundle
from privsdk.errors import BundleError, InputError
from privsdk.regions.level import HeadLeveller, grey01

_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles_level",
                                              Path(__file__).resolve().parents[1] / "fixtures" / "runtime" /
                                              "tiny_bundles.py")
tiny_bundles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_bundles)

BOX = (160, 50, 200, 200)     # the astronaut's face in the 512×512 portrait (x, y, w, h)


@pytest.fixture(scope="module")
def face64(astronaut_bgr: np.ndarray) -> np.ndarray:
    x, y, w, h = BOX
    return cv2.resize(astronaut_bgr[y:y + h, x:x + w], (64, 64), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def leveller(face64: np.ndarray) -> HeadLeveller:
    return HeadLeveller(grey01(face64))


def _turn(image: np.ndarray, degrees_clockwise: float, centre) -> np.ndarray:
    m = cv2.getRotationMatrix2D(centre, -degrees_clockwise, 1.0)   # OpenCV's positive angle: counter-clockwise
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("angle", [-8.0, -3.0, 4.0, 9.0])
def test_a_turned_face_in_a_frame_is_cut_out_level(angle, astronaut_bgr, face64, leveller):
    x, y, w, h = BOX
    frame = _turn(astronaut_bgr, angle, (x + (w - 1) / 2, y + (h - 1) / 2))
    crop, roll = leveller.crop(frame, BOX)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert roll == pytest.approx(angle, abs=0.6)
    again = leveller.register(crop)
    assert again is not None and abs(again[0]) < 0.6                   # level now
    # cut from the frame, not from a turned crop: its corners hold the portrait, and it matches the level face
    assert np.abs(crop[8:56, 8:56].astype(int) - face64[8:56, 8:56].astype(int)).mean() < 8


@pytest.mark.parametrize("angle, dx, dy", [(6.0, 8.0, -5.0), (-4.0, -6.0, 4.0)])
def test_recentring_undoes_the_shift_as_well_as_the_roll(angle, dx, dy, astronaut_bgr, face64):
    x, y, w, h = BOX
    turn = cv2.getRotationMatrix2D((x + (w - 1) / 2, y + (h - 1) / 2), -angle, 1.0)
    turn[:, 2] += (dx, dy)                                   # turned clockwise, then moved by (dx, dy) frame pixels
    frame = cv2.warpAffine(astronaut_bgr, turn, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    recentring, levelling = HeadLeveller(grey01(face64), recentre=True), HeadLeveller(grey01(face64))
    crop, roll = recentring.crop(frame, BOX)
    assert roll == pytest.approx(angle, abs=0.6)
    again = recentring.register(crop)
    assert abs(again[0]) < 0.6 and max(abs(again[1]), abs(again[2])) < 0.3            # level and in place
    assert np.abs(crop[8:56, 8:56].astype(int) - face64[8:56, 8:56].astype(int)).mean() < 4
    level_only = levelling.register(levelling.crop(frame, BOX)[0])
    assert abs(level_only[0]) < 0.6                                                      # level, but still moved:
    assert level_only[1] == pytest.approx(dx * 64 / w, abs=0.6) and level_only[2] == pytest.approx(dy * 64 / h, abs=0.6)


def test_a_face_that_cannot_be_registered_is_cut_out_as_it_is(leveller):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    frame[20:84, 40:104] = 90                                          # a flat patch: nothing to register
    crop, roll = leveller.crop(frame, (40, 20, 64, 64))
    assert roll is None
    np.testing.assert_array_equal(crop, frame[20:84, 40:104])          # unlevelled, same pixels


def test_levelling_a_whole_crop_is_a_turn_about_its_centre(face64, leveller):
    turned = _turn(face64, 6.0, (31.5, 31.5))
    crop, roll = leveller.crop(turned, None)
    assert roll == pytest.approx(6.0, abs=0.5)
    expected = _turn(turned, -roll, (31.5, 31.5))                      # what the evaluation's level_heads did
    np.testing.assert_array_equal(crop, expected)


@pytest.mark.parametrize("template, match", [
    (np.full((64, 64), 0.5, np.float32), "flat"),
    (np.zeros((64, 64), np.uint8), "float"),
    (np.full((64, 64), np.nan, np.float32), "NaN"),
    (np.linspace(0, 2, 64 * 64, dtype=np.float32).reshape(64, 64), "0-1"),
    (np.zeros((4, 4), np.float32), "H×W"),
])
def test_a_bad_template_is_refused(template, match):
    with pytest.raises(InputError, match=match):
        HeadLeveller(template)


def test_wrong_sizes_are_refused(leveller):
    with pytest.raises(InputError, match="same size"):
        leveller.register(np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="out is"):
        leveller.crop(np.zeros((100, 100, 3), np.uint8), None, out=np.empty((32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="empty"):
        leveller.crop(np.zeros((100, 100, 3), np.uint8), (0, 0, 0, 10))


# ------------------------------------------------------------------ a levelling bundle

def _levelling_lite(directory: Path, template: np.ndarray) -> Path:
    """The tiny lite bundle (16×16) with σ = 0, levelling against ``template``."""
    manifest = tiny_bundles.manifest("tiny-levelled", "lite")
    manifest["input"]["level_head"] = {"template": LEVEL, "upper_share": 0.5}
    maps = tiny_bundles.lite_maps()
    maps["sigma"][:] = 0.0
    return write_bundle(directory, manifest, maps, extra_files={LEVEL: serialize_maps({"template": template})})


@pytest.fixture()
def face16(face64: np.ndarray) -> np.ndarray:
    return cv2.resize(face64, (16, 16), interpolation=cv2.INTER_AREA)


def test_filter_cuts_faces_out_level_and_counts_those_it_cannot(tmp_path, face16):
    path = _levelling_lite(tmp_path / "b", grey01(face16))
    bundle = load_bundle(path)
    assert bundle.level_head["template"] == LEVEL and bundle.level_template.shape == (16, 16)
    levelled = privsdk.Filter(str(path), regions="full", seed=0)
    manifest = {k: v for k, v in bundle.manifest.items() if k != "files"}
    manifest["input"] = {k: v for k, v in manifest["input"].items() if k != "level_head"}
    plain = privsdk.Filter(str(write_bundle(tmp_path / "plain", manifest, bundle.maps)), regions="full", seed=0)

    big = cv2.resize(face16, (128, 128), interpolation=cv2.INTER_CUBIC)
    turned = cv2.resize(_turn(big, 7.0, (63.5, 63.5)), (16, 16), interpolation=cv2.INTER_AREA)
    crop, roll = HeadLeveller(bundle.level_template).crop(turned, None)
    assert roll is not None and roll > 2.0       # coarse at 16×16 pixels, but turned back clockwise
    np.testing.assert_array_equal(levelled.apply(turned), plain.apply(crop))   # level first, then the same filter
    assert levelled.stats.unlevelled == 0
    flat = np.full((16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(levelled.apply(flat), plain.apply(flat))
    assert levelled.stats.unlevelled == 1 and levelled.stats.summary()["unlevelled"] == 1


def test_a_tampered_or_missing_template_is_refused(tmp_path, face16):
    path = _levelling_lite(tmp_path / "b", grey01(face16))
    (path / LEVEL).write_bytes(serialize_maps({"template": np.zeros((16, 16), np.float32) + 0.25}))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(path)
    path = _levelling_lite(tmp_path / "c", grey01(face16))
    manifest = json.loads((path / "filter.json").read_text())
    del manifest["files"][LEVEL]
    (path / "filter.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not list"):
        load_bundle(path)
    with pytest.raises(BundleError, match="float32"):
        _levelling_lite(tmp_path / "d", np.zeros((8, 8), np.float32) + 0.5)


def test_export_level_head_copies_the_filter_and_adds_the_template(tmp_path, face16, capsys):
    from privsdk.cli import main
    from privsdk.export.level_head import level_bundle

    source = tiny_bundles.write_lite(tmp_path / "src")
    out = level_bundle(source, tmp_path / "out", template=grey01(face16))
    a, b = load_bundle(source), load_bundle(out)
    assert b.name == "tiny-lite-levelled" and b.manifest["evaluation"] is None    # its report must be its own
    assert b.manifest["files"]["norm.npz"] == a.manifest["files"]["norm.npz"]      # the filter itself, byte for byte
    assert b.level_head["template_source"] == {"what": "given"}
    np.testing.assert_array_equal(b.level_template, grey01(face16))
    with pytest.raises(InputError, match="already levels"):
        level_bundle(out, tmp_path / "again")
    with pytest.raises(InputError, match="other than the source"):
        level_bundle(source, source)
    # the template is the training faces' mean face: a bundle whose training data is not here cannot get one
    assert main(["export", str(source), "--level-head", "-o", str(tmp_path / "cli")]) == 1
    assert "training data (None at None) is not here" in capsys.readouterr().err
    assert main(["export", str(source), "--level-head"]) == 1
    assert "--level-head takes a bundle and -o DIR" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


def test_privsdk_run_says_how_many_faces_were_not_levelled(tmp_path, lfw_faces, capsys):
    from privsdk.cli import main
    from privsdk.registry import FILTERS_DIR

    face = cv2.cvtColor(cv2.resize(lfw_faces[0], (64, 64)), cv2.COLOR_GRAY2BGR)
    template = load_bundle(FILTERS_DIR / "emotion-lite-levelled").level_template
    assert HeadLeveller(template).register(face) is not None, "a face framed like the training faces registers"
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0_face.png"), face)
    cv2.imwrite(str(frames / "1_flat.png"), np.full((64, 64, 3), 90, np.uint8))   # nothing to register
    rc = main(["run", "--source", str(frames), "--filter", "emotion-lite-levelled", "--regions", "full",
               "--sink", str(tmp_path / "out"), "--json", str(tmp_path / "side.json")])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "2 frames, 2 regions filtered, 1 not levelled, 0 blanked" in printed
    assert json.loads((tmp_path / "side.json").read_text())["summary"]["unlevelled"] == 1


def test_baselines_can_be_levelled_as_a_levelling_bundle_levels(tmp_path, face64, capsys):
    """`privsdk eval --level-baselines BUNDLE`: the bundle's own levelling, then the baseline unchanged."""
    from privsdk.cli import main
    from privsdk.train.eval.filters import baseline, levelled

    big = cv2.resize(face64, (256, 256), interpolation=cv2.INTER_CUBIC)
    turned = cv2.resize(_turn(big, 8.0, (127.5, 127.5)), (64, 64), interpolation=cv2.INTER_AREA)
    faces = np.ascontiguousarray(np.stack([turned, face64])[..., ::-1])        # RGB, as the eval's faces
    from privsdk.export.level_head import level_bundle
    from privsdk.registry import FILTERS_DIR

    source = FILTERS_DIR / "emotion-lite"     # 64×64, and levelling against this face's own template
    bundle = level_bundle(source, tmp_path / "levelling", template=grey01(face64))
    mask = levelled(baseline("lower_mask", 0.55), str(bundle))
    assert mask.name == "levelled lower_mask:0.55" and mask.kind == "baseline" and mask.strength == 0.55
    assert mask.info["level_head"]["sha256"] == load_bundle(bundle).manifest["files"][LEVEL]
    out = mask(faces)
    leveller = HeadLeveller(grey01(face64))
    level, roll = leveller.crop(faces[0], None)
    assert roll == pytest.approx(8.0, abs=1.0)
    np.testing.assert_array_equal(out[0], baseline("lower_mask", 0.55)(level[None])[0])
    assert not np.array_equal(out[0], baseline("lower_mask", 0.55)(faces[:1])[0])    # the turn is not skipped
    assert abs(leveller.register(level)[0]) < 1.0                                    # its eyes now sit level
    with pytest.raises(InputError, match="faces are 32×32, its template 64×64"):
        mask(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="no input.level_head"):
        levelled(baseline("blur", 2.0), str(source))
    assert main(["eval", "--filter", str(source), "--level-baselines", str(bundle), "--data", "x=y"]) == 1
    assert "no baseline to level" in capsys.readouterr().err


def test_a_levelling_filters_report_measures_what_it_paints_apart_from_the_turn(tmp_path, face64):
    """utility.fidelity_to_levelled: SSIM against the faces turned level by the filter's own registration."""
    from privsdk.export.level_head import level_bundle
    from privsdk.registry import FILTERS_DIR
    from privsdk.train.eval import EvalData, ProtocolSettings, evaluate
    from privsdk.train.eval.filters import baseline, bundle_filter, level_only, levelled
    from privsdk.train.eval.report import headline, summary_table

    big = cv2.resize(face64, (256, 256), interpolation=cv2.INTER_CUBIC)
    angles = np.random.default_rng(0).uniform(-9.0, 9.0, 48)
    faces = np.stack([cv2.resize(_turn(big, a, (127.5, 127.5)), (64, 64), interpolation=cv2.INTER_AREA)
                      for a in angles])[..., ::-1]
    data = EvalData.from_arrays("turned", np.ascontiguousarray(faces), {"smile": np.arange(48) % 2}, secret="smile",
                                seed=0)
    bundle = str(level_bundle(FILTERS_DIR / "emotion-lite", tmp_path / "levelling", template=grey01(face64)))
    settings = ProtocolSettings.quick_settings(identity=False, progress=False, attackers=("linear",))
    settings.train.max_epochs, settings.pose_floor, settings.bounds = 1, False, False
    report = evaluate([level_only(bundle), levelled(baseline("lower_mask", 0.55), bundle), bundle_filter(bundle),
                       baseline("lower_mask", 0.55)], data, settings)
    turn, mask, lite, plain = (r["utility"] for r in report["results"])
    assert turn["fidelity_to_levelled"]["ssim"] == 1.0          # the turn alone, against the turn alone
    assert turn["fidelity"]["ssim"] < 0.9                       # ... against the original, it costs
    for u in (mask, lite):                                      # the bundle's own (its source) and a levelled baseline
        assert u["fidelity"]["ssim"] < u["fidelity_to_levelled"]["ssim"] < 1.0
    assert "fidelity_to_levelled" not in plain                  # a filter that does not level has no such figure
    as_primary = {**report, "filter": {"name": report["results"][2]["filter"]["name"]}}   # as a bundle embeds it
    assert headline(as_primary)["ssim_to_levelled"] == lite["fidelity_to_levelled"]["ssim"]
    assert "SSIM to the levelled face 1.000" in summary_table(report)
