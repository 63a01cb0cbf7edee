"""The kernels never read or write outside the frame: a frame that ends right before a
protected (unreadable) page, with regions at its bottom-right corner."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("privsdk._fused", reason="the C++ extension privsdk._fused is not built")

SCRIPT = textwrap.dedent("""
    import ctypes, mmap, sys
    import numpy as np
    from privsdk.kernels import _cpp, reference as ref

    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    buf = mmap.mmap(-1, 4 * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if libc.mprotect(base + 3 * page, page, 0) != 0:  # PROT_NONE: any access faults
        print("skip: mprotect failed"); sys.exit(0)
    arena = np.frombuffer(buf, dtype=np.uint8, count=3 * page)
    h, w = 31, 29                       # 31*29*3 = 2697 bytes, placed to end at the guard page
    frame = arena[3 * page - h * w * 3:].reshape(h, w, 3)
    frame[...] = np.random.default_rng(0).integers(0, 256, frame.shape, dtype=np.uint8)
    ones = np.ones((3, 17, 23), np.float32)
    for roi in [None, (w - 1, h - 1, 1, 1), (w - 7, h - 5, 7, 5), (0, h - 1, w, 1)]:
        for swap in (True, False):
            got = _cpp.pre(frame, roi, ones, np.zeros_like(ones), swap_rb=swap)
            want = ref.pre(np.array(frame), roi, ones, np.zeros_like(ones), swap_rb=swap)
            assert np.allclose(got, want, rtol=1e-6, atol=1e-6), roi
            y = np.random.default_rng(1).uniform(0, 1, (3, 5, 4)).astype(np.float32)
            _cpp.post(y, frame, roi, swap_rb=swap)
    print("ok")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses mprotect via ctypes (Linux)")
def test_no_access_past_the_last_pixel() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"crashed (rc={proc.returncode}): {proc.stderr[-2000:]}"
    out = proc.stdout.strip().splitlines()[-1]
    if out.startswith("skip"):
        pytest.skip(out)
    assert out == "ok"
