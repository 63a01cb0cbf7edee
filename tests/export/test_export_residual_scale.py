"""`privsdk export BUNDLE --residual-scale S`: a residual U-Net keeping the share S of its network's change."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from privsdk import kernels  # noqa: E402
from privsdk.bundle import load_bundle  # noqa: E402
from privsdk.cli import main as cli_main  # noqa: E402
from privsdk.errors import InputError  # noqa: E402
from privsdk.export.bundle_export import ExportOptions, export_checkpoint  # noqa: E402
from privsdk.export.residual_scale import residual_scale_bundle  # noqa: E402
from privsdk.train.checkpoint import save_checkpoint  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


tiny = _load("export_tiny_filters_scale", FIXTURES / "export" / "tiny_filters.py")
tiny_bundles = _load("runtime_tiny_bundles_scale", FIXTURES / "runtime" / "tiny_bundles.py")


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    """A residual U-Net with a lower fill, exported with its FP16 graph (which scaling must not carry over)."""
    module, ckpt = tiny.make_checkpoint("unet", residual=True, lower_fill=0.25)
    work = tmp_path_factory.mktemp("scale")
    result = export_checkpoint(save_checkpoint(ckpt, work / "res.pt"), work / "res", ExportOptions(fp16=True))
    return module, result.directory


def _run(bundle, x, noise):
    session = ort.InferenceSession(bundle.onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(["filtered"], {"image": x, "noise": noise})[0]


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_the_scaled_bundle_is_the_module_with_its_head_scaled(residual, scale, tmp_path, astronaut_bgr):
    module, source = residual
    out = residual_scale_bundle(source, tmp_path / "scaled", scale, version="2.0.0")
    a, b = load_bundle(source), load_bundle(out)
    assert b.name == f"{a.name}-s{int(scale * 100)}" and b.manifest["version"] == "2.0.0"
    assert b.manifest["evaluation"] is None and b.manifest["export"]["residual_scale"]["scale"] == scale
    assert b.manifest["export"]["residual_scale"]["max_abs_vs_interpolation"] <= 1e-5
    assert b.manifest["export"]["residual_scale"]["from"]["files"] == a.manifest["files"]
    assert "filter.fp16.onnx" not in b.files and b.manifest["export"]["fp16"] is None
    assert b.manifest["files"]["norm.npz"] == a.manifest["files"]["norm.npz"]
    x = kernels.pre(astronaut_bgr, (220, 90, 16, 16), a.maps["scale"], a.maps["shift"], None)[None]
    noise = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    y1, ys = _run(a, x, noise), _run(b, x, noise)
    with torch.no_grad():
        kept = [p.clone() for p in (module.head.weight, module.head.bias)]
        module.head.weight.mul_(scale)
        module.head.bias.mul_(scale)
        try:
            want = module(torch.from_numpy(x), torch.from_numpy(noise)).numpy()
        finally:                                              # the module is shared by the parametrized cases
            module.head.weight.copy_(kept[0])
            module.head.bias.copy_(kept[1])
    np.testing.assert_allclose(ys, want, atol=1e-5)
    assert np.abs(ys - y1).max() > 1e-3                      # it did change the output
    if scale == 0.0:                                          # the face with its fill, nothing more
        assert np.abs(_run(b, x, -noise) - ys).max() == 0.0   # the noise reached the output through the head only


def test_the_share_is_of_the_network_as_trained_even_from_a_scaled_bundle(residual, tmp_path, astronaut_bgr):
    """From a bundle kept at 0.5, S = 1 gives the trained network back and S = 0.25 halves it again: the
    share is always of the change as trained, so a curve can be drawn from any point of it."""
    _, source = residual
    half = residual_scale_bundle(source, tmp_path / "half", 0.5)
    a = load_bundle(source)
    x = kernels.pre(astronaut_bgr, (220, 90, 16, 16), a.maps["scale"], a.maps["shift"], None)[None]
    noise = np.random.default_rng(1).standard_normal((1, 4, 4, 4)).astype(np.float32)
    for share in (1.0, 0.25, 0.0):
        again = load_bundle(residual_scale_bundle(half, tmp_path / f"again-{share}", share))
        step = again.manifest["export"]["residual_scale"]
        assert step["scale"] == share and step["source_scale"] == 0.5 and step["factor"] == share / 0.5
        direct = load_bundle(residual_scale_bundle(source, tmp_path / f"direct-{share}", share))
        np.testing.assert_allclose(_run(again, x, noise), _run(direct, x, noise), atol=1e-6)
        assert again.manifest["description"].count("It keeps") == 1, again.manifest["description"]
        assert f"It keeps {share:.0%} of the change" in again.manifest["description"]
    with pytest.raises(InputError, match="keeps none of its network's change"):
        residual_scale_bundle(tmp_path / "again-0.0", tmp_path / "back", 0.5)
    assert load_bundle(residual_scale_bundle(tmp_path / "again-0.0", tmp_path / "still-0", 0.0)).manifest[
        "export"]["residual_scale"]["factor"] == 0.0


def test_it_refuses_what_it_cannot_scale(residual, tmp_path):
    _, source = residual
    for bad in (-0.1, 1.5):
        with pytest.raises(InputError, match="in \\[0, 1\\]"):
            residual_scale_bundle(source, tmp_path / "bad", bad)
    plain = tiny_bundles.write_unet(tmp_path / "sigmoid")       # sigmoid(...) output: no residual to scale
    with pytest.raises(InputError, match="residual"):
        residual_scale_bundle(plain, tmp_path / "no", 0.5)
    with pytest.raises(InputError, match="residual"):
        residual_scale_bundle(tiny_bundles.write_lite(tmp_path / "lite"), tmp_path / "no2", 0.5)
    with pytest.raises(InputError, match="other than the source"):
        residual_scale_bundle(source, source, 0.5)
    # an eraser is fit on the outputs that scaling changes: erase after scaling, never before
    from privsdk.bundle import ERASE, serialize_maps, write_bundle
    from privsdk.erase import LinearEraser

    b = load_bundle(source)
    manifest = {k: v for k, v in b.manifest.items() if k != "files"}
    manifest["erase"] = {"file": ERASE, "secret": "smile", "rank": 1}
    eraser = LinearEraser(np.full((3, 16, 16), 0.4, np.float32), np.full((1, 3, 16, 16), 0.01, np.float32),
                          np.full((1, 3, 16, 16), 0.01, np.float32))
    erasing = write_bundle(tmp_path / "erasing", manifest, b.maps, onnx_bytes=b.onnx_bytes,
                           extra_files={ERASE: serialize_maps(eraser.arrays())})
    with pytest.raises(InputError, match="before --erase-secret"):
        residual_scale_bundle(erasing, tmp_path / "no3", 0.5)


def test_cli_writes_it_and_refuses_combinations(residual, tmp_path, capsys):
    _, source = residual
    assert cli_main(["export", str(source), "--residual-scale", "0.25", "-o", str(tmp_path / "cli"),
                     "--name", "half"]) == 0
    assert load_bundle(tmp_path / "cli").name == "half" and "25%" in capsys.readouterr().out
    assert cli_main(["export", str(source), "--residual-scale", "0.5"]) == 1                      # no -o
    assert cli_main(["export", str(source), "--residual-scale", "0.5", "--erase-secret", "-o",
                     str(tmp_path / "x")]) == 1
    assert "scale first" in capsys.readouterr().err


def test_the_interpolation_check_sees_a_graph_that_is_not_the_scaled_one(residual):
    from privsdk.export.residual_scale import check_interpolation, scale_head

    _, source = residual
    b = load_bundle(source)
    assert check_interpolation(b, scale_head(b.onnx_bytes, 0.5), 0.5) <= 1e-5
    assert check_interpolation(b, scale_head(b.onnx_bytes, 0.3), 0.5) > 1e-3
