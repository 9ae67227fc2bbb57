"""Sweeps spread over processes: the shard arithmetic; torchrun (gloo, 2 CPU processes) and a
SLURM array + --merge give the one-process store bit for bit; two sweeps started at once on
one store coordinate through the cell locks; truncated, empty and mismatched parts are
quarantined and recomputed."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _sweep_helpers import small_adapter

import studylib.sweep.run as sweep_run
from studylib.models.adapter import LlavaAdapter
from studylib.sweep import StoreIntegrityWarning, run_sweep
from studylib.sweep.shard import shard_slices, slurm_shard
from studylib.sweep.store import QUARANTINE

HELPERS = Path(__file__).resolve().parent
REPO = HELPERS.parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(HELPERS)])}
# 3 cells x 5 batches of 6 over 2 shards: rank 0 = cell 0 whole + batches 0-1 of cell 1,
# rank 1 = batches 2-4 of cell 1 + cell 2 whole (both kinds of shard)
CLI = ["--dataset", "toy-pope", "--dataset-options", '{"n_images": 6}', "--limit", "2", "--pruners",
       "scope(alpha=0)", "--budgets", "16", "8", "--batch-size", "6", "--model", "toy", "--dtype", "float32",
       "--threads", "1"]
CONFIGS = ["full@144", "scope(alpha=0)@16", "scope(alpha=0)@8"]
SWEEP = dict(dataset_options={"n_images": 6}, limit=2, batch_size=6, progress=False, dtype="float32")


def test_shard_slices_cover_every_batch_once():
    for cells in range(1, 5):
        for n_batches in range(1, 6):
            for world in range(1, 7):
                units = []
                for rank in range(world):
                    slices = shard_slices(cells, n_batches, rank, world)
                    units += [(s.cell, b) for s in slices for b in range(s.start, s.stop)]
                    assert all(s.whole == (s.start == 0 and s.stop == n_batches) for s in slices)
                assert units == [(c, b) for c in range(cells) for b in range(n_batches)]
    assert [s.whole for s in shard_slices(3, 5, 0, 2)] == [True, False]
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}) == (3, 4)
    assert slurm_shard({}) is None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-process sweep (toy model, one CPU thread as the sharded processes use)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = tmp_path_factory.mktemp("one-process")
        return run_sweep("toy", "toy-pope", CONFIGS, results_dir=results, **SWEEP), results
    finally:
        torch.set_num_threads(threads)


def _sweep_script(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "sweep.py"), *args], env={**ENV, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _finish(process, timeout=300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def _same_store(results: Path, reference) -> None:
    rows, one_process = reference
    assert not list(results.glob("*.parts")) and not list(results.glob("*.lock"))
    for parquet in one_process.glob("*.parquet"):  # the same files, byte for byte
        assert hashlib.sha256((results / parquet.name).read_bytes()).digest() == \
            hashlib.sha256(parquet.read_bytes()).digest()
    original = LlavaAdapter.load
    LlavaAdapter.load = None  # the book build reads the store: no model is loaded, nothing recomputed
    try:
        again = run_sweep("toy", "toy-pope", CONFIGS, results_dir=results, **SWEEP)
    finally:
        LlavaAdapter.load = original
    assert {c["status"] for c in again.attrs["cells"]} == {"cached"}
    pd.testing.assert_frame_equal(again, rows, check_exact=True)


def test_torchrun_sharded_sweep_equals_one_process(reference, tmp_path):
    results = tmp_path / "sharded"
    torchrun = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                 "--master-port", "29517", str(REPO / "scripts" / "sweep.py"), *CLI,
                                 "--results", str(results)], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    _finish(torchrun)
    _same_store(results, reference)


def test_slurm_array_then_merge_equals_one_process(reference, tmp_path):
    results = tmp_path / "array"
    tasks = [_sweep_script(*CLI, "--results", str(results),
                           env={"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": "2"}) for i in range(2)]
    for task in tasks:
        assert "run --merge" in _finish(task)
    assert len(list(results.glob("*.parquet"))) == 2  # the two whole cells; the sliced one awaits the merge
    assert "merged 3 of 3 cells" in _finish(_sweep_script(*CLI, "--results", str(results), "--merge"))
    _same_store(results, reference)


CONCURRENT = textwrap.dedent("""
    import pickle, sys
    from _sweep_helpers import slow_small_adapter
    from studylib.sweep import run_sweep

    adapter = slow_small_adapter(0.1)  # slow enough that the two processes overlap
    rows = run_sweep(adapter, "toy-pope", {configs!r}, results_dir=sys.argv[1], dataset_options={{"n_images": 6}},
                     limit=2, batch_size=6, progress=False, model_name="small-random")
    pickle.dump(rows, open(sys.argv[2], "wb"))
""")


def test_the_same_sweep_started_twice_at_once(tmp_path):
    configs = ["scope(alpha=0)@16", "random(seed=1)@8"]
    script = tmp_path / "sweep.py"
    script.write_text(CONCURRENT.format(configs=configs))
    results = tmp_path / "shared"
    runs = [subprocess.Popen([sys.executable, str(script), str(results), str(tmp_path / f"rows{i}.pkl")], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [_finish(run) for run in runs]
    reference = run_sweep(small_adapter(), "toy-pope", configs, results_dir=tmp_path / "alone",
                          **{**SWEEP, "dtype": None}, model_name="small-random")
    for i in range(2):
        rows = pickle.loads((tmp_path / f"rows{i}.pkl").read_bytes())
        pd.testing.assert_frame_equal(rows, reference, check_exact=True)
    assert "locked by another process" in "".join(outputs)
    for parquet in results.glob("*.parquet"):
        assert not pd.read_parquet(parquet)["qid"].duplicated().any()
    assert len(list(results.glob("*.parquet"))) == 2 and not list(results.glob("*.parts"))


def test_truncated_empty_and_mismatched_parts_are_recomputed(tmp_path, monkeypatch):
    adapter = small_adapter()
    sweep = {**SWEEP, "dtype": None, "model_name": "small-random"}
    reference = run_sweep(adapter, "toy-pope", CONFIGS[1:2], results_dir=tmp_path / "clean", **sweep)
    calls = {"n": 0}
    original = sweep_run.score_batch

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep_run, "score_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(adapter, "toy-pope", CONFIGS[1:2], results_dir=tmp_path / "work", **sweep)
    monkeypatch.setattr(sweep_run, "score_batch", original)
    parts = sorted((tmp_path / "work").glob("*.parts/part-*.parquet"))
    assert len(parts) == 4
    parts[0].write_bytes(b"")  # zero bytes
    parts[1].write_bytes(parts[1].read_bytes()[: parts[1].stat().st_size // 2])  # truncated
    edited = pq.read_table(parts[2])  # readable, but no longer what its checksum says
    confidence = edited.column("confidence").to_numpy().copy()
    confidence[0] = 0.5
    edited = edited.set_column(edited.schema.get_field_index("confidence"), "confidence", pa.array(confidence))
    pq.write_table(edited.replace_schema_metadata(pq.read_schema(parts[2]).metadata), parts[2])
    with pytest.warns(StoreIntegrityWarning) as caught:
        resumed = run_sweep(adapter, "toy-pope", CONFIGS[1:2], results_dir=tmp_path / "work", **sweep)
    named = "".join(str(w.message) for w in caught)
    assert all(p.name in named for p in parts[:3]) and parts[3].name not in named
    assert resumed.attrs["cells"][0]["status"] == "resumed"
    assert len(list((tmp_path / "work" / QUARANTINE).iterdir())) == 3
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)
