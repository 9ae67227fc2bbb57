"""Effective rank (Roy & Vetterli) and attention entropy."""

import numpy as np
import pytest

from studylib.metrics import attention_entropy, effective_rank


@pytest.mark.parametrize("k", [1, 3, 16, 64])
def test_erank_of_orthogonal_columns_with_equal_singular_values_is_k(k):
    q, _ = np.linalg.qr(np.random.default_rng(k).normal(size=(128, k)))
    np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-12)
    assert effective_rank(3.7 * q) == pytest.approx(k, rel=1e-12)
    assert effective_rank((3.7 * q).T) == pytest.approx(k, rel=1e-12)


def test_erank_matches_its_definition_and_bounds():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 10)) @ np.diag(np.geomspace(1, 1e-3, 10))
    s = np.linalg.svd(a, compute_uv=False)
    q = s / s.sum()
    assert effective_rank(a) == pytest.approx(np.exp(-np.sum(q * np.log(q))), rel=1e-12)
    assert 1.0 <= effective_rank(a) <= np.linalg.matrix_rank(a)


def test_erank_of_rank_one_is_one_and_scale_invariant():
    v = np.outer(np.arange(1, 6), np.arange(1, 9))
    assert effective_rank(v) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 30))
    assert effective_rank(1e6 * a) == pytest.approx(effective_rank(a), rel=1e-12)


def test_centering_removes_a_shared_offset():
    rng = np.random.default_rng(2)
    tokens = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 20))
    shifted = tokens + 100 * rng.normal(size=20)
    assert effective_rank(shifted, center=True) == pytest.approx(effective_rank(tokens, center=True), rel=1e-9)
    assert effective_rank(shifted) < effective_rank(shifted, center=True)


def test_erank_is_computed_in_float64_and_batched():
    rng = np.random.default_rng(3)
    stack = rng.normal(size=(4, 30, 12)).astype(np.float16)
    batched = effective_rank(stack)
    assert batched.shape == (4,)
    for i in range(4):
        assert batched[i] == pytest.approx(effective_rank(stack[i].astype(np.float64)), rel=1e-12)


def test_erank_rejects_zero_matrix_and_vectors():
    with pytest.raises(ValueError, match="all zeros"):
        effective_rank(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="dimensions"):
        effective_rank(np.ones(4))


def test_attention_entropy_of_uniform_and_one_hot():
    assert attention_entropy(np.ones(576)) == pytest.approx(np.log(576))
    assert attention_entropy(np.ones(576), normalize=True) == pytest.approx(1.0)
    assert attention_entropy(np.eye(8)[3]) == 0.0


def test_attention_entropy_renormalises_over_the_given_tokens():
    cls_row = np.array([0.5, 0.1, 0.2, 0.2])
    patches = cls_row[1:]
    p = patches / patches.sum()
    assert attention_entropy(patches) == pytest.approx(-np.sum(p * np.log(p)))
    assert attention_entropy(patches, normalize=True) == pytest.approx(-np.sum(p * np.log(p)) / np.log(3))


def test_attention_entropy_is_vectorised_over_rows():
    rows = np.random.default_rng(4).random((3, 5, 10))
    batched = attention_entropy(rows)
    assert batched.shape == (3, 5)
    assert batched[1, 2] == pytest.approx(attention_entropy(rows[1, 2]))


def test_entropy_of_head_average_exceeds_mean_head_entropy():
    heads = np.random.default_rng(5).dirichlet(np.ones(16) * 0.3, size=8)
    assert attention_entropy(heads.mean(0)) >= attention_entropy(heads).mean()


def test_attention_entropy_rejects_negative_zero_and_single_token_normalisation():
    with pytest.raises(ValueError, match="negative"):
        attention_entropy([0.5, -0.1])
    with pytest.raises(ValueError, match="sums to 0"):
        attention_entropy([0.0, 0.0])
    with pytest.raises(ValueError, match="N >= 2"):
        attention_entropy([1.0], normalize=True)
    with pytest.raises(ValueError, match="NaN"):
        attention_entropy([np.nan, 1.0])
