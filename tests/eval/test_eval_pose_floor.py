"""The pose floor: the secret read from the head pose alone (pose labels, or the head's geometry in the crop).

Real faces (scikit-image's astronaut portrait and its LFW subset), turned by known angles with
OpenCV; the registration must recover the angles, the classifier must find a secret the pose
carries (and not one it does not), and the protocol's report, table, merge and plot carry it.
"""
import json

import cv2
import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval import EvalData, ProtocolSettings, baseline, evaluate
from privsdk.train.eval.pose_floor import (GEOMETRY_FEATURES, head_geometry, level_heads, quadratic_features,
                                           secret_from_features, secret_from_pose)

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def face64():
    skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut portrait")
    grey = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)[30:250, 140:360]
    return cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)


def _turned(face: np.ndarray, degrees_clockwise: float) -> np.ndarray:
    # OpenCV's positive angle turns the picture counter-clockwise
    m = cv2.getRotationMatrix2D((31.5, 31.5), -degrees_clockwise, 1.0)
    return cv2.warpAffine(face, m, (64, 64), borderMode=cv2.BORDER_REPLICATE)


def test_head_geometry_recovers_a_known_roll_and_shift(face64):
    angles = np.array([-6.0, -3.0, 0.0, 3.0, 6.0])
    turned = np.stack([_turned(face64, a) for a in angles])
    geo = head_geometry(turned, face64)
    assert geo.shape == (5, len(GEOMETRY_FEATURES))
    np.testing.assert_allclose(geo[:, 0], angles, rtol=0.15, atol=0.1)   # roll, clockwise positive
    assert np.abs(geo[:, 1:]).max() < 0.5                                # turned about the centre: no shift
    shifted = cv2.warpAffine(face64, np.float32([[1, 0, 0], [0, 1, 2]]), (64, 64), borderMode=cv2.BORDER_REPLICATE)
    assert head_geometry(shifted[None], face64)[0, 2] == pytest.approx(2.0, abs=0.5)   # 2 px down


def test_head_geometry_gives_nan_not_a_guess_when_registration_fails(face64):
    flat = np.full((2, 64, 64, 3), 128, np.uint8)                    # nothing to register
    assert np.isnan(head_geometry(flat, face64)).all()
    with pytest.raises(InputError, match="template"):
        head_geometry(flat, face64[:32])
    with pytest.raises(InputError, match="N×H×W"):
        head_geometry(np.zeros((0, 64, 64), np.uint8))


def test_level_heads_turns_each_face_back_and_leaves_what_it_cannot_register(face64):
    turned = np.stack([_turned(face64, a) for a in (-5.0, 4.0)] + [np.full((64, 64), 90, np.uint8)])
    colour = np.repeat(turned[..., None], 3, axis=3)
    levelled = level_heads(colour, face64)
    assert levelled.shape == colour.shape and levelled.dtype == np.uint8
    roll = head_geometry(levelled[:2], face64)[:, 0]
    assert np.abs(roll).max() < 1.0                                  # was -5° and 4°
    assert np.abs(levelled[:2, 16:48, 16:48].astype(int) - face64[16:48, 16:48, None]).mean() < 6
    assert np.array_equal(levelled[2], colour[2])                     # nothing registered: left as it is
    with pytest.raises(InputError, match="uint8"):
        level_heads(colour.astype(np.float32), face64)


def _split(values, labels, rng):
    idx = rng.permutation(len(labels))
    parts = np.split(idx, [int(0.6 * len(idx)), int(0.8 * len(idx))])
    return ({s: values[p] for s, p in zip(SPLITS, parts)}, {s: labels[p] for s, p in zip(SPLITS, parts)})


def test_secret_from_features_finds_a_tilt_either_way_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    secret = rng.integers(0, 2, 1000)
    # the secret is a tilt either way: only the squared roll separates the classes
    roll = np.where(secret == 1, rng.choice([-5.0, 5.0], 1000), 0.0) + rng.normal(0, 1.0, 1000)
    feats, labels = _split(roll[:, None], secret, rng)
    found = secret_from_features(feats, labels, ["roll_deg"])
    assert found["balanced_accuracy"] > 0.9 and found["auc"] > 0.9
    assert found["n_test"] == len(labels["test"]) and found["features"] == ["roll_deg"]
    noise_feats, noise_labels = _split(rng.normal(0, 1, (1000, 3)), secret, rng)
    assert secret_from_features(noise_feats, noise_labels, ["a", "b", "c"])["balanced_accuracy"] < 0.6


def test_secret_from_features_fills_failed_estimates_and_checks_its_input():
    rng = np.random.default_rng(1)
    secret = rng.integers(0, 2, 400)
    x = (secret * 3.0 + rng.normal(0, 1, 400))[:, None]
    x[::7] = np.nan                                                   # failed registrations
    feats, labels = _split(x, secret, rng)
    assert secret_from_features(feats, labels, ["roll_deg"])["balanced_accuracy"] > 0.8
    with pytest.raises(InputError, match="names"):
        secret_from_features(feats, labels, ["roll_deg", "extra"])
    with pytest.raises(InputError, match="'val'"):
        secret_from_features({"train": feats["train"], "test": feats["test"]}, labels, ["roll_deg"])
    assert quadratic_features(np.ones((2, 3))).shape == (2, 3 + 3 + 3)


def test_secret_from_pose_prefers_labels_and_else_reads_the_geometry(face64):
    rng = np.random.default_rng(2)
    n = 240
    secret = rng.integers(0, 2, n)
    angles = np.where(secret == 1, 2.5, -2.5) + rng.normal(0, 1.0, n)   # smiling faces lean clockwise
    faces = np.stack([_turned(face64, a) for a in angles])
    faces = np.clip(faces.astype(np.int16) + rng.integers(-6, 7, faces.shape), 0, 255).astype(np.uint8)
    images, labels_only = _split(faces, secret, rng)
    labels = {s: {"smile": labels_only[s]} for s in SPLITS}
    geo = secret_from_pose(images, labels, "smile")
    assert geo["source"] == "head geometry"
    assert geo["balanced_accuracy"] > 0.9
    assert geo["train_feature_means_by_class"]["1"][0] > geo["train_feature_means_by_class"]["0"][0]
    assert geo["registration_failed_share"] < 0.05
    # with yaw/pitch/roll labels (radians) the labels are used, not the pixels
    posed = {s: {"smile": labels_only[s], "yaw": np.zeros(len(labels_only[s])),
                 "pitch": np.zeros(len(labels_only[s])),
                 "roll": rng.normal(0, 0.1, len(labels_only[s]))} for s in SPLITS}
    from_labels = secret_from_pose(images, posed, "smile")
    assert from_labels["source"] == "pose labels"
    assert from_labels["features"] == ["yaw_deg", "pitch_deg", "roll_deg"]
    assert from_labels["balanced_accuracy"] < 0.7                      # these labels carry no secret


def test_the_report_table_merge_and_plot_carry_the_pose_floor(face64, tmp_path):
    from privsdk.train.eval.merge import merge_reports
    from privsdk.train.eval.plot import plot_tradeoff
    from privsdk.train.eval.report import summary_table

    secret = np.arange(120) % 2
    faces = np.stack([_turned(face64, 3.0 if s else -3.0) for s in secret])
    faces = np.repeat(faces[..., None], 3, axis=3)
    data = EvalData.from_arrays("leaning", faces, {"smile": secret}, secret="smile", seed=0)
    settings = ProtocolSettings.quick_settings(identity=False, progress=False)
    settings.train.max_epochs = 1
    report = evaluate([baseline("blur", 2.0)], data, settings)
    floor = report["pose_floor"]
    assert floor["source"] == "head geometry" and floor["balanced_accuracy"] > 0.9
    assert report["summary"]["pose_floor_balanced_accuracy"] == floor["balanced_accuracy"]
    assert "(pose floor)" in summary_table(report)
    settings.pose_floor = False
    assert "pose_floor" not in evaluate([baseline("blur", 2.0)], data, settings)
    # a merged report keeps the floor even when the first report was made without it
    without = json.loads(json.dumps(report))
    del without["pose_floor"]
    without["results"][0]["filter"]["name"] = "blur:other"
    merged = merge_reports([without, report])
    assert merged["pose_floor"]["balanced_accuracy"] == floor["balanced_accuracy"]
    png = plot_tradeoff(merged, tmp_path / "tradeoff.png")
    assert png.exists() and png.stat().st_size > 0


def test_a_cross_set_run_reports_no_pose_floor(face64):
    from types import SimpleNamespace

    from privsdk.train.eval.protocol import stratified_split

    secret = np.arange(80) % 2
    faces = np.repeat(np.stack([_turned(face64, 3.0 if s else -3.0) for s in secret])[..., None], 3, axis=3)
    a = SimpleNamespace(name="setA", images=faces[:40], labels={"smile": secret[:40]})
    b = SimpleNamespace(name="setB", images=faces[40:], labels={"smile": secret[40:]})
    data = EvalData.from_dataset(a, stratified_split(a.labels["smile"], seed=0), "smile",
                                 b, stratified_split(b.labels["smile"], seed=0))
    settings = ProtocolSettings.quick_settings(identity=False, progress=False, attackers=("linear",))
    settings.train.max_epochs = 1
    # two sets' pose statistics would be mixed: the floor is measured on each set alone
    assert "pose_floor" not in evaluate([baseline("identity")], data, settings)
