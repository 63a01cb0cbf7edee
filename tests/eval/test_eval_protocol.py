"""The protocol finds what it should on a fixture whose secret is trivially visible.

Real LFW faces (scikit-image); the "secret" positives carry a bright square.
Through the identity "filter" the retrained attackers must find it (high balanced
accuracy, > 0.5 bits of leakage); through a blanking filter they must be at chance
with ~0 bits. All three attackers (CNN from scratch, linear on pixels by SGD, logistic
regression on pixels fit to convergence) run.
"""
import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval import EvalData, ProtocolSettings, baseline, evaluate
from privsdk.train.eval.filters import FilterUnderEval
from privsdk.train.eval.protocol import Evaluator, stratified_split


@pytest.fixture(scope="module")
def trivial(lfw_faces):
    faces = np.repeat(lfw_faces[..., None], 3, axis=3).copy()       # 100 × 25 × 25 × 3
    secret = (np.arange(len(faces)) % 2).astype(np.int64)
    faces[secret == 1, 2:9, 2:9] = 255                              # the secret, plainly visible
    yaw = np.linspace(-0.5, 0.5, len(faces)).astype(np.float32)
    return EvalData.from_arrays("lfw-square", faces, {"smile": secret, "yaw": yaw}, secret="smile", seed=0)


@pytest.fixture(scope="module")
def evaluator(trivial):
    settings = ProtocolSettings.quick_settings(identity=False, pose=False, bounds=False, progress=False)
    settings.train.max_epochs = 6
    return Evaluator(trivial, settings)


def test_identity_filter_leaks_the_visible_secret(evaluator):
    r = evaluator.evaluate_filter(baseline("identity"))
    p = r["privacy"]
    assert set(p["attackers"]) == {"cnn", "linear", "logistic"}
    assert p["worst_attacker"]["balanced_accuracy"] >= 0.9
    assert p["worst_attacker"]["auc"] >= 0.95
    assert p["leakage_bits"] > 0.5
    for arch in ("cnn", "linear"):
        t = p["attackers"][arch]["training"]
        assert 1 <= t["epochs_used"] <= 6 and t["best_epoch"] >= 1
    assert p["attackers"]["logistic"]["training"]["converged"]
    for arch in ("linear", "logistic"):
        assert p["fixed_attackers"][arch]["balanced_accuracy"] >= 0.9   # clean-trained, unchanged input
    assert r["utility"]["fidelity"]["ssim"] == pytest.approx(1.0)


def test_blank_filter_gives_chance_and_no_leakage(evaluator):
    r = evaluator.evaluate_filter(baseline("full_mask", 1.0))
    p = r["privacy"]
    for a in p["attackers"].values():
        assert a["balanced_accuracy"] == pytest.approx(0.5)
    assert p["leakage_bits"] < 0.05
    assert p["infoscrub_mean_entropy_bits"] > 0.95
    # the clean attackers, fixed, see nothing either
    assert all(v["balanced_accuracy"] == pytest.approx(0.5) for v in p["fixed_attackers"].values())
    assert evaluator.clean()["worst_attacker"]["balanced_accuracy"] >= 0.9


def test_stochastic_filter_is_refiltered_every_epoch(trivial):
    calls = []

    def counting(images):
        calls.append(len(images))
        return images.copy()

    flt = FilterUnderEval("counting", counting, stochastic=True, kind="test")
    settings = ProtocolSettings.quick_settings(attackers=("linear",), identity=False, pose=False, bounds=False,
                                               fixed_attackers=False, progress=False)
    settings.train.max_epochs = 3
    settings.train.patience = 10
    r = Evaluator(trivial, settings).evaluate_filter(flt)
    n_train = len(trivial.images["train"])
    assert calls.count(n_train) == r["privacy"]["attackers"]["linear"]["training"]["epochs_used"] == 3


def test_stratified_split_is_deterministic_and_disjoint():
    y = np.array([0] * 70 + [1] * 30)
    a, b = stratified_split(y, seed=3), stratified_split(y, seed=3)
    assert all(np.array_equal(a[s], b[s]) for s in a)
    allidx = np.concatenate(list(a.values()))
    assert len(np.unique(allidx)) == 100
    assert y[a["test"]].mean() == pytest.approx(0.3, abs=0.05)


@pytest.mark.slow
def test_full_report_with_pose_and_bounds(trivial, tmp_path):
    report = evaluate([baseline("identity"), baseline("blur", 4.0)], trivial,
                      ProtocolSettings.quick_settings(identity=False, progress=False))
    assert "pose" not in report["results"][0]["utility"]      # yaw only: no full pose labels
    assert report["bounds"]["utility_label"] == "yaw_tercile"
    assert "I_UX_given_Y_upper_nats" in report["results"][0]["tradeoff_nats"]


def test_cross_set_data_trains_on_one_set_and_tests_on_the_other(lfw_faces):
    from types import SimpleNamespace

    faces = np.repeat(lfw_faces[..., None], 3, axis=3)
    a = SimpleNamespace(name="setA", images=faces[:60], labels={"smile": np.arange(60) % 2, "only_a": np.zeros(60)})
    b = SimpleNamespace(name="setB", images=faces[60:], labels={"smile": np.arange(40) % 2, "yaw": np.zeros(40)})
    split_a = stratified_split(a.labels["smile"], seed=0)
    split_b = stratified_split(b.labels["smile"], seed=0)
    data = EvalData.from_dataset(a, split_a, "smile", b, split_b)
    assert data.name == "setA->setB"
    assert np.array_equal(data.images["test"], b.images[split_b["test"]])
    assert np.array_equal(data.images["train"], a.images[split_a["train"]])
    assert sorted(data.labels["test"]) == ["smile"]            # only labels both sets share
    small = data.subset(6, seed=0)
    assert all(len(small.images[s]) <= 7 for s in ("train", "val", "test"))
    assert set(small.labels["train"]["smile"]) == {0, 1}


def test_held_out_attackers_train_on_faces_no_filter_stage_was_fit_on(lfw_faces):
    faces = np.repeat(lfw_faces[:80, ..., None], 3, axis=3)
    data = EvalData.from_arrays("set", faces, {"smile": np.arange(80) % 2, "yaw": np.arange(80.0)}, "smile",
                                fractions=(0.5, 0.25, 0.25), seed=0)
    held = data.held_out(seed=0)
    assert np.array_equal(held.images["train"], data.images["val"])        # the filter's training faces are gone
    assert np.array_equal(held.labels["train"]["yaw"], data.labels["val"]["yaw"])
    info = held.info["held_out"]
    first, second = info["val_from_test"], info["test_from_test"]
    assert sorted(first + second) == list(range(20)) and not set(first) & set(second)
    assert np.array_equal(held.images["val"], data.images["test"][first])
    assert np.array_equal(held.labels["test"]["yaw"], data.labels["test"]["yaw"][second])
    for split in ("val", "test"):                                            # both halves keep both classes
        assert set(held.labels[split]["smile"]) == {0, 1}
    assert held.describe()["sizes"] == {"train": 20, "val": 10, "test": 10}
    assert "val split" in held.describe()["held_out"]["attackers_trained_on"]
    with pytest.raises(InputError, match="at least 4"):
        data.subset(1).held_out()


def test_sgd_attackers_are_restarted_and_the_lowest_validation_loss_kept(trivial):
    settings = ProtocolSettings.quick_settings(attackers=("linear", "logistic"), identity=False, pose=False,
                                               bounds=False, fixed_attackers=False, progress=False, restarts=3)
    r = Evaluator(trivial, settings).evaluate_filter(baseline("blur", 2.0))
    linear = r["privacy"]["attackers"]["linear"]
    runs = linear["restarts"]
    assert len(runs) == 3 and len({run["seed"] for run in runs}) == 3
    kept = [run for run in runs if run["kept"]]
    assert len(kept) == 1 and kept[0]["best_val_loss"] == min(run["best_val_loss"] for run in runs)
    assert kept[0]["test_balanced_accuracy"] == linear["balanced_accuracy"]
    assert kept[0]["best_epoch"] == linear["training"]["best_epoch"]
    # the table shows the worst attacker's spread (made the worst here, whichever of the two read more)
    import copy

    from privsdk.train.eval.report import summary_table
    shown = copy.deepcopy(r)
    shown["privacy"]["worst_attacker"]["arch"] = "linear"
    lo, hi = min(run["test_balanced_accuracy"] for run in runs), max(run["test_balanced_accuracy"] for run in runs)
    assert f"linear runs {lo:.3f}-{hi:.3f}" in summary_table({"results": [shown]})
    shown["privacy"]["worst_attacker"]["arch"] = "logistic"
    assert " runs " not in summary_table({"results": [shown]})
    # the logistic attacker is fit to convergence: nothing to restart
    assert "restarts" not in r["privacy"]["attackers"]["logistic"]
    # one run: the report is as before restarts existed
    settings.restarts = 1
    single = Evaluator(trivial, settings).evaluate_filter(baseline("blur", 2.0))
    assert "restarts" not in single["privacy"]["attackers"]["linear"]
    # ... and its one run is the first of the three (the same seed)
    assert min(single["privacy"]["attackers"]["linear"]["training"]["val_loss_history"]) == \
        pytest.approx(runs[0]["best_val_loss"], abs=1e-6)
