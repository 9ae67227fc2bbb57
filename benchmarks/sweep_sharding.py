"""Wall time of one sweep on 1 process vs 2 ``torchrun`` processes (toy model, CPU), and the
projected cost of full POPE x 20 configurations on 8 GPUs.

Both runs call ``scripts/sweep.py`` with one intra-op thread per process (so they store the
same bits) into fresh result stores, and are timed end to end (interpreter start, model load,
hashing, scoring, consolidation).  The per-question cost is read from the manifests (compute
seconds of the cells / questions).  Projection: ``8,910 x 20`` question-configs spread evenly
over 8 ranks by the shard arithmetic (units of one batch), each rank paying the measured fixed
start-up once; the GPU per-question cost is ``--gpu-per-question-s`` (default 0.015 s: an
assumption for LLaVA-1.5-7B in bf16 on an A100/H100 class GPU with batch 32 and one prefill of
~650 tokens per question; replace it by ``wall_time_s / n_rows`` of a cell of your own run).
Usage:

    python benchmarks/sweep_sharding.py [--images 20] [--repeat 2] [--budgets 48 16 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POPE_QUESTIONS, CONFIGS, GPUS = 8910, 20, 8


def run(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="toy-pope images (about 18 questions each)")
    parser.add_argument("--budgets", nargs="+", default=["48", "16", "8"])
    parser.add_argument("--batch-size", default="32")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--gpu-per-question-s", type=float, default=0.015)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep-sharding-"))
    sweep = [str(REPO / "scripts" / "sweep.py"), "--dataset", "toy-pope", "--dataset-options",
             json.dumps({"n_images": args.images}), "--pruners", "scope(alpha=0)", "--budgets", *args.budgets,
             "--batch-size", args.batch_size, "--model", "toy", "--dtype", "float32", "--threads", "1"]
    times: dict[str, list[float]] = {"one": [], "two": []}
    for attempt in range(args.repeat):  # alternate the two, fresh stores each time; keep the best of each
        shutil.rmtree(work / "one", ignore_errors=True)
        shutil.rmtree(work / "two", ignore_errors=True)
        times["one"].append(run([sys.executable, *sweep, "--results", str(work / "one")]))
        times["two"].append(run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *sweep,
                                 "--results", str(work / "two")]))
    one, two = min(times["one"]), min(times["two"])
    same = all((work / "two" / p.name).read_bytes() == p.read_bytes() for p in (work / "one").glob("*.parquet"))
    manifests = [json.loads(p.read_text()) for p in (work / "one").glob("*.json")]
    rows = sum(m["n_rows"] for m in manifests)
    compute = sum(m["wall_time_s"] for m in manifests)
    per_question = compute / rows
    fixed = one - compute
    print(f"toy-pope, {len(manifests)} cells x {rows // len(manifests)} questions, batch {args.batch_size}, "
          f"1 thread per process, on {os.cpu_count()} CPU cores")
    print(f"  wall times (s): 1 process {times['one']}, 2 processes {times['two']} (load average now "
          f"{os.getloadavg()[0]:.1f}: other jobs share these cores)")
    print(f"  best: 1 process: {one:.1f} s; 2 torchrun processes: {two:.1f} s; ratio 2/1 = {two / one:.2f} "
          f"(speed-up {one / two:.2f}x); stores identical: {same}")
    print(f"  per question-config: {per_question * 1e3:.2f} ms compute; fixed cost per process "
          f"(start, load, hashing, consolidation): {fixed:.1f} s")
    total = POPE_QUESTIONS * CONFIGS
    for label, cost, start in (("toy cost per question (CPU), measured start-up", per_question, fixed),
                               (f"assumed LLaVA-1.5-7B cost {args.gpu_per_question_s * 1e3:.0f} ms/question (GPU), "
                                f"2 min start-up (7B load; checkpoint digest cached)", args.gpu_per_question_s, 120.0)):
        serial = total * cost
        sharded = serial / GPUS + start
        print(f"\nfull POPE {POPE_QUESTIONS:,} questions x {CONFIGS} configs = {total:,} question-configs, {label}:")
        print(f"  1 device: {serial / 3600:.2f} h; {GPUS} devices: {sharded / 3600:.2f} h "
              f"(even split by batches, + {start:.0f} s start-up per rank)")


if __name__ == "__main__":
    main()
