"""Benchmark: milliseconds per image of every pruner at LLaVA-1.5's shape, on CPU, before and after.

    PYTHONPATH=src .venv/bin/python benchmarks/pruners.py [--repeats 2] [--only scope,divprune] [--no-models]

Synthetic ``VisualTokens``: N = 576 (24 × 24), D_v = 1024, D_l = 4096, D_h = 64, clustered random
features (16 clusters), a projected copy, a softmax-like CLS attention (CLS column dropped, not
renormalised); a query with a text embedding and a text attention.  Budgets K ∈ {32, 64, 128, 192},
batch 1 and 8, ``torch.set_num_threads(2)``, float32.  Each cell: one warm-up call, then the best
of ``--repeats`` timed calls, divided by the batch size; wall clock, or with ``--clock cpu``
the process CPU time (robust to other processes' load; summed over threads, so meant for
``--threads 1``).  In-LLM rules (FastV, DART) are timed on
their own inputs (layer attention row; keys and normed hidden states of a 651-token prompt).

One run prints three tables of single calls: **before** = the naive reference selection loops
(``studylib.pruners._reference``: the official / published loops, swapped in with
``naive_kernels``), **after** = the pruners as registered (fast kernels), and the ratio after / before.
Pruners without a separate naive loop have one implementation; their cells are timed once,
repeated in both tables and marked ``=`` in the ratio table.  Naive and fast calls of one cell
are timed back to back (same machine load).  A single call runs on a new ``VisualTokens`` object,
so it pays its own similarity GEMMs and erank.  At B = 1 the fast greedy loops step in numpy
(``studylib.pruners._similarity.host_loop``), at B = 8 in batched torch operations.

Then the **sweep** tables, the reuse case: the per-object memo (``VisualTokens.derived``) keeps the
cosine matrices, FPS's distances and the erank of an object, so the configs of a sweep run on one
batch share them.  Per config: one call on an object every config has already used (memo warm:
the selection loop and the config-dependent work only); the same with the memo's byte budget used
up (what a LLaVA-scale sweep reaches once its images' ``N × N`` matrices fill 2 GiB: only the small
values such as the erank stay); and the whole sweep of every vision-stage config on one new object,
ms per image per config, next to the mean single call.  Then the shared
costs that bound every single call from below (similarity GEMMs, the float64 erank) and, unless
``--no-models``, the toy / tiny-random model's encode and prefill for scale.
This is a script, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from studylib.tokens import QueryContext, VisualTokens, set_memo_budget  # noqa: E402
from studylib.pruners import _reference, agile, cdpruner, divprune  # noqa: E402
from studylib.pruners import erank, fastv_rule, get_pruner, list_pruners  # noqa: E402
from studylib.pruners._reference import NAIVE_PRUNERS, naive_kernels  # noqa: E402
from studylib.pruners._similarity import cosine_matrix  # noqa: E402

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


#: the clock of every timing: wall clock (default) or, with ``--clock cpu``, this process's CPU time
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def best_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
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


def cell_fn(spec: str, k: int, b: int, data: dict, llm_inputs: dict):
    """(callable of one table cell, whether a naive reference exists for it)."""
    pruner = get_pruner(spec)
    if pruner.name == "fastv":
        att = llm_inputs[b][0]
        return (lambda: fastv_rule(att, k)), False
    if pruner.name == "dart":
        _, keys, hidden = llm_inputs[b]
        return (lambda: pruner.rule(keys, hidden, PROMPT_BEFORE, N, k)), False
    tokens, query = data[b]
    # a new object per call: its memo (VisualTokens.derived) starts empty, so a single call pays its GEMMs
    return (lambda: pruner(dataclasses.replace(tokens), k, query)), pruner.name in NAIVE_PRUNERS


def sweep_tables(specs: list[str], cols: list[tuple[int, int]], data: dict, single: dict, repeats: int, width: int):
    """The reuse case: every vision-stage config of ``specs`` on one ``VisualTokens`` object.

    Per config: its call on an object whose memo every config has already filled (the marginal
    cost of one more config of a sweep).  Then the whole sweep on a new object (first configs pay
    the shared GEMMs / erank once), per config, next to the mean of the single calls."""
    vision = [s for s in specs if get_pruner(s).stage == "vision"]
    cells, total = {}, {}
    for k, b in cols:
        tokens, query = data[b]
        pruners = [get_pruner(s) for s in vision]
        warm = dataclasses.replace(tokens)
        for pruner in pruners:
            pruner(warm, k, query)
        for spec, pruner in zip(vision, pruners):
            cells[spec, (k, b)] = f"{best_ms(lambda: pruner(warm, k, query), repeats) / b:12.1f}"

        def whole_sweep():
            shared = dataclasses.replace(tokens)
            for pruner in pruners:
                pruner(shared, k, query)

        total[k, b] = best_ms(whole_sweep, repeats) / b / len(pruners)
    print_table("sweep: one config on a VisualTokens object every config has already used (memo warm), "
                "ms per image", vision, cols, cells, width)
    exhausted = {}
    old_budget = set_memo_budget(0)  # the N x N matrices no longer fit (a LLaVA-scale sweep of ~500 images)
    try:
        for k, b in cols:
            tokens, query = data[b]
            warm = dataclasses.replace(tokens)
            for spec in vision:
                get_pruner(spec)(warm, k, query)
                exhausted[spec, (k, b)] = f"{best_ms(lambda: get_pruner(spec)(warm, k, query), repeats) / b:12.1f}"
    finally:
        set_memo_budget(old_budget)
    print_table("sweep with the memo budget used up (only values of at most MEMO_SMALL_BYTES kept, e.g. the erank): "
                "one config on an object every config has already used, ms per image", vision, cols, exhausted, width)
    width = max(width, 30)
    print(f"\nsweep of all {len(vision)} vision-stage configs on one new object, ms per image per config")
    print("".ljust(width) + "".join(f"K={k},B={b}".rjust(12) for k, b in cols))
    print("single calls (mean)".ljust(width) + "".join(
        f"{sum(float(single[s, col]) for s in vision) / len(vision):12.1f}" for col in cols))
    print("one sweep (total / configs)".ljust(width) + "".join(f"{total[col]:12.1f}" for col in cols))
    return cells


def print_table(title: str, specs: list[str], cols: list[tuple[int, int]], cells: dict, width: int) -> None:
    print(f"\n{title}")
    print("pruner".ljust(width) + "".join(f"K={k},B={b}".rjust(12) for k, b in cols))
    for spec in specs:
        print(spec.ljust(width) + "".join(cells[spec, col].rjust(12) for col in cols))


def kernel_inputs(tokens: VisualTokens, query: QueryContext) -> dict[str, torch.Tensor]:
    """What the selection loops receive inside the default pruners (computed once, outside the timing)."""
    sim_v, sim_l = cosine_matrix(tokens.features), cosine_matrix(tokens.embeddings)
    rel = cdpruner.relevance(tokens.embeddings, query.text_embedding)
    return {"dist": 1.0 - sim_l, "sim": sim_v, "attention": tokens.cls_attention, "scale": torch.ones(len(rel)),
            "kernel": rel.unsqueeze(2) * sim_l * rel.unsqueeze(1), "rel": rel}


#: label -> (fast kernel, naive reference, arguments from the kernel inputs and k)
KERNELS = {
    "max_min_order (divprune)": (divprune.max_min_order, _reference.max_min_order, lambda x, k: (x["dist"], k)),
    "threshold_order (agile, rank)": (agile.threshold_order, _reference.threshold_order,
                                      lambda x, k: (x["sim"], x["attention"], k, x["scale"], 0.25, "rank")),
    "threshold_order (agile, pick)": (agile.threshold_order, _reference.threshold_order,
                                      lambda x, k: (x["sim"], x["attention"], k, x["scale"], 0.25, "pick")),
    "dpp_greedy (cdpruner)": (cdpruner.dpp_greedy, _reference.dpp_greedy, lambda x, k: (x["kernel"], k, x["rel"])),
}


def print_kernel_table(data: dict, cols: list[tuple[int, int]], repeats: int) -> None:
    """The selection loops alone on precomputed inputs: naive reference vs fast kernel."""
    inputs = {b: kernel_inputs(*data[b]) for b in BATCHES}
    width = max(len(label) for label in KERNELS) + 2
    print("\nselection loops alone (similarity / kernel precomputed), ms per image")
    print("kernel".ljust(width) + "".join(f"K={k},B={b}".rjust(12) for k, b in cols))
    for label, (fast, naive, args) in KERNELS.items():
        t_naive, t_fast = [], []
        for k, b in cols:  # back to back, as in the pruner tables
            t_naive.append(best_ms(lambda: naive(*args(inputs[b], k)), repeats) / b)
            t_fast.append(best_ms(lambda: fast(*args(inputs[b], k)), repeats) / b)
        print(label)
        print("  naive".ljust(width) + "".join(f"{t:12.2f}" for t in t_naive))
        print("  fast".ljust(width) + "".join(f"{t:12.2f}" for t in t_fast))
        print("  fast / naive".ljust(width) + "".join(f"{f / n:12.2f}" for f, n in zip(t_fast, t_naive)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated pruner specs (default: every pruner)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-models", action="store_true", help="skip the toy / tiny-random model timings")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="cpu = process CPU time (all threads summed; use with --threads 1 on a loaded machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCK[args.clock]

    specs = [s for s in args.only.split(",") if s] or [
        str(get_pruner(n)) for n in list_pruners("vision") if n != "full"
    ] + ["divprune(space=vision)", "fps(space=vision)", "scope(alpha=0,p=2)", "fastv(layer=2)", "dart(layer=2)"]
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
          f"N={N}, D_v={D_V}, D_l={D_L}, best of {args.repeats}, {args.clock} clock", flush=True)
    before, after, ratio = {}, {}, {}
    for spec in specs:
        for k, b in cols:
            fn, has_naive = cell_fn(spec, k, b, data, llm_inputs)
            t_after = best_ms(fn, args.repeats) / b
            t_before = t_after
            if has_naive:
                with naive_kernels():  # the same call, the naive loops swapped in
                    t_before = best_ms(fn, args.repeats) / b
            after[spec, (k, b)] = f"{t_after:12.1f}"
            before[spec, (k, b)] = f"{t_before:12.1f}"
            ratio[spec, (k, b)] = f"{t_after / t_before:12.2f}" if has_naive else "=".rjust(12)
        print(f"  timed {spec}", file=sys.stderr, flush=True)
    print_table("before: naive reference selection loops (studylib.pruners._reference)", specs, cols, before, width)
    print_table("after: fast kernels (the registered pruners)", specs, cols, after, width)
    print_table("ratio after / before  (= : one implementation)", specs, cols, ratio, width)
    sweep = sweep_tables(specs, cols, data, after, args.repeats, width)
    if (64, 1) in cols:
        print("\nK=64, B=1 (ms per image):  before   after   after/before   in a sweep (memo warm)")
        for spec in specs:
            col = (64, 1)
            print(f"  {spec.ljust(width)}{before[spec, col].strip():>8}{after[spec, col].strip():>8}"
                  f"{ratio[spec, col].strip():>9}{sweep.get((spec, col), '-').strip():>12}")

    print("\nshared costs (ms per image; every pruner using them pays at least this):")
    for b in BATCHES:
        tokens, _ = data[b]
        floors = [
            (f"cosine matrix, D_v={D_V} (scope, vispruner, idselect, agile)", lambda: cosine_matrix(tokens.features)),
            (f"cosine matrix, D_l={D_L} (divprune, cdpruner, agile_mix)", lambda: cosine_matrix(tokens.embeddings)),
            (f"erank, float64 Gram + eigvalsh, D_v={D_V} (agile, agile_mix, agile_count)",
             lambda: erank(tokens.features)),
        ]
        for label, fn in floors:
            print(f"  B={b}: {label}: {best_ms(fn, args.repeats) / b:.1f}")
    print_kernel_table(data, cols, args.repeats)
    if args.no_models:
        return
    for model in ("toy", "tiny-random"):
        for b in BATCHES:
            encode, score, n = prefill_ms(model, b, args.repeats)
            print(f"{model} model, all {n} tokens, B={b}: vision encode {encode:.1f} ms + "
                  f"prefill forward {score:.1f} ms per image")


if __name__ == "__main__":
    main()
