"""Without the C++ extension privsdk.kernels uses the numpy reference and says so, once."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib, importlib.abc, json, logging, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "privsdk._fused":
                raise ImportError("blocked by the test: no compiled extension")
            return None

    sys.meta_path.insert(0, Block())
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage()))
    logging.getLogger("privsdk").addHandler(Keep())

    import numpy as np
    import privsdk.kernels as k
    importlib.reload(k)  # a second import must not warn again
    frame = np.zeros((20, 20, 3), np.uint8)
    ones = np.ones((3, 4, 4), np.float32)
    x = k.pre(frame, None, ones, np.zeros_like(ones), ones, rng=k.NoiseSource(seed=1))
    print(json.dumps({"impl": k.IMPLEMENTATION, "pre_is_reference": k.pre is k.reference.pre,
                      "records": records, "shape": list(x.shape)}))
""")


def test_missing_extension_falls_back_to_numpy_and_warns_once() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["impl"] == "numpy"
    assert result["pre_is_reference"] is True
    assert result["shape"] == [3, 4, 4]
    warnings = [m for level, m in result["records"] if level == "WARNING" and "privsdk._fused" in m]
    assert len(warnings) == 1, result["records"]
    assert "numpy reference" in warnings[0]


def test_built_extension_is_used_when_present() -> None:
    import pytest

    pytest.importorskip("privsdk._fused", reason="the C++ extension privsdk._fused is not built")
    import privsdk.kernels as k

    assert k.IMPLEMENTATION == "cpp"
    assert k.pre.__module__ == "privsdk.kernels._cpp"
