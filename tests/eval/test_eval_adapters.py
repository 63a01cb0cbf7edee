"""Bundles and checkpoints wrapped as filters under evaluation (uint8 RGB in, uint8 RGB out)."""
import numpy as np
import pytest

from privsdk.bundle import write_bundle
from privsdk.train.eval.filters import bundle_filter, make_filter

H = W = 16


def _manifest(kind, onnx=None):
    return {"format": "privsdk-filter/1", "name": f"test-{kind}", "version": "0.0.1", "kind": kind,
            "secret": ["smile"], "utility": ["identity"],
            "input": {"height": H, "width": W, "channels": 3, "colour_order": "RGB", "layout": "NCHW",
                      "dtype": "float32"},
            "onnx": onnx, "output": {"convention": "rgb01"}, "method": {"name": "test", "hyperparameters": {}}}


def _images():
    return np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)


def test_lite_bundle_affine_noise_and_hashes(tmp_path):
    ones, zeros = np.ones((3, H, W), np.float32), np.zeros((3, H, W), np.float32)
    scale = ones.copy()
    scale[0] = 0.0                                    # red channel → constant 0.5 (shift), G/B kept
    shift = zeros.copy()
    shift[0] = 0.5
    path = write_bundle(tmp_path / "lite", _manifest("lite"), {"scale": scale, "shift": shift, "sigma": zeros})
    f = make_filter(str(path))
    assert f.kind == "bundle-lite" and not f.stochastic   # σ 0 everywhere: the same output every time
    assert set(f.info["files"]) == {"norm.npz"} and len(f.info["files"]["norm.npz"]) == 64
    x = _images()
    y = f(x)
    assert (y[..., 0] == 128).all()                   # floor(0.5·255 + 0.5)
    assert np.array_equal(y[..., 1:], x[..., 1:])
    noisy = write_bundle(tmp_path / "noisy", _manifest("lite"), {"scale": ones, "shift": zeros,
                                                                 "sigma": ones * 0.1})
    g = bundle_filter(str(noisy))
    a, b = g(x), g(x)
    assert g.stochastic
    assert not np.array_equal(a, b)                   # fresh noise per call
    assert 15 < np.abs(a.astype(float) - x).mean() < 35


def test_unet_bundle_through_onnxruntime(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # filtered = image · 1 + 0 · mean(noise): the identity, with a noise input it must be fed
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["noise"], ["m"], keepdims=1, axes=[1, 2, 3]),
         helper.make_node("Mul", ["m", "zero"], ["z"]),
         helper.make_node("Add", ["image", "z"], ["filtered"])],
        "identity",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, H, W]),
         helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("filtered", TensorProto.FLOAT, ["N", 3, H, W])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_section = {"image_input": "image", "noise_inputs": [{"name": "noise", "shape": [2, 4, 4]}],
                    "output": "filtered", "opset": 17}
    ones, zeros = np.ones((3, H, W), np.float32), np.zeros((3, H, W), np.float32)
    path = write_bundle(tmp_path / "unet", _manifest("unet", onnx_section),
                        {"scale": ones, "shift": zeros, "sigma": zeros}, onnx_bytes=model.SerializeToString())
    f = bundle_filter(str(path))
    assert set(f.info["files"]) == {"filter.onnx", "norm.npz"}
    x = _images()
    assert np.array_equal(f(x), x)
    assert f.stochastic   # it has a noise input: attackers re-filter their faces every epoch

    # the same network without its noise input gives the same output every run: filtered once
    plain = helper.make_graph([helper.make_node("Identity", ["image"], ["filtered"])], "plain",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, H, W])],
                              [helper.make_tensor_value_info("filtered", TensorProto.FLOAT, ["N", 3, H, W])])
    path = write_bundle(tmp_path / "plain", _manifest("unet", dict(onnx_section, noise_inputs=[])),
                        {"scale": ones, "shift": zeros, "sigma": zeros},
                        onnx_bytes=helper.make_model(plain, opset_imports=[helper.make_opsetid("", 17)])
                        .SerializeToString())
    g = bundle_filter(str(path))
    assert not g.stochastic and np.array_equal(g(x), x)
    # noise in the fused kernel's σ maps makes even that network stochastic
    path = write_bundle(tmp_path / "noisy-input", _manifest("unet", dict(onnx_section, noise_inputs=[])),
                        {"scale": ones, "shift": zeros, "sigma": ones * 0.1},
                        onnx_bytes=helper.make_model(plain, opset_imports=[helper.make_opsetid("", 17)])
                        .SerializeToString())
    assert bundle_filter(str(path)).stochastic


def test_checkpoint_adapters_lite_and_unet(tmp_path):
    pytest.importorskip("privsdk.train.checkpoint", reason="privsdk.train.checkpoint not built yet")
    import torch
    from privsdk.train.checkpoint import make_checkpoint, save_checkpoint
    from privsdk.train.networks import build_filter

    x = _images()
    common = dict(method="test", hyperparameters={}, config={}, epoch=1, step=1, size=H, secret=["smile"],
                  utility=[], data={})
    lite = build_filter("lite", size=H, init_sigma=0.05)
    save_checkpoint(make_checkpoint(kind="lite", arch={"size": H, "init_sigma": 0.05}, filter_module=lite, **common),
                    tmp_path / "lite.pt")
    f = make_filter(str(tmp_path / "lite.pt"))
    a, b = f(x), f(x)
    assert f.kind == "checkpoint-lite" and a.shape == x.shape and a.dtype == np.uint8 and f.stochastic
    assert not np.array_equal(a, b)                                  # fresh noise per call
    fill = build_filter("lite", size=H, lower_fill=0.5, learn_maps=False)   # the fill alone: deterministic
    save_checkpoint(make_checkpoint(kind="lite", arch={"size": H, "lower_fill": 0.5, "learn_maps": False},
                                    filter_module=fill, **common), tmp_path / "fill.pt")
    fixed = make_filter(str(tmp_path / "fill.pt"))
    assert not fixed.stochastic and np.array_equal(fixed(x), fixed(x))
    assert len(f.info["files"]["lite.pt"]) == 64

    arch = {"size": H, "base": 4, "depth": 2}
    unet = build_filter("unet", **arch).eval()
    mean = np.full((3, H, W), 0.4, np.float32)
    std = np.full((3, H, W), 0.2, np.float32)
    save_checkpoint(make_checkpoint(kind="unet", arch=arch, filter_module=unet, norm_mean=mean, norm_std=std,
                                    **common), tmp_path / "unet.pt")
    g = make_filter(str(tmp_path / "unet.pt"), seed=5)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    got = g(x)
    # its noise comes from its own generator: torch's global stream, which the attackers train from, is untouched
    assert torch.equal(torch.get_rng_state(), state)
    xin = (torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255 - torch.as_tensor(mean)) / torch.as_tensor(std)
    with torch.no_grad():                                             # same noise draw, by hand
        y = unet(xin, torch.randn((3, *unet.noise_shape), generator=torch.Generator().manual_seed(5))).numpy()
    expected = np.floor(np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.abs(got.astype(int) - expected).max() <= 1
