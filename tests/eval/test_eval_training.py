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
