"""Baselines change images as their strength says; filter specs resolve; fresh noise per call."""
import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval.filters import BASELINE_STRENGTHS, baseline, baseline_sweep, frame_mean, make_filter
from privsdk.train.eval.metrics import image_fidelity


@pytest.fixture(scope="module")
def faces(lfw_faces):
    import cv2

    grey = np.stack([cv2.resize(f, (64, 64)) for f in lfw_faces[:8]])
    return np.repeat(grey[..., None], 3, axis=3)


def _distortion(images, flt):
    return float(np.abs(flt(images).astype(int) - images).mean())


@pytest.mark.parametrize("kind", ["blur", "pixelate", "lower_mask", "full_mask", "noise"])
def test_stronger_means_more_change(faces, kind):
    strengths = BASELINE_STRENGTHS[kind]
    d = [_distortion(faces, baseline(kind, s, seed=0)) for s in strengths]
    assert d[0] > 0
    assert all(b > a for a, b in zip(d, d[1:])), f"{kind}: distortion {d} is not increasing with {strengths}"


def test_identity_and_exact_semantics(faces):
    assert np.array_equal(baseline("identity")(faces), faces)
    out = baseline("lower_mask", 0.25)(faces)
    assert (out[:, 48:] == 128).all() and np.array_equal(out[:, :48], faces[:, :48])
    assert (baseline("full_mask", 1.0)(faces) == 128).all()
    pix = baseline("pixelate", 8)(faces)
    assert (pix[:, :8, :8] == pix[:, :1, :1]).all()           # one colour per 8×8 block
    assert image_fidelity(faces, baseline("blur", 1)(faces))["ssim"] > \
        image_fidelity(faces, baseline("blur", 8)(faces))["ssim"]


def test_noise_is_fresh_each_call_and_flagged_stochastic(faces):
    f = baseline("noise", 32)
    assert f.stochastic and not baseline("blur", 2).stochastic
    assert not np.array_equal(f(faces), f(faces))
    assert abs(float((f(faces).astype(float) - faces).std()) - 32) < 8   # clipping at 0/255 shrinks it a bit


def test_frame_mean_cancels_fresh_noise_and_leaves_deterministic_filters_alone(faces):
    """An attacker averaging 16 frames of a still face: the noise's σ falls by √16, the signal stays."""
    grey = np.full((64, 64, 64, 3), 128, np.uint8)          # mid-grey: no clipping at 0/255
    averaged = frame_mean(baseline("noise", 32), 16)
    assert averaged.name == "noise:32 (mean of 16 frames)" and averaged.stochastic
    assert averaged.info["frames_averaged"] == 16
    residual = averaged(grey).astype(float) - 128
    assert abs(residual.std() - 32 / 4) < 1.0 and abs(residual.mean()) < 0.2
    assert not np.array_equal(averaged(grey), averaged(grey))   # still fresh noise, only less of it
    blur = baseline("blur", 2)
    assert frame_mean(blur, 16) is blur and frame_mean(baseline("noise", 32), 1).name == "noise:32"
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="expected a whole number"):
            frame_mean(blur, bad)


def test_make_filter_specs_and_errors(faces, tmp_path):
    assert make_filter("blur:2").name == "blur:2" and make_filter("pixelate").strength == 16
    assert len(baseline_sweep()) == sum(len(v) for v in BASELINE_STRENGTHS.values())
    assert {f.name.split(":")[0] for f in baseline_sweep(quick=True)} == set(BASELINE_STRENGTHS)
    with pytest.raises(InputError, match="not an existing checkpoint"):
        make_filter("sharpen:2")
    with pytest.raises(InputError, match="not a number"):
        make_filter("blur:big")
    with pytest.raises(InputError, match="outside"):
        baseline("full_mask", 2.0)
    with pytest.raises(InputError, match="uint8 N×H×W×3"):
        baseline("blur", 2)(faces.astype(np.float32))
