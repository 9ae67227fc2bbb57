"""Seconds per full-size toy POPE cell, before and after, measured in the same run.

A cell is one configuration over all 8,970 toy POPE questions (``toy-pope``, ``split: all``,
``n_images: 650``: 556 images, the u_curve page's dataset) computed into a fresh result store by
the sweep runner (scoring, part files, consolidation and verification), the images already
encoded (a sweep encodes each image once for all its cells; the encoding is not timed).  Two
worker processes hold the model and the encoded images, one running the code of ``--before``
(default ``eeba437``, extracted with ``git archive`` into a temporary directory), one this
checkout's ``src/``; the parent asks them for the same cells in turn (before, after; after,
before; ...), ``--repeats`` times, so both see the same machine load.  Per configuration it
prints the median over repeats of

* seconds per cell (wall) and CPU seconds of the worker process,
* seconds inside the language model's ``nn.Linear`` layers (forward hooks; the model's arithmetic),
* questions per second and the decoder-layer token slots per question (hidden-state positions
  entering the decoder layers, summed over the layers),

and the largest difference of the stored probabilities between the two code versions on all
questions (``max |dp|``; the target is 1e-6).  Threads: ``torch.set_num_threads(--threads)``;
numpy's BLAS keeps its default.  Batch sizes: each code version's toy profile setting (64 before,
128 after; ``--batch-size`` / ``--before-batch-size``).  This is a script, not a test: timings depend on the machine
and on its load (the script prints the load average before and after).  Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/pope_cell.py [--repeats 3] [--threads 2]
        [--configs full@144 "scope(alpha=0)@32" fastv@32] [--before eeba437] [--limit IMAGES]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASET, OPTIONS = "toy-pope", {"split": "all", "n_images": 650}
CONFIGS = ["full@144", "scope(alpha=0)@32", "fastv@32"]


# --- worker (runs under either code version) ----------------------------------------------------

class Counters:
    """Seconds inside the language model's linear layers and token slots entering its decoder layers."""

    def __init__(self, model):
        import torch

        self.linear = 0.0
        self.slots = 0
        self._start: dict[int, float] = {}
        language = model.model.language_model
        linears = [m for m in language.modules() if isinstance(m, torch.nn.Linear)] + [model.lm_head]
        for module in linears:
            module.register_forward_pre_hook(self._enter)
            module.register_forward_hook(self._leave)
        for layer in language.layers:
            layer.register_forward_pre_hook(self._count, with_kwargs=True)

    def _enter(self, module, args):
        self._start[id(module)] = time.perf_counter()

    def _leave(self, module, args, output):
        self.linear += time.perf_counter() - self._start.pop(id(module))

    def _count(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        self.slots += hidden.shape[0] * hidden.shape[1]

    def reset(self) -> None:
        self.linear, self.slots = 0.0, 0


def worker(threads: int, batch_size: int, limit: int | None) -> None:
    """Serve cells: read a config per line on stdin, answer one JSON line on stdout."""
    import torch

    torch.set_num_threads(threads)
    from studylib.models.adapter import LlavaAdapter
    from studylib.sweep.run import prepare, whole_cells

    adapter = LlavaAdapter.load("toy")
    counters = Counters(adapter.model)
    work = Path(tempfile.mkdtemp(prefix="pope-cell-"))
    for n, line in enumerate(sys.stdin):
        request = json.loads(line)
        store = work / f"store-{n}"
        plan, runner, _ = prepare(adapter, DATASET, [request["config"]], dataset_options=OPTIONS, results_dir=store,
                                  batch_size=batch_size, limit=limit, progress=False)
        _, encoder = runner.encoder()
        encoder.tokens(list(dict.fromkeys(q.image_key for q in plan.questions)))  # encoded once per sweep: not timed
        counters.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        runner.run(whole_cells(plan, runner.batch_size))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = plan.cells[0].read()
        probs = np.stack([np.asarray(p, dtype=float) for p in rows["probs"]])
        np.save(request["probs"], probs)
        print(json.dumps({"seconds": wall, "cpu": cpu, "linear": counters.linear, "slots": counters.slots,
                          "questions": len(rows)}), flush=True)


# --- parent ---------------------------------------------------------------------------------------

def toy_batch_size() -> int:
    import yaml

    return int(yaml.safe_load((REPO / "profiles" / "toy.yaml").read_text())["defaults"]["batch_size"])


def extract(revision: str, into: Path) -> Path:
    """``src/`` of ``revision`` (``git archive``) under ``into``, beside a link to this checkout's
    ``data/`` (the library finds the toy checkpoint next to its package)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    (into / "data").symlink_to(REPO / "data")
    return into / "src"


class Worker:
    def __init__(self, name: str, src: Path, options: list[str], log: Path):
        self.name, self.log = name, log
        env = {**os.environ, "PYTHONPATH": str(src), "TQDM_DISABLE": "1"}
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", *options], env=env, cwd=REPO,
                                        text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log.open("w"))

    def cell(self, config: str, probs: Path) -> dict:
        self.process.stdin.write(json.dumps({"config": config, "probs": str(probs)}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"the {self.name} worker died on {config}:\n{self.log.read_text()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=toy_batch_size(),
                        help="questions per batch of the 'after' code (default: profiles/toy.yaml's)")
    parser.add_argument("--before-batch-size", type=int, default=64,
                        help="questions per batch of the 'before' code (default: 64, eeba437's toy profile)")
    parser.add_argument("--before", default="eeba437", help="git revision of the 'before' code")
    parser.add_argument("--limit", type=int, default=None, help="only the first LIMIT images (a quick check)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.threads, args.batch_size, args.limit)

    work = Path(tempfile.mkdtemp(prefix="pope-cell-bench-"))
    sources = {"before": extract(args.before, work), "after": REPO / "src"}
    print(f"toy POPE cells of 8,970 questions, {args.threads} threads, batch size {args.before_batch_size} before, "
          f"{args.batch_size} after, {args.repeats} repeats; before = {args.before}, after = this checkout; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    options = ["--threads", str(args.threads)] + (["--limit", str(args.limit)] if args.limit else [])
    sizes = {"before": args.before_batch_size, "after": args.batch_size}
    workers = {name: Worker(name, src, [*options, "--batch-size", str(sizes[name])], work / f"{name}.log")
               for name, src in sources.items()}
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        for repeat in range(args.repeats):
            for i, config in enumerate(args.configs):
                order = ["before", "after"] if (repeat + i) % 2 == 0 else ["after", "before"]
                for name in order:
                    result = workers[name].cell(config, work / f"{name}-{i}-{repeat}.npy")
                    runs.setdefault((config, name), []).append(result)
                    print(f"  repeat {repeat + 1}, {config:<18} {name:<6}: {result['seconds']:7.1f} s", flush=True)
    finally:
        for w in workers.values():
            w.close()

    print(f"\nmedians over {args.repeats} repeats (load average now {os.getloadavg()[0]:.1f}):")
    header = (f"{'configuration':<18} {'code':<6} {'s / cell':>9} {'CPU s':>8} {'linear s':>9} {'linear %':>9} "
              f"{'questions/s':>12} {'slots/question':>15}")
    print(header)
    print("-" * len(header))
    for i, config in enumerate(args.configs):
        for name in ("before", "after"):
            results = runs[(config, name)]
            seconds = statistics.median(r["seconds"] for r in results)
            linear = statistics.median(r["linear"] for r in results)
            n = results[0]["questions"]
            print(f"{config:<18} {name:<6} {seconds:9.1f} {statistics.median(r['cpu'] for r in results):8.1f} "
                  f"{linear:9.1f} {100 * linear / seconds:8.0f}% {n / seconds:12.0f} {results[0]['slots'] / n:15.0f}")
        deltas = [np.abs(np.load(work / f"before-{i}-{r}.npy") - np.load(work / f"after-{i}-{r}.npy")).max()
                  for r in range(args.repeats)]
        print(f"{'':<18} max |dp| after vs before over {n} questions: {max(deltas):.1e}")


if __name__ == "__main__":
    main()
