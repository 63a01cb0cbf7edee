"""Checkpoint → bundle export: load and run parity (U-Net, lite, FP16), schema, tampering, bad checkpoints."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from privsdk import kernels  # noqa: E402
from privsdk.bundle import BundleError, load_bundle, validate_manifest  # noqa: E402
from privsdk.cli import main as cli_main  # noqa: E402
from privsdk.errors import InputError  # noqa: E402
from privsdk.export.bundle_export import ExportOptions, export_checkpoint  # noqa: E402
from privsdk.export.checkpoint import read_checkpoint  # noqa: E402
from privsdk.train.checkpoint import save_checkpoint  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "export"
SCHEMA = Path(__file__).resolve().parents[2] / "sdk" / "privsdk" / "schema" / "filter.schema.json"


def _tiny():
    spec = importlib.util.spec_from_file_location("export_tiny_filters", FIXTURES / "tiny_filters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


tiny = _tiny()


@pytest.fixture(scope="module")
def unet_export(tmp_path_factory):
    module, ckpt = tiny.make_checkpoint("unet")
    work = tmp_path_factory.mktemp("unet")
    path = save_checkpoint(ckpt, work / "best.pt")  # through the file, as 'privsdk export' does
    result = export_checkpoint(path, work / "smile", ExportOptions(fp16=True, version="0.3.0"))
    return module, ckpt, result


@pytest.fixture(scope="module")
def lite_export(tmp_path_factory):
    module, ckpt = tiny.make_checkpoint("lite")
    work = tmp_path_factory.mktemp("lite")
    path = save_checkpoint(ckpt, work / "lite.pt")
    assert cli_main(["export", str(path), "-o", str(work / "smile-lite"), "--name", "smile-lite"]) == 0
    return module, ckpt, load_bundle(work / "smile-lite")


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle_dir.name
    shutil.copytree(bundle_dir, dst)
    return dst


def test_unet_bundle_runs_like_the_torch_module(unet_export, astronaut_bgr):
    module, ckpt, result = unet_export
    bundle = load_bundle(result.directory)
    assert bundle.kind == "unet" and bundle.name == "smile" and bundle.input_size == (16, 16)
    assert sorted(bundle.files) == ["filter.fp16.onnx", "filter.onnx", "norm.npz"]
    assert bundle.noise_inputs == [{"name": "noise", "shape": [4, 4, 4]}]
    # a network-size face region of a real photo: no resize, so every step can be written out by hand
    roi = (220, 90, 16, 16)
    noise = np.empty((4, 4, 4), np.float32)
    x = kernels.pre(astronaut_bgr, roi, bundle.maps["scale"], bundle.maps["shift"], None,
                    noise_outputs=[noise], rng=kernels.NoiseSource(seed=5))
    crop01 = astronaut_bgr[90:106, 220:236, ::-1].transpose(2, 0, 1).astype(np.float32) / 255
    expected_x = (crop01 - ckpt["norm"]["mean"]) / ckpt["norm"]["std"]
    np.testing.assert_allclose(x, expected_x, atol=1e-5)
    assert abs(float(noise.mean())) < 0.6 and 0.5 < float(noise.std()) < 1.5  # N(0, 1) filled by the kernel
    session = ort.InferenceSession(bundle.onnx_bytes, providers=["CPUExecutionProvider"])
    y = session.run(["filtered"], {"image": x[None], "noise": noise[None]})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x[None]), torch.from_numpy(noise[None])).numpy()
    assert np.abs(y - want).max() <= 1e-4
    frame = astronaut_bgr.copy()
    kernels.post(y[0], frame, roi)
    want8 = np.floor(np.clip(want[0], 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)[..., ::-1]
    assert np.abs(frame[90:106, 220:236].astype(int) - want8).max() <= 1
    assert (frame[:90] == astronaut_bgr[:90]).all()  # nothing outside the region changed


def test_unet_graph_has_dynamic_batch_and_named_noise(unet_export):
    module, _, result = unet_export
    data = (result.directory / "filter.onnx").read_bytes()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "noise"]
    assert [o.name for o in session.get_outputs()] == ["filtered"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 16, 16)).astype(np.float32)
    z = rng.standard_normal((5, 4, 4, 4)).astype(np.float32)
    y = session.run(None, {"image": x, "noise": z})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x), torch.from_numpy(z)).numpy()
    assert y.shape == (5, 3, 16, 16) and np.abs(y - want).max() <= 1e-4
    y_other_noise = session.run(None, {"image": x, "noise": -z})[0]
    assert np.abs(y_other_noise - y).max() > 1e-3  # the noise input is live, not folded away


def test_manifest_records_checks_method_and_shapes(unet_export):
    _, _, result = unet_export
    m = json.loads((result.directory / "filter.json").read_text())
    assert m["version"] == "0.3.0" and m["secret"] == ["smile"] and m["utility"] == ["identity", "pose"]
    assert m["method"] == {"name": "max-entropy", "hyperparameters": {"lambda": 0.5, "budget": [0.1, 0.2]}}
    assert m["onnx"]["opset"] >= 17 and m["onnx"]["image_input"] == "image" and m["onnx"]["output"] == "filtered"
    checks = m["export"]["checks"]
    assert checks["onnx_checker"]["passed"] is True
    assert 0 <= checks["onnxruntime_vs_torch_max_abs"] <= 1e-4
    assert 0 <= checks["end_to_end_max_abs_uint8"] <= 2
    fp16 = m["export"]["fp16"]
    assert fp16["file"] == "filter.fp16.onnx" and 0 < fp16["onnxruntime_vs_torch_fp32_max_abs"] <= 2e-2
    assert m["training"]["epoch"] == 1 and m["evaluation"] is None


def test_fp16_variant_keeps_fp32_io(unet_export):
    _, _, result = unet_export
    session = ort.InferenceSession((result.directory / "filter.fp16.onnx").read_bytes(),
                                   providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)", "tensor(float)"]
    assert session.get_outputs()[0].type == "tensor(float)"


def test_lite_bundle_is_maps_only_and_matches_module(lite_export):
    module, _, bundle = lite_export
    assert bundle.name == "smile-lite" and bundle.kind == "lite"
    assert bundle.onnx_bytes is None and list(bundle.files) == ["norm.npz"]
    for key, value in module.maps().items():
        np.testing.assert_array_equal(bundle.maps[key], value)
    checks = bundle.manifest["export"]["checks"]
    assert checks["deterministic_max_abs"] <= 1e-4 and checks["replayed_noise_max_abs"] <= 1e-4
    assert checks["noise"]["passed"] and checks["noise"]["samples"] > 1000


@pytest.mark.parametrize("which", ["unet", "lite"])
def test_manifest_validates_against_schema(which, unet_export, lite_export):
    directory = Path(unet_export[2].directory if which == "unet" else lite_export[2].source)
    manifest = json.loads((directory / "filter.json").read_text())
    validate_manifest(manifest)
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the JSON Schema itself")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(manifest, schema, cls=jsonschema.Draft202012Validator)
    wrong = [  # each is refused by both the schema and validate_manifest
        dict(manifest, files=dict(manifest["files"], **{"filter.onnx": "0" * 64}), kind="lite"),
        dict(manifest, kind="unet", onnx=None),
        dict(manifest, format="privsdk-filter/2"),
        dict(manifest, input=dict(manifest["input"], height=0)),
        dict(manifest, files={"norm.npz": "not-a-digest"}),
        {k: v for k, v in manifest.items() if k != "secret"},
        dict(manifest, input=dict(manifest["input"], face_crop={"detector": "haar", "box": [0, 0, 1]})),
    ]
    for bad in wrong:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)
        with pytest.raises(BundleError):
            validate_manifest(bad)


@pytest.mark.parametrize("name", ["filter.onnx", "norm.npz", "filter.fp16.onnx"])
def test_tampered_file_is_refused(name, unet_export, tmp_path):
    bundle_dir = _copy(unet_export[2].directory, tmp_path)
    data = bytearray((bundle_dir / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle_dir / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=name.replace(".", r"\.") + ".*modified or corrupted"):
        load_bundle(bundle_dir)


def test_tampered_manifest_is_refused(unet_export, tmp_path):
    bundle_dir = _copy(unet_export[2].directory, tmp_path)
    manifest = json.loads((bundle_dir / "filter.json").read_text())
    manifest["files"]["filter.onnx"] = "f" * 64
    (bundle_dir / "filter.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="filter.onnx has SHA-256"):
        load_bundle(bundle_dir)
    (bundle_dir / "filter.json").write_text(json.dumps(manifest)[:-20])
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


def _save(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(format="privsdk-checkpoint/2"), "format is 'privsdk-checkpoint/2'"),
    (lambda c: c["filter"].update(kind="gan"), "filter kind is 'gan'"),
    (lambda c: c.pop("norm"), "needs 'norm'"),
    (lambda c: c["norm"].update(std=np.zeros((3, 16, 16), np.float32)), "norm.std has values ≤ 0"),
    (lambda c: c.update(noise_inputs=[{"name": "noise", "shape": [4, 0, 4]}]), r"noise_inputs\[0\]"),
    (lambda c: c.pop("method"), "method must be the training method's name"),
    (lambda c: c["input"].update(colour_order="BGR"), "colour_order is 'BGR'"),
])
def test_wrong_checkpoint_is_refused(change, message, tmp_path):
    _, ckpt = tiny.make_checkpoint("unet")
    change(ckpt)
    path = _save(tmp_path, "bad.pt", ckpt)
    with pytest.raises(InputError, match=message) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)


def test_non_checkpoint_files_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(InputError, match="is not a torch checkpoint"):
        read_checkpoint(text)
    with pytest.raises(InputError, match="holds a list"):
        read_checkpoint(_save(tmp_path, "list.pt", [1, 2]))
    with pytest.raises(InputError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")
    assert cli_main(["export", str(text), "-o", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()


def test_checkpoint_whose_weights_do_not_fit_its_arch_is_refused(tmp_path):
    _, ckpt = tiny.make_checkpoint("lite")
    ckpt["filter"]["arch"] = {"size": 32}  # the state dict holds 16×16 maps
    ckpt["input"].update(height=32, width=32)
    path = _save(tmp_path, "mismatch.pt", ckpt)
    with pytest.raises(InputError, match="weights do not fit a 'lite' filter") as err:
        export_checkpoint(path, tmp_path / "out")
    assert str(path) in str(err.value) and not (tmp_path / "out").exists()


def test_residual_unet_bundle_keeps_what_it_does_not_change(tmp_path, astronaut_bgr):
    module, ckpt = tiny.make_checkpoint("unet", residual=True)
    result = export_checkpoint(save_checkpoint(ckpt, tmp_path / "res.pt"), tmp_path / "smile-res", ExportOptions())
    bundle = load_bundle(result.directory)
    roi = (220, 90, 16, 16)
    x = kernels.pre(astronaut_bgr, roi, bundle.maps["scale"], bundle.maps["shift"], None)
    noise = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    session = ort.InferenceSession(bundle.onnx_bytes, providers=["CPUExecutionProvider"])
    y = session.run(["filtered"], {"image": x[None], "noise": noise})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x[None]), torch.from_numpy(noise)).numpy()
        crop01 = torch.from_numpy(x[None]) * module.input_std + module.input_mean
        module.head.weight.zero_()
        module.head.bias.zero_()
        same = module(torch.from_numpy(x[None]), torch.from_numpy(noise)).numpy()
    assert np.abs(y - want).max() <= 1e-4 and 0.01 < np.abs(y - crop01.numpy()).mean() < 0.2
    # a zero head is the identity on the face: x01 recovered from the normalized input with the bundle's maps
    np.testing.assert_allclose(same, np.clip(crop01.numpy(), 0, 1), atol=1e-6)
    np.testing.assert_allclose(crop01.numpy()[0], astronaut_bgr[90:106, 220:236, ::-1].transpose(2, 0, 1) / 255,
                               atol=1e-5)


@pytest.mark.parametrize("rank", [0, 3], ids=["mean-face fill", "predicted fill"])
def test_lower_fill_bundle_never_reads_the_filled_rows(tmp_path, astronaut_bgr, rank):
    """A U-Net with ``lower_fill`` exports with parity, and its output does not depend on the rows it fills."""
    module, ckpt = tiny.make_checkpoint("unet", residual=True, lower_fill=0.25, lower_fill_rank=rank)
    if rank:
        assert module.fill_coef.abs().max() > 0
    bundle = load_bundle(export_checkpoint(save_checkpoint(ckpt, tmp_path / "fill.pt"), tmp_path / "fill",
                                           ExportOptions()).directory)
    x = kernels.pre(astronaut_bgr, (220, 90, 16, 16), bundle.maps["scale"], bundle.maps["shift"], None)[None]
    other = x.copy()
    other[:, :, 12:] = np.random.default_rng(1).standard_normal(other[:, :, 12:].shape)  # the bottom 25%: 4 rows
    ramp = x.copy()
    ramp[:, :, 11] += 1.0  # the feather row above them is seen, at a small weight (0.125)
    noise = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    session = ort.InferenceSession(bundle.onnx_bytes, providers=["CPUExecutionProvider"])
    y, y_other, y_ramp = (session.run(["filtered"], {"image": a, "noise": noise})[0] for a in (x, other, ramp))
    with torch.no_grad():
        want = module(torch.from_numpy(x), torch.from_numpy(noise)).numpy()
    assert np.abs(y - want).max() <= 1e-4
    np.testing.assert_array_equal(y, y_other)
    assert np.abs(y - y_ramp).max() > 1e-3


def test_lower_fill_is_checked():
    from privsdk.train.networks import build_filter

    for bad in ({"lower_fill": 1.0}, {"lower_fill": -0.1}, {"lower_fill": 0.5, "lower_fill_feather": 0.6},
                {"lower_fill": 0.5, "residual": False}):
        with pytest.raises(InputError, match="lower_fill"):
            build_filter("unet", size=16, depth=2, **dict({"residual": True}, **bad))


def test_face_crop_flag_is_refused_for_a_checkpoint(tmp_path, unet_export):
    """A checkpoint export always writes the layout it has; the bundle-only flag is refused, not ignored."""
    path = save_checkpoint(unet_export[1], tmp_path / "best.pt")
    assert cli_main(["export", str(path), "-o", str(tmp_path / "out"), "--face-crop"]) == 1
    assert not (tmp_path / "out").exists()


def test_face_crop_layout_travels_from_checkpoint_to_bundle(tmp_path, unet_export):
    """The trainer's measured layout of its faces reaches the manifest; without one the manifest has none."""
    assert "face_crop" not in unet_export[2].manifest["input"]  # the tiny checkpoint has no data to measure
    _, ckpt = tiny.make_checkpoint("lite")
    layout = {"detector": "haar", "box": [0.11, 0.2, 0.87, 0.96], "faces_found": 500, "faces_tried": 600}
    ckpt["data"] = dict(ckpt["data"], face_crop=layout)
    path = save_checkpoint(ckpt, tmp_path / "lite.pt")
    bundle = load_bundle(export_checkpoint(path, tmp_path / "b", ExportOptions()).directory)
    assert bundle.manifest["input"]["face_crop"] == layout
