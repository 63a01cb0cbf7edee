"""Paper 000's synthetic experiments: a check of the aioi training with known answers."""
import math

import numpy as np
import pytest

from privsdk.train.eval.bounds import mutual_information_nats
from privsdk.train.eval.synthetic import (SyntheticSettings, build_synthetic_filter, run_synthetic, sample,
                                          synthetic_joint)

LN2 = math.log(2)


@pytest.mark.parametrize("target", [0.0, 0.2, 0.4, 0.69, LN2])
def test_joint_has_uniform_marginals_and_the_asked_dependence(target):
    joint = synthetic_joint(target)
    np.testing.assert_allclose(joint.sum(1), 1 / 6)
    np.testing.assert_allclose(joint.sum(0), 1 / 2)
    assert mutual_information_nats(joint) == pytest.approx(target, abs=1e-9)


def test_samples_are_one_hot_of_u_and_s():
    x, u, s = sample(synthetic_joint(LN2), 500, np.random.default_rng(0))
    assert x.shape == (500, 8) and (x.sum(1) == 2).all()
    assert (x[np.arange(500), u] == 1).all() and (x[np.arange(500), 6 + s] == 1).all()
    assert (s == u % 2).all()                       # I(U;S) = ln 2: S is U's parity


def test_linear_filter_meets_the_known_answers():
    """S = U mod 2. Hiding S (k = 0) costs at least I(U;S) = ln 2 of utility (Lemma 2.2);
    allowing k = ln 2 lets the filter keep U entirely."""
    settings = SyntheticSettings(steps=400, verify_steps=400, samples=2000, verify_hidden=32)
    result = run_synthetic((LN2,), ks=(0.0, LN2), filters=("linear",), settings=settings)
    hide, keep = result["experiments"][0]["points"]
    assert hide["I_SY_nats"] < 0.15
    assert hide["I_UX_given_Y_nats"] >= LN2 - 0.1
    assert keep["I_UX_given_Y_nats"] < 0.15
    assert keep["I_SY_nats"] > LN2 - 0.15           # U kept, so its parity S is leaked too


def test_nonlinear_filter_meets_the_known_answers():
    """Paper 000, Sec. 4: the < 300-parameter stochastic network hides S from a *fresh*
    verifier at k = 0 (not only from its own training adversary), at the cost Lemma 2.2
    says, and keeps U at k = ln 2."""
    assert sum(p.numel() for p in build_synthetic_filter("nonlinear").parameters()) < 300
    settings = SyntheticSettings(steps=400, verify_steps=400, samples=2000, verify_hidden=32)
    result = run_synthetic((LN2,), ks=(0.0, LN2), filters=("nonlinear",), settings=settings)
    hide, keep = result["experiments"][0]["points"]
    assert hide["I_SY_nats"] < 0.1
    assert hide["I_UX_given_Y_nats"] >= hide["lemma22_lower"] - 0.05
    assert hide["I_UX_given_Y_nats"] >= LN2 - 0.1
    assert keep["I_UX_given_Y_nats"] < 0.15
    assert keep["I_SY_nats"] > LN2 - 0.15


def test_verification_exposes_a_filter_that_does_not_hide():
    """The same check fails on a broken filter: with no privacy penalty (λ = 0) the
    nonlinear filter just keeps U, and the fresh verifier reads all of S = U mod 2 at k = 0."""
    settings = SyntheticSettings(steps=200, verify_steps=400, samples=2000, verify_hidden=32, penalty=0.0)
    result = run_synthetic((LN2,), ks=(0.0,), filters=("nonlinear",), settings=settings)
    (broken,) = result["experiments"][0]["points"]
    assert broken["I_SY_nats"] > LN2 - 0.15
    assert broken["I_UX_given_Y_nats"] < 0.15


@pytest.mark.slow
def test_section4_tradeoffs_respect_lemma22():
    """The full Section 4 sweep: every verified point respects Lemma 2.2 (up to estimation
    error), and both filters hide S at k = 0."""
    result = run_synthetic(settings=SyntheticSettings(steps=2000))
    for e in result["experiments"]:
        for p in e["points"]:
            assert p["I_UX_given_Y_nats"] >= p["lemma22_lower"] - 0.1, p
        hide = [p for p in e["points"] if p["k"] == 0.0]
        assert len(hide) == 2 and all(p["I_SY_nats"] < 0.15 for p in hide), hide
