"""Benchmark: milliseconds per image of every pruner at LLaVA-1.5's shape, on CPU.

    PYTHONPATH=src .venv/bin/python benchmarks/pruners.py [--repeats 2] [--only scope,divprune]

Synthetic ``VisualTokens``: N = 576 (24 × 24), D_v = 1024, D_l = 4096, D_h = 64, clustered random
features (16 clusters), a projected copy, a softmax-like CLS attention (CLS column dropped, not
renormalised); a query with a text embedding and a text attention.  Budgets K ∈ {32, 64, 128, 192},
batch 1 and 8, ``torch.set_num_threads(2)``, float32.  Each cell: one warm-up call, then the best
of ``--repeats`` timed calls, divided by the batch size.  In-LLM rules (FastV, DART) are timed on
their own inputs (layer attention row; keys and normed hidden states of a 651-token prompt).
This is a script, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from studylib.tokens import QueryContext, VisualTokens  # noqa: E402
from studylib.pruners import fastv_rule, get_pruner, list_pruners  # noqa: E402

N, ROWS, D_V, D_L, D_H = 576, 24, 1024, 4096, 64
BUDGETS = (32, 64, 128, 192)
BATCHES = (1, 8)
PROMPT_BEFORE, PROMPT_AFTER = 35, 40


def synthetic_tokens(b: int, seed: int = 0) -> tuple[VisualTokens, QueryContext]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(b, 16, D_V, generator=g) * 2.0
    assign = torch.randint(16, (b, N), generator=g)
    feats = centers[torch.arange(b)[:, None], assign] + torch.randn(b, N, D_V, generator=g)
    proj = torch.randn(D_V, D_L, generator=g) / D_V**0.5
    emb = torch.nn.functional.gelu(feats @ proj)
    keys = feats @ (torch.randn(D_V, D_H, generator=g) / D_V**0.5)
    att = torch.softmax(2.0 * torch.randn(b, N + 1, generator=g), dim=1)[:, 1:]
    tokens = VisualTokens(feats, emb, att, torch.randn(b, D_V, generator=g), keys, (ROWS, ROWS),
                          tuple(f"bench{i}" for i in range(b)))
    query = QueryContext(torch.randn(b, D_L, generator=g), torch.softmax(torch.randn(b, N, generator=g), dim=1))
    return tokens, query


def best_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000.0


def prefill_ms(model: str, b: int, repeats: int) -> tuple[float, float, int]:
    """ms per image of (vision encoding, one first-token prefill forward with all visual
    tokens) on ``model`` ("toy": 144 tokens; "tiny-random": LLaVA-1.5's 576-token geometry)."""
    from studylib.toy.world import eval_world
    from studylib.models import prompts
    from studylib.models.adapter import LlavaAdapter

    adapter = LlavaAdapter.load(model)
    world = eval_world(b)
    questions = world.pope("random").questions[:b] or world.scienceqa().questions[:b]
    keys = [q.image_key for q in questions]
    images = [world.load_image(k) for k in keys]
    texts = [prompts.build_prompt(q) for q in questions]

    def encode():
        adapter.clear_cache()
        return adapter.encode(images, keys)

    tokens = encode()
    score = lambda: adapter.score(texts, tokens, None, prompts.YES_NO_VERBALIZER)  # noqa: E731
    return best_ms(encode, repeats) / len(keys), best_ms(score, repeats) / len(keys), adapter.num_patches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated pruner specs (default: every pruner)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    specs = [s for s in args.only.split(",") if s] or [
        str(get_pruner(n)) for n in list_pruners("vision") if n != "full"
    ] + ["scope(alpha=0,p=2)", "fastv(layer=2)", "dart(layer=2)"]
    data = {b: synthetic_tokens(b) for b in BATCHES}
    g = torch.Generator().manual_seed(1)
    length = PROMPT_BEFORE + N + PROMPT_AFTER
    llm_inputs = {
        b: (torch.softmax(torch.randn(b, 32, N, generator=g), dim=-1).mean(dim=1),
            torch.randn(b, length, D_L, generator=g), torch.randn(b, length, D_L, generator=g))
        for b in BATCHES
    }

    cols = [(k, b) for b in BATCHES for k in BUDGETS]
    width = max(len(s) for s in specs) + 2
    print(f"ms per image, CPU, torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"N={N}, D_v={D_V}, D_l={D_L}, best of {args.repeats}")
    print("pruner".ljust(width) + "".join(f"K={k},B={b}".rjust(12) for k, b in cols))
    for spec in specs:
        pruner = get_pruner(spec)
        cells = []
        for k, b in cols:
            if pruner.name == "fastv":
                att = llm_inputs[b][0]
                fn = lambda: fastv_rule(att, k)  # noqa: E731
            elif pruner.name == "dart":
                _, keys, hidden = llm_inputs[b]
                fn = lambda: pruner.rule(keys, hidden, PROMPT_BEFORE, N, k)  # noqa: E731
            else:
                tokens, query = data[b]
                fn = lambda: pruner(tokens, k, query)  # noqa: E731
            cells.append(best_ms(fn, args.repeats) / b)
        print(spec.ljust(width) + "".join(f"{c:12.1f}" for c in cells), flush=True)
    for model in ("toy", "tiny-random"):
        for b in BATCHES:
            encode, score, n = prefill_ms(model, b, args.repeats)
            print(f"{model} model, all {n} tokens, B={b}: vision encode {encode:.1f} ms + "
                  f"prefill forward {score:.1f} ms per image")


if __name__ == "__main__":
    main()
