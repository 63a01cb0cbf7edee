"""The kernel benchmark's command line and helpers work (a tiny run; the numbers are not checked)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from privsdk.bench.common import format_markdown_table, format_table, gbps, time_call


def test_time_call_counts_and_orders_samples() -> None:
    calls = []
    t = time_call(lambda: calls.append(1), repeat=5, warmup=2)
    assert len(calls) == 7 and len(t.samples_ms) == 5
    assert t.min_ms <= t.median_ms <= t.max_ms
    assert t.to_dict()["n"] == 5
    with pytest.raises(ValueError, match="repeat"):
        time_call(lambda: None, repeat=0)


def test_gbps_and_tables() -> None:
    assert gbps(2_000_000, 1.0) == pytest.approx(2.0)
    rows = [{"name": "a", "ms": 1.23456}, {"name": "bb", "ms": None}]
    cols = [("name", "case", "s"), ("ms", "ms", ".2f")]
    text = format_table(rows, cols).splitlines()
    assert text[0].split() == ["case", "ms"] and text[2].split() == ["a", "1.23"] and text[3].split() == ["bb", "-"]
    md = format_markdown_table(rows, cols).splitlines()
    assert md[0] == "| case | ms |" and md[2] == "| a | 1.23 |"
    mixed = format_table([{"n": 3, "x": 2, "f": 1.5}], [("n", "n", "d"), ("x", "x", ".2f"), ("f", "f", "d")])
    assert mixed.splitlines()[2].split() == ["3", "2.00", "1.5"]


def test_bench_kernel_command_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from privsdk.cli import main

    out = tmp_path / "k.json"
    rc = main(["-q", "bench", "kernel", "--inputs", "64x48", "--outputs", "8", "--repeat", "2", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fused pre-kernel" in printed and "64x48" in printed
    data = json.loads(out.read_text())
    assert data["implementation"] in ("cpp", "numpy")
    assert [(r["input"], r["region"], r["output"]) for r in data["pre"]] == [("64x48", "full", "8x8"),
                                                                             ("64x48", "face", "8x8")]
    row = data["pre"][0]
    for key in ("fused_ms", "reference_ms", "copy_ms", "speedup_vs_reference", "times_copy", "fused_gbps"):
        assert row[key] is not None and row[key] > 0
    assert len(data["post"]) == 2 and data["machine"]["cpu_count"] >= 1
    assert set(data["targets_met_no_noise"]) == {"vs_reference_>=5x", "vs_blob_>=1x", "within_2x_copy"}
    assert set(data["targets_met"]) == set(data["targets_met_no_noise"]) | {"vs_blob_plus_normals_>=1x"}
    assert row["blob_plus_normals_ms"] > 0 and row["speedup_vs_blob_plus_normals"] > 0
    for key in ("fused_no_noise_ms", "reference_no_noise_ms", "no_noise_speedup_vs_reference",
                "no_noise_times_copy", "fused_prepared_ms", "fused_no_noise_prepared_ms"):
        assert row[key] is not None and row[key] > 0
    assert "without σ noise" in printed


def test_bench_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    from privsdk.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "kernel", "--inputs", "640by480"])
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_blob_runs_with_the_fused_kernel_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fair baseline: --threads 1 gives blobFromImage one OpenCV thread, and OpenCV's setting is restored."""
    cv2 = pytest.importorskip("cv2")
    from privsdk.bench import kernel

    real = cv2.dnn.blobFromImage
    seen = []

    def spy(*args, **kwargs):  # records the thread count blob runs with, then runs the real one
        seen.append(cv2.getNumThreads())
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2.dnn, "blobFromImage", spy)
    before = cv2.getNumThreads()
    results = kernel.run([(64, 48)], [8], repeat=2, threads=1, reference=False, post=False, progress=False)
    assert seen and set(seen) == {1}
    assert results["opencv_threads"] == 1
    assert cv2.getNumThreads() == before
    seen.clear()
    results = kernel.run([(64, 48)], [8], repeat=2, threads=0, reference=False, post=False, progress=False)
    assert set(seen) == {before} and results["opencv_threads"] == before
