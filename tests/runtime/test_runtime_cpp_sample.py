"""samples/cpp: the C++ program links the fused-kernel core and runs a bundle's ONNX through
OpenCV DNN; built with CMake and run where a compiler and OpenCV dev files exist."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "runtime"
_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles_cpp", FIXTURES / "tiny_bundles.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)
cv2 = pytest.importorskip("cv2")


def _opencv_dev() -> bool:
    return any(Path(p).is_file() for p in ("/usr/lib/x86_64-linux-gnu/cmake/opencv4/OpenCVConfig.cmake",
                                           "/usr/lib/aarch64-linux-gnu/cmake/opencv4/OpenCVConfig.cmake",
                                           "/usr/local/lib/cmake/opencv4/OpenCVConfig.cmake",
                                           "/usr/share/OpenCV/OpenCVConfig.cmake"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    if shutil.which("cmake") is None or (shutil.which("c++") or shutil.which("g++")) is None:
        pytest.skip("needs cmake and a C++17 compiler")
    if not _opencv_dev():
        pytest.skip("needs OpenCV development files (Debian: apt-get install libopencv-dev)")
    build = tmp_path_factory.mktemp("cpp-sample")  # a Debug build: compiles in half the time
    for cmd in (["cmake", "-S", str(REPO / "samples" / "cpp"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug"],
                ["cmake", "--build", str(build), "-j", "2"]):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return build / "privsdk_sample"


def _run(sample: Path, *args) -> subprocess.CompletedProcess:
    """Run the sample with the Haar cascade opencv-python ships (Debian's opencv-data may not be installed)."""
    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    return subprocess.run([str(sample), *map(str, args), "--cascade", str(cascade)], capture_output=True, text=True,
                          timeout=60)


def test_cpp_sample_matches_the_python_runtime(sample, tmp_path, astronaut_bgr):
    from privsdk import Filter

    bundle = tiny.write_unet(tmp_path / "tiny-unet")
    src = tmp_path / "astronaut.png"
    cv2.imwrite(str(src), astronaut_bgr)
    out = tmp_path / "full.png"
    res = _run(sample, bundle, src, out, "--full", "--seed", "5")
    assert res.returncode == 0, res.stderr
    cpp = cv2.imread(str(out))
    py = Filter(bundle, regions="full", seed=5).apply(astronaut_bgr)
    diff = np.abs(cpp.astype(int) - py.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, "C++ (OpenCV DNN) and Python (onnxruntime) must agree"


def test_cpp_sample_filters_only_the_face(sample, tmp_path, astronaut_bgr):
    bundle = tiny.write_lite(tmp_path / "tiny-lite")
    src, out = tmp_path / "a.png", tmp_path / "faces.png"
    cv2.imwrite(str(src), astronaut_bgr)
    res = _run(sample, bundle, src, out)
    assert res.returncode == 0 and "1 regions filtered" in res.stdout, res.stdout + res.stderr
    changed = np.any(cv2.imread(str(out)) != astronaut_bgr, axis=-1)
    ys, xs = np.nonzero(changed)
    assert xs.min() <= 200 and xs.max() >= 290 and ys.min() <= 60 and ys.max() >= 190
    assert 0.03 < changed.mean() < 0.2, "the face box only"


def test_cpp_sample_refuses_a_missing_bundle(sample, tmp_path):
    res = _run(sample, tmp_path / "nope", "x.png", "y.png")
    assert res.returncode == 1 and "cannot read" in res.stderr


def test_cpp_sample_frames_faces_as_the_bundle_says(sample, tmp_path, astronaut_bgr):
    """input.face_crop is read by the C++ sample too: it filters the same box as the Python runtime."""
    from privsdk import Filter
    from privsdk.bundle import write_bundle

    m = tiny.manifest("tight-lite", "lite")
    m["input"]["face_crop"] = {"detector": "haar", "box": [0.1, 0.2, 0.9, 1.0]}
    bundle = write_bundle(tmp_path / "tight-lite", m, tiny.lite_maps())
    src, out = tmp_path / "a.png", tmp_path / "tight.png"
    cv2.imwrite(str(src), astronaut_bgr)
    res = _run(sample, bundle, src, out)
    assert res.returncode == 0 and "1 regions filtered" in res.stdout, res.stdout + res.stderr
    ys, xs = np.nonzero(np.any(cv2.imread(str(out)) != astronaut_bgr, axis=-1))
    f = Filter(bundle, regions="faces", hold=0, seed=0)
    f.apply(astronaut_bgr)
    (r,) = f.last_regions
    assert abs(xs.min() - r.x) <= 2 and abs(xs.max() + 1 - (r.x + r.w)) <= 2
    assert abs(ys.min() - r.y) <= 2 and abs(ys.max() + 1 - (r.y + r.h)) <= 2
    assert r.w < 100, "the tight layout, not the default margin"


def test_cpp_sample_levels_and_erases_as_the_python_runtime(sample, tmp_path, astronaut_bgr):
    """`emotion-lite-erased` (head levelling by the core's ECC, then the secret's linear eraser) on a portrait
    turned by 6°: the C++ sample cuts the face out level and erases as privsdk.Filter does."""
    from privsdk import Filter
    from privsdk.registry import resolve

    bundle = resolve("emotion-lite-erased")
    turned = cv2.warpAffine(astronaut_bgr, cv2.getRotationMatrix2D((259.5, 149.5), -6.0, 1.0), (512, 512),
                            borderMode=cv2.BORDER_REPLICATE)
    src, out = tmp_path / "turned.png", tmp_path / "erased.png"
    cv2.imwrite(str(src), turned)
    res = _run(sample, bundle, src, out, "--seed", "5")
    assert res.returncode == 0 and "1 regions filtered" in res.stdout, res.stdout + res.stderr
    assert "head levelling, linear eraser of rank 2" in res.stderr
    f = Filter(bundle, regions="faces", hold=0, seed=5)
    py = f.apply(turned)
    assert f.stats.unlevelled == 0, "the face was registered and cut out level"
    diff = np.abs(cv2.imread(str(out)).astype(int) - py.astype(int))
    assert (py != turned).any() and diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_cpp_sample_refuses_broken_levelling_and_erasing_files(sample, tmp_path, astronaut_bgr):
    """A template or an eraser of the wrong size is refused with a message, before any frame is written (the sample
    does not check hashes, so the files are replaced after the bundle is written)."""
    from privsdk.bundle import ERASE, LEVEL, serialize_maps, write_bundle

    src = tmp_path / "a.png"
    cv2.imwrite(str(src), astronaut_bgr)
    m = tiny.manifest("levelling-lite", "lite")
    m["input"]["level_head"] = {"template": LEVEL, "upper_share": 0.5}
    levelling = write_bundle(tmp_path / "levelling", m, tiny.lite_maps(),
                             extra_files={LEVEL: serialize_maps({"template": np.full(tiny.HW, 0.5, np.float32)})})
    (levelling / LEVEL).write_bytes(serialize_maps({"template": np.full((5, 5), 0.5, np.float32)}))
    m = tiny.manifest("erasing-lite", "lite")
    m["erase"] = {"file": ERASE, "secret": "smile", "rank": 1}
    zeros = np.zeros((1, 3, *tiny.HW), np.float32)
    erasing = write_bundle(tmp_path / "erasing", m, tiny.lite_maps(), extra_files={
        ERASE: serialize_maps({"mean": zeros[0], "basis": zeros, "readout": zeros})})
    (erasing / ERASE).write_bytes(serialize_maps({"mean": zeros[0], "basis": zeros, "readout": zeros[:, :2]}))
    for bundle, what in ((levelling, "level.npz: template has 25 values; expected"),
                         (erasing, "erase.npz: readout has")):
        out = tmp_path / f"{bundle.name}.png"
        res = _run(sample, bundle, src, out)
        assert res.returncode == 1 and what in res.stderr and not out.exists(), res.stdout + res.stderr
