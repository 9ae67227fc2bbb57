"""Run the sweeps of one experiment, on one process or sharded over many, into the result store.

    python scripts/sweep.py --profile toy --notebook u_curve                         # one process
    torchrun --nproc-per-node 8 scripts/sweep.py --profile llava-1.5-7b --notebook u_curve
    sbatch --array=0-7 --gpus=1 --wrap "python scripts/sweep.py --profile llava-1.5-7b --notebook u_curve"
    python scripts/sweep.py --profile llava-1.5-7b --notebook u_curve --merge          # after the array

The book build then finds every cell stored and recomputes nothing.  The sweep of a notebook
comes from its parameters (the notebook's defaults, then the profile's defaults and
per-notebook values, as the book build merges them), mapped as the notebooks do:

    pruners   ``pruners`` (baselines), else ``scope(alpha=a)`` for each of ``alphas``
              (alpha_sweep), else ``[pruner]`` (u_curve, per_split, scienceqa, temperature_scaling)
    configs   config_grid(["full", *pruners], budgets, seeds, N); notebooks with one ``pruner``
              drop budgets equal to N (the "full" config is that budget)
    data      dataset, dataset_options, limit; run: model, dtype, batch_size, results_dir

``--dataset``, ``--dataset-options`` (JSON), ``--pruners``, ``--budgets``, ``--seeds``,
``--limit`` and the run options override them (or define a sweep without ``--notebook``).
Shards: ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) -> torch.distributed, rank 0
consolidates; a SLURM array (``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``) or ``--shard
R/N`` -> shard R of N, no communication, then ``--merge``.  :mod:`studylib.sweep.shard` gives
the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from studylib import build  # noqa: E402
from studylib.sweep import config_grid, model_num_tokens  # noqa: E402
from studylib.sweep.grid import StudyParameterError, as_list  # noqa: E402
from studylib.sweep.run import prepare, say  # noqa: E402
from studylib.sweep.shard import init_distributed, merge, run_distributed, run_shard, slurm_shard  # noqa: E402


def notebook_sweep(profile: str, notebook: str) -> dict:
    """The parameters of ``notebook`` under ``profile`` (module docstring)."""
    source = REPO / "notebooks" / f"{notebook}.ipynb"
    if not source.is_file():
        names = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
        raise StudyParameterError(f"--notebook {notebook!r}: no notebooks/{notebook}.ipynb; choose one of {names}")
    return build.experiment_parameters(profile, notebook)


def sweep_pruners(params: dict) -> tuple[list[str], bool]:
    """(pruners, drop budgets equal to N) of a notebook's parameters."""
    if params.get("pruners") is not None:
        return as_list(params["pruners"], "pruners"), False
    if params.get("alphas") is not None:
        return [f"scope(alpha={a})" for a in as_list(params["alphas"], "alphas")], False
    if params.get("pruner") is not None:
        return [params["pruner"]], True
    raise StudyParameterError("this notebook's parameters name no pruner, pruners or alphas (it runs several "
                              "sweeps of its own); pass --dataset, --pruners and --budgets")


def parse_shard(text: str) -> tuple[int, int]:
    rank, _, world = text.partition("/")
    if not (rank.isdigit() and world.isdigit() and int(rank) < int(world)):
        raise StudyParameterError(f"--shard {text!r}: expected R/N with 0 <= R < N, e.g. --shard 0/4")
    return int(rank), int(world)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="toy", help="profiles/<name>.yaml (default: toy)")
    parser.add_argument("--notebook", help="experiment whose sweep to run, e.g. u_curve")
    parser.add_argument("--dataset")
    parser.add_argument("--dataset-options", type=json.loads, help='JSON, e.g. \'{"n_images": 500}\'')
    parser.add_argument("--pruners", nargs="+")
    parser.add_argument("--budgets", nargs="+", type=int)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--model")
    parser.add_argument("--dtype")
    parser.add_argument("--device", help="default: cuda:<LOCAL_RANK> under torchrun with GPUs, else the profile's")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--results", help="result store (default: the profile's results_dir)")
    parser.add_argument("--threads", type=int, help="CPU threads per process (torch.set_num_threads); CPU numbers "
                        "depend on it, so give every run that shares a store the same value (torchrun sets 1)")
    parser.add_argument("--shard", help="R/N: compute shard R of N (what a SLURM array task does)")
    parser.add_argument("--merge", action="store_true", help="consolidate the cells that every shard has finished")
    return parser.parse_args(argv)


def sweep_arguments(args) -> tuple[str, str, list, dict]:
    """(model, dataset, configs, run_sweep options) from the notebook and the command line."""
    params = notebook_sweep(args.profile, args.notebook) if args.notebook else {}
    overrides = {"dataset": args.dataset, "dataset_options": args.dataset_options, "limit": args.limit,
                 "model": args.model, "dtype": args.dtype, "batch_size": args.batch_size, "results_dir": args.results,
                 "budgets": args.budgets, "seeds": args.seeds, "pruners": args.pruners}
    params.update({k: v for k, v in overrides.items() if v is not None})
    for name in ("dataset", "budgets"):
        if params.get(name) is None and args.notebook:
            raise StudyParameterError(f"notebook {args.notebook!r} has no single {name} (it runs several sweeps of its "
                                      f"own); pass --dataset, --pruners and --budgets for each of them")
        if params.get(name) is None:
            raise StudyParameterError(f"no {name}: pass --notebook <experiment> or --{name}")
    model = params.get("model", "toy")
    n_tokens = model_num_tokens(model)
    pruners, drop_full_budget = sweep_pruners(params)
    budgets = [k for k in params["budgets"] if not (drop_full_budget and k >= n_tokens)]
    configs = config_grid(["full", *pruners], budgets, seeds=params.get("seeds"), n_tokens=n_tokens)
    options = {"dataset_options": params.get("dataset_options") or {}, "limit": params.get("limit"),
               "results_dir": params.get("results_dir", "results"),
               "batch_size": params.get("batch_size", 64), "dtype": params.get("dtype"),
               "device": args.device or params.get("device"), "progress": False}
    return model, params["dataset"], configs, options


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.results:
        args.results = str(Path(args.results).resolve())
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(REPO)  # data paths and results_dir of the profiles are relative to the repository root
    try:
        model, dataset, configs, options = sweep_arguments(args)
        slurm = slurm_shard()
        if args.merge:
            plan, runner, _ = prepare(model, dataset, configs, **options)
            missing = merge(plan, runner)
            for config, what in missing.items():
                say(f"{config}: {what}; rerun the shard(s) that failed (or this script without --merge)")
            say(f"merged {len(plan.cells) - len(missing)} of {len(plan.cells)} cells into {options['results_dir']}")
            return 1 if missing else 0
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            _, _, device = init_distributed()
            options["device"] = args.device or device or options["device"]
            rows = run_distributed(model, dataset, configs, **options)
            return 0 if rows is not None else 1
        if args.shard or slurm:
            rank, world = slurm or parse_shard(args.shard)
            _, _, _, status = run_shard(model, dataset, configs, rank=rank, world=world, **options)
            say(f"shard {rank} of {world} done ({len(status)} cells touched); run --merge when every shard is done")
            return 0
        _, _, _, status = run_shard(model, dataset, configs, rank=0, world=1, **options)
        say(f"{len(status)} cells complete in {options['results_dir']}")
        return 0
    except (StudyParameterError, build.ProfileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
