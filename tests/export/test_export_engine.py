"""TensorRT engines: cache keys and validation, INT8 calibration batches, the command without TensorRT."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from privsdk.errors import BackendError, BundleError, DependencyError, InputError
from privsdk.trt_runner import EngineCache, EngineKey, EngineRunner, default_cache_dir, runner_for_bundle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "export"
SHA = "ab" * 32
try:
    import tensorrt  # noqa: F401

    HAVE_TENSORRT = True
except ImportError:
    HAVE_TENSORRT = False


def _key(**kw) -> EngineKey:
    base = dict(onnx_sha256=SHA, gpu="NVIDIA Jetson Orin Nano", tensorrt="10.3.0", precision="fp16")
    base.update(kw)
    return EngineKey(**base)


def _small_graph() -> bytes:
    """filtered = sigmoid(image + mean(noise)): a real ONNX graph with the bundle's I/O names and dynamic batch."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["noise", "axes"], ["noise_mean"], keepdims=1),
         helper.make_node("Add", ["image", "noise_mean"], ["pre"]),
         helper.make_node("Sigmoid", ["pre"], ["filtered"])],
        "small_filter",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16]),
         helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["batch", 4, 4, 4])],
        [helper.make_tensor_value_info("filtered", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def unet_bundle(tmp_path_factory) -> Path:
    """A unet bundle written by write_bundle: per-location norm maps and a small graph (no torch needed)."""
    from privsdk.bundle import write_bundle

    rng = np.random.default_rng(0)
    std = (0.2 + 0.1 * rng.random((3, 16, 16))).astype(np.float32)
    mean = (0.4 + 0.1 * rng.random((3, 16, 16))).astype(np.float32)
    maps = {"scale": 1 / std, "shift": -mean / std, "sigma": np.zeros_like(std)}
    manifest = {"name": "smile", "version": "1.0.0", "kind": "unet", "secret": ["smile"], "utility": [],
                "input": {"height": 16, "width": 16, "colour_order": "RGB"},
                "onnx": {"image_input": "image", "noise_inputs": [{"name": "noise", "shape": [4, 4, 4]}],
                         "output": "filtered", "opset": 18},
                "method": {"name": "test", "hyperparameters": {}}}
    return write_bundle(tmp_path_factory.mktemp("engine") / "smile", manifest, maps, onnx_bytes=_small_graph())


@pytest.fixture(scope="module")
def exported_unet_bundle(tmp_path_factory) -> Path:
    """The tiny real U-Net exported by privsdk export (for the TensorRT test)."""
    pytest.importorskip("torch")
    from privsdk.export.bundle_export import export_filter

    spec = importlib.util.spec_from_file_location("export_tiny_filters_engine", FIXTURES / "tiny_filters.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)  # type: ignore[union-attr]
    module, ckpt = tiny.make_checkpoint("unet")
    return export_filter(module, ckpt, tmp_path_factory.mktemp("engine-real") / "smile").directory


@pytest.fixture()
def calib_dir(tmp_path, lfw_faces) -> Path:
    cv2 = pytest.importorskip("cv2")
    folder = tmp_path / "calib"
    (folder / "sub").mkdir(parents=True)
    for i, face in enumerate(lfw_faces[:10]):
        cv2.imwrite(str(folder / ("sub" if i % 2 else "") / f"face{i:02d}.png"), face)
    (folder / "README.txt").write_text("not an image")
    return folder


def test_key_validation_and_distinct_stems():
    with pytest.raises(InputError, match="SHA-256"):
        _key(onnx_sha256="123")
    with pytest.raises(InputError, match="precision"):
        _key(precision="int4")
    stems = {_key().stem, _key(gpu="NVIDIA A100").stem, _key(tensorrt="10.4.0").stem, _key(precision="int8").stem,
             _key(onnx_sha256="cd" * 32).stem}
    assert len(stems) == 5
    assert _key().stem.startswith(SHA[:16] + "-nvidia-jetson-orin-nano-trt10.3.0-fp16")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PRIVSDK_ENGINE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "privsdk" / "engines"
    monkeypatch.setenv("PRIVSDK_ENGINE_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_cache_stores_and_returns_a_verified_engine(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    assert cache.lookup(key) is None
    entry = cache.store(key, b"serialized-engine", {"min_batch": 1, "max_batch": 8}, {"bundle": "smile"})
    again = cache.lookup(key, min_batch_capacity=8)
    assert again is not None and again.engine_bytes == b"serialized-engine" and again.max_batch == 8
    cache.update_info(entry, {"check": {"max_abs_error_vs_onnxruntime": 1e-5}})
    record = json.loads(entry.engine_path.with_suffix(".json").read_text())
    assert record["key"]["gpu"] == "NVIDIA Jetson Orin Nano" and record["info"]["check"]
    assert cache.lookup(key, min_batch_capacity=16) is None  # profile too small: rebuild


def test_engine_built_for_another_gpu_is_refused_by_name(tmp_path):
    cache = EngineCache(tmp_path)
    foreign = cache.store(_key(gpu="NVIDIA A100-SXM4-80GB"), b"a100-engine", {"min_batch": 1, "max_batch": 8})
    mine = _key()
    with pytest.raises(BackendError, match="gpu is 'NVIDIA A100-SXM4-80GB', expected 'NVIDIA Jetson Orin Nano'") as err:
        cache.verify(mine, foreign.engine_path)
    assert str(foreign.engine_path) in str(err.value)
    # copied into this machine's cache slot, it is treated as foreign and rebuilt, never used
    engine_path, side_path = cache.paths(mine)
    shutil.copy(foreign.engine_path, engine_path)
    shutil.copy(foreign.engine_path.with_suffix(".json"), side_path)
    assert cache.lookup(mine) is None


def test_tampered_or_orphan_engine_is_never_trusted(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    entry = cache.store(key, b"engine-bytes", {"min_batch": 1, "max_batch": 4})
    entry.engine_path.write_bytes(b"engine-bytez")
    with pytest.raises(BackendError, match="modified or truncated"):
        cache.verify(key, entry.engine_path)
    assert cache.lookup(key) is None
    entry.engine_path.with_suffix(".json").unlink()
    with pytest.raises(BackendError, match="side-file .* is missing"):
        cache.verify(key, entry.engine_path)
    entry.engine_path.with_suffix(".json").write_text("{not json")
    with pytest.raises(BackendError, match="unreadable"):
        cache.verify(key, entry.engine_path)


def test_calibration_batches_go_through_the_pre_kernel(unet_bundle, calib_dir):
    import cv2

    from privsdk import kernels
    from privsdk.bundle import load_bundle
    from privsdk.export.calibration import CalibrationSet

    bundle = load_bundle(unet_bundle)
    calib = CalibrationSet(calib_dir, bundle, batch_size=4, seed=3)
    assert len(calib.paths) == 10 and len(calib) == 2  # README.txt ignored, subfolder included
    batches = list(calib.batches())
    assert len(batches) == 2
    assert batches[0]["image"].shape == (4, 3, 16, 16) and batches[0]["noise"].shape == (4, 4, 4, 4)
    frame = cv2.imread(str(calib.paths[5]), cv2.IMREAD_COLOR)
    want = kernels.pre(frame, None, bundle.maps["scale"], bundle.maps["shift"])
    np.testing.assert_allclose(batches[1]["image"][1], want, atol=1e-6)
    noise = np.concatenate([b["noise"].ravel() for b in batches])
    assert abs(noise.mean()) < 0.2 and abs(noise.std() - 1) < 0.2
    assert calib.fingerprint == CalibrationSet(calib_dir, bundle, batch_size=4).fingerprint


def test_calibration_on_real_smile_faces(unet_bundle, shared_data):
    from privsdk.bundle import load_bundle
    from privsdk.export.calibration import CalibrationSet

    bundle = load_bundle(unet_bundle)
    folder = shared_data / "SMILEsmileD" / "SMILEs" / "positives" / "positives7"
    calib = CalibrationSet(folder, bundle, batch_size=8, limit=16)
    batches = list(calib.batches())
    assert len(batches) == 2
    # undo the per-location normalization: real pixels land back in [0, 1], and grey faces stay grey
    x01 = (batches[0]["image"] - bundle.maps["shift"]) / bundle.maps["scale"]
    assert x01.min() >= -1e-5 and x01.max() <= 1 + 1e-5 and x01.std() > 0.05
    np.testing.assert_allclose(x01[:, 0], x01[:, 2], atol=1e-5)


def test_calibration_folder_errors(unet_bundle, tmp_path, calib_dir):
    from privsdk.bundle import load_bundle
    from privsdk.export.calibration import CalibrationSet

    bundle = load_bundle(unet_bundle)
    with pytest.raises(InputError, match=f"calibration folder {tmp_path / 'nope'}: no such directory"):
        CalibrationSet(tmp_path / "nope", bundle)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        CalibrationSet(tmp_path / "empty", bundle)
    with pytest.raises(InputError, match="10 image.*at least one batch of 16"):
        CalibrationSet(calib_dir, bundle, batch_size=16)


def test_engine_request_checks_run_before_tensorrt(unet_bundle, tmp_path, calib_dir):
    from privsdk.export.engine import EngineRequest, check_request

    with pytest.raises(InputError, match="--int8 needs --calib"):
        check_request(EngineRequest(unet_bundle, precision="int8"))
    with pytest.raises(InputError, match="no such directory"):
        check_request(EngineRequest(unet_bundle, precision="int8", calib_dir=tmp_path / "missing"))
    check_request(EngineRequest(unet_bundle, precision="int8", calib_dir=calib_dir, calib_batch=4))
    broken = tmp_path / "broken"
    shutil.copytree(unet_bundle, broken)
    data = bytearray((broken / "filter.onnx").read_bytes())
    data[-1] ^= 0xFF
    (broken / "filter.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="filter.onnx has SHA-256"):
        check_request(EngineRequest(broken))


def _privsdk(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PRIVSDK_ENGINE_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "privsdk", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed here: the missing-TensorRT message cannot appear")
def test_engine_command_without_tensorrt_says_so(unet_bundle, tmp_path):
    done = _privsdk("export", str(unet_bundle), "--format", "engine", "--fp16", cache=tmp_path / "cache")
    assert done.returncode != 0
    assert "TensorRT is not installed" in done.stderr and "tensorrt" in done.stderr
    assert not (tmp_path / "cache").exists()
    with pytest.raises(DependencyError, match="TensorRT is not installed"):
        EngineRunner(b"engine", source="x.engine")
    from privsdk.bundle import load_bundle

    with pytest.raises(DependencyError, match="TensorRT is not installed"):
        runner_for_bundle(load_bundle(unet_bundle), cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="fp32' or 'fp16"):
        runner_for_bundle(load_bundle(unet_bundle), precision="int8")


def test_runtime_module_imports_no_heavy_dependency():
    code = ("import sys, privsdk.trt_runner; heavy = [m for m in ('tensorrt', 'torch', 'onnx', 'cuda') "
            "if m in sys.modules]; assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT 10 ('tensorrt' Python package) and an NVIDIA GPU; "
                                              "not installed here")
def test_engine_build_check_and_cache(exported_unet_bundle, tmp_path):  # pragma: no cover - needs a GPU
    from privsdk.export.engine import EngineRequest, build_engine

    record = build_engine(EngineRequest(exported_unet_bundle, precision="fp32", max_batch=4, cache_dir=tmp_path))
    check = record["info"]["check"]
    assert check["max_abs_error_vs_onnxruntime"] <= 1e-3 and check["trt_latency_ms_median_with_copies"] > 0
    again = build_engine(EngineRequest(exported_unet_bundle, precision="fp32", max_batch=4, cache_dir=tmp_path))
    assert again["engine_sha256"] == record["engine_sha256"]  # served from the cache, not rebuilt


@pytest.mark.parametrize("args", [
    ["--format", "engine", "--fp16", "--int8"],            # two precisions
    ["--format", "engine", "--precision", "fp32", "--fp16"],
    ["--format", "engine", "--int8"],                      # INT8 without calibration images
    ["--format", "engine", "--max-batch", "0"],
    ["--int8"],                                            # engine options without --format engine
    [],                                                    # a bundle and nothing to do
])
def test_engine_command_refuses_inconsistent_options(args, unet_bundle, tmp_path):
    from privsdk.cli import main as cli_main

    assert cli_main(["export", str(unet_bundle), *args, "--cache-dir", str(tmp_path)]) == 1
    assert not any(tmp_path.iterdir())


class _OnnxruntimeEngine:
    """Stands in for a TensorRT engine (same run(feeds) -> {name: array} interface), backed by onnxruntime."""

    def __init__(self, onnx_bytes: bytes, bias: float = 0.0) -> None:
        ort = pytest.importorskip("onnxruntime")
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.bias = bias

    def run(self, feeds):
        return {"filtered": self.session.run(None, dict(feeds))[0] + np.float32(self.bias)}


@pytest.mark.parametrize("precision, bias, ok", [("fp32", 0.0, True), ("fp16", 0.01, True), ("fp32", 0.01, False)])
def test_engine_check_against_onnxruntime(precision, bias, ok, unet_bundle):
    from privsdk.bundle import load_bundle
    from privsdk.export.engine import compare_with_onnxruntime

    bundle = load_bundle(unet_bundle)
    engine = _OnnxruntimeEngine(bundle.onnx_bytes, bias)
    if not ok:
        with pytest.raises(BackendError, match="fp32 TensorRT engine and onnxruntime disagree: max abs error 0.01"):
            compare_with_onnxruntime(engine, bundle, precision, batch=3, repeats=2)
        return
    result = compare_with_onnxruntime(engine, bundle, precision, batch=3, repeats=2)
    assert result["batch"] == 3 and result["max_abs_error_vs_onnxruntime"] == pytest.approx(bias, abs=1e-6)
    assert result["trt_latency_ms_median_with_copies"] > 0 and result["onnxruntime_cpu_latency_ms_median"] > 0


@pytest.mark.skipif(HAVE_TENSORRT, reason="a GPU machine has device memory to offer")
def test_no_gpu_is_said_clearly():
    from privsdk.trt_runner import gpu_name, open_device

    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    except ImportError:
        pass
    with pytest.raises(BackendError, match="no CUDA device 0 found"):
        gpu_name()
    with pytest.raises(DependencyError, match="torch.cuda or cuda-python"):
        open_device()
