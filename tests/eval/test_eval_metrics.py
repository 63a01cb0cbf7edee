"""Privacy and fidelity metrics against hand-computed values."""
import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval.metrics import (balanced_accuracy, classification_metrics, cross_entropy_bits,
                                        image_fidelity, label_entropy_bits, majority_rate, roc_auc)


def test_balanced_accuracy_and_majority_on_imbalanced_labels():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert balanced_accuracy(y, np.zeros(8)) == 0.5          # majority guess: chance, not 0.75
    assert majority_rate(y) == 0.75
    assert balanced_accuracy(y, np.array([0, 0, 0, 0, 0, 1, 1, 0])) == pytest.approx((5 / 6 + 1 / 2) / 2)


def test_auc_hand_values_and_ties():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_entropies_and_leakage_in_bits():
    y = np.array([0, 1, 0, 1])
    assert label_entropy_bits(y) == pytest.approx(1.0)
    uniform = np.full((4, 2), 0.5)
    assert cross_entropy_bits(y, uniform) == pytest.approx(1.0)
    m = classification_metrics(y, uniform)
    assert m["leakage_bits"] == pytest.approx(0.0) and m["mean_entropy_bits"] == pytest.approx(1.0)
    sure = np.array([[0.99, 0.01], [0.01, 0.99]] * 2)
    m = classification_metrics(y, sure)
    assert m["leakage_bits"] == pytest.approx(1 + np.log2(0.99)) and m["balanced_accuracy"] == 1.0
    with pytest.raises(InputError, match="N×K"):
        cross_entropy_bits(y, np.full((3, 2), 0.5))


def test_image_fidelity():
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 200, 32)
    a = np.broadcast_to((ramp[:, None] + ramp[None, :])[None, :, :, None] / 2, (2, 32, 32, 3)).astype(np.uint8)
    same = image_fidelity(a, a.copy())
    assert same["psnr_db"] == 100.0 and same["ssim"] == pytest.approx(1.0)
    noisy = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    f = image_fidelity(a, noisy)
    assert 15 < f["psnr_db"] < 30 and f["ssim"] < 0.9
    with pytest.raises(InputError, match="uint8"):
        image_fidelity(a, a.astype(np.float32))
