"""Training one attacker: early stopping on the validation loss, and the learning-rate drop on a plateau."""
import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval.training import TrainSettings, train_model


def _noise_labels(seed: int = 0):
    """Labels that have nothing to do with the pixels: the validation loss can only get worse after a while."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (96, 12, 12, 3), dtype=np.uint8)
    return x, rng.integers(0, 2, 96)


def _first_plateau(history, epochs: int, min_delta: float = 1e-4) -> int:
    """The epoch after which ``epochs`` validation checks in a row brought no better loss."""
    best, bad = np.inf, 0
    for epoch, loss in enumerate(history, 1):
        if loss < best - min_delta:
            best, bad = loss, 0
        else:
            bad += 1
            if bad == epochs:
                return epoch
    raise AssertionError("no plateau in this history")


def test_stops_early_and_keeps_the_best_epoch():
    x, y = _noise_labels()
    m = train_model("linear", "classify", x[:64], y[:64], x[64:], y[64:],
                    settings=TrainSettings(max_epochs=60, patience=3, lr=0.05, min_steps_per_epoch=2))
    assert m.stopped_early and m.epochs_used < 60
    assert m.epochs_used == m.best_epoch + 3
    assert m.best_epoch == int(np.argmin(m.history)) + 1
    assert m.lr_drops == 0 and m.summary()["lr_drops"] == 0


def test_lr_drop_halves_the_rate_from_the_best_weights():
    x, y = _noise_labels()
    kw = dict(max_epochs=60, patience=4, lr=0.05, min_steps_per_epoch=2)
    plain = train_model("linear", "classify", x[:64], y[:64], x[64:], y[64:], settings=TrainSettings(**kw))
    dropped = train_model("linear", "classify", x[:64], y[:64], x[64:], y[64:],
                          settings=TrainSettings(**kw, lr_drop_patience=2))
    assert dropped.lr_drops >= 1 and dropped.stopped_early
    # the same run up to the first plateau of two epochs; from there on, a smaller step from the best weights
    drop = _first_plateau(plain.history, 2)
    assert dropped.history[:drop] == plain.history[:drop]
    assert dropped.history[drop] != plain.history[drop]
    assert dropped.summary()["lr_drops"] == dropped.lr_drops


def test_bad_targets_are_refused():
    x, y = _noise_labels()
    with pytest.raises(InputError, match="differ in length"):
        train_model("linear", "classify", x, y[:10], x, y)
    with pytest.raises(InputError, match="task"):
        train_model("linear", "sort", x, y, x, y)


def _pixel_signal(n: int, side: int = 10, seed: int = 0):
    """A class that brightens a few pixels of noise faces: readable by a linear model on the pixels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(128, 40, (n, side, side, 3))
    x[:, :2, :3] += 40 * y[:, None, None, None]
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_logistic_attacker_is_deterministic_and_reads_a_linear_signal():
    from privsdk.train.eval.metrics import balanced_accuracy
    from privsdk.train.eval.training import fit_logistic

    x, y = _pixel_signal(240)
    a = fit_logistic(x[:120], y[:120], x[120:180], y[120:180])
    b = fit_logistic(x[:120], y[:120], x[120:180], y[120:180])
    assert np.array_equal(a.predict_balanced(x[180:]), b.predict_balanced(x[180:]))
    assert balanced_accuracy(y[180:], a.predict_balanced(x[180:]).argmax(1)) > 0.8
    summary = a.summary()
    assert summary["arch"] == "logistic" and summary["converged"]
    assert summary["weight_decay"] in summary["weight_decays"]
    # the picked weight is the one with the lowest validation loss
    losses = summary["val_loss_by_weight_decay"]
    assert summary["weight_decay"] == summary["weight_decays"][int(np.argmin(losses))]
    assert "epochs_used" not in summary      # fit to convergence: nothing for the epoch-cap check to name


def test_logistic_attacker_solved_in_the_faces_span_is_the_full_pixel_optimum():
    """120 faces, 300 pixels: the fit runs in the 120-dim span of the faces; its weights must still zero the
    gradient of the L2-regularised loss over all 300 pixels (what the representer theorem promises)."""
    import torch

    from privsdk.train.eval.training import _pixels, fit_logistic

    x, y = _pixel_signal(180)
    m = fit_logistic(x[:120], y[:120], x[120:], y[120:])
    wd = m.summary()["weight_decay"]
    pixels = torch.as_tensor(_pixels(x[:120]), dtype=torch.float64)
    w = m.model.linear.weight.detach().double().T.clone().requires_grad_(True)
    bias = m.model.linear.bias.detach().double().clone().requires_grad_(True)
    counts = np.bincount(y[:120]).astype(np.float64)
    weights = torch.as_tensor(counts.sum() / (2 * counts))
    loss = torch.nn.functional.cross_entropy(pixels @ w + bias, torch.as_tensor(y[:120]), weight=weights) \
        + wd * (w ** 2).sum()
    loss.backward()
    assert float(w.grad.abs().max()) < 1e-4 * max(1.0, float(w.detach().abs().max()))
    assert float(bias.grad.abs().max()) < 1e-4


def test_logistic_attacker_regularises_hard_when_the_labels_are_noise():
    from privsdk.train.eval.training import LOGISTIC_WEIGHT_DECAYS, fit_logistic

    x, y = _noise_labels()
    m = fit_logistic(x[:64], y[:64], x[64:], y[64:])
    assert m.summary()["weight_decay"] >= 1.0 > min(LOGISTIC_WEIGHT_DECAYS)
    with pytest.raises(InputError, match="differ in length"):
        fit_logistic(x, y[:10], x, y)
