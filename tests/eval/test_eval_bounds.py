"""Paper 000's bounds (Lemma 2.2 lower, Lemma 2.3 achievable) against hand-computed values."""
import math

import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval.bounds import (contingency_table, lemma22_lower_bound, lemma23_achievable,
                                       mutual_information_nats, tradeoff_bounds)

LN2, LN3 = math.log(2), math.log(3)


def test_mutual_information_of_small_tables():
    assert mutual_information_nats([[1, 0], [0, 1]]) == pytest.approx(LN2)
    assert mutual_information_nats([[1, 1], [1, 1]]) == pytest.approx(0.0, abs=1e-12)
    # p = [[3/8, 1/8], [1/8, 3/8]]: I = ln 2 − h(1/4), h(1/4) = 0.25 ln 4 + 0.75 ln(4/3) = 0.562335
    assert mutual_information_nats([[3, 1], [1, 3]]) == pytest.approx(LN2 - 0.5623351446, abs=1e-9)
    # U uniform on 3, S | U = (1, 0), (½, ½), (0, 1): I = ln 2 − (1/3) ln 2
    assert mutual_information_nats([[2, 0], [1, 1], [0, 2]]) == pytest.approx(2 / 3 * LN2)


def test_lemma22_lower_bound_hand_values():
    perfect = [[5, 0], [0, 5]]                       # U = S: I(U;S) = ln 2
    assert lemma22_lower_bound(perfect, 0.0) == pytest.approx(LN2)
    assert lemma22_lower_bound(perfect, 0.3) == pytest.approx(LN2 - 0.3)
    assert lemma22_lower_bound(perfect, 1.0) == pytest.approx(0.0)   # floored at 0
    three = [[2, 0], [1, 1], [0, 2]]
    assert lemma22_lower_bound(three, 0.1) == pytest.approx(2 / 3 * LN2 - 0.1)
    # I(U;S|X) > 0 lowers it further
    assert lemma22_lower_bound(perfect, 0.1, i_us_given_x=0.2) == pytest.approx(LN2 - 0.3)
    assert lemma22_lower_bound([[1, 1], [1, 1]], 0.0) == pytest.approx(0.0)


def test_lemma23_achievable_hand_values():
    three = [[2, 0], [1, 1], [0, 2]]                 # H(U) = ln 3, H(S) = ln 2
    assert lemma23_achievable(three, 0.0) == pytest.approx(LN3)
    assert lemma23_achievable(three, LN2 / 4) == pytest.approx(0.75 * LN3)
    assert lemma23_achievable(three, LN2) == pytest.approx(0.0)
    assert lemma23_achievable(three, 5.0) == pytest.approx(0.0)
    k = np.array([0.0, LN2 / 2])
    np.testing.assert_allclose(lemma23_achievable([[1, 1], [1, 1]], k), [LN2, LN2 / 2])


def test_achievable_never_below_lower_bound():
    rng = np.random.default_rng(0)
    for _ in range(20):
        table = rng.integers(0, 20, size=(rng.integers(2, 6), 2)) + 1
        b = tradeoff_bounds(table, points=21)
        assert np.all(np.array(b["achievable"]) >= np.array(b["lower"]) - 1e-12)
        assert b["k"][-1] == pytest.approx(b["H_S"])


def test_contingency_table_and_errors():
    t = contingency_table(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 0]))
    np.testing.assert_array_equal(t, [[1, 1], [0, 1], [2, 0]])
    with pytest.raises(InputError, match="non-negative"):
        mutual_information_nats([[-1, 2], [1, 1]])
    with pytest.raises(InputError, match="one length"):
        contingency_table(np.array([0, 1]), np.array([0]))
