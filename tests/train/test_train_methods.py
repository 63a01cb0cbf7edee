"""Each method on real faces (LFW, 32×32, a visible secret band): its adversaries learn, its filter loss falls."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from privsdk.errors import InputError
from privsdk.train.frozen import to_x01, train_clean_model
from privsdk.train.losses import kl_to_prior
from privsdk.train.methods import METHODS, Batch, FrozenModel, MethodContext, build_method
from privsdk.train.networks import build_filter

SIZE = 32


@pytest.fixture(scope="module")
def faces(lfw_faces):
    """64 LFW faces, RGB 32×32; secret = a dark band over the mouth on odd faces; utility = a red edge."""
    imgs = np.stack([cv2.cvtColor(cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB)
                     for f in lfw_faces[:64]])
    s = (np.arange(64) % 2).astype(np.int64)
    u = ((np.arange(64) // 2) % 2).astype(np.int64)
    imgs[s == 1, 20:26] = 0
    imgs[u == 1, :, :4, 0] = 255
    return torch.from_numpy(imgs), torch.from_numpy(s), torch.from_numpy(u)


@pytest.fixture(scope="module")
def context(faces):
    imgs, s, u = faces
    util = train_clean_model(imgs, u, kind="class", outputs=2, width=4, epochs=2, batch_size=16, seed=0)
    fixed = train_clean_model(imgs, s, kind="class", outputs=2, width=4, epochs=2, batch_size=16, seed=1)
    return MethodContext(device=torch.device("cpu"), size=SIZE, num_secret_classes=2,
                         secret_prior=torch.tensor([0.5, 0.5]), utility={"gender": FrozenModel(util, "class", 2)},
                         fixed_secret=FrozenModel(fixed, "class", 2), estimator_width=4, adversary_lr=3e-3)


def _setup(name, faces, context, params=None):
    torch.manual_seed(0)
    imgs, s, u = faces
    x = to_x01(imgs[:24])
    batch = Batch(x=x, s=s[:24], u={"gender": u[:24]})
    flt = build_filter("unet", size=SIZE, base=4, depth=2, noise_channels=2, norm="batch")
    z = torch.randn(24, *flt.noise_shape)
    method = build_method(name, context, params or {})
    return flt, method, batch, z


@pytest.mark.parametrize("name", sorted(METHODS))
def test_adversaries_learn_on_a_fixed_filter(name, faces, context):
    flt, method, batch, z = _setup(name, faces, context)
    with torch.no_grad():
        batch.y_detached = flt((batch.x - 0.5) * 4, z)
    logs = [method.adversary_step(batch) for _ in range(12)]
    assert logs[-1]["attacker_ce"] < logs[0]["attacker_ce"]
    if name == "advrec":
        assert logs[-1]["decoder_mse"] < logs[0]["decoder_mse"]
    if name == "filtergen":
        d0 = logs[0]["discriminator_real"] + logs[0]["discriminator_fake"]
        d1 = logs[-1]["discriminator_real"] + logs[-1]["discriminator_fake"]
        assert d1 < d0


@pytest.mark.parametrize("name", sorted(METHODS))
def test_filter_loss_falls_against_fixed_adversaries(name, faces, context):
    flt, method, batch, z = _setup(name, faces, context)
    with torch.no_grad():
        batch.y_detached = flt((batch.x - 0.5) * 4, z)
    for _ in range(8):  # a somewhat informed attacker first
        method.adversary_step(batch)
    opt = torch.optim.Adam(flt.parameters(), lr=1e-2)
    history = []
    for _ in range(10):
        loss, logs = method.filter_loss(batch, flt((batch.x - 0.5) * 4, z))
        history.append((loss.item(), logs))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert history[-1][0] < history[0][0], [h[0] for h in history]
    if name == "advrec":  # the filter makes the decoder's reconstruction worse
        assert history[-1][1]["reconstruction"] > history[0][1]["reconstruction"]
    if name == "maxent":
        assert history[-1][1]["entropy_bits"] > history[0][1]["entropy_bits"]


def test_aioi_kl_directions_and_budget():
    prior = torch.tensor([0.7, 0.3])
    at_prior = torch.log(prior)[None].repeat(3, 1)
    for d in ("paper", "code"):
        torch.testing.assert_close(kl_to_prior(at_prior, prior, d), torch.zeros(3), atol=1e-6, rtol=0)
    sure = torch.tensor([[5.0, -5.0]])
    assert float(kl_to_prior(sure, prior, "paper")) > float(kl_to_prior(sure, prior, "code")) > 0
    with pytest.raises(InputError, match="KL direction"):
        kl_to_prior(sure, prior, "both")


def test_aioi_budget_k_switches_the_secret_penalty_off(faces, context):
    flt, method, batch, z = _setup("aioi", faces, context, {"k": 10.0})
    _, logs = method.filter_loss(batch, flt((batch.x - 0.5) * 4, z))
    assert logs["secret_penalty"] == 0.0 and logs["kl_secret"] > 0


def test_unknown_method_and_parameter(context):
    with pytest.raises(InputError, match="unknown method"):
        build_method("dp-sgd", context, {})
    with pytest.raises(InputError, match="unknown parameter"):
        build_method("aioi", context, {"lambda": 1.0})
    with pytest.raises(InputError, match="utility_mode"):
        build_method("labelflip", context, {"utility_mode": "psnr"})


def test_validation_metrics_auc_and_balanced_accuracy():
    from privsdk.train.losses import balanced_accuracy, balanced_class_weights, roc_auc

    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5, 0.5]), np.array([0, 1, 1])) == pytest.approx(0.5)
    assert balanced_accuracy(np.zeros(10, int), np.array([0] * 8 + [1] * 2)) == pytest.approx(0.5)
    w = balanced_class_weights(torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(w * torch.tensor([0.75, 0.25]), torch.tensor([0.5, 0.5]))


def test_region_budget_penalizes_only_its_band():
    from privsdk.train.losses import band_distortion_per_image, region_distortion_penalty

    x = torch.rand(2, 3, 20, 8)
    y = x.clone()
    y[:, :, 10:] += 0.5  # change only the lower half
    band = [{"rows": [0.0, 0.5], "eps": 0.0, "weight": 1e4}]
    assert float(band_distortion_per_image(y, x, 0.0, 0.5).max()) == 0.0
    assert float(band_distortion_per_image(y, x, 0.5, 1.0).min()) == pytest.approx(0.25)
    assert float(region_distortion_penalty(y, x, band)) == 0.0
    y.requires_grad_(True)
    z = y + 0.1  # now the band is touched too: penalty (0.01)²·1e4 per image, gradient only inside the band
    penalty = region_distortion_penalty(z, x, band)
    assert float(penalty.detach()) == pytest.approx(1.0, rel=1e-4)
    penalty.backward()
    assert float(y.grad[:, :, :10].abs().min()) > 0 and float(y.grad[:, :, 10:].abs().max()) == 0.0
    # within its budget the band costs nothing
    assert float(region_distortion_penalty(z, x, [{"rows": [0.0, 0.5], "eps": 0.02, "weight": 1e4}]).detach()) == 0.0


def test_ssim_term_is_the_evaluations_ssim_and_pays_for_change(lfw_faces):
    from skimage.metrics import structural_similarity

    from privsdk.train.eval.metrics import image_fidelity
    from privsdk.train.losses import ssim_penalty, ssim_per_image

    faces = np.repeat(lfw_faces[:6, :, :, None], 3, axis=3)                       # real 25×25 faces, RGB
    rng = np.random.default_rng(0)
    noisy = np.stack([np.clip(f.astype(float) + rng.normal(0, 20, f.shape), 0, 255) for f in faces]).astype(np.uint8)
    to_t = lambda a: torch.tensor(a).permute(0, 3, 1, 2).float() / 255.0
    ours = ssim_per_image(to_t(noisy), to_t(faces)).numpy()
    ref = [structural_similarity(a, b, channel_axis=2, data_range=255, win_size=7) for a, b in zip(faces, noisy)]
    # scikit-image divides the window's covariances by n − 1, pytorch_msssim by n: ~4e-4 apart here
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    assert float(ours.mean()) == pytest.approx(image_fidelity(faces, noisy)["ssim"], abs=1e-3)
    # a 5×5 image takes the largest odd window that fits, as the evaluation does
    small = to_t(faces[:, :5, :5])
    assert ssim_per_image(small, small).tolist() == pytest.approx([1.0] * 6)

    x = to_t(faces)
    assert float(ssim_penalty(x, x, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(ssim_penalty(to_t(noisy), x, 0.0)) == 0.0
    y = to_t(noisy).requires_grad_(True)
    penalty = ssim_penalty(y, x, 2.0)
    assert float(penalty.detach()) == pytest.approx(2.0 * (1.0 - float(np.mean(ref))), abs=1e-3)
    penalty.backward()
    # the gradient points back towards the original: a small step along it raises the SSIM
    stepped = (y - 0.05 * y.grad / y.grad.abs().max()).detach()
    assert float(ssim_per_image(stepped, x).mean()) > float(np.mean(ref))
