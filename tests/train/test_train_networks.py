"""privsdk.train.networks and .checkpoint: the noise input matters, norms, lite maps, checkpoint round trip."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from privsdk.errors import InputError
from privsdk.train.checkpoint import load_filter, make_checkpoint, read_checkpoint, save_checkpoint
from privsdk.train.networks import (PerLocationNorm, ReconstructionDecoder, SecretGenerator, SmallResNet,
                                    build_filter, count_parameters)


def test_unet_noise_is_an_input_that_changes_the_output():
    torch.manual_seed(0)
    f = build_filter("unet", size=32, base=4, depth=2, noise_channels=3, norm="perloc")
    assert f.noise_shape == (3, 8, 8)
    x = torch.randn(4, 3, 32, 32)
    f.train()
    f(x, torch.randn(4, 3, 8, 8))  # fill the running statistics once
    f.eval()
    z1, z2 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        y1, y1b, y2 = f(x, z1), f(x, z1), f(x, z2)
    assert y1.shape == (4, 3, 32, 32)
    assert float(y1.min()) >= 0 and float(y1.max()) <= 1
    torch.testing.assert_close(y1, y1b)  # no hidden randomness: same (x, z) -> same y
    assert float((y1 - y2).abs().max()) > 1e-4


@pytest.mark.parametrize("norm", ["perloc", "batch", "instance", "none"])
def test_unet_norm_choices_build_and_run(norm):
    f = build_filter("unet", size=16, base=4, depth=2, noise_channels=1, norm=norm)
    y = f(torch.randn(2, 3, 16, 16), torch.randn(2, *f.noise_shape))
    assert y.shape == (2, 3, 16, 16)
    if norm == "perloc":
        assert not any(n.endswith(".bias") for n, _ in f.named_parameters() if "down" in n or "dec" in n)


def test_default_unet_is_small():
    assert count_parameters(build_filter("unet", size=64)) < 400_000


def test_per_location_norm_uses_batch_stats_in_training_and_running_stats_in_eval():
    norm = PerLocationNorm(2, 3, 3, momentum=1.0)
    x = torch.randn(16, 2, 3, 3) * 3 + 5
    y = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(2, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(0, unbiased=False), torch.ones(2, 3, 3), atol=1e-3, rtol=0)
    norm.eval()
    one = norm(x[:1])  # with momentum 1 the running stats are this batch's (unbiased variance)
    expected = (x[:1] - x.mean(0)) / torch.sqrt(x.var(0, unbiased=True) + 1e-5)
    torch.testing.assert_close(one, expected, atol=1e-5, rtol=1e-5)
    assert len(list(norm.parameters())) == 0


def test_lite_filter_is_the_fused_kernel_formula():
    f = build_filter("lite", size=8, init_sigma=0.1)
    with torch.no_grad():
        f.scale.uniform_(0.5, 1.5)
        f.shift.uniform_(-0.2, 0.2)
    m = f.maps()
    assert set(m) == {"scale", "shift", "sigma"} and all(v.shape == (3, 8, 8) and v.dtype == np.float32 for v in m.values())
    np.testing.assert_allclose(m["sigma"], 0.1, rtol=1e-5)
    x, z = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    want = np.clip(x.numpy() * m["scale"] + m["shift"] + m["sigma"] * z.numpy(), 0, 1)
    np.testing.assert_allclose(f(x, z).detach().numpy(), want, atol=1e-6)


def test_lite_filter_on_a_coarse_grid_exports_smooth_full_size_maps():
    f = build_filter("lite", size=16, init_sigma=0.1, map_size=4)
    assert f.scale.shape == (1, 3, 4, 4), "the learned grid is coarse"
    with torch.no_grad():
        f.scale.uniform_(0.5, 1.5)
        f.sigma_raw.uniform_(-3, 0)
    m = f.maps()
    assert all(v.shape == (3, 16, 16) for v in m.values()), "the bundle gets full-size maps for the fused kernel"
    # bilinear upsampling: neighbouring pixels differ by at most a quarter of the grid's steps
    grid_step = float((f.scale[0, :, :, 1:] - f.scale[0, :, :, :-1]).abs().max().detach())
    assert np.abs(np.diff(m["scale"], axis=2)).max() <= grid_step / 4 + 1e-6
    x, z = torch.rand(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    want = np.clip(x.numpy() * m["scale"] + m["shift"] + m["sigma"] * z.numpy(), 0, 1)
    np.testing.assert_allclose(f(x, z).detach().numpy(), want, atol=1e-6)
    with pytest.raises(InputError, match="map_size"):
        build_filter("lite", size=16, map_size=32)


def test_estimators_shapes():
    assert SmallResNet(3, 4)(torch.rand(2, 3, 16, 16)).shape == (2, 3)
    assert ReconstructionDecoder(8)(torch.rand(2, 3, 16, 16)).shape == (2, 3, 16, 16)
    g = SecretGenerator(size=16, num_classes=2, base=4, depth=2, noise_channels=2)
    out = g(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]), torch.randn(2, *g.noise_shape))
    assert out.shape == (2, 3, 16, 16)


def test_build_filter_errors():
    with pytest.raises(InputError, match="unknown filter kind"):
        build_filter("vit")
    with pytest.raises(InputError, match="divisible"):
        build_filter("unet", size=20, depth=3)
    with pytest.raises(InputError, match="unknown normalization"):
        build_filter("unet", size=16, depth=2, norm="layer")
    with pytest.raises(InputError, match="bad architecture"):
        build_filter("lite", size=8, colour="rgb")


def test_checkpoint_round_trip_and_format(tmp_path):
    f = build_filter("unet", size=16, base=4, depth=2, noise_channels=2)
    mean, std = np.full((3, 16, 16), 0.5, np.float32), np.full((3, 16, 16), 0.2, np.float32)
    ck = make_checkpoint(method="aioi", hyperparameters={"lam": 10.0}, config={"a": 1}, epoch=3, step=30,
                         kind="unet", arch={"size": 16, "base": 4, "depth": 2, "noise_channels": 2},
                         filter_module=f, size=16, secret=["smile"], utility=["gender"], data={"name": "x"},
                         norm_mean=mean, norm_std=std)
    path = save_checkpoint(ck, tmp_path / "filter.pt")
    module, back = load_filter(path)
    assert back["format"] == "privsdk-checkpoint/1" and back["noise_inputs"] == [{"name": "noise", "shape": [2, 4, 4]}]
    assert back["input"] == {"height": 16, "width": 16, "colour_order": "RGB"}
    assert not module.training
    f.eval()
    x, z = torch.randn(1, 3, 16, 16), torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(module(x, z), f(x, z))
    export_ck = pytest.importorskip("privsdk.export.checkpoint")
    export_ck.validate_checkpoint(back, str(path))  # the export part accepts it
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot be read"):
        read_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(InputError, match="needs the per-location norm"):
        make_checkpoint(method="aioi", hyperparameters={}, config={}, epoch=0, step=0, kind="unet", arch={},
                        filter_module=f, size=16, secret=[], utility=[], data={})


def test_per_location_norm_under_bfloat16_autocast_keeps_float32_statistics():
    f = build_filter("unet", size=16, base=4, depth=2, noise_channels=1, norm="perloc")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = f(torch.randn(4, 3, 16, 16), torch.randn(4, *f.noise_shape))
    assert y.shape == (4, 3, 16, 16)
    norms = [m for m in f.modules() if isinstance(m, PerLocationNorm)]
    assert norms and all(m.running_mean.dtype == torch.float32 for m in norms)
    assert any(float(m.running_mean.abs().sum()) > 0 for m in norms)


def test_cnn_plus_linear_adversary_learns_what_a_pooled_cnn_cannot():
    """The training adversary with a pixel branch contains the eval's linear attacker: on a secret that is a
    random linear function of the pixels (a spatial pattern global pooling averages away) it learns, and the
    plain CNN of the same width does not."""
    import torch
    import torch.nn.functional as F

    from privsdk.train.methods import MethodContext, build_method
    from privsdk.train.networks import CNNPlusLinear, SmallResNet

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4096, 3, 8, 8, generator=g)
    w = torch.randn(3 * 8 * 8, generator=g)
    s = (((x - 0.5).flatten(1) @ w) > 0).long()
    train, test = slice(0, 2048), slice(2048, None)

    def fit(model):  # accuracy on held-out images (a CNN can memorize the training ones)
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            j = torch.randint(0, 2048, (128,))
            opt.zero_grad()
            F.cross_entropy(model(x[train][j]), s[train][j]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            return float((model(x[test]).argmax(1) == s[test]).float().mean())

    plain, both = fit(SmallResNet(2, width=4)), fit(CNNPlusLinear(2, width=4, size=8))
    assert both > 0.85 and plain < 0.75, (plain, both)

    ctx = MethodContext(device=torch.device("cpu"), size=16, num_secret_classes=2,
                        secret_prior=torch.tensor([0.5, 0.5]), adversary_linear_branch=True)
    assert isinstance(build_method("aioi", ctx, {}).attacker, CNNPlusLinear)


def test_residual_unet_starts_as_the_identity_and_learns_a_change():
    unet = build_filter("unet", size=16, base=4, depth=2, noise_channels=2, residual=True)
    mean, std = torch.full((3, 16, 16), 0.4), torch.full((3, 16, 16), 0.2)
    unet.set_input_norm(mean, std)
    x01 = torch.rand(4, 3, 16, 16)
    z = torch.randn(4, 2, 4, 4)
    y = unet((x01 - mean) / std, z)
    torch.testing.assert_close(y, x01, atol=1e-6, rtol=0)
    opt = torch.optim.Adam(unet.parameters(), lr=1e-2)
    for _ in range(20):  # push the top rows towards black: only a non-zero head can
        loss = unet((x01 - mean) / std, z)[:, :, :4].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    y = unet((x01 - mean) / std, z).detach()
    assert float(y[:, :, :4].mean()) < float(x01[:, :, :4].mean()) - 0.05 and 0.0 <= float(y.min())
    with pytest.raises(InputError, match="3 input channels"):
        build_filter("unet", size=16, in_channels=4, residual=True)


def _faces_with_a_known_lower_half(n: int = 400, size: int = 16, seed: int = 0):
    """Faces whose bottom half is a known linear function of the top half plus a shift for secret class 1."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, size, size, generator=g) * 0.3 + 0.35
    latent = torch.randn(n, 4, generator=g)
    to_top = torch.randn(4, size * size, generator=g) * 0.05
    to_bottom = torch.randn(4, size * size, generator=g) * 0.05
    secret = torch.arange(n) % 2
    smile = torch.randn(size * size, generator=g) * 0.1
    rows = torch.arange(size).reshape(1, 1, size, 1)
    top = (latent @ to_top).reshape(n, 1, size, size)
    bottom = ((latent @ to_bottom) + secret[:, None] * smile).reshape(n, 1, size, size)
    colour = torch.randn(n, 3, 1, 1, generator=g) * 0.03  # a per-face colour cast: the fill's own offset
    faces = base + colour + torch.where(rows < size // 2, top, bottom)
    neutral = faces - torch.where(rows < size // 2, 0.0, (secret[:, None] * smile).reshape(n, 1, size, size))
    return faces, secret, neutral


def test_predicted_lower_fill_paints_the_chosen_class_from_the_seen_rows():
    """The fit recovers a lower face that follows the seen rows, with class ``lower_fill_class``'s mouth."""
    faces, secret, neutral = _faces_with_a_known_lower_half()
    unet = build_filter("unet", size=16, base=4, depth=2, noise_channels=2, residual=True, lower_fill=0.5,
                        lower_fill_feather=0.0, lower_fill_rank=4, lower_fill_class=0)
    mean, std = faces.mean(0), faces.std(0)
    unet.set_input_norm(mean, std)
    plain = unet._fill_lower((faces - mean) / std) * std + mean      # before the fit: the mean-face fill
    assert unet.fit_lower_fill((faces * 255).round().to(torch.uint8), secret)["explained"] > 0.9
    fill = unet._fill_lower((faces - mean) / std) * std + mean
    bottom = slice(8, None)
    error = (fill - neutral)[:, :, bottom].abs().mean()
    assert error < 0.01 < (plain - neutral)[:, :, bottom].abs().mean()
    # the seen rows are untouched, and smiling faces get the neutral mouth, not their own
    torch.testing.assert_close(fill[:, :, :8], faces[:, :, :8])
    assert (fill - faces)[secret == 1][:, :, bottom].abs().mean() > 5 * error


def test_predicted_lower_fill_is_checked():
    with pytest.raises(InputError, match="lower_fill_rank"):
        build_filter("unet", size=16, depth=2, residual=True, lower_fill_rank=4)
    with pytest.raises(InputError, match="lower_fill_rank"):
        build_filter("unet", size=16, depth=2, residual=True, lower_fill=0.5, lower_fill_rank=-1)
    faces, secret, _ = _faces_with_a_known_lower_half(n=40)
    unet = build_filter("unet", size=16, depth=2, residual=True, lower_fill=0.5, lower_fill_rank=4,
                        lower_fill_class=2)
    with pytest.raises(InputError, match="lower_fill_class 2"):
        unet.fit_lower_fill(faces, secret)
    with pytest.raises(InputError, match="lower_fill_rank > 0"):
        build_filter("unet", size=16, depth=2, residual=True, lower_fill=0.5).fit_lower_fill(faces, secret)


def test_lite_lower_fill_is_the_mean_face_in_the_kernels_own_maps():
    """``lower_fill`` on the lite filter: scale 0, shift the mean face, σ 0 in the filled rows; the rest learned."""
    lite = build_filter("lite", size=16, map_size=4, lower_fill=0.5, lower_fill_feather=0.0)
    mean = torch.rand(3, 16, 16)
    lite.set_input_norm(mean, torch.ones(3, 16, 16))
    with torch.no_grad():
        lite.scale.add_(0.3)
        lite.shift.add_(0.1)
    maps = lite.maps()
    assert np.all(maps["scale"][:, 8:] == 0) and np.all(maps["sigma"][:, 8:] == 0)
    np.testing.assert_allclose(maps["shift"][:, 8:], mean[:, 8:].numpy(), atol=1e-7)
    np.testing.assert_allclose(maps["scale"][:, :8], 1.3, atol=1e-6)
    assert np.all(maps["sigma"][:, :8] > 0)
    faces, other = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    other[:, :, :8] = faces[:, :, :8]                       # the same faces above the middle only
    noise = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(lite(faces, noise), lite(other, noise))
    assert not torch.equal(lite(faces, noise)[:, :, :8], lite(faces, torch.zeros_like(noise))[:, :, :8])
    with pytest.raises(InputError, match="lower_fill"):
        build_filter("lite", size=16, lower_fill=0.95, lower_fill_feather=0.1)


def test_lite_lower_fill_can_be_flat_grey_like_the_mask_baseline():
    """``lower_fill_with="grey"``: the filled rows are mid-grey whatever the mean face, as ``lower_mask`` paints."""
    from privsdk.train.eval.filters import baseline

    lite = build_filter("lite", size=16, lower_fill=0.55, lower_fill_feather=0.0, learn_maps=False,
                        lower_fill_with="grey")
    lite.set_input_norm(torch.rand(3, 16, 16), torch.ones(3, 16, 16))
    faces = (torch.rand(2, 3, 16, 16) * 255).round() / 255
    out = lite(faces, torch.zeros_like(faces))
    pixels = (out.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    masked = baseline("lower_mask", 0.55)((faces.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    np.testing.assert_array_equal(pixels, masked)
    with pytest.raises(InputError, match="lower_fill_with"):
        build_filter("lite", size=16, lower_fill=0.5, lower_fill_with="black")
