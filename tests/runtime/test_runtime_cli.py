"""The command line: privsdk run / demo / filters, end to end on real faces."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from privsdk.cli import main

cv2 = pytest.importorskip("cv2")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runtime"
_spec = importlib.util.spec_from_file_location("runtime_tiny_bundles_cli", FIXTURES / "tiny_bundles.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny.write_lite(tmp_path_factory.mktemp("cli") / "tiny-lite")


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps


def test_run_filters_a_video_keeps_timing_and_writes_a_side_file(bundle, tmp_path, astronaut_bgr, capsys):
    src = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    for k in range(8):
        w.write(astronaut_bgr if k != 3 else np.zeros_like(astronaut_bgr))
    w.release()
    out, side = tmp_path / "out.mp4", tmp_path / "side.json"
    rc = main(["run", "--source", str(src), "--filter", str(bundle), "--sink", str(out), "--json", str(side)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert _frames(out) == (8, pytest.approx(10.0))
    assert "8 frames" in printed and "0 blanked" in printed and "per frame: capture" in printed
    data = json.loads(side.read_text())
    assert len(data["frames"]) == 8 and data["summary"]["frames"] == 8
    assert len(data["frames"][0]["regions"]) == 1
    held = data["frames"][3]["regions"]
    assert held and held[0]["held"], "the black frame's face is covered by hold-over"


def test_run_needs_an_output_and_reports_bad_sources(bundle, capsys):
    assert main(["run", "--source", "x.mp4", "--filter", str(bundle)]) == 2
    assert main(["run", "--source", "/no/such.mp4", "--filter", str(bundle), "--sink", "/tmp/o.mp4"]) == 1


def test_run_show_on_a_headless_machine_fails_clearly(bundle, tmp_path, capsys, caplog):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.zeros((32, 32, 3), np.uint8))
    try:
        cv2.namedWindow("probe")
        cv2.destroyWindow("probe")
        pytest.skip("this OpenCV can open windows here")
    except cv2.error:
        pass
    assert main(["run", "--source", str(src), "--filter", str(bundle), "--show", "--regions", "full"]) == 1


def test_demo_filters_the_bundled_clip(bundle, tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    rc = main(["demo", "--filter", str(bundle), "--out", str(out), "--max-frames", "12"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    n, fps = _frames(out)
    assert n == 12 and fps == pytest.approx(15.0)
    assert "12 frames" in printed and str(out) in printed and "0 blanked" in printed
    regions = int(printed.split(" regions filtered")[0].split()[-1])
    assert regions >= 12, "the astronaut's face is found in every frame of the clip"


def test_demo_without_the_bundled_filter_lists_what_is_there(capsys):
    from privsdk import registry

    if "emotion" in registry.available_names():
        pytest.skip("the emotion filter is bundled")
    assert main(["demo", "--out", "/tmp/never-written.mp4"]) == 1


def test_filters_command_lists_bundled_filters(capsys):
    import json

    from privsdk.registry import available_names

    assert main(["filters", "--json"]) == 0
    listed = {f["name"]: f for f in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(available_names())
    assert main(["filters"]) == 0
    text = capsys.readouterr().out
    for name, f in listed.items():
        assert f"{name}  {f['version']}" in text
        # each number is shown with what it was measured on: the test faces and the attackers' training faces
        assert f["measured_on"] and f"measured on {f['measured_on']}:" in text
        assert "training faces, attacker seed 0" in f["measured_on"]


def test_measured_on_says_what_the_attackers_trained_on():
    from privsdk.registry import measured_on

    def manifest(**data):
        sizes = {"train": 9215, "val": 1975, "test": 1975}
        return {"evaluation": {"data": {"name": "smilesmiled", "sizes": sizes, **data},
                               "protocol": {"settings": {"seed": 3}}}}

    assert measured_on({}) == measured_on({"evaluation": None}) == ""
    assert measured_on(manifest()) == ("smilesmiled test split (1975 faces); attackers trained on smilesmiled's "
                                       "9215 training faces, attacker seed 3")
    assert "(a subset)" in measured_on(manifest(subset={"train": [0]}))
    assert "smilesmiled's 9215 validation faces" in measured_on(manifest(held_out={"test": [0]}))
    held_back = measured_on(manifest(train_share={"share": 0.5, "attackers_trained_on": "held_back"}))
    assert "9215 of smilesmiled's training faces that the filter's training held back" in held_back
    assert "(the filter's share)" in measured_on(manifest(train_share={"attackers_trained_on": "fit share"}))
    cross = measured_on(manifest(train_set="smilesmiled", test_set="genki4k"))
    assert cross.startswith("genki4k test split") and "smilesmiled's 9215 training faces" in cross


def test_run_copies_sound_only_when_asked(bundle, tmp_path, astronaut_bgr):
    import subprocess

    from privsdk.io.sinks import _ffmpeg, has_audio

    ffmpeg = _ffmpeg()
    if ffmpeg is None:
        pytest.skip("no ffmpeg here (neither on PATH nor from imageio-ffmpeg, `pip install 'privsdk[audio]'`)")
    frames = tmp_path / "frames.avi"
    w = cv2.VideoWriter(str(frames), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    for _ in range(10):
        w.write(astronaut_bgr)
    w.release()
    src = tmp_path / "talk.mp4"  # the portrait with a second of a 440 Hz tone as its sound
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(frames), "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(src)],
                   check=True)
    assert has_audio(src) is True
    silent, kept = tmp_path / "silent.mp4", tmp_path / "kept.mp4"
    assert main(["run", "--source", str(src), "--filter", str(bundle), "--sink", str(silent)]) == 0
    assert main(["run", "--source", str(src), "--filter", str(bundle), "--sink", str(kept), "--keep-audio"]) == 0
    assert has_audio(silent) is False, "sound is dropped unless --keep-audio"
    assert has_audio(kept) is True
    assert _frames(kept)[0] == _frames(silent)[0] == 10
    original = cv2.VideoCapture(str(src)).read()[1]
    filtered = cv2.VideoCapture(str(kept)).read()[1]
    assert np.abs(original.astype(int) - filtered.astype(int)).max() > 40, "the muxed video is the filtered one"
