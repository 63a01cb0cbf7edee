"""privsdk bench pipeline: scenes with tiled real faces, one row per case, JSON written."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from privsdk.cli import main

pytest.importorskip("cv2")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runtime"
_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles_bench", FIXTURES / "tiny_bundles.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


def test_scene_faces_are_found():
    from privsdk.bench.pipeline import face_tile, make_scene
    from privsdk.regions import make_finder

    scene = make_scene((640, 480), 5, face_tile())
    assert scene.shape == (480, 640, 3)
    assert len(make_finder("faces", hold=0).find(scene)) == 5


def test_bench_pipeline_writes_rows(tmp_path, capsys):
    bundle = tiny.write_unet(tmp_path / "tiny-unet")
    out = tmp_path / "pipeline.json"
    rc = main(["bench", "pipeline", "--filter", str(bundle), "--sizes", "320x240", "--faces", "1",
               "--frames", "3", "--warmup", "1", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [r["mode"] for r in data["rows"]] == ["pipelined", "serial"]
    for row in data["rows"]:
        assert row["size"] == "320x240" and row["faces"] == 1 and row["fps"] > 0 and row["found"] == 1.0
        assert {"capture", "regions", "pre", "network", "post"} <= set(row)
    assert "onnxruntime" in capsys.readouterr().out
