"""The linear eraser of the secret (privsdk.erase, privsdk.train.erasure, `export --erase-secret`).

Faces made in the test carry a secret a linear model reads well; after LEACE the classes' mean outputs
must meet, a freshly trained logistic regression must fall to chance on held-out faces, and the
change must be smaller than the plain orthogonal projection's. A bundle with an eraser must run it
in Filter between the network and the post-kernel, refuse a tampered eraser, and be written by
`privsdk export BUNDLE --erase-secret` from faces on disk.
"""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import privsdk
from privsdk.bundle import ERASE, load_bundle, serialize_maps, write_bundle
from privsdk.erase import LinearEraser
from privsdk.errors import BundleError, InputError

_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles_erase",
                                              Path(__file__).resolve().parents[1] / "fixtures" / "runtime" /
                                              "tiny_bundles.py")
tiny_bundles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_bundles)


def _secret_data(n: int, d: int = 40, seed: int = 0):
    """Gaussian outputs whose secret shifts a correlated direction: linearly readable at ~0.9."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    x = rng.normal(size=(n, d)) @ mix * 2.0
    x[:, :3] += 1.5 * y[:, None]
    return x.astype(np.float32), y


def _held_out_accuracy(x_train, y_train, x_test, y_test) -> float:
    from privsdk.train.eval.metrics import balanced_accuracy
    from privsdk.train.eval.training import fit_logistic

    def as_images(x):   # the attackers read pixels: 5×8 grey faces, the value repeated in the three channels
        grey = np.clip(np.rint(128 + 20 * x), 0, 255).astype(np.uint8).reshape(len(x), 5, 8, 1)
        return np.repeat(grey, 3, axis=3)
    m = fit_logistic(as_images(x_train), y_train, as_images(x_test), y_test)
    return float(balanced_accuracy(y_test, m.predict_balanced(as_images(x_test)).argmax(1)))


def test_leace_meets_the_class_means_and_a_retrained_linear_model_falls_to_chance():
    from privsdk.train.erasure import fit_linear_eraser

    x, y = _secret_data(3000)
    train, val, test = slice(0, 2000), slice(2000, 2500), slice(2500, 3000)
    fit = fit_linear_eraser(x[train], y[train], x[val])
    assert fit.eraser.rank == 1 and fit.faces == 2000 and fit.live_values == 40
    erased = fit.eraser.apply(x.copy())
    gap = lambda a, s: np.abs(a[s][y[s] == 1].mean(0) - a[s][y[s] == 0].mean(0)).max()   # noqa: E731
    assert gap(x, train) > 1.0 and gap(erased, train) < 1e-4           # exact on the faces it was fit on
    assert _held_out_accuracy(x[train], y[train], x[test], y[test]) > 0.8
    assert _held_out_accuracy(erased[train], y[train], erased[test], y[test]) < 0.58
    # LEACE changes the outputs least: the ridge it picked beats the near-orthogonal projection (ridge 1e4)
    orthogonal = fit_linear_eraser(x[train], y[train], x[val], ridges=(1e4,))
    change = lambda e: np.sqrt(np.mean((e.apply(x[test].copy()) - x[test]) ** 2))   # noqa: E731
    assert change(fit.eraser) < 0.9 * change(orthogonal.eraser)
    assert fit.validation_rms_change[f"{fit.ridge:g}"] == min(fit.validation_rms_change.values())


def test_a_stochastic_filter_is_erased_on_the_mean_of_draws_and_judged_on_a_fresh_one():
    """Fit on one noise draw with the smallest-change ridge, the eraser reads along directions only the noise
    varies in: it erases that draw's noise and leaves half the secret's mean shift on every later draw (what
    `emotion` 0.10.0's eraser did, 0.057 left of 1.09). Fit on the mean of draws, the ridge judged on a fresh
    draw, what is left is the fresh draws' own noise."""
    from privsdk.train.erasure import FRESH_TOLERANCE, fit_linear_eraser

    rng = np.random.default_rng(0)
    n, d, k = 1000, 200, 30
    y = rng.integers(0, 2, n)
    face_directions = np.linalg.qr(rng.normal(size=(d, k)))[0].T      # faces vary in k of the d directions
    faces = rng.normal(size=(n, k)) @ face_directions + 0.5 * y[:, None] * face_directions[0]
    draw = lambda: (faces + 0.01 * rng.normal(size=(n, d))).astype(np.float32)   # noqa: E731
    gap = lambda x: float(np.linalg.norm(x[y == 1].mean(0) - x[y == 0].mean(0)))   # noqa: E731
    first, val = draw(), draw()
    later = [draw() for _ in range(3)]
    floor = max(gap(x - faces.astype(np.float32)) for x in later)      # the class-mean gap of the noise alone
    one_draw = fit_linear_eraser(first, y, val)
    assert gap(one_draw.eraser.apply(first.copy())) < 1e-3            # exact on the draw it was fit on ...
    assert min(gap(one_draw.eraser.apply(x.copy())) for x in later) > 0.3 > 20 * floor   # ... not on the next
    assert not one_draw.fresh_difference_left and "ridge_picked_by" not in one_draw.describe()
    mean_of_draws = np.mean([draw() for _ in range(4)], axis=0)
    fit = fit_linear_eraser(mean_of_draws, y, val, fresh_outputs=draw())
    assert max(gap(fit.eraser.apply(x.copy())) for x in later) < 2 * floor
    left = fit.fresh_difference_left
    assert set(left) == set(fit.validation_rms_change) and left[f"{fit.ridge:g}"] <= FRESH_TOLERANCE * min(left.values())
    assert left["0.0001"] > 10 * min(left.values())                  # the smallest ridge is the one that fails
    assert "fresh noise draw" in fit.describe()["ridge_picked_by"]
    with pytest.raises(InputError, match="fresh outputs"):
        fit_linear_eraser(first, y, val, fresh_outputs=first[:10])


def test_more_classes_take_one_direction_fewer_and_constant_values_are_left_alone():
    from privsdk.train.erasure import fit_linear_eraser

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 900)
    x = rng.normal(size=(900, 3, 4, 4)).astype(np.float32)
    x[:, 0, 0, 0] += y
    x[:, 1, 2, 2] -= 2.0 * (y == 2)
    x[:, 2] = 0.25                                   # a fill: the eraser must not touch it
    fit = fit_linear_eraser(x[:600], y[:600], x[600:])
    assert fit.eraser.rank == 2 and fit.live_values == 32
    erased = fit.eraser.apply(x[:600].copy())
    means = np.stack([erased[y[:600] == k].mean(0) for k in range(3)])
    assert np.abs(means - means[0]).max() < 1e-4
    np.testing.assert_array_equal(erased[:, 2], 0.25)


def test_groups_meet_the_class_means_within_each_set():
    """Two sets whose secret moves different values: fit on both, the classes' means meet in each."""
    from privsdk.train.erasure import fit_linear_eraser

    a, ya = _secret_data(800, seed=1)
    b, yb = _secret_data(800, seed=2)
    b[:, :3] -= 1.5 * yb[:, None]
    b[:, 10:12] += 2.0 * yb[:, None]                 # in the second set the secret sits elsewhere
    b += 3.0                                         # and the set itself looks different
    x, y = np.concatenate([a, b]), np.concatenate([ya, yb])
    groups = np.repeat([0, 1], 800)
    fit = fit_linear_eraser(x, y, x, groups=groups)
    assert fit.eraser.rank == 2
    erased = fit.eraser.apply(x.copy())
    for g in (0, 1):
        e, yy = erased[groups == g], y[groups == g]
        assert np.abs(e[yy == 1].mean(0) - e[yy == 0].mean(0)).max() < 1e-3
    pooled = fit_linear_eraser(x, y, x).eraser.apply(x.copy())    # one direction for both sets misses one
    assert max(np.abs(pooled[groups == g][y[groups == g] == 1].mean(0)
                      - pooled[groups == g][y[groups == g] == 0].mean(0)).max() for g in (0, 1)) > 0.3


def test_bad_fits_and_bad_outputs_are_refused():
    from privsdk.train.erasure import fit_linear_eraser

    x, y = _secret_data(50)
    with pytest.raises(InputError, match="one value"):
        fit_linear_eraser(x, np.zeros(50, int), x)
    with pytest.raises(InputError, match="group 0"):
        fit_linear_eraser(x, y, x, groups=(y == 1).astype(int))   # each group holds one class only
    with pytest.raises(InputError, match="N labels"):
        fit_linear_eraser(x, y[:10], x)
    with pytest.raises(InputError, match="validation outputs"):
        fit_linear_eraser(x, y, x[:, :5])
    e = fit_linear_eraser(x, y, x).eraser
    with pytest.raises(InputError, match="float32"):
        e.apply(x.astype(np.float64))
    read_only = x.copy()
    read_only.flags.writeable = False
    with pytest.raises(InputError, match="writeable"):
        e.apply(read_only)
    with pytest.raises(InputError, match="same shape"):
        LinearEraser(np.zeros(4, np.float32), np.zeros((1, 5), np.float32), np.zeros((1, 5), np.float32))
    with pytest.raises(InputError, match="NaN"):
        LinearEraser(np.zeros(4, np.float32), np.full((1, 4), np.nan, np.float32), np.zeros((1, 4), np.float32))


def test_apply_is_the_formula():
    rng = np.random.default_rng(2)
    mean, basis, readout = (rng.normal(size=s).astype(np.float32) for s in ((3, 4, 4), (2, 3, 4, 4), (2, 3, 4, 4)))
    x = rng.normal(size=(5, 3, 4, 4)).astype(np.float32)
    flat = x.reshape(5, -1).astype(np.float64)
    want = flat - ((flat - mean.reshape(-1)) @ readout.reshape(2, -1).T) @ basis.reshape(2, -1)
    got = LinearEraser(mean, basis, readout).apply(x.copy())
    np.testing.assert_allclose(got.reshape(5, -1), want, atol=1e-4)


# ------------------------------------------------------------------ bundles

def _erasing_lite(directory: Path, eraser: LinearEraser) -> Path:
    manifest = tiny_bundles.manifest("tiny-erasing", "lite")
    manifest["erase"] = {"file": ERASE, "secret": "smile", "rank": eraser.rank}
    maps = tiny_bundles.lite_maps()
    maps["sigma"][:] = 0.0
    return write_bundle(directory, manifest, maps, extra_files={ERASE: serialize_maps(eraser.arrays())})


def _random_eraser(seed: int = 3) -> LinearEraser:
    rng = np.random.default_rng(seed)
    basis = np.zeros((1, 3, *tiny_bundles.HW), np.float32)
    basis[0, :, 8:, :] = 0.2                           # pushes the lower half of the face
    return LinearEraser(np.full((3, *tiny_bundles.HW), 0.4, np.float32), basis,
                        rng.normal(size=basis.shape).astype(np.float32) / basis.size)


def test_filter_runs_the_eraser_between_the_network_and_the_post_kernel(tmp_path, astronaut_bgr):
    from privsdk.train.eval.filters import _bundle_direct, bundle_filter

    eraser = _random_eraser()
    path = _erasing_lite(tmp_path / "b", eraser)
    bundle = load_bundle(path)
    assert isinstance(bundle.eraser, LinearEraser) and bundle.eraser.rank == 1
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("files", "erase")}
    plain = privsdk.Filter(str(write_bundle(tmp_path / "plain", manifest, bundle.maps)), regions="full", seed=0)
    erasing = privsdk.Filter(str(path), regions="full", seed=0)
    faces = [cv2.resize(astronaut_bgr[y:y + 200, x:x + 200], (16, 16), interpolation=cv2.INTER_AREA)
             for x, y in ((160, 50), (150, 60), (170, 40))]
    before = plain.network_outputs(faces)
    np.testing.assert_allclose(erasing.network_outputs(faces), eraser.apply(before.copy()), atol=1e-6)
    out, base = erasing.apply(faces[0]), plain.apply(faces[0])
    changed = np.abs(out.astype(int) - base.astype(int))
    assert changed[8:].max() > 0 and changed[:8].max() == 0     # only where the basis pushes
    assert erasing.stats.seconds["erase"] > 0.0 and plain.stats.seconds["erase"] == 0.0
    # the evaluation's two ways of running a bundle agree, and its report says the bundle erases
    direct, _ = _bundle_direct(str(path))
    rgb = np.ascontiguousarray(np.stack(faces)[..., ::-1])
    np.testing.assert_array_equal(direct(rgb), bundle_filter(str(path))(rgb))
    assert bundle_filter(str(path)).info["erase"]["rank"] == 1


def test_a_network_bundle_erases_what_its_backend_returns(tmp_path, astronaut_bgr):
    """The eraser sits after any backend (here onnxruntime on the tiny U-Net), on the same noise draws."""
    eraser = _random_eraser()
    plain_path = tiny_bundles.write_unet(tmp_path / "plain")
    plain_bundle = load_bundle(plain_path)
    manifest = {k: v for k, v in plain_bundle.manifest.items() if k != "files"}
    manifest["erase"] = {"file": ERASE, "secret": "smile", "rank": 1}
    path = write_bundle(tmp_path / "erasing", manifest, plain_bundle.maps, onnx_bytes=plain_bundle.onnx_bytes,
                        extra_files={ERASE: serialize_maps(eraser.arrays())})
    faces = [cv2.resize(astronaut_bgr[50:250, 160:360], (16, 16), interpolation=cv2.INTER_AREA)] * 3
    plain = privsdk.Filter(str(plain_path), backend="onnxruntime", regions="full", seed=3, max_batch=2)
    erasing = privsdk.Filter(str(path), backend="onnxruntime", regions="full", seed=3, max_batch=2)
    before, after = plain.network_outputs(faces), erasing.network_outputs(faces)
    assert not np.array_equal(before[0], before[1]), "fresh noise per face"
    np.testing.assert_allclose(after, eraser.apply(before.copy()), atol=1e-6)


def test_a_tampered_or_broken_eraser_is_refused(tmp_path):
    path = _erasing_lite(tmp_path / "b", _random_eraser())
    (path / ERASE).write_bytes(serialize_maps(_random_eraser(seed=4).arrays()))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(path)
    path = _erasing_lite(tmp_path / "c", _random_eraser())
    manifest = json.loads((path / "filter.json").read_text())
    del manifest["files"][ERASE]
    (path / "filter.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not list"):
        load_bundle(path)
    small = LinearEraser(np.zeros((3, 8, 8), np.float32), np.ones((1, 3, 8, 8), np.float32),
                         np.ones((1, 3, 8, 8), np.float32))
    with pytest.raises(BundleError, match="erase.npz\\['mean'\\] is float32 \\(3, 8, 8\\)"):
        _erasing_lite(tmp_path / "d", small)
    with pytest.raises(BundleError, match="erase must be"):
        manifest = tiny_bundles.manifest("x", "lite")
        manifest["erase"] = {"file": "other.npz"}
        write_bundle(tmp_path / "e", manifest, tiny_bundles.lite_maps())


def _smile_set(root: Path, face16: np.ndarray, n: int = 60) -> None:
    """A SMILEsmileD-layout folder of the face with noise; smiles brighten the mouth's rows (linear secret)."""
    rng = np.random.default_rng(5)
    for i in range(n):
        smile = i % 2
        img = face16.astype(float) + rng.normal(0, 12, face16.shape)
        img[10:14] += 40 * smile
        folder = root / "SMILEs" / ("positives/positives7" if smile else "negatives/negatives7")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), np.clip(img, 0, 255).astype(np.uint8))


def test_export_erase_secret_fits_on_the_training_faces_and_keeps_the_filter(tmp_path, astronaut_bgr, capsys):
    from privsdk.cli import main
    from privsdk.export.erase_secret import erase_bundle, training_outputs
    from privsdk.train.erasure import fit_linear_eraser  # noqa: F401  (the fit the export runs)

    face16 = cv2.resize(astronaut_bgr[50:250, 160:360], (16, 16), interpolation=cv2.INTER_AREA)
    _smile_set(tmp_path / "smiles", face16)
    manifest = tiny_bundles.manifest("tiny-lite", "lite")
    maps = tiny_bundles.lite_maps()
    maps["sigma"][:] = 0.0
    source = write_bundle(tmp_path / "src", manifest, maps)
    data = f"smilesmiled={tmp_path / 'smiles'}"
    out = erase_bundle(source, tmp_path / "out", data=data)
    a, b = load_bundle(source), load_bundle(out)
    assert b.name == "tiny-lite-erased" and b.manifest["evaluation"] is None
    assert b.manifest["files"]["norm.npz"] == a.manifest["files"]["norm.npz"]
    erase = b.manifest["erase"]
    assert erase["secret"] == "smile" and erase["rank"] == 1 and erase["fitted_on"][0]["faces"] == 42
    assert erase["ridge"] in [float(k) for k in erase["validation_rms_change"]]
    # a deterministic filter (σ = 0) gives the same outputs every run: run once, the ridge by the change alone
    assert erase["noise_draws"] == 1 and "fresh_difference_left" not in erase
    # on the faces it was fit on, the erasing bundle's outputs no longer differ between the classes on average
    config = {"name": "smilesmiled", "root": str(tmp_path / "smiles")}
    before, labels, _ = training_outputs(source, config, "smile", 16)
    after, _, _ = training_outputs(out, config, "smile", 16)
    gap = lambda o: np.abs(o["train"][labels["train"] == 1].mean(0) - o["train"][labels["train"] == 0].mean(0)).max()  # noqa: E731,E501
    assert gap(before) > 0.05 and gap(after) < 1e-4
    # a network trained on a share of the train split (data.train_share) is erased on that share only
    _, share_labels, where = training_outputs(source, {**config, "train_share": 0.5}, "smile", 16)
    assert where["train_share"] == 0.5 and where["faces"] == len(share_labels["train"]) == 20   # 21 + 21, halved to even
    assert len(share_labels["val"]) == len(labels["val"])
    with pytest.raises(InputError, match="already erases"):
        erase_bundle(out, tmp_path / "again", data=data)
    # --erase-refit: the eraser dropped (its parent's files checked against export.erase_secret.from) and fit
    # again; on the same faces the closed form gives the same eraser, and the bundle keeps its name
    refit = load_bundle(erase_bundle(out, tmp_path / "refit", data=data, refit=True))
    assert refit.name == b.name and refit.manifest["version"] == b.manifest["version"]
    assert refit.manifest["export"]["erase_secret"]["from"] == b.manifest["export"]["erase_secret"]["from"]
    assert refit.manifest["files"]["norm.npz"] == a.manifest["files"]["norm.npz"]
    new, old = (np.load(io.BytesIO(x.files[ERASE])) for x in (refit, b))
    assert sorted(new.files) == sorted(old.files)
    assert all(np.allclose(new[k], old[k], atol=1e-5) for k in old.files)
    with pytest.raises(InputError, match="no eraser"):
        erase_bundle(source, tmp_path / "refit2", data=data, refit=True)
    # a step after the eraser changed the files it was fit behind: refitting would fit on other outputs
    changed = {k: v for k, v in b.manifest.items() if k != "files"}
    maps_changed = {k: v.copy() for k, v in b.maps.items()}
    maps_changed["sigma"][:] = 0.5
    later = write_bundle(tmp_path / "later", changed, maps_changed, extra_files={ERASE: b.files[ERASE]})
    with pytest.raises(InputError, match="not the ones its eraser was fit behind"):
        erase_bundle(later, tmp_path / "refit3", data=data, refit=True)
    with pytest.raises(InputError, match="other than the source"):
        erase_bundle(source, source, data=data)
    with pytest.raises(InputError, match="expected NAME=ROOT"):
        erase_bundle(source, tmp_path / "x", data="smilesmiled")
    # two sets: the same faces twice stand for two sets; the eraser is fit within each
    two = erase_bundle(source, tmp_path / "two", data=[data, data])
    assert [w["faces"] for w in load_bundle(two).manifest["erase"]["fitted_on"]] == [42, 42]
    # a stochastic one (σ > 0): the mean of the draws asked for, the ridge judged on one more draw
    noisy = write_bundle(tmp_path / "noisy", manifest, tiny_bundles.lite_maps())
    noisy_erase = load_bundle(erase_bundle(noisy, tmp_path / "noisy-out", data=data, draws=2)).manifest["erase"]
    assert noisy_erase["noise_draws"] == 2 and noisy_erase["fitted_on"][0]["noise_draws"] == 2
    assert set(noisy_erase["fresh_difference_left"]) == set(noisy_erase["validation_rms_change"])
    assert "fresh noise draw" in noisy_erase["ridge_picked_by"]
    with pytest.raises(InputError, match="noise draws >= 1"):
        erase_bundle(noisy, tmp_path / "x", data=data, draws=0)
    # by default one draw, as every shipped eraser was fit (the option costs the CNN attacker on emotion)
    assert load_bundle(erase_bundle(noisy, tmp_path / "noisy-1", data=data)).manifest["erase"]["noise_draws"] == 1
    assert main(["export", str(noisy), "--erase-secret", "--erase-draws", "3", "--erase-data", data,
                 "-o", str(tmp_path / "noisy-cli")]) == 0
    assert load_bundle(tmp_path / "noisy-cli").manifest["erase"]["noise_draws"] == 3
    # the CLI: the data a bundle's manifest names must be here, or be given
    assert main(["export", str(source), "--erase-secret", "-o", str(tmp_path / "cli")]) == 1
    assert "training data (None at None) is not here" in capsys.readouterr().err
    assert main(["export", str(source), "--erase-data", data]) == 1
    assert "give --erase-secret too" in capsys.readouterr().err
    assert main(["export", str(out), "--erase-refit", "-o", str(tmp_path / "cli")]) == 1
    assert "give --erase-secret too" in capsys.readouterr().err
    assert main(["export", str(source), "--erase-draws", "2", "-o", str(tmp_path / "cli")]) == 1
    assert "give --erase-secret too" in capsys.readouterr().err
    assert main(["export", str(out), "--erase-secret", "--erase-refit", "--erase-data", data,
                 "-o", str(tmp_path / "cli-refit")]) == 0
    assert load_bundle(tmp_path / "cli-refit").name == "tiny-lite-erased"
    capsys.readouterr()
    assert main(["export", str(source), "--erase-secret", "--level-head", "-o", str(tmp_path / "cli")]) == 1
    assert "level first, then erase" in capsys.readouterr().err
    assert main(["export", str(source), "--erase-secret", "--erase-data", data, "-o", str(tmp_path / "cli"),
                 "--name", "cli-erased", "--version", "0.0.2"]) == 0
    assert "with a linear eraser of its secret" in capsys.readouterr().out
    assert load_bundle(tmp_path / "cli").manifest["version"] == "0.0.2"


def test_export_erase_secret_fits_on_faces_framed_as_the_runtime_frames_them(tmp_path, astronaut_bgr, capsys):
    from privsdk.cli import main
    from privsdk.export.erase_secret import erase_bundle, training_outputs
    from privsdk.train.eval.framing import runtime_crop

    face16 = cv2.resize(astronaut_bgr[50:250, 160:360], (16, 16), interpolation=cv2.INTER_AREA)
    _smile_set(tmp_path / "smiles", face16)
    data = f"smilesmiled={tmp_path / 'smiles'}"
    config = {"name": "smilesmiled", "root": str(tmp_path / "smiles")}
    maps = tiny_bundles.lite_maps()
    maps["sigma"][:] = 0.0
    # without input.face_crop there is no runtime framing to fit on
    bare = write_bundle(tmp_path / "bare", tiny_bundles.manifest("tiny-lite", "lite"), maps)
    with pytest.raises(InputError, match="does not record how its training faces were framed"):
        erase_bundle(bare, tmp_path / "x", data=data, framing="runtime")
    with pytest.raises(InputError, match="expected one or more of data, runtime"):
        erase_bundle(bare, tmp_path / "x", data=data, framing="camera")   # refused before any face is read
    # a filter trained on faces cut tighter than this set's: the runtime crop is an inner part of each image
    manifest = tiny_bundles.manifest("tiny-lite", "lite")
    filter_box = [0.0, 0.0, 1.8, 1.8]
    manifest["input"]["face_crop"] = {"detector": "haar", "box": filter_box, "faces_found": 44, "faces_tried": 60}
    source = write_bundle(tmp_path / "src", manifest, maps)
    at_runtime = erase_bundle(source, tmp_path / "rt", data=data, framing="runtime")
    on_crops = erase_bundle(source, tmp_path / "crops", data=data)
    framing = load_bundle(at_runtime).manifest["erase"]["fitted_on"][0]["framing"]
    assert load_bundle(on_crops).manifest["erase"]["fitted_on"][0]["framing"] == {"mode": "data"}
    assert framing["mode"] == "runtime"
    np.testing.assert_allclose(framing["crop"], runtime_crop(framing["data_box"], filter_box), atol=1e-3)
    crop = framing["crop"]
    assert 0.02 < crop[0] < crop[2] < 0.98 and 0.02 < crop[1] < crop[3] < 0.98   # re-cut, not the whole image
    # on the re-cut faces the runtime-fit eraser meets the class means; the one fit on the set's crops does not
    before, labels, _ = training_outputs(source, config, "smile", 16, "runtime")
    after_rt, _, _ = training_outputs(at_runtime, config, "smile", 16, "runtime")
    after_crops, _, _ = training_outputs(on_crops, config, "smile", 16, "runtime")
    gap = lambda o: np.abs(o["train"][labels["train"] == 1].mean(0) - o["train"][labels["train"] == 0].mean(0)).max()  # noqa: E731,E501
    assert gap(before) > 0.05 and gap(after_rt) < 1e-4 < 1e-3 < gap(after_crops)
    # fit on both framings, each its own group: the means meet on the set's crops and on its re-cut faces
    both = erase_bundle(source, tmp_path / "both", data=data, framing=["data", "runtime"])
    fitted = load_bundle(both).manifest["erase"]["fitted_on"]
    assert [w["framing"]["mode"] for w in fitted] == ["runtime", "data"] and load_bundle(both).eraser.rank == 2
    crops_before, _, _ = training_outputs(source, config, "smile", 16)
    after_both_rt, _, _ = training_outputs(both, config, "smile", 16, "runtime")
    after_both_crops, _, _ = training_outputs(both, config, "smile", 16)
    assert gap(crops_before) > 0.05 and gap(after_both_rt) < 1e-4 and gap(after_both_crops) < 1e-4
    # a filter trained on faces framed as this set's: its re-cut is the set's crops, fit once for both
    manifest["input"]["face_crop"]["box"] = framing["data_box"]
    same = write_bundle(tmp_path / "same", manifest, maps)
    fitted = load_bundle(erase_bundle(same, tmp_path / "same-erased", data=data, framing=("runtime", "data"))
                         ).manifest["erase"]["fitted_on"]
    assert len(fitted) == 1 and fitted[0]["framing"]["same_as_data"] is True
    with pytest.raises(InputError, match="expected one or more of data, runtime"):
        erase_bundle(source, tmp_path / "x", data=data, framing=[])
    # the CLI
    assert main(["export", str(source), "--erase-framing", "runtime"]) == 1
    assert "give --erase-secret too" in capsys.readouterr().err
    assert main(["export", str(source), "--erase-secret", "--erase-data", data, "--erase-framing", "runtime",
                 "-o", str(tmp_path / "cli")]) == 0
    assert load_bundle(tmp_path / "cli").manifest["erase"]["fitted_on"][0]["framing"]["mode"] == "runtime"
    assert main(["export", str(source), "--erase-secret", "--erase-data", data, "--erase-framing", "data", "runtime",
                 "-o", str(tmp_path / "cli-both")]) == 0
    assert len(load_bundle(tmp_path / "cli-both").manifest["erase"]["fitted_on"]) == 2
