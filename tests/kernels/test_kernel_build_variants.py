"""Seeded noise is bit-identical across code paths: the extension (AVX2 when the CPU has it), an
SSE2-only build, an unvectorized build and (where a cross compiler and qemu exist) an aarch64 NEON
build of the same C++ core give the same bytes."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

cpp = pytest.importorskip("privsdk.kernels._cpp", reason="the C++ extension privsdk._fused is not built")

REPO = Path(__file__).resolve().parents[2]
DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "kernels" / "noise_dump.cpp"
KEY = 0x0123456789ABCDEF
# The release build's flags (CMakeLists.txt), then what each variant changes.
BASE = ["-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-pthread"]
VARIANTS = {
    "sse2": ["-O3", "-DPRIVSDK_NO_AVX2", "-DPRIVSDK_NO_CLONES"],  # the portable baseline, vectorized
    "scalar": ["-O1", "-fno-tree-vectorize", "-DPRIVSDK_NO_AVX2", "-DPRIVSDK_NO_CLONES",
               "-DPRIVSDK_NO_SSE2_PIXELS"],  # one element at a time
}


def _extension_bytes() -> bytes:
    """What noise_dump.cpp writes, computed through the extension."""
    n_maps = 3 * 13 * 21
    i = np.arange(n_maps)
    scale = (np.float32(1) + (37 * i % 100).astype(np.float32) / np.float32(100)).reshape(3, 13, 21)
    shift = ((13 * i % 50).astype(np.float32) / np.float32(100) - np.float32(0.25)).reshape(3, 13, 21)
    sigma = ((29 * i % 20).astype(np.float32) / np.float32(100)).reshape(3, 13, 21)
    y, x, c = np.meshgrid(np.arange(41), np.arange(67), np.arange(3), indexing="ij")
    frame = ((131 * y + 7 * x + 50 * c) % 256).astype(np.uint8)

    parts = [cpp.NoiseSource(seed=KEY).normals(10007 + 3, 2, 2**32 + 5)[3:]]
    for dtype in (np.float32, np.float16):
        src = cpp.NoiseSource(seed=KEY)
        for _ in range(7):
            src.next_call()
        extra = np.empty(1001, dtype)
        out = cpp.pre(frame, (2, 3, 30, 33), scale, shift, sigma, dtype=dtype, noise_outputs=[extra], rng=src,
                      threads=1)
        parts += [out, extra]
    return b"".join(np.ascontiguousarray(p).tobytes() for p in parts)


# An aarch64 (NEON) build run under qemu, where a cross compiler and qemu-user are installed
# (the Jetson's instruction set; skipped elsewhere).
ARM = ("aarch64-linux-gnu-g++", "qemu-aarch64")


def _variants() -> Dict[str, List[str]]:
    """name -> compiler command (without the output path) of every build to compare."""
    sources = [f"-I{REPO / 'cpp_ext' / 'include'}", str(DUMP), str(REPO / "cpp_ext" / "src" / "fused.cpp")]
    builds = {name: ["g++", *BASE, *flags, *sources] for name, flags in VARIANTS.items()}
    if all(shutil.which(tool) for tool in ARM):
        builds["aarch64"] = [ARM[0], *BASE, "-O3", "-static", *sources]
    return builds


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ (the variants use GCC's flags)")
def test_noise_is_bit_identical_across_builds(tmp_path: Path) -> None:
    builds: Dict[str, subprocess.Popen] = {}
    for name, cmd in _variants().items():  # compile in parallel: a few seconds each
        builds[name] = subprocess.Popen([*cmd, "-o", str(tmp_path / name)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
    want = _extension_bytes()
    assert len(want) == 4 * 10007 + 4 * (3 * 13 * 21 + 1001) + 2 * (3 * 13 * 21 + 1001)
    for name, proc in builds.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err}"
        out = tmp_path / f"{name}.bin"
        runner = [ARM[1]] if name == "aarch64" else []
        run = subprocess.run([*runner, str(tmp_path / name), str(out)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        got = out.read_bytes()
        assert len(got) == len(want)
        if got != want:
            a = np.frombuffer(got[:4 * 10007], np.float32)
            b = np.frombuffer(want[:4 * 10007], np.float32)
            pytest.fail(f"{name} build differs from the extension: first differing normal at "
                        f"{np.flatnonzero(a != b)[:5]} of the stream, or in the pre outputs")
