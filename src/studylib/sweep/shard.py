"""One sweep spread over many processes: ``torchrun`` ranks or the tasks of a SLURM array.

**Shard arithmetic.**  A sweep of ``C`` cells, each cut into ``nb`` batches of ``batch_size``
questions (the batch grid of :mod:`studylib.sweep.run`), is ``T = C * nb`` units in cell-major
order (cells in config order).  Shard ``r`` of ``W`` takes the contiguous units
``[r*T//W, (r+1)*T//W)``: with many cells a shard holds whole cells (plus at most a partial
one at each end), with few cells (``C < W``) every cell is cut into batch-aligned slices, one
per shard.  The split depends only on ``(C, nb, W, r)``, never on what is stored, so every
process derives the same plan on its own, and a rerun with the same shape resumes each slice.

**Bitwise equality with one process.**  A slice is a run of whole batches of the global grid,
and every process encodes images through an :class:`~studylib.sweep.scoring.Encoder` built on
the cell's full image order, i.e. in the same fixed groups of 16.  Every batch is therefore
scored with the same composition and the same visual tokens as in a one-process run, and the
consolidated cell (rows in dataset order) is the same table, bit for bit; the book build reads
it without recomputing (``batch_size`` must be the same as the one-process run's to compare).

**Writing.**  Each process writes its own part files (``part-<batch>.parquet``); a whole cell
is consolidated by its process at once, a sliced cell by :func:`merge` once every slice is
stored (:mod:`studylib.sweep.locks` says which locks are held).  Under ``torchrun``
(:func:`run_distributed`), rank 0 merges after a ``torch.distributed`` barrier (gloo on CPU,
NCCL on GPUs) and a second barrier lets every rank return the table.  A SLURM array
(:func:`slurm_shard` reads ``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT``) uses the same
arithmetic without any communication; a final ``--merge`` step consolidates.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta

import pandas as pd
import torch
import torch.distributed as dist

from studylib.sweep.grid import Config, StudyParameterError
from studylib.sweep.run import Slice, SliceRunner, SweepPlan, collect, prepare, say

#: How long a rank waits at a barrier for the slowest one (shards of a long sweep may finish hours apart).
BARRIER_TIMEOUT = timedelta(hours=float(os.environ.get("STUDYLIB_BARRIER_HOURS", 48)))


def shard_slices(n_cells: int, n_batches: int, rank: int, world: int) -> list[Slice]:
    """The slices of shard ``rank`` of ``world`` (module docstring)."""
    if world < 1 or not 0 <= rank < world:
        raise StudyParameterError(f"shard {rank} of {world}: need 0 <= rank < world size")
    total = n_cells * n_batches
    low, high = rank * total // world, (rank + 1) * total // world
    slices = []
    for cell in range(n_cells):
        start, stop = max(low - cell * n_batches, 0), min(high - cell * n_batches, n_batches)
        if start < stop:
            slices.append(Slice(cell, start, stop, start == 0 and stop == n_batches))
    return slices


def slurm_shard(environ=os.environ) -> tuple[int, int] | None:
    """(rank, world) of a SLURM array task (ids counted from ``SLURM_ARRAY_TASK_MIN``), else ``None``."""
    if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
        return None
    first = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    rank, world = int(environ["SLURM_ARRAY_TASK_ID"]) - first, int(environ["SLURM_ARRAY_TASK_COUNT"])
    if not 0 <= rank < world:
        raise StudyParameterError(f"SLURM array task {rank + first} is outside {first}..{first + world - 1}; "
                                  f"submit the array with contiguous ids, e.g. sbatch --array=0-{world - 1}")
    return rank, world


def merge(plan: SweepPlan, runner: SliceRunner) -> dict[str, str]:
    """Consolidate every cell whose questions are all stored (waiting for its lock); returns the
    configs still missing questions, with how many."""
    missing = {}
    order = set(runner.order)
    for index, cell in enumerate(plan.cells):
        cell.lock.acquire()
        try:
            if cell.load() is not None:
                cell.repair(runner.cell_info(index))
                continue
            stored, _ = cell.read_parts(clean=True)
            done = set() if stored is None else set(stored["qid"]) & order
            if len(done) == len(order):
                cell.finalize(runner.order, runner.cell_info(index))
            else:
                missing[str(plan.configs[index])] = f"{len(order) - len(done)} of {len(order)} questions missing"
        finally:
            cell.lock.release(unlink=cell.complete)
    return missing


def run_shard(model, dataset: str, configs: Iterable[Config | str], *, rank: int, world: int,
              merge_after: bool = False, **options) -> tuple[SweepPlan, SliceRunner, str, dict[int, str]]:
    """Compute shard ``rank`` of ``world`` of a sweep (``options``: those of
    :func:`~studylib.sweep.run_sweep`); ``merge_after`` consolidates what is complete."""
    plan, runner, display = prepare(model, dataset, configs, **options)
    slices = shard_slices(len(plan.cells), plan.n_batches(runner.batch_size), rank, world)
    status = runner.run(slices)
    if merge_after:
        merge(plan, runner)
    return plan, runner, display, status


def init_distributed() -> tuple[int, int, str | None]:
    """Join the ``torchrun`` process group (gloo on CPU, NCCL with CUDA); returns (rank, world
    size, this rank's device: ``cuda:<LOCAL_RANK>`` or ``None``)."""
    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)
    device = None
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def run_distributed(model, dataset: str, configs: Iterable[Config | str], **options) -> pd.DataFrame | None:
    """Under an initialised process group: every rank computes its shard, rank 0 merges
    after a barrier, every rank returns the whole table (``None`` if questions are missing)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    plan, runner, display, _ = run_shard(model, dataset, configs, rank=rank, world=world, **options)
    dist.barrier()
    missing = merge(plan, runner) if rank == 0 else {}
    dist.barrier()
    if missing or not plan.complete:
        say(f"rank {rank}: cells with missing questions: {missing or 'see rank 0'}; rerun to complete them")
        return None
    return collect(plan, dataset, display)


__all__ = ["init_distributed", "merge", "run_distributed", "run_shard", "shard_slices", "slurm_shard"]
