"""The torch backend runs training checkpoints directly (unet through torch, lite through the kernel)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
checkpoint = pytest.importorskip("privsdk.train.checkpoint")
networks = pytest.importorskip("privsdk.train.networks")

from privsdk import Filter  # noqa: E402


def _save(tmp_path, kind, **arch):
    torch.manual_seed(0)
    module = networks.build_filter(kind, **arch)
    extra = {}
    if kind == "unet":
        extra = {"norm_mean": np.full((3, 16, 16), 0.5, np.float32), "norm_std": np.full((3, 16, 16), 0.25, np.float32)}
    ckpt = checkpoint.make_checkpoint(method="test", hyperparameters={}, config={}, epoch=3, step=30, kind=kind,
                                      arch=arch, filter_module=module, size=16, secret=["smile"],
                                      utility=["identity"], data={}, **extra)
    return checkpoint.save_checkpoint(ckpt, tmp_path / f"{kind}.pt"), module


def test_unet_checkpoint_runs_on_torch_and_matches_the_module(tmp_path, astronaut_bgr):
    path, module = _save(tmp_path, "unet", size=16, depth=2, base=4, noise_channels=2)
    f = Filter(path, regions="full", seed=0)
    assert f.backend.name == "torch" and f.kind == "unet" and f.info["version"] == "checkpoint epoch 3"
    crop = np.ascontiguousarray(astronaut_bgr[40:200, 150:310])
    out = f.apply(crop)
    assert out.shape == crop.shape and np.any(out != crop, axis=-1).mean() > 0.9
    # the same batch through the module directly gives the same network output
    from privsdk.kernels import NoiseSource, pre

    maps = f._maps
    x = np.empty((1, 3, 16, 16), np.float32)
    z = np.empty((1, 2, 4, 4), np.float32)
    pre(crop, None, maps["scale"], maps["shift"], maps["sigma"], out=x[0], noise_outputs=[z[0]], rng=NoiseSource(9))
    with torch.no_grad():
        expected = module.eval()(torch.from_numpy(x), torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(f.backend.run(x, [z]), expected, atol=1e-5)


def test_lite_checkpoint_runs_in_the_fused_kernel(tmp_path, astronaut_bgr):
    path, _ = _save(tmp_path, "lite", size=16)
    f = Filter(path, regions="full", seed=0)
    assert f.backend is None and f.kind == "lite"
    assert f.apply(np.ascontiguousarray(astronaut_bgr[:64, :64])).shape == (64, 64, 3)
