"""The Python samples run end to end with the public API (video file and image folder)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "runtime"
_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles_samples", FIXTURES / "tiny_bundles.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)
cv2 = pytest.importorskip("cv2")
SAMPLES = ["jetson_csi_camera.py", "usb_camera.py", "webcam.py", "video_file.py", "image_folder.py",
           "make_demo_clip.py"]


def _run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_has_help(name):
    res = _run(REPO / "samples" / name, "--help")
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr


def test_image_folder_sample_keeps_names_and_blanks_unreadable_images(tmp_path, astronaut_bgr):
    bundle = tiny.write_lite(tmp_path / "tiny-lite")
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "portrait.png"), astronaut_bgr)
    cv2.imwrite(str(src / "crop.png"), astronaut_bgr[40:200, 150:310])
    (src / "broken.png").write_bytes(b"not a png")
    res = _run(REPO / "samples" / "image_folder.py", src, tmp_path / "out", "--filter", bundle)
    assert res.returncode == 0, res.stderr
    out = {p.name: cv2.imread(str(p)) for p in (tmp_path / "out").iterdir()}
    assert sorted(out) == ["broken.png", "crop.png", "portrait.png"]
    assert not out["broken.png"].any(), "an unreadable image is written black"
    assert np.any(out["crop.png"] != astronaut_bgr[40:200, 150:310], axis=-1).mean() > 0.9, "a crop is filtered whole"
    changed = np.any(out["portrait.png"] != astronaut_bgr, axis=-1).mean()
    assert 0.03 < changed < 0.2, "a portrait is filtered on the face only"
