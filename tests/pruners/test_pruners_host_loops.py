"""Single-image CPU greedy loops (divprune, fps, agile, idselect, cdpruner) step in numpy
(``_similarity.host_loop``); batches and other
devices keep the torch loops.  Both must pick the same tokens, for every registered configuration,
including ties (duplicate tokens) and AgilePruner's fallback when every candidate is removed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import studylib.pruners._similarity as similarity
from studylib.pruners import get_pruner
from studylib.pruners._reference import run_naive

from _pruner_helpers import VISION_SPECS, make_tokens

SPECS = [s for s in VISION_SPECS if not s.startswith("full")] + [
    "agile(order=pick,tau_max=2)", "agile_count(order=pick)", "fps(start=isolated,space=vision)",
    "idselect(gamma=0.3)", "idselect(gamma=7.7,update=max,space=llm)",  # γ not exact in float32
    # every candidate removed before K picks: the fallback after the scan
    "agile(erank_avg=0.1,tau_max=2)", "agile(erank_avg=0.1,tau_max=2,order=pick)",
]


def with_duplicates(tokens):
    """Tokens 1..4 copies of token 0 (exact ties in every similarity)."""
    def dup(x):
        x = x.clone()
        x[:, 1:5] = x[:, :1]
        return x
    return dataclasses.replace(tokens, features=dup(tokens.features), embeddings=dup(tokens.embeddings))


def selections(tokens, query, spec, k, host: bool, monkeypatch):
    monkeypatch.setattr(similarity, "HOST_LOOPS", host)
    return get_pruner(spec)(dataclasses.replace(tokens), k, query)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_and_torch_loops_pick_the_same(spec, seed, monkeypatch):
    tokens, query = make_tokens(seed, b=1, dtype=torch.float64 if seed else torch.float32)
    for variant in (tokens, with_duplicates(tokens)):
        for k in (1, 5, 17, 36):
            host = selections(variant, query, spec, k, True, monkeypatch)
            loop = selections(variant, query, spec, k, False, monkeypatch)
            assert torch.equal(host.indices, loop.indices), (spec, k)


@pytest.mark.parametrize("spec", ["divprune", "fps(start=saliency)", "agile", "agile(order=pick)",
                                  "agile(erank_avg=0.1,tau_max=2)", "agile(erank_avg=0.1,tau_max=2,order=pick)",
                                  "agile_mix", "agile_mix(div=fps)", "agile_count"])
def test_numpy_loops_equal_the_naive_reference(spec):
    tokens, query = make_tokens(5, b=1)
    for k in (3, 12, 30):
        assert similarity.host_loop(tokens.features)
        assert torch.equal(get_pruner(spec)(tokens, k, query).indices,
                           run_naive(get_pruner(spec), dataclasses.replace(tokens), k, query).indices)


def test_only_single_cpu_images_take_the_numpy_loop():
    one, _ = make_tokens(0, b=1)
    two, _ = make_tokens(0, b=2)
    assert similarity.host_loop(one.features) and not similarity.host_loop(two.features)


@pytest.mark.parametrize("spec", ["divprune", "fps", "agile", "agile(order=pick)", "agile_mix", "idselect",
                                  "cdpruner", "cdpruner(negate=false)"])
def test_numpy_and_torch_loops_agree_at_llava_size(spec, monkeypatch):
    """N = 576 (24 × 24), K = 64 and 192: the products of the DPP loop take BLAS's blocked path here."""
    tokens, query = make_tokens(11, b=1, rows=24, cols=24, dv=48, dl=64)
    for k in (64, 192):
        host = selections(tokens, query, spec, k, True, monkeypatch)
        loop = selections(tokens, query, spec, k, False, monkeypatch)
        assert torch.equal(host.indices, loop.indices), (spec, k)
