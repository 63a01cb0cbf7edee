"""Shared test fixtures. Tests stay fast on 2 CPU cores: torch runs single-threaded."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# ../shared/data sits beside the checkout on developer machines and in CI.
SHARED_DATA = Path(os.environ.get("PRIVSDK_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real face sets (SMILEsmileD, GENKI4K); skips when ../shared/data is absent."""
    if not (SHARED_DATA / "SMILEsmileD").is_dir() or not (SHARED_DATA / "GENKI4K").is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (set PRIVSDK_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lfw_faces() -> np.ndarray:
    """100 real 25×25 grey LFW faces shipped with scikit-image, as uint8 N×25×25."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the LFW subset fixture")
    faces = skdata.lfw_subset()[:100]
    return (np.clip(faces, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """The public-domain NASA astronaut portrait (512×512) as a BGR uint8 frame."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut portrait")
    return np.ascontiguousarray(skdata.astronaut()[..., ::-1])
