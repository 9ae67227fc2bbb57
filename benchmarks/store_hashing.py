"""What the result store's content hashing costs: measured on the toy, projected to LLaVA-1.5-7B.

Measures, on this machine: sha256 throughput (MB/s, in memory and from a file), the toy
checkpoint's identity (``data/toy-model``, first run with an empty digest cache, then cached),
the in-memory state digest of the loaded toy model, the images of toy-pope (500 generated
images: decoded pixels, rendered each time; and the same images saved as PNG files, hashed
first and then served from the digest cache), the code digest, the checksum of a cell table,
and a whole ``plan_sweep`` of toy-pope.  Then projects the first-run and cached costs for a
13 GB checkpoint and 9,000 image files of COCO's mean size (160 kB).  Usage:

    python benchmarks/store_hashing.py [--images 500]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from studylib.data import load_dataset
from studylib.models.adapter import LlavaAdapter
from studylib.models.loading import TOY_MODEL_DIR
from studylib.sweep import digests, scoring
from studylib.sweep.identity import image_digests, model_identity
from studylib.sweep.run import plan_sweep

MB = 1e6


def timed(fn, repeat: int = 1):
    """(result, best seconds of ``repeat`` calls)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def fresh_cache(folder: Path, name: str) -> None:
    os.environ[digests.CACHE_ENV] = str(folder / f"{name}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="store-hashing-"))
    lines = []

    block = os.urandom(256 * 2**20)
    _, seconds = timed(lambda: hashlib.sha256(block).digest(), 3)
    memory_rate = len(block) / MB / seconds
    big = work / "big.bin"
    big.write_bytes(block)
    fresh_cache(work, "file")
    _, seconds = timed(lambda: digests.file_digest(big, save=False), 1)
    file_rate = len(block) / MB / seconds
    lines.append(f"sha256 throughput: {memory_rate:,.0f} MB/s in memory, {file_rate:,.0f} MB/s from a "
                 f"(page-cached) file")

    size = sum(f.stat().st_size for f in TOY_MODEL_DIR.iterdir()) / MB
    fresh_cache(work, "toy")
    _, first = timed(lambda: model_identity("toy"))
    digests.CACHE.path = None  # a new process: the cache is read from disk again
    _, cached = timed(lambda: model_identity("toy"), 3)
    adapter = LlavaAdapter.load("toy")
    _, memory = timed(lambda: digests.state_digest(adapter.model), 3)
    lines.append(f"toy checkpoint ({size:.1f} MB): identity {first * 1e3:.1f} ms first, {cached * 1e3:.2f} ms cached; "
                 f"in-memory state digest {memory * 1e3:.1f} ms")
    fresh_cache(work, "adapter")
    _, first = timed(lambda: model_identity(adapter))
    _, again = timed(lambda: model_identity(adapter), 3)
    lines.append(f"toy adapter instance: identity {first * 1e3:.1f} ms first (loads the checkpoint once to compare), "
                 f"{again * 1e3:.1f} ms later (state digest + cached reference)")

    data = load_dataset("toy-pope", n_images=args.images)
    keys = data.image_keys()
    _, generated = timed(lambda: image_digests(data, keys))
    folder = work / "images"
    folder.mkdir()
    for key in keys:
        data.load_image(key).save(folder / f"{key}.png")
    files = [folder / f"{key}.png" for key in keys]
    image_bytes = sum(f.stat().st_size for f in files)
    fresh_cache(work, "images")
    _, files_first = timed(lambda: digests.files_digests(files))
    digests.CACHE.path = None
    _, files_cached = timed(lambda: digests.files_digests(files), 3)
    per_file_first, per_file_cached = files_first / len(files), files_cached / len(files)
    lines.append(f"toy-pope {len(keys)} generated images (render + pixels): {generated * 1e3:.0f} ms; "
                 f"as {len(files)} PNG files ({image_bytes / MB:.1f} MB): {files_first * 1e3:.0f} ms first, "
                 f"{files_cached * 1e3:.0f} ms cached")

    def code_digest_cold() -> str:  # parse every module again (the digest caches parsed sources by text)
        digests._parsed.cache_clear()
        return digests.code_digest(scoring)

    _, code = timed(code_digest_cold, 3)
    rows = pd.DataFrame({"qid": [f"q{i}" for i in range(9000)], "probs": [[0.3, 0.7]] * 9000,
                         "kept": [list(range(64))] * 9000, "confidence": np.random.default_rng(0).random(9000)})
    _, checksum = timed(lambda: digests.table_checksum(pa.Table.from_pandas(rows)), 3)
    lines.append(f"code digest of the scoring path ({len(digests.code_modules(scoring))} modules, parsed): "
                 f"{code * 1e3:.1f} ms; checksum of a 9,000-row "
                 f"cell with 64 kept tokens per row: {checksum * 1e3:.0f} ms")

    fresh_cache(work, "plan")
    options = {"split": "all", "n_images": args.images}
    _, plan_first = timed(lambda: plan_sweep("toy", "toy-pope", ["scope(alpha=0)@16"], dataset_options=options))
    _, plan_again = timed(lambda: plan_sweep("toy", "toy-pope", ["scope(alpha=0)@16"], dataset_options=options), 3)
    lines.append(f"plan_sweep toy-pope ({args.images} images, all hashing included): {plan_first:.2f} s first, "
                 f"{plan_again:.2f} s later")

    checkpoint_gb, n_images, coco_kb = 13.0, 9000, 160
    rate = min(memory_rate, file_rate)
    first_ckpt = checkpoint_gb * 1e3 / rate
    first_images = n_images * coco_kb * 1e3 / MB / rate + n_images * max(per_file_first - (image_bytes / len(files))
                                                                        / MB / rate, 0)
    lines += ["", f"projection at {rate:,.0f} MB/s (sha256 is single-threaded; disk reads faster than that assumed):",
              f"  13 GB checkpoint: {first_ckpt:,.0f} s on the first run on a machine, then "
              f"{cached * 1e3:.1f} ms per run (a stat per file)",
              f"  LLaVA-1.5-7B adapter instance in memory (14 GB bf16 state dict): about {14e3 / rate:,.0f} s per "
              f"run_sweep call plus the device->host copy, and one load of the checkpoint for the reference",
              f"  9,000 image files x {coco_kb} kB: {first_images:.1f} s first, {n_images * per_file_cached:.2f} s cached"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
