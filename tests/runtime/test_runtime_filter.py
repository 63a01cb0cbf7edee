"""Filter: real faces filtered in place, the rest byte-identical; failing closed everywhere."""
from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from privsdk import BackendError, BundleError, Filter, InputError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runtime"
_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles", FIXTURES / "tiny_bundles.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

FACE_CENTRE = (230, 130)  # (x, y) of the astronaut's face in the 512×512 portrait


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {"unet": tiny.write_unet(root / "tiny-unet"), "lite": tiny.write_lite(root / "tiny-lite")}


@pytest.mark.parametrize("kind", ["unet", "lite"])
def test_apply_filters_the_face_and_leaves_the_rest_byte_identical(bundles, astronaut_bgr, kind):
    f = Filter(bundles[kind], regions="faces", seed=1)
    frame = astronaut_bgr.copy()
    out = f.apply(frame)
    assert out is not frame and np.array_equal(frame, astronaut_bgr), "apply must not touch its input"
    assert len(f.last_regions) == 1
    x, y, w, h = f.last_regions[0].roi
    assert x <= FACE_CENTRE[0] < x + w and y <= FACE_CENTRE[1] < y + h
    assert abs(w - h) <= 1 and 100 <= w <= 300, "a face box squared to the 16×16 model, covering the whole face"
    inside = np.zeros(frame.shape[:2], bool)
    inside[y:y + h, x:x + w] = True
    assert np.array_equal(out[~inside], frame[~inside]), "pixels outside the face must be byte-identical"
    changed = np.any(out[inside] != frame[inside], axis=-1).mean()
    assert changed > 0.9, f"only {changed:.0%} of the face pixels changed"


def test_out_writes_in_place_and_full_region_on_crops(bundles, lfw_faces):
    f = Filter(bundles["unet"], seed=2)
    crop = np.repeat(lfw_faces[0][..., None], 3, axis=2)  # a 25×25 face crop: regions="auto" filters it whole
    assert f.is_crop_like(crop.shape) and not f.is_crop_like((480, 640, 3))
    buf = crop.copy()
    ret = f.apply(buf, out=buf)
    assert ret is buf and f.last_regions[0].roi == (0, 0, 25, 25)
    assert np.any(buf != crop, axis=-1).mean() > 0.9


def test_noise_is_fresh_per_call_and_replayable_only_with_a_seed(bundles, lfw_faces):
    crop = np.ascontiguousarray(np.repeat(lfw_faces[1][..., None], 3, axis=2))
    f = Filter(bundles["unet"], regions="full")
    assert not np.array_equal(f.apply(crop), f.apply(crop)), "the noise input must be redrawn every call"
    a, b = Filter(bundles["unet"], regions="full", seed=7), Filter(bundles["unet"], regions="full", seed=7)
    assert np.array_equal(a.apply(crop), b.apply(crop))


def test_apply_batch_filters_every_frame(bundles, lfw_faces):
    crops = [np.ascontiguousarray(np.repeat(face[..., None], 3, axis=2)) for face in lfw_faces[:11]]
    f = Filter(bundles["unet"], regions="full", max_batch=4, seed=3)
    outs = f.apply_batch(crops)
    assert len(outs) == 11 and f.stats.frames == 11 and f.stats.faces == 11
    for c, o in zip(crops, outs):
        assert o.shape == c.shape and np.any(o != c)


@pytest.mark.parametrize("bad, words", [
    (None, "None"), (np.zeros((8, 8, 3), np.float32), "uint8"), (np.zeros((8, 8), np.uint8), "3-D"),
    (np.zeros((0, 8, 3), np.uint8), "non-empty"), (np.zeros((8, 8, 4), np.uint8), "3 channels"), ("img", "numpy")])
def test_bad_frames_raise_input_error_naming_the_problem(bundles, bad, words):
    with pytest.raises(InputError, match=words):
        Filter(bundles["lite"], regions="full").apply(bad)


def test_missing_and_tampered_bundles_are_refused(bundles, tmp_path):
    with pytest.raises(BundleError, match=r"not bundled.*bundled filters"):
        Filter("emotion-that-does-not-exist")
    copy = shutil.copytree(bundles["unet"], tmp_path / "tampered")
    data = bytearray((copy / "filter.onnx").read_bytes())
    data[-5] ^= 0xFF
    (copy / "filter.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        Filter(copy)


def test_stream_blanks_corrupt_frames_and_backend_failures(bundles, astronaut_bgr):
    f = Filter(bundles["unet"], regions="faces", seed=4)
    real_run = f.backend.run
    calls = {"n": 0}

    def failing_run(image, noise):  # fault injection: the backend dies from its 3rd call on
        calls["n"] += 1
        if calls["n"] >= 3:
            raise BackendError("injected: device lost")
        return real_run(image, noise)

    f.backend.run = failing_run
    frames = [astronaut_bgr, np.zeros((4, 4), np.uint8), astronaut_bgr, astronaut_bgr, astronaut_bgr]
    items = list(f.stream_results(frames))
    assert [i.blanked for i in items] == [False, True, False, True, True]
    assert f.stats.blanked == 3 and f.stats.frames == 5
    for item in items:
        if item.blanked:
            assert not item.frame.any(), "a failed frame must be emitted black, never raw"
    assert items[3].frame.shape == astronaut_bgr.shape
    with pytest.raises(BackendError, match="device lost"):
        f.apply(astronaut_bgr)
    buf = astronaut_bgr.copy()
    with pytest.raises(BackendError):
        f.apply(astronaut_bgr, out=buf)
    assert not buf.any(), "a failed apply(out=) leaves no raw pixels in out"


def test_a_network_output_with_nan_is_never_written(bundles, astronaut_bgr):
    f = Filter(bundles["unet"], regions="full")
    f.backend.run = lambda image, noise: np.full((image.shape[0], 3, 16, 16), np.nan, np.float32)
    crop = np.ascontiguousarray(astronaut_bgr[:64, :64])
    with pytest.raises(InputError, match="NaN"):
        f.apply(crop)
    item = f.apply_safe(crop)
    assert item.blanked and not item.frame.any() and f.stats.blanked == 1


def test_info_and_bundled_registry(bundles, tmp_path, monkeypatch):
    import privsdk
    from privsdk import registry

    f = Filter(bundles["lite"])
    assert f.info["name"] == "tiny-lite" and f.info["kind"] == "lite" and "files" in f.info
    monkeypatch.setattr(registry, "FILTERS_DIR", tmp_path)
    assert privsdk.filters() == []
    shutil.copytree(bundles["lite"], tmp_path / "tiny-lite")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "filter.json").write_text("{not json")
    infos = privsdk.filters()
    assert [i.name for i in infos] == ["tiny-lite"]
    assert infos[0].numbers == {"privacy.balanced_accuracy": 0.55, "utility.identity_kept": 0.9}
    assert Filter("tiny-lite").name == "tiny-lite"


def test_bad_arguments_are_named(bundles):
    with pytest.raises(InputError, match="backend"):
        Filter(bundles["unet"], backend="cuda-magic")
    with pytest.raises(InputError, match="device"):
        Filter(bundles["unet"], device="gpu7")
    with pytest.raises(InputError, match="unknown region finder"):
        Filter(bundles["unet"], regions="plates")
    with pytest.raises(BackendError, match="torch backend runs training checkpoints"):
        Filter(bundles["unet"], backend="torch")


def test_requested_gpu_falls_back_to_cpu_with_one_clear_warning(bundles, monkeypatch, caplog):
    import onnxruntime

    import privsdk.log

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    monkeypatch.setattr(privsdk.log, "_warned", set())
    monkeypatch.setattr(logging.getLogger("privsdk"), "propagate", True)  # the CLI's configure() turns it off
    with caplog.at_level("INFO", logger="privsdk"):
        f1 = Filter(bundles["unet"], device="cuda")
        f2 = Filter(bundles["unet"], device="cuda")
    assert f1.backend.provider == f2.backend.provider == "CPUExecutionProvider"
    # one record may reach caplog through two handlers (root and 'privsdk', depending on the
    # pytest version and on an earlier CLI test's configure()): count distinct records
    records = {id(r): r for r in caplog.records if r.levelname == "WARNING"}.values()
    warnings = [r.getMessage() for r in records]
    assert len(warnings) == 1 and "CUDAExecutionProvider" in warnings[0] and "falling back" in warnings[0]
    assert any("Running on CPUExecutionProvider" in r.getMessage() for r in caplog.records)


def test_tensorrt_backend_explicit_request_says_why_it_is_unavailable(bundles):
    from privsdk.backends import available_backends

    if available_backends()["tensorrt"] is None:
        pytest.skip("TensorRT is available here")
    with pytest.raises(BackendError, match="TensorRT"):
        Filter(bundles["unet"], backend="tensorrt")


def test_one_filter_shared_by_threads(bundles, lfw_faces):
    import threading

    f = Filter(bundles["unet"], regions="full", max_batch=2)
    crops = [np.ascontiguousarray(np.repeat(face[..., None], 3, axis=2)) for face in lfw_faces[:40]]
    errors, results = [], {}

    def work(k):
        try:
            for i in range(k, 40, 4):
                results[i] = f.apply(crops[i])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 40 and f.stats.frames == 40
    assert all(np.any(results[i] != crops[i]) for i in range(40))


def test_import_privsdk_stays_light():
    code = ("import sys, privsdk, privsdk.io, privsdk.regions, privsdk.backends; "
            "heavy = [m for m in ('torch', 'onnx', 'cv2', 'onnxruntime') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import privsdk pulled in {out.stdout.strip()}"


def _moving_face_frames(astronaut_bgr, n=6):
    # the portrait shifted a little each frame, with a face-free frame in the middle: hold-over and
    # per-frame regions both matter, so a pipelined stream that mixed up frames would differ
    frames = [np.roll(astronaut_bgr, 7 * i, axis=1) for i in range(n)]
    frames[n // 2] = np.full_like(astronaut_bgr, 90)
    return frames


def test_pipelined_stream_equals_the_serial_stream(bundles, astronaut_bgr):
    frames = _moving_face_frames(astronaut_bgr)
    serial = list(Filter(bundles["unet"], regions="faces", seed=9).stream_results(frames, pipelined=False))
    piped_filter = Filter(bundles["unet"], regions="faces", seed=9)
    piped = list(piped_filter.stream_results(frames))
    assert [i.index for i in piped] == list(range(len(frames)))
    for a, b in zip(serial, piped):
        assert [r.roi for r in a.regions] == [r.roi for r in b.regions]
        assert np.array_equal(a.frame, b.frame), "each frame must be filtered with its own regions, in order"
    assert any(r.held for r in piped[len(frames) // 2].regions), "the face-free frame keeps the held face"
    assert piped_filter.stats.frames == len(frames) and piped_filter.stats.seconds["regions"] > 0


def test_pipelined_stream_raises_a_source_failure_and_stops_its_worker(bundles, astronaut_bgr):
    import threading

    def failing_source():
        yield astronaut_bgr
        raise OSError("injected: camera unplugged")

    f = Filter(bundles["lite"], regions="faces")
    items = f.stream_results(failing_source())
    assert not next(items).blanked
    with pytest.raises(OSError, match="unplugged"):
        next(items)
    assert not [t for t in threading.enumerate() if t.name == "privsdk-regions"]


def test_closing_a_pipelined_stream_early_stops_reading(bundles, astronaut_bgr):
    import threading

    read = {"n": 0}

    def endless():
        while True:
            read["n"] += 1
            yield astronaut_bgr

    f = Filter(bundles["lite"], regions="faces")
    items = f.stream_results(endless())
    for _ in range(3):
        next(items)
    items.close()
    assert not [t for t in threading.enumerate() if t.name == "privsdk-regions"]
    assert read["n"] <= 3 + 3, "the worker reads at most the bounded hand-over ahead"
    assert len(list(f.stream_results(endless(), max_frames=4))) == 4


@pytest.mark.parametrize("device,provider", [("cuda", "CUDAExecutionProvider"),
                                             ("tensorrt", "TensorrtExecutionProvider")])
def test_gpu_execution_providers_run_where_present(bundles, astronaut_bgr, device, provider):
    import onnxruntime

    if provider not in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime has no {provider} (CPU build or no GPU): nothing to run it on")
    f = Filter(bundles["unet"], regions="faces", device=device, seed=2)
    assert f.backend.provider == provider, f.describe_backend()
    cpu = Filter(bundles["unet"], regions="faces", device="cpu", seed=2)
    on_gpu, on_cpu = f.apply(astronaut_bgr), cpu.apply(astronaut_bgr)
    # same noise (same seed), the same network: GPU and CPU agree within a few grey levels
    assert np.abs(on_gpu.astype(int) - on_cpu.astype(int)).max() <= 3
    assert not np.array_equal(on_gpu, astronaut_bgr)
