"""A whole training run on real faces: its files, exact resume, the config system, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("yaml")

from privsdk.errors import InputError
from privsdk.train.checkpoint import load_filter
from privsdk.train.config import load_config, save_config
from privsdk.train.data import FaceSet
from privsdk.train.trainer import Trainer

SIZE = 16


@pytest.fixture(scope="module")
def faceset(lfw_faces):
    imgs = np.stack([cv2.cvtColor(cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB)
                     for f in lfw_faces[:48]])
    s = (np.arange(48) % 2).astype(np.int64)
    u = ((np.arange(48) // 2) % 2).astype(np.int64)
    imgs[s == 1, 10:13] = 0
    imgs[u == 1, :, :2, 0] = 255
    return FaceSet(imgs, {"smile": s, "gender": u}, [f"lfw{i}" for i in range(48)], "lfw-fixture")


def _cfg(epochs, kind="unet", method="aioi", extra=()):
    arch = "{base: 4, depth: 2, noise_channels: 2}" if kind == "unet" else "{}"
    return load_config(None, [f"method.name={method}", f"data.size={SIZE}", "data.utility=[gender]",
                              f"filter.kind={kind}", f"filter.arch={arch}", f"train.epochs={epochs}",
                              "train.batch_size=8", "train.pretrain_epochs=1", "train.estimator_width=4",
                              "train.device=cpu", "train.max_steps_per_epoch=3", "train.warmup_steps=2", *extra])


def test_run_writes_everything_and_resumes_exactly(faceset, tmp_path):
    full = Trainer(_cfg(2, method="filtergen"), tmp_path / "full", dataset=faceset).run()
    for name in ("filter.pt", "last.pt", "splits.json", "config.yaml", "log.csv", "curves.png",
                 "utility_gender.pt", "fixed_secret.pt", "generator.pt"):
        assert (tmp_path / "full" / name).is_file(), name
    module, ck = load_filter(full)
    assert ck["method"] == "filtergen" and ck["epoch"] == 2 and ck["secret"] == ["smile"]
    assert ck["utility"] == ["gender"] and ck["norm"]["mean"].shape == (3, SIZE, SIZE)
    assert ck["config"]["train"]["epochs"] == 2 and "resume" not in ck
    assert ck["hyperparameters"]["eps"] == 0.01
    splits = json.loads((tmp_path / "full/splits.json").read_text())["splits"]
    assert sum(len(v) for v in splits.values()) == 48
    lines = (tmp_path / "full/log.csv").read_text().strip().splitlines()
    assert len(lines) == 3 and "val_attacker_bacc" in lines[0] and "val_utility_gender_bacc" in lines[0]

    Trainer(_cfg(2, method="filtergen"), tmp_path / "part", dataset=faceset).run(max_epochs=1)  # "interrupted"
    assert torch.load(tmp_path / "part/last.pt", weights_only=False)["epoch"] == 1
    # same run dir, more epochs, resume: must land on the uninterrupted run's weights
    resumed = Trainer(_cfg(2, method="filtergen"), tmp_path / "part", resume=True, dataset=faceset).run()
    a = torch.load(full, weights_only=False)["filter"]["state_dict"]
    b = torch.load(resumed, weights_only=False)["filter"]["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    assert len((tmp_path / "part/log.csv").read_text().strip().splitlines()) == 3


def test_lite_run_keeps_maps_in_checkpoint(faceset, tmp_path):
    path = Trainer(_cfg(1, kind="lite", method="maxent"), tmp_path / "lite", dataset=faceset).run()
    module, ck = load_filter(path)
    maps = module.maps()
    assert ck["filter"]["kind"] == "lite" and maps["sigma"].shape == (3, SIZE, SIZE)
    assert (maps["sigma"] > 0).all() and np.isfinite(maps["scale"]).all()
    assert "noise_inputs" not in ck


def test_resume_without_last_checkpoint_is_refused(faceset, tmp_path):
    with pytest.raises(InputError, match="cannot resume"):
        Trainer(_cfg(1), tmp_path / "empty", resume=True, dataset=faceset).run()


def test_config_file_overrides_and_round_trip(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("method:\n  name: labelflip\n  params: {alpha: 2.0}\ntrain:\n  lr: 1e-4\n  epochs: 3\n")
    cfg = load_config(f, ["train.epochs=5", "method.params.utility_mode=variance", "data.utility=[yaw, pitch]"])
    assert cfg.method.name == "labelflip" and cfg.train.epochs == 5 and cfg.train.lr == pytest.approx(1e-4)
    assert cfg.method.params == {"alpha": 2.0, "utility_mode": "variance"}
    assert cfg.data.utility == ["yaw", "pitch"]
    save_config(cfg, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(InputError, match="unknown config key train.learning_rate"):
        load_config(None, ["train.learning_rate=1"])
    with pytest.raises(InputError, match="method.name"):
        load_config(None, ["method.name=gan"])
    with pytest.raises(InputError, match="no '='"):
        load_config(None, ["train.lr"])
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    band = load_config(None, ["losses.region_budgets=[{rows: [0, 0.45], eps: 3e-3}]"]).losses.region_budgets
    assert band == [{"rows": [0.0, 0.45], "eps": 0.003, "weight": 1e4}]
    for bad in ("[{rows: [0.5, 0.2], eps: 0.01}]", "[{rows: [0, 1.5], eps: 0.01}]", "[{rows: [0, 0.5]}]",
                "[{rows: [0, 0.5], eps: -1}]", "[{rows: [0, 0.5], eps: 0.01, budget: 2}]", "[0.5]"):
        with pytest.raises(InputError, match=r"losses.region_budgets\[0\]"):
            load_config(None, [f"losses.region_budgets={bad}"])
    assert load_config(None, ["losses.ssim_weight=2"]).losses.ssim_weight == 2.0
    with pytest.raises(InputError, match="losses.ssim_weight is -1.0; expected a weight >= 0"):
        load_config(None, ["losses.ssim_weight=-1.0"])
    also = load_config(None, ["data.also=[{name: genki4k, root: ../shared/data/GENKI4K}]"]).data.also
    assert also == [{"name": "genki4k", "root": "../shared/data/GENKI4K"}]
    framed = load_config(None, ["data.also=[{name: genki4k, root: g, framing: runtime}]"]).data.also
    assert framed == [{"name": "genki4k", "root": "g", "framing": "runtime"}]
    assert load_config(None, ["data.also=[{name: genki4k, root: g, framing: data}]"]).data.also == [
        {"name": "genki4k", "root": "g"}]
    for bad in ("[{name: imagenet, root: x}]", "[{name: genki4k}]", "[genki4k]", "[{name: genki4k, root: x, w: 1}]",
                "[{name: genki4k, root: x, framing: camera}]"):
        with pytest.raises(InputError, match=r"data.also\[0\] is .*expected \{name: one of"):
            load_config(None, [f"data.also={bad}"])


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs, "configs/*.yaml expected"
    for c in configs:
        load_config(c)


def test_cli_print_config(capsys):
    from privsdk.cli import main

    assert main(["train", "--set", "train.epochs=7", "--method", "maxent", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 7" in out and "name: maxent" in out


def test_pose_and_identity_terms_with_frozen_models(faceset, tmp_path):
    rng = np.random.default_rng(0)
    labels = dict(faceset.labels)
    for k in ("yaw", "pitch", "roll"):
        labels[k] = rng.normal(0, 0.2, len(faceset)).astype(np.float32)
    ds = FaceSet(faceset.images, labels, faceset.paths, "lfw-pose")

    class Descriptor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    exported = torch.export.export(Descriptor().eval(), (torch.rand(2, 3, SIZE, SIZE),),
                                   dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(exported, str(tmp_path / "descriptor.pt2"))
    cfg = _cfg(1, kind="lite", method="aioi",
               extra=["losses.pose_weight=1.0", "losses.identity_weight=1.0",
                      f"losses.identity_model={tmp_path / 'descriptor.pt2'}", "data.utility=[yaw]",
                      "losses.region_budgets=[{rows: [0, 0.4], eps: 0.0}]", "losses.ssim_weight=1.0"])
    path = Trainer(cfg, tmp_path / "pose", dataset=ds).run()
    assert (tmp_path / "pose/pose.pt").is_file() and (tmp_path / "pose/utility_yaw.pt").is_file()
    header = (tmp_path / "pose/log.csv").read_text().splitlines()[0]
    for col in ("train_pose_mse", "train_identity_dist2", "train_region_penalty", "train_ssim_penalty",
                "val_pose_change_mae",
                "val_utility_yaw_mae"):
        assert col in header, col
    assert torch.load(path, weights_only=False)["utility"] == ["yaw", "pose", "identity"]
    with pytest.raises(InputError, match="pose_model or a data set"):
        Trainer(_cfg(1, kind="lite", extra=["losses.pose_weight=1.0"]), tmp_path / "nopose", dataset=faceset).run()


def test_cli_trains_from_a_real_layout_on_disk(lfw_faces, tmp_path):
    from privsdk.cli import main

    for i, face in enumerate(lfw_faces[:40]):
        img = cv2.resize(face, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        folder = "positives/positives7" if i % 3 == 0 else "negatives/negatives7"
        if i % 3 == 0:
            img[10:13] = 0
        path = tmp_path / "smile" / "SMILEs" / folder / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
    rc = main(["-q", "train", "--method", "labelflip", "--data", str(tmp_path / "smile"), "--out", str(tmp_path / "run"),
               "--set", f"data.size={SIZE}", "--set", "filter.arch={base: 4, depth: 2, noise_channels: 1}",
               "--set", "train.epochs=1", "--set", "train.batch_size=8", "--set", "train.pretrain_epochs=1",
               "--set", "train.estimator_width=4", "--set", "train.device=cpu", "--set", "train.max_steps_per_epoch=2",
               "--set", "method.params.utility_mode=variance"])
    assert rc == 0
    module, ck = load_filter(tmp_path / "run/filter.pt")
    assert ck["method"] == "labelflip" and ck["data"]["n_images"] == 40
    assert ck["data"]["secret_prior"][1] == pytest.approx(14 / 40, abs=0.05)


def test_training_on_two_sets_holds_out_each_sets_test_split(lfw_faces, tmp_path):
    """data.also: SMILEsmileD + GENKI-4K layouts on disk; the GENKI test faces must stay out of training."""
    from privsdk.cli import main
    from privsdk.train.data import load_dataset, make_splits

    for i, face in enumerate(lfw_faces[:30]):
        folder = "positives/positives7" if i % 3 == 0 else "negatives/negatives7"
        path = tmp_path / "smile/SMILEs" / folder / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.resize(face, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    lines = []
    for i, face in enumerate(lfw_faces[30:50]):
        path = tmp_path / "genki/files" / f"file{i + 1:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(face, (SIZE, SIZE)), cv2.COLOR_GRAY2BGR))
        lines.append(f"{i % 2} 0.1 0.0 0.0")
    (tmp_path / "genki/labels.txt").write_text("\n".join(lines) + "\n")
    rc = main(["-q", "train", "--data", str(tmp_path / "smile"), "--out", str(tmp_path / "run"),
               "--set", f"data.also=[{{name: genki4k, root: {tmp_path / 'genki'}}}]",
               "--set", f"data.size={SIZE}", "--set", "filter.arch={base: 4, depth: 2, noise_channels: 1}",
               "--set", "train.epochs=1", "--set", "train.batch_size=8", "--set", "train.pretrain_epochs=1",
               "--set", "train.estimator_width=4", "--set", "train.device=cpu", "--set", "train.max_steps_per_epoch=2"])
    assert rc == 0
    _, ck = load_filter(tmp_path / "run/filter.pt")
    assert ck["data"]["n_images"] == 50
    # the trainer measured where its faces sit in the runtime's Haar box (scikit-image's LFW crops: about the box)
    crop = ck["data"]["face_crop"]
    assert crop["detector"] == "haar" and crop["faces_found"] >= 10
    np.testing.assert_allclose(crop["box"], [0.0, 0.0, 1.1, 1.1], atol=0.15)
    saved = json.loads((tmp_path / "run/splits.json").read_text())
    assert saved["dataset"] == "smilesmiled+genki4k" and saved["also"][0]["name"] == "genki4k"
    genki = load_dataset("genki4k", tmp_path / "genki", size=SIZE)
    held_out = make_splits(genki, stratify="smile", fractions=(0.7, 0.15, 0.15), seed=0)["test"]
    assert sorted(i - 30 for i in saved["splits"]["test"] if i >= 30) == held_out.tolist()
    assert not {i - 30 for i in saved["splits"]["train"] if i >= 30} & set(held_out.tolist())


def test_a_set_framed_looser_is_recut_as_the_first_sets_faces_sit(lfw_faces):
    """data.also's framing: runtime: faces cut 1.4× looser around the same centre come back framed as the first set's."""
    from privsdk.train.eval.framing import crop_and_resize
    from privsdk.train.trainer import framed_like

    rgb = np.repeat(cv2.resize(np.moveaxis(lfw_faces[:60], 0, -1), (48, 48), interpolation=cv2.INTER_CUBIC)
                    .transpose(2, 0, 1)[..., None], 3, axis=3)
    labels = {"smile": np.arange(60) % 2}
    first = FaceSet(rgb, labels, [f"{i}" for i in range(60)], "first")
    loose = FaceSet(crop_and_resize(rgb, (-0.2, -0.2, 1.2, 1.2)), labels, first.paths, "loose")
    train = np.arange(0, 60, 2)
    recut = framed_like(loose, train, first, train)
    assert recut.images.shape == rgb.shape and recut.name == "loose" and recut.labels is labels

    def gap(x):   # mean absolute difference to the first set's faces, in grey levels
        return float(np.abs(x.astype(float) - rgb.astype(float)).mean())
    assert gap(recut.images) < 0.5 * gap(loose.images)
    assert gap(framed_like(first, train, first, train).images) < 0.5 * gap(loose.images)   # already framed so


def test_a_fixed_attacker_near_chance_is_warned_about(faceset, tmp_path):
    """Where the images carry no label, the clean-trained attacker sits at chance: the trainer says so."""
    import logging

    warnings = []
    grab = logging.Handler(logging.WARNING)
    grab.emit = lambda record: warnings.append(record.getMessage())  # the CLI stops privsdk's propagation
    logger = logging.getLogger("privsdk.train.trainer")
    logger.addHandler(grab)
    try:
        same = np.repeat(faceset.images[:1], len(faceset), axis=0)  # one face 48 times: nothing to read
        Trainer(_cfg(1), tmp_path / "chance", dataset=FaceSet(same, dict(faceset.labels), faceset.paths, "one")).run()
        assert any("near chance" in w for w in warnings)
        warnings.clear()
        Trainer(_cfg(1, extra=["train.pretrain_epochs=40"]), tmp_path / "signal", dataset=faceset).run()
        assert not any("near chance" in w for w in warnings)
    finally:
        logger.removeHandler(grab)


def test_predicted_lower_fill_is_fit_on_the_training_split(faceset, tmp_path):
    """``filter.arch.lower_fill_rank``: the trainer fits the fill on the train split, and the checkpoint keeps it."""
    arch = "{base: 4, depth: 2, noise_channels: 2, residual: true, lower_fill: 0.5, lower_fill_rank: 3}"
    cfg = _cfg(1, extra=[f"filter.arch={arch}", "train.warmup_steps=0"])
    module, ck = load_filter(Trainer(cfg, tmp_path / "fill", dataset=faceset).run())
    train = np.array(json.loads((tmp_path / "fill/splits.json").read_text())["splits"]["train"])
    refit, _ = load_filter(tmp_path / "fill/filter.pt")
    refit.fit_lower_fill(torch.from_numpy(faceset.images[train]).permute(0, 3, 1, 2),
                         torch.from_numpy(faceset.labels["smile"][train]))
    assert module.fill_coef.abs().max() > 0 and ck["filter"]["arch"]["lower_fill_rank"] == 3
    for name in ("fill_seen_mean", "fill_basis", "fill_coef", "fill_bias"):
        torch.testing.assert_close(getattr(module, name), getattr(refit, name), msg=name)


def test_lite_lower_fill_gets_the_training_mean_face(faceset, tmp_path):
    """The trainer hands the lite filter its fill: the train split's mean face, in the kernel maps it exports."""
    cfg = _cfg(1, kind="lite", method="maxent", extra=["filter.arch={lower_fill: 0.5, lower_fill_feather: 0.0}"])
    module, ck = load_filter(Trainer(cfg, tmp_path / "lite-fill", dataset=faceset).run())
    maps = module.maps()
    train = json.loads((tmp_path / "lite-fill/splits.json").read_text())["splits"]["train"]
    mean = faceset.images[np.array(train)].astype(np.float64).mean(axis=0).transpose(2, 0, 1) / 255.0
    assert ck["filter"]["kind"] == "lite"
    np.testing.assert_allclose(maps["shift"][:, SIZE // 2:], mean[:, SIZE // 2:], atol=1e-6)
    assert np.all(maps["scale"][:, SIZE // 2:] == 0) and np.all(maps["sigma"][:, SIZE // 2:] == 0)


def test_a_lite_filter_with_fixed_maps_is_the_fill_alone(faceset, tmp_path):
    """``learn_maps: false``: nothing to train; the run writes the mean-face fill and leaves the rest of the face."""
    arch = "filter.arch={lower_fill: 0.5, lower_fill_feather: 0.0, learn_maps: false}"
    path = Trainer(_cfg(3, kind="lite", extra=[arch]), tmp_path / "fill-only", dataset=faceset).run()
    module, ck = load_filter(path)
    assert list(module.parameters()) == [] and ck["epoch"] == 0 and ck["method"] == "fill"
    assert ck["hyperparameters"]["learned"] is False and not (tmp_path / "fill-only/last.pt").exists()
    maps = module.maps()
    train = json.loads((tmp_path / "fill-only/splits.json").read_text())["splits"]["train"]
    mean = faceset.images[np.array(train)].astype(np.float64).mean(axis=0).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(maps["shift"][:, SIZE // 2:], mean[:, SIZE // 2:], atol=1e-6)
    assert np.all(maps["scale"][:, :SIZE // 2] == 1) and np.all(maps["shift"][:, :SIZE // 2] == 0)
    assert np.all(maps["sigma"] == 0)
    # the filter is deterministic: the same face gives the same output whatever the noise
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(module(x, torch.randn(2, 3, SIZE, SIZE)), module(x, torch.randn(2, 3, SIZE, SIZE)))
    with pytest.raises(InputError, match="identity"):
        Trainer(_cfg(1, kind="lite", extra=["filter.arch={learn_maps: false}"]), tmp_path / "nothing",
                dataset=faceset).run()


def test_a_train_share_fits_the_filter_on_that_share_and_says_so(faceset, tmp_path):
    """data.train_share 0.5: the run trains on half of the train split (stratified) and records the share, so that
    the eraser, the levelling template and `privsdk eval --held-back-attacker` cut the same faces."""
    from privsdk.train.data import config_splits

    cfg = _cfg(1, kind="lite", method="maxent", extra=["data.train_share=0.5"])
    Trainer(cfg, tmp_path / "half", dataset=faceset).run()
    saved = json.loads((tmp_path / "half/splits.json").read_text())
    assert saved["train_share"] == 0.5
    expected = config_splits(faceset, {"secret": "smile", "train_share": 0.5})
    assert saved["splits"]["train"] == expected["train"].tolist()
    assert len(expected["held_back"]) + len(expected["train"]) == round(0.7 * 48)
    _, ck = load_filter(tmp_path / "half/filter.pt")
    assert ck["config"]["data"]["train_share"] == 0.5
