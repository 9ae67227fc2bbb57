"""``scope_adaptive``: SCOPE with an image-adaptive saliency weight α (formula in its module docstring)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _pruner_helpers import make_tokens
from studylib.pruners import PrunerConfigError, get_pruner, image_alpha, parse_spec, pruner_info
from studylib.pruners.agile import erank
from studylib.pruners.scope_adaptive import adaptive_alpha


@pytest.mark.parametrize("a", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("signal", ["erank", "entropy"])
def test_equals_scope_when_alpha_is_pinned(a, signal):
    tokens, _ = make_tokens(7, b=4)
    adaptive = get_pruner("scope_adaptive", alpha_min=a, alpha_max=a, signal=signal)
    fixed = get_pruner("scope", alpha=a)
    for k in (1, 5, 12, 36):
        assert torch.equal(adaptive(tokens, k).indices, fixed(tokens, k).indices)


def test_equals_scope_with_gap_power():
    tokens, _ = make_tokens(8, b=3)
    adaptive = get_pruner("scope_adaptive(alpha_min=0.5,alpha_max=0.5,p=2)")
    assert torch.equal(adaptive(tokens, 9).indices, get_pruner("scope(alpha=0.5,p=2)")(tokens, 9).indices)


def _tokens_of_rising_erank(b: int = 8):
    """A batch whose images' erank spans a range: image i's features are the clustered features with
    their spread scaled, so its erank varies."""
    tokens, _ = make_tokens(11, b=b, clusters=3)
    scale = torch.linspace(0.05, 3.0, b).view(b, 1, 1)
    centre = tokens.features.mean(dim=1, keepdim=True)
    features = centre + scale * (tokens.features - centre)
    return dataclasses.replace(tokens, features=features)


@pytest.mark.parametrize("inverse", [False, True])
def test_alpha_is_monotone_in_erank(inverse):
    tokens = _tokens_of_rising_erank()
    e = erank(tokens.features)
    reference = float(e.mean())
    alpha = image_alpha(tokens, erank_avg=reference, slope=2.0, inverse=inverse)
    order = torch.argsort(e)
    steps = alpha[order].diff()
    if inverse:
        assert (steps >= 0).all(), "inverse: alpha non-decreasing in erank"
    else:
        assert (steps <= 0).all(), "default: alpha non-increasing in erank (simple images: more saliency)"
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert alpha.max() > alpha.min(), "the batch spans several alphas"
    # the reference image gets alpha_ref exactly
    assert float(adaptive_alpha(torch.tensor([reference], dtype=torch.float64), reference)[0]) == 0.5


def test_simple_images_get_more_saliency():
    s = torch.tensor([10.0, 20.0, 30.0])
    assert adaptive_alpha(s, 20.0).tolist() == [1.0, 0.5, 0.0]
    assert adaptive_alpha(s, 20.0, inverse=True).tolist() == [0.0, 0.5, 1.0]
    assert adaptive_alpha(s, 20.0, slope=0.5, alpha_min=0.3).tolist() == [0.75, 0.5, 0.3]
    with pytest.raises(PrunerConfigError, match="alpha_min"):
        adaptive_alpha(s, 20.0, alpha_min=1.0, alpha_max=0.5)


def test_batched_equals_one_image_at_a_time():
    tokens = _tokens_of_rising_erank(6)
    reference = float(erank(tokens.features).mean())
    pruner = get_pruner("scope_adaptive", erank_avg=reference, slope=3.0)
    batched = pruner(tokens, 10).indices
    alphas = image_alpha(tokens, **pruner.params)
    assert len(set(alphas.tolist())) > 2, "the batch mixes several alphas"
    for i in range(tokens.batch_size):
        assert torch.equal(batched[i], pruner(tokens[i], 10).indices[0])
        assert torch.equal(batched[i], get_pruner("scope", alpha=float(alphas[i]))(tokens[i], 10).indices[0])


def test_spec_round_trip_and_registry():
    assert str(get_pruner("scope_adaptive")) == "scope_adaptive"
    pruner = get_pruner("scope_adaptive", signal="entropy", inverse=True, alpha_ref=0.25, entropy_avg=3.5, p=2)
    text = str(pruner)
    assert text == "scope_adaptive(signal=entropy,a=0.25,inverse=true,entropy_avg=3.5,p=2)"
    assert parse_spec(text) == pruner and parse_spec(text).params == pruner.params
    info = pruner_info("scope_adaptive")
    assert info.family == "adaptive" and info.stage == "vision" and pruner.family == "adaptive"
    with pytest.raises(PrunerConfigError, match="signal"):
        get_pruner("scope_adaptive(signal=variance)")
