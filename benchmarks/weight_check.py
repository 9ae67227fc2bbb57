"""Cost of the NaN/inf check of loaded weights (:func:`studylib.models.loading.nonfinite_tensors`).

The check runs once per model load: one ``aminmax`` reduction per floating tensor, on the
device the tensor lives on, and one transfer of the per-tensor flags per device.  Printed:
the model's size, the median time of the check over ``--repeats`` runs, the time of the whole
``load_model`` call it is part of, and the check's share of it.  A 7B model in bfloat16 is
13.5 GB: at GPU memory bandwidth (H100: ~3 TB/s, one read of every weight) the check is a few
milliseconds plus one small kernel launch per tensor; ``--model`` takes any local checkpoint
and ``--device cuda`` measures it there.  Usage:

    python benchmarks/weight_check.py [--model toy] [--device cpu] [--dtype float32] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from studylib.models.loading import load_model, nonfinite_tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    model, _ = load_model(args.model, device=args.device, dtype=args.dtype)
    load_seconds = time.perf_counter() - start
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    size = sum(t.numel() * t.element_size() for t in tensors)
    times = []
    for _ in range(args.repeats):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        assert nonfinite_tensors(model) == []
        times.append(time.perf_counter() - start)
    check = statistics.median(times)
    print(f"model {args.model} on {args.device} in {args.dtype}: {len(tensors)} floating tensors, {size / 2**20:.1f} MiB")
    print(f"weight check: median {check * 1e3:.2f} ms over {args.repeats} runs "
          f"(min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f}); {size / check / 1e9:.1f} GB/s")
    print(f"load_model (check included): {load_seconds * 1e3:.0f} ms; the check is {100 * check / load_seconds:.1f}% of it")


if __name__ == "__main__":
    main()
