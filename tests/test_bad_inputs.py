"""Bad inputs, table-driven: every one ends in ONE error of the library's own type whose message
names the parameter or file and the fix, and leaves the results directory and ``book/`` as they
were (issue 16); hostile stores and files (issue 27): parts of other cells, NaN weights and
images, read-only stores, stuck writers, typos in profiles.

Categories (cases): pruners 14, metrics 18, analysis 8, sweep 25, cli 26 (24 through the build
script's planning step in-process, 2 as subprocesses), notebooks 11, data_files 19, images 8,
model_dirs 13, store 16; 158 in all
(:func:`test_the_suite_has_at_least_100_cases` keeps the count honest).

Each row: ``(id, call, error type, words)``; ``call(ctx)`` gets the module's prepared inputs
(:class:`Inputs`); every word must occur in the message (case-insensitive).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import formats
from PIL import Image

from studylib import analysis, build, experiments
from studylib import metrics as m
from studylib.data import DataFormatError, DataNotFoundError, ImageNotFoundError, load_dataset
from studylib.data.records import Dataset, Question, check_unique_records
from studylib.data.coco import load_coco_captions
from studylib.data.pope import load_pope
from studylib.data.scienceqa import load_scienceqa
from studylib.metrics import MetricInputError
from studylib.models.loading import (TOY_MODEL_DIR, CheckpointError, ModelNotFoundError, ModelSettingError,
                                     load_model, resolve_checkpoint)
from studylib.pruners import PrunerConfigError, get_pruner, parse_spec
from studylib.sweep import Config, StudyParameterError, config_grid, plan_sweep, run_sweep, validate_parameters
from studylib.sweep.grid import check_budget
from studylib.sweep.locks import TIMEOUT_ENV, lock_timeout
from studylib.sweep.store import Cell, DamagedFileError, StoreIntegrityWarning, clean_stale_temporaries
from studylib.sweep.verify import main as verify_main
from studylib.sweep.verify import verify

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
TOY = {"n_images": 2}
POPE_SPLIT = "random"


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (empty when absent)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build_book_module():
    spec = importlib.util.spec_from_file_location("build_book_under_test", REPO / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Inputs:
    """Files the cases read, made once per module: a results directory holding one finished
    cell, valid benchmark fixtures, and a writable scratch folder per case."""

    root: Path
    results: Path
    pope: formats.PopeFiles
    scienceqa: formats.ScienceQAFiles
    coco: formats.CocoFiles
    scratch: Path | None = None

    def fresh(self, name: str) -> Path:
        path = self.root / "scratch" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def pope_with(self, rows: list | str, name: str) -> Path:
        """A POPE question folder whose ``random`` split file holds ``rows`` (JSON lines or raw text)."""
        folder = self.fresh(name)
        text = rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)
        (folder / f"coco_pope_{POPE_SPLIT}.json").write_text(text)
        return folder

    def model_copy(self, name: str) -> Path:
        folder = self.fresh(name) / "ckpt"
        shutil.copytree(TOY_MODEL_DIR, folder)
        return folder


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("bad_inputs")
    results = root / "results"
    run_sweep("toy", "toy-pope", ["random(seed=0)@8"], dataset_options=TOY, results_dir=results, limit=1,
              batch_size=8, progress=False)
    (results / "notes.txt").write_text("a file of the user's beside the store")
    return Inputs(root, results, formats.write_pope(root / "pope"), formats.write_scienceqa(root / "sqa"),
                  formats.write_coco(root / "coco"))


def check(case, ctx: Inputs, watched: list[Path]) -> None:
    """Run one case: its exception type, every word in the message, ``watched`` unchanged."""
    _, call, error, words = case
    before = [snapshot(p) for p in watched]
    with pytest.raises(error) as caught:
        call(ctx)
    message = str(caught.value).lower()
    missing = [w for w in words if w.lower() not in message]
    assert not missing, f"message lacks {missing}: {caught.value}"
    assert [snapshot(p) for p in watched] == before, "a bad input changed the results directory or book/"


def ids(cases) -> list[str]:
    return [c[0] for c in cases]


# ----------------------------------------------------------------------------------- pruners

PRUNERS = [
    ("scope-alpha-1000", lambda c: parse_spec("scope(alpha=1000)"), PrunerConfigError, ["alpha", "[0, 10]"]),
    ("scope-alpha-negative", lambda c: get_pruner("scope", alpha=-1), PrunerConfigError, ["alpha", "[0, 10]"]),
    ("scope-alpha-nan", lambda c: parse_spec("scope(alpha=nan)"), PrunerConfigError, ["alpha", "[0, 10]"]),
    ("scope-p-1000", lambda c: parse_spec("scope(p=1000)"), PrunerConfigError, ["gap_power", "(0, 10]"]),
    ("scope-p-zero", lambda c: parse_spec("scope(p=0)"), PrunerConfigError, ["gap_power", "(0, 10]"]),
    ("scope-alpha-text", lambda c: parse_spec("scope(alpha=high)"), PrunerConfigError, ["alpha", "float"]),
    ("scope-combine-choice", lambda c: parse_spec("scope(combine=sum)"), PrunerConfigError, ["combine", "mul", "add"]),
    ("unknown-pruner", lambda c: parse_spec("scop"), PrunerConfigError, ["scop", "valid pruners", "scope"]),
    ("unknown-parameter", lambda c: parse_spec("scope(beta=1)"), PrunerConfigError, ["beta", "alpha"]),
    ("fastv-layer-zero", lambda c: parse_spec("fastv(layer=0)"), PrunerConfigError, ["layer", "[1"]),
    ("random-seed-text", lambda c: parse_spec("random(seed=x)"), PrunerConfigError, ["seed", "int"]),
    ("config-without-budget", lambda c: Config.parse("scope(alpha=0)"), StudyParameterError, ["pruner_spec@K", "e.g."]),
    ("config-budget-text", lambda c: Config.parse("scope@abc"), StudyParameterError, ["budget", "integer"]),
    ("budget-fraction", lambda c: check_budget(16.5, 144), StudyParameterError, ["budgets", "16.5", "integers"]),
]


@pytest.mark.parametrize("case", PRUNERS, ids=ids(PRUNERS))
def test_pruner_parameters(case, ctx):
    check(case, ctx, [ctx.results])


# ----------------------------------------------------------------------------------- metrics

N = 6
CONF, CORRECT = np.linspace(0.5, 1.0, N), np.array([1, 0, 1, 1, 0, 1], dtype=bool)
LOGITS, LABELS = np.log(np.tile([[0.7, 0.3]], (N, 1))), np.array([0, 1, 0, 0, 1, 0])
COUNTS = dict(mentions=[3, 2], hallucinated=[1, 0], recalled=[1, 1], ground_truth=[2, 2])


def _chair(**changed):
    return m.chair_from_counts(**{**COUNTS, **changed})


METRICS = [
    ("chair-hallucinated-above-mentions", lambda c: _chair(hallucinated=[4, 0]), MetricInputError,
     ["hallucinated > mentions", "cannot hallucinate more"]),
    ("chair-recalled-above-truth", lambda c: _chair(recalled=[3, 1]), MetricInputError, ["recalled > ground_truth"]),
    ("chair-negative-count", lambda c: _chair(mentions=[-1, 2]), MetricInputError, ["mentions", "non-negative integer"]),
    ("chair-nan-count", lambda c: _chair(hallucinated=[math.nan, 0]), MetricInputError, ["hallucinated", "nan", "repair"]),
    ("chair-fractional-count", lambda c: _chair(mentions=[2.5, 2]), MetricInputError, ["mentions", "integer counts"]),
    ("chair-lengths", lambda c: _chair(mentions=[3]), MetricInputError, ["mismatched lengths", "one entry per sample"]),
    ("bootstrap-groups-unstated", lambda c: m.bootstrap_ci(np.mean, CONF), MetricInputError,
     ["groups", "image_ids", "groups=none"]),
    ("paired-bootstrap-groups-unstated", lambda c: m.paired_bootstrap_ci(np.mean, (CONF,), (CONF,)), MetricInputError,
     ["groups", "image_ids"]),
    ("cv-temperature-groups-unstated", lambda c: m.cross_validated_temperature_scaling(LOGITS, LABELS),
     MetricInputError, ["groups", "image_ids"]),
    ("bootstrap-groups-length", lambda c: m.bootstrap_ci(np.mean, CONF, groups=[0, 1]), MetricInputError,
     ["groups", "one group id per sample"]),
    ("ece-nan-confidence", lambda c: m.expected_calibration_error(np.r_[CONF[:-1], np.nan], CORRECT),
     MetricInputError, ["confidence", "nan", "repair"]),
    ("ece-percent-confidence", lambda c: m.expected_calibration_error(CONF * 100, CORRECT), MetricInputError,
     ["confidence", "outside [0, 1]", "pass probabilities"]),
    ("ece-zero-bins", lambda c: m.expected_calibration_error(CONF, CORRECT, n_bins=0), MetricInputError,
     ["n_bins", ">= 1"]),
    ("brier-unnormalised", lambda c: m.brier_multiclass(np.tile([[0.7, 0.7]], (N, 1)), LABELS), MetricInputError,
     ["probs", "not 1", "renormalise"]),
    ("temperature-nan-logit", lambda c: m.fit_temperature(np.r_[LOGITS[:-1], [[np.nan, 0.0]]], LABELS),
     MetricInputError, ["logits", "nan", "repair"]),
    ("temperature-label-range", lambda c: m.fit_temperature(LOGITS, LABELS + 2), MetricInputError,
     ["labels", "[0, 1]"]),
    ("bootstrap-level", lambda c: m.bootstrap_ci(np.mean, CONF, confidence_level=1.5, groups=None),
     MetricInputError, ["confidence_level", "(0, 1)"]),
    ("bootstrap-resamples", lambda c: m.bootstrap_ci(np.mean, CONF, n_resamples=0, groups=None), MetricInputError,
     ["n_resamples", ">= 1"]),
]


@pytest.mark.parametrize("case", METRICS, ids=ids(METRICS))
def test_metrics(case, ctx):
    check(case, ctx, [])


# ----------------------------------------------------------------------------------- analysis


def _rows(**changed) -> pd.DataFrame:
    rows = pd.DataFrame({
        "config": ["full@144"] * 4, "qid": [f"q{i}" for i in range(4)], "image": ["a", "a", "b", "b"],
        "task": ["yesno"] * 4, "choices": [["yes", "no"]] * 4, "label": ["yes", "no", "yes", "no"],
        "probs": [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]],
        "logits": [[1.0, -0.4], [-0.4, 0.4], [0.2, -0.2], [-0.2, 0.2]],
        "confidence": [0.8, 0.7, 0.6, 0.6], "prediction": ["yes", "no", "yes", "no"], "correct": [True] * 4,
    })
    for column, (row, value) in changed.items():
        rows.at[row, column] = value
    return rows


ANALYSIS = [
    ("nan-probability", lambda c: analysis.calibration_summary(_rows(probs=(1, [math.nan, 0.5])), n_bootstrap=0),
     ValueError, ["'q1'", "probs", "normalised", "damaged"]),
    ("unnormalised-probabilities", lambda c: analysis.calibration_summary(_rows(probs=(2, [0.9, 0.9])), n_bootstrap=0),
     ValueError, ["'q2'", "not a finite, normalised distribution"]),
    ("nan-logit-not-padding", lambda c: analysis.temperature_summary(_rows(logits=(0, [math.nan, 0.0])), n_folds=2),
     ValueError, ["'q0'", "logits", "damaged"]),
    ("label-not-a-choice", lambda c: analysis.calibration_summary(_rows(label=(3, "maybe")), n_bootstrap=0),
     ValueError, ["label 'maybe'", "choices"]),
    ("unknown-group-column", lambda c: analysis.calibration_summary(_rows(), by="budget", n_bootstrap=0),
     ValueError, ["budget", "available"]),
    ("unknown-cluster-column", lambda c: analysis.calibration_summary(_rows(), cluster="img", n_bootstrap=5),
     ValueError, ["'img'", "cluster=none"]),
    ("paired-unknown-metric", lambda c: analysis.paired_delta(_rows(), "full@144", "full@144", metric="ecee"),
     ValueError, ["ecee", "choose one of"]),
    ("paired-unknown-config", lambda c: analysis.paired_delta(_rows(), "full@144", "scope@8"),
     ValueError, ["scope@8", "configs present"]),
]


@pytest.mark.parametrize("case", ANALYSIS, ids=ids(ANALYSIS))
def test_analysis(case, ctx):
    check(case, ctx, [])


# ----------------------------------------------------------------------------------- sweep


def _validate(model="toy", dataset="toy-pope", options=None, pruners=("full",), budgets=(8,), seeds=None, **kw):
    return lambda c: validate_parameters(model, dataset, TOY if options is None else options, list(pruners),
                                         list(budgets), seeds, **kw)


def _sweep(configs=("random(seed=0)@8",), **kw):
    def call(c):
        settings = dict(dataset_options=TOY, limit=1, batch_size=8, progress=False, results_dir=c.results) | kw
        return run_sweep(settings.pop("model", "toy"), "toy-pope", list(configs), **settings)
    return call


def _sqa_options(c):
    return {"problems": str(c.scienceqa.problems), "images": str(c.scienceqa.images)}


SWEEP = [
    ("model-typo", _validate(model="tooy"), StudyParameterError, ["model", "did you mean 'toy'", "download"]),
    ("model-tiny-typo", _validate(model="tiny-randm"), StudyParameterError, ["'tiny-random'", "download"]),
    ("model-uncached-hub-id", _validate(model="llava-hf/llava-1.5-7b"), StudyParameterError,
     ["llava-hf/llava-1.5-7b", "did you mean 'llava-hf/llava-1.5-7b-hf'", "huggingface-cli download"]),
    ("unknown-dataset", _validate(dataset="toy-popee"), StudyParameterError, ["dataset", "toy-popee", "choose one of"]),
    ("bad-dataset-option", _validate(options={"n_image": 2}), StudyParameterError, ["n_image", "accepted options"]),
    ("budget-above-n", _validate(budgets=[145]), StudyParameterError, ["budgets", "145", "between 1 and 144"]),
    ("budget-zero", _validate(budgets=[0]), StudyParameterError, ["budgets", "at least one"]),
    ("limit-zero", _validate(limit=0), StudyParameterError, ["limit", "positive integer"]),
    ("seeds-negative", _validate(pruners=["random"], seeds=[-1]), StudyParameterError, ["seeds", "like [0, 1, 2]"]),
    ("pruners-empty", _validate(pruners=[]), StudyParameterError, ["pruners is empty", "e.g."]),
    ("fastv-layer-beyond-model", _validate(pruners=["fastv(layer=10)"]), StudyParameterError,
     ["fastv(layer=10)", "4 layers", "between 1 and 3"]),
    ("device-gpu", _validate(device="gpu"), StudyParameterError, ["device='gpu'", "'cuda'"]),
    ("dtype-float8", _validate(dtype="float8"), StudyParameterError, ["dtype='float8'", "float32", "bfloat16"]),
    ("dtype-int8", _validate(dtype="int8"), StudyParameterError, ["dtype='int8'", "choose one of"]),
    ("dtype-float16-on-cpu", _validate(device="cpu", dtype="float16"), StudyParameterError,
     ["float16", "cpu", "dtype='float32'"]),
    ("run-batch-size-zero", _sweep(batch_size=0), StudyParameterError, ["batch_size", "positive integer"]),
    ("run-fastv-layer", _sweep(configs=["random(seed=0)@8", "fastv(layer=4)@8"]), StudyParameterError,
     ["fastv(layer=4)", "between 1 and 3"]),
    ("run-dtype", _sweep(dtype="float8"), StudyParameterError, ["dtype", "choose one of"]),
    ("seeds-beyond-64-bit", _validate(pruners=["random"], seeds=[2**70]), StudyParameterError,
     ["seeds", str(2**70), "[0, 2**63 - 1]", "like [0, 1, 2]"]),
    ("spec-seed-beyond-64-bit", lambda c: Config.parse(f"random(seed={2**70})@8"), StudyParameterError,
     ["seed", str(2**70), "[0, 2**63 - 1]"]),
    ("verbalizer-letter-not-a-token", lambda c: validate_parameters("toy", "scienceqa", _sqa_options(c), ["full"], [8]),
     StudyParameterError, ["verbalizer word 'e'", "one token", "'3'", "use a model whose tokenizer has it"]),
    ("run-results-dir-under-proc", _sweep(results_dir="/proc/studylib/results"), StudyParameterError,
     ["results_dir='/proc/studylib/results'", "cannot be created", "choose a folder you can write"]),
    ("run-results-dir-is-a-file", lambda c: _sweep(results_dir=c.results / "notes.txt")(c), StudyParameterError,
     ["notes.txt", "is a file", "choose a folder"]),
    ("run-lock-timeout-negative", _sweep(lock_timeout=-5), StudyParameterError,
     ["lock wait", "-5", "non-negative number of seconds"]),
    ("lock-timeout-env-text", lambda c: _with_env(TIMEOUT_ENV, "soon", lock_timeout), ValueError,
     ["STUDYLIB_LOCK_TIMEOUT='soon'", "non-negative number of seconds", "e.g."]),
]


def _with_env(name: str, value: str, call):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return call()
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


@pytest.mark.parametrize("case", SWEEP, ids=ids(SWEEP))
def test_sweep_parameters(case, ctx):
    check(case, ctx, [ctx.results])


# ----------------------------------------------------------------------------------- cli


def _plan(*argv, only="u_curve", results=True):
    """``scripts/build_book.py``'s planning step in-process: must exit 2 with one stderr line."""
    def call(ctx):
        module = build_book_module.cached
        stderr = io.StringIO()
        options = ["--only", only] + (["--results", str(ctx.results)] if results else [])
        with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as caught:
            module.plan(module.make_parser().parse_args([*options, *argv]))
        lines = stderr.getvalue().splitlines()
        assert caught.value.code == 2 and len(lines) == 1 and "Traceback" not in stderr.getvalue(), lines
        raise CliError(lines[0])
    return call


class CliError(Exception):
    """The one stderr line of a rejected build command (what the user reads)."""


def _only(name):
    def call(ctx):
        module = build_book_module.cached
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as caught:
            module.plan(module.make_parser().parse_args(["--only", name]))
        lines = stderr.getvalue().splitlines()
        assert caught.value.code == 2 and len(lines) == 1, lines
        raise CliError(lines[0])
    return call



CLI = [
    ("set-without-equals", _plan("--set", "limit"), CliError, ["--set 'limit'", "key=value"]),
    ("unknown-profile", _plan("--profile", "nosuch"), CliError, ["nosuch", "available", "toy"]),
    ("unknown-notebook", _plan("--set", "nosuchnb.limit=5"), CliError, ["nosuchnb", "choose from"]),
    ("unknown-only", _only("nosuch"), CliError, ["--only", "nosuch", "choose from"]),
    ("wrong-case-parameter", _plan("--set", "u_curve.Budgets=[16]"), CliError, ["budgets", "its parameters are"]),
    ("unused-common-parameter", _plan("--set", "alphas=[0]"), CliError, ["alphas", "parameters"]),
    ("pruner-typo", _plan("--set", "u_curve.pruner=scop"), CliError, ["u_curve", "scop", "valid pruners"]),
    ("budget-fraction", _plan("--set", "budgets=[16.5]"), CliError, ["u_curve", "16.5", "integers"]),
    ("batch-size-zero", _plan("--set", "batch_size=0"), CliError, ["batch_size", "positive integer"]),
    ("limit-negative", _plan("--set", "limit=-1"), CliError, ["limit", "-1", "positive integer"]),
    ("limit-text", _plan("--set", "limit=abc"), CliError, ["limit", "'abc'", "positive integer"]),
    ("model-typo", _plan("--set", "model=tooy"), CliError, ["tooy", "did you mean 'toy'"]),
    ("device-gpu", _plan("--set", "device=gpu"), CliError, ["device='gpu'", "'cuda'"]),
    ("dtype-float16-cpu", _plan("--set", "dtype=float16"), CliError, ["float16", "float32"]),
    ("fastv-layer", _plan("--set", "u_curve.pruner=fastv(layer=9)"), CliError, ["layer 9", "between 1 and 3"]),
    ("scope-alpha-bound", _plan("--set", "u_curve.pruner=scope(alpha=1000)"), CliError, ["alpha", "[0, 10]"]),
    ("only-names-nothing", _only(","), CliError, ["--only ','", "names no notebook", "choose from", "u_curve"]),
    ("timeout-negative", _plan("--timeout", "-5"), CliError, ["--timeout -5", "positive number of seconds"]),
    ("profile-notebook-typo", lambda c: _plan("--profile", str(_profile(c, notebooks={"u_curv": {"limit": 5}})))(c),
     CliError, ["notebooks", "u_curv", "unknown notebook", "'u_curve'"]),
    ("profile-default-typo", lambda c: _plan("--profile", str(_profile(c, defaults={"batch_sise": 8})))(c),
     CliError, ["defaults", "batch_sise", "'batch_size'"]),
    ("bootstrap-seed-negative", _plan("--set", "bootstrap_seed=-1"), CliError, ["bootstrap_seed", "-1", "[0, 2**63 - 1]"]),
    ("results-dir-under-proc", _plan("--set", "results_dir=/proc/studylib/results", results=False), CliError,
     ["results_dir='/proc/studylib/results'", "cannot be created", "choose a folder you can write"]),
    ("limit-below-folds", _plan("--set", "temperature_scaling.limit=3", only="temperature_scaling"), CliError,
     ["temperature_scaling", "limit=3", "n_folds=5", "raise limit to >= 5"]),
    ("seeds-beyond-64-bit", _plan("--set", f"baselines.seeds=[{2**70}]", only="baselines"), CliError,
     ["baselines", "seeds", str(2**70), "[0, 2**63 - 1]"]),
]


def _profile(ctx, **changed) -> Path:
    """The toy profile with ``changed`` top-level sections, written to a scratch file."""
    import yaml

    profile = yaml.safe_load((REPO / "profiles" / "toy.yaml").read_text())
    for section, values in changed.items():
        profile[section] = {**profile[section], **values}
    path = ctx.fresh(f"profile-{'-'.join(changed)}") / "typo.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.fixture(scope="module")
def book_script():
    build_book_module.cached = build_book_module()
    return build_book_module.cached


@pytest.mark.parametrize("case", CLI, ids=ids(CLI))
def test_build_options(case, ctx, book_script):
    check(case, ctx, [ctx.results, BOOK])


CLI_SUBPROCESS = [("set-without-equals", ["--set", "limit"], ["--set 'limit'", "key=value"]),
                  ("pruner-typo", ["--set", "u_curve.pruner=scop"], ["scop", "valid pruners"])]


@pytest.mark.parametrize("argv,words", [c[1:] for c in CLI_SUBPROCESS], ids=[c[0] for c in CLI_SUBPROCESS])
def test_build_script_exits_2_with_one_line(argv, words, ctx):
    before = snapshot(BOOK), snapshot(ctx.results)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "build_book.py"), "--only", "u_curve", "--no-book",
                           "--results", str(ctx.results), *argv], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]
    assert (snapshot(BOOK), snapshot(ctx.results)) == before


# ----------------------------------------------------------------------------------- notebooks


def _notebook(name, **overrides):
    def call(ctx):
        params = build.experiment_parameters("toy", name, results_dir=str(ctx.results))
        getattr(experiments, name).run(**(params | overrides))
    return call


NOTEBOOKS = [
    ("u_curve-pruner-typo", _notebook("u_curve", pruner="scop"), StudyParameterError, ["scop", "valid pruners"]),
    ("u_curve-budget-fraction", _notebook("u_curve", budgets=[16.5]), StudyParameterError, ["budgets", "integers"]),
    ("u_curve-limit-negative", _notebook("u_curve", limit=-1), StudyParameterError, ["limit", "positive integer"]),
    ("u_curve-limit-text", _notebook("u_curve", limit="abc"), StudyParameterError, ["limit", "positive integer"]),
    ("u_curve-model-typo", _notebook("u_curve", model="tooy"), StudyParameterError, ["did you mean 'toy'"]),
    ("u_curve-moderate-k", _notebook("u_curve", moderate_k=7), StudyParameterError, ["moderate_k", "pick one"]),
    ("alpha_sweep-no-alphas", _notebook("alpha_sweep", alphas=[]), StudyParameterError, ["alphas", "e.g."]),
    ("alpha_sweep-alpha-bound", _notebook("alpha_sweep", alphas=[0, 1000]), StudyParameterError, ["alpha", "[0, 10]"]),
    ("u_curve-bootstrap-seed", _notebook("u_curve", bootstrap_seed=-1), StudyParameterError,
     ["bootstrap_seed", "-1", "[0, 2**63 - 1]"]),
    ("u_curve-results-dir-proc", _notebook("u_curve", results_dir="/proc/studylib/results"), StudyParameterError,
     ["results_dir='/proc/studylib/results'", "choose a folder you can write"]),
    ("temperature_scaling-limit-below-folds", _notebook("temperature_scaling", limit=3), StudyParameterError,
     ["limit=3", "n_folds=5", "raise limit"]),
]


@pytest.mark.parametrize("case", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_parameters(case, ctx):
    check(case, ctx, [ctx.results, BOOK])


# ----------------------------------------------------------------------------------- data files

POPE_ROW = {"question_id": 1, "image": formats.coco_name(1), "text": "Is there a dog in the image?", "label": "yes"}


def _pope(rows, name):
    return lambda c: load_dataset("pope", questions=c.pope_with(rows, name), images=c.pope.images,
                                  splits=[POPE_SPLIT])


def _scienceqa(edit, name):
    def call(ctx):
        folder = ctx.fresh(name)
        problems = json.loads(ctx.scienceqa.problems.read_text())
        text = edit(problems)
        (folder / "problems.json").write_text(text if isinstance(text, str) else json.dumps(problems))
        return load_scienceqa(folder / "problems.json", ctx.scienceqa.images)
    return call


def _coco(edit, name):
    def call(ctx):
        folder = ctx.fresh(name)
        shutil.copytree(ctx.coco.annotations, folder, dirs_exist_ok=True)
        edit(folder)
        return load_coco_captions(folder, ctx.coco.images)
    return call


def _drop_field(problems, field):
    del problems["1"][field]


MC = Question("q1", "img", "mc", "Which shape?", "A", ("X", "X "))
YN = Question("y1", "img", "yesno", "Is there a cat?", "yes")


def _made(questions) -> Dataset:
    """A dataset as a loader outside this package (a plugin) might return it."""
    return Dataset("hand-made", list(questions), lambda key: None)


def _lmms_twice(ctx) -> Path:
    """An lmms-lab ScienceQA shard whose first test question offers the same option twice."""
    problems = formats.scienceqa_problems()
    problems["1"]["choices"] = ["X", "X"]
    problems["1"]["answer"] = 0
    return formats.write_scienceqa_parquet(ctx.fresh("lmms-twice") / "test-00000-of-00001.parquet", problems)


DATA = [
    ("pope-folder-missing", lambda c: load_pope(c.root / "nope", c.pope.images), DataNotFoundError,
     ["nope", "get it from"]),
    ("pope-line-not-json", _pope("{not json\n", "pope-json"), DataFormatError, ["line 1", "get it from"]),
    ("pope-line-not-object", _pope("[1, 2]\n", "pope-list"), DataFormatError, ["line 1", "not a json object"]),
    ("pope-empty-file", _pope("", "pope-empty"), DataFormatError, ["holds no rows", "expected"]),
    ("pope-missing-label", _pope([{k: v for k, v in POPE_ROW.items() if k != "label"}], "pope-field"),
     DataFormatError, ["row 1", "label", "expected"]),
    ("pope-bad-label", _pope([POPE_ROW | {"label": "maybe"}], "pope-label"), DataFormatError, ["maybe", "expected"]),
    ("pope-empty-question-text", _pope([POPE_ROW | {"text": "  "}], "pope-text"), DataFormatError,
     ["random-1", "empty text", "fix or drop"]),
    ("pope-duplicate-id", _pope([POPE_ROW, POPE_ROW], "pope-dup"), DataFormatError, ["random-1", "twice"]),
    ("scienceqa-not-json", _scienceqa(lambda p: "{", "sqa-json"), DataFormatError, ["problems.json", "valid json"]),
    ("scienceqa-no-choices", _scienceqa(lambda p: _drop_field(p, "choices"), "sqa-choices"), DataFormatError,
     ["choices", "get it from"]),
    ("scienceqa-answer-range", _scienceqa(lambda p: p["1"].update(answer=9), "sqa-answer"), DataFormatError,
     ["answer 9", "0-based index"]),
    ("scienceqa-one-choice", _scienceqa(lambda p: p["1"].update(choices=["a"]), "sqa-one"), DataFormatError,
     ["choices", "2 to"]),
    ("scienceqa-same-option-twice", _scienceqa(lambda p: p["1"].update(choices=["X", "X"], answer=0), "sqa-twice"),
     DataFormatError, ["problem '1'", "['x'] twice", "fix or drop"]),
    ("scienceqa-same-pid-twice", _scienceqa(lambda p: json.dumps(p)[:-1] + ', "1": ' + json.dumps(p["1"]) + "}",
                                            "sqa-pid"), DataFormatError, ["problems.json", "['1']", "more than once"]),
    ("lmms-same-option-twice", lambda c: load_dataset("scienceqa-lmms", path=_lmms_twice(c)), DataFormatError,
     ["test-00000-of-00001.parquet row 0", "['x'] twice", "fix or drop"]),
    ("records-same-option-twice", lambda c: check_unique_records(_made([MC, dataclasses.replace(MC, qid="q2")]), {}),
     DataFormatError, ["'q1'", "['x'] twice", "'q2'", "fix or drop"]),
    ("records-same-id-twice", lambda c: check_unique_records(_made([YN, YN, MC, MC]), {}), DataFormatError,
     ["['y1', 'q1']", "more than once", "keep one record per id"]),
    ("coco-instances-not-json", _coco(lambda f: (f / "instances_val2014.json").write_text("{"), "coco-json"),
     DataFormatError, ["instances_val2014.json", "json"]),
    ("coco-captions-missing", _coco(lambda f: (f / "captions_val2014.json").unlink(), "coco-missing"),
     DataNotFoundError, ["captions_val2014.json", "get it from"]),
]


@pytest.mark.parametrize("case", DATA, ids=ids(DATA))
def test_data_files(case, ctx):
    check(case, ctx, [ctx.results])


# ----------------------------------------------------------------------------------- images


def _image(write, name):
    def call(ctx):
        folder = ctx.fresh(name)
        shutil.copytree(ctx.pope.images, folder, dirs_exist_ok=True)
        target = folder / formats.coco_name(1)
        write(target)
        dataset = load_pope(ctx.pope.questions, folder, splits=[POPE_SPLIT])
        return dataset.load_image(formats.coco_name(1))
    return call


def _missing_image_sweep(ctx):
    folder = ctx.fresh("image-sweep")
    shutil.copytree(ctx.pope.images, folder, dirs_exist_ok=True)
    (folder / formats.coco_name(1)).unlink()
    options = {"questions": str(ctx.pope.questions), "images": str(folder), "splits": [POPE_SPLIT]}
    plan_sweep("toy", "pope", ["random(seed=0)@8"], dataset_options=options, results_dir=ctx.results)


IMAGES = [
    ("image-missing", _image(lambda p: p.unlink(), "img-missing"), ImageNotFoundError, ["000000000001", "get it from"]),
    ("image-zero-bytes", _image(lambda p: p.write_bytes(b""), "img-empty"), DataFormatError,
     ["000000000001", "could not be decoded", "get it from"]),
    ("image-corrupt", _image(lambda p: p.write_bytes(b"\xff\xd8garbage" * 10), "img-corrupt"), DataFormatError,
     ["000000000001", "could not be decoded"]),
    ("image-truncated-png", _image(lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n"), "img-trunc"), DataFormatError,
     ["000000000001", "could not be decoded"]),
    ("image-missing-before-sweep", _missing_image_sweep, StudyParameterError,
     ["000000000001", "not found", "images"]),
    ("image-float-nan-tiff-as-jpg", _image(lambda p: _float_tiff(p, np.nan), "img-nan"), DataFormatError,
     ["000000000001", "non-finite", "replace the file"]),
    ("image-float-inf-tiff-as-jpg", _image(lambda p: _float_tiff(p, np.inf), "img-inf"), DataFormatError,
     ["000000000001", "non-finite", "replace the file"]),
    ("image-one-colour", _image(lambda p: Image.new("RGB", (96, 96), (0, 0, 0)).save(p, format="JPEG"), "img-blank"),
     DataFormatError, ["000000000001", "one colour", "replace the file"]),
]


def _float_tiff(path: Path, value: float) -> None:
    """A float TIFF (mode F) with ``value`` in one pixel, saved under the image's .jpg name."""
    pixels = np.random.default_rng(0).random((96, 96), dtype=np.float32)
    pixels[5, 5] = value
    Image.fromarray(pixels, mode="F").save(path, format="TIFF")


@pytest.mark.parametrize("case", IMAGES, ids=ids(IMAGES))
def test_images(case, ctx):
    check(case, ctx, [ctx.results])


# ----------------------------------------------------------------------------------- model directories


def _damaged(edit, name, via="load"):
    def call(ctx):
        folder = ctx.model_copy(name)
        edit(folder)
        if via == "validate":
            return validate_parameters(str(folder), "toy-pope", TOY, ["full"], [8])
        return load_model(str(folder))
    return call


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


MODEL_DIRS = [
    ("directory-missing", lambda c: load_model(str(c.root / "models" / "llava")), ModelNotFoundError,
     ["models/llava", "huggingface-cli download"]),
    ("config-missing", _damaged(lambda f: (f / "config.json").unlink(), "no-config"), ModelNotFoundError,
     ["config.json", "huggingface-cli download"]),
    ("config-not-json", _damaged(lambda f: (f / "config.json").write_text("{"), "bad-config"), CheckpointError,
     ["config.json", "re-download"]),
    ("safetensors-truncated", _damaged(lambda f: _truncate(f / "model.safetensors"), "trunc"), CheckpointError,
     ["model.safetensors", "damaged", "re-download"]),
    ("safetensors-garbage", _damaged(lambda f: (f / "model.safetensors").write_bytes(b"garbage" * 9), "garbage"),
     CheckpointError, ["model.safetensors", "re-download"]),
    ("weights-missing", _damaged(lambda f: (f / "model.safetensors").unlink(), "no-weights"), CheckpointError,
     ["no model weights", "re-download"]),
    ("tokenizer-missing", _damaged(lambda f: (f / "tokenizer.json").unlink(), "no-tokenizer"), CheckpointError,
     ["no tokenizer", "tokenizer.json", "re-download"]),
    ("tokenizer-not-json", _damaged(lambda f: (f / "tokenizer.json").write_text("{"), "bad-tokenizer"),
     CheckpointError, ["tokenizer.json", "re-download"]),
    ("safetensors-truncated-before-sweep", _damaged(lambda f: _truncate(f / "model.safetensors"), "trunc-v",
                                                    via="validate"), StudyParameterError,
     ["model", "model.safetensors", "re-download"]),
    ("name-typo", lambda c: resolve_checkpoint("tooy"), ModelNotFoundError, ["'tooy'", "did you mean 'toy'"]),
    ("dtype-on-load", lambda c: load_model("toy", dtype="int8"), ModelSettingError, ["dtype='int8'", "float32"]),
    ("weight-nan", _damaged(lambda f: _poison(f, LLM_WEIGHT, math.nan), "nan-weight"), CheckpointError,
     ["model.safetensors", "nan or infinite", "self_attn.q_proj.weight", "re-download"]),
    ("lm-head-inf", _damaged(lambda f: _poison(f, "language_model.lm_head.weight", math.inf), "inf-head"),
     CheckpointError, ["model.safetensors", "lm_head.weight", "re-download"]),
]

LLM_WEIGHT = "language_model.model.layers.0.self_attn.q_proj.weight"


def _poison(folder: Path, name: str, value: float) -> None:
    """Put ``value`` into one element of weight ``name`` of a checkpoint copy (a valid file)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights[name].view(-1)[7] = value
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("case", MODEL_DIRS, ids=ids(MODEL_DIRS))
def test_model_directories(case, ctx):
    check(case, ctx, [ctx.results])


# ----------------------------------------------------------------------------------- store


def _store_copy(ctx, name) -> tuple[Path, str]:
    folder = ctx.fresh(name) / "results"
    shutil.copytree(ctx.results, folder)
    return folder, next(folder.glob("*.parquet")).stem


def _rerun(folder: Path) -> pd.DataFrame:
    return run_sweep("toy", "toy-pope", ["random(seed=0)@8"], dataset_options=TOY, results_dir=folder, limit=1,
                     batch_size=8, progress=False)


def test_damaged_finished_cell_is_quarantined_named_and_recomputed(ctx):
    folder, key = _store_copy(ctx, "store-parquet")
    expected = _rerun(ctx.results)
    (folder / f"{key}.parquet").write_bytes(b"PAR1 not a parquet file")
    with pytest.warns(StoreIntegrityWarning, match=key):
        rows = _rerun(folder)
    pd.testing.assert_frame_equal(rows, expected)
    assert any(p.name.startswith(key) for p in (folder / "quarantine").iterdir())


def test_damaged_manifest_is_quarantined_named_and_rebuilt(ctx):
    folder, key = _store_copy(ctx, "store-json")
    (folder / f"{key}.json").write_text("{ not json")
    with pytest.warns(StoreIntegrityWarning, match=f"{key}.json"):
        _rerun(folder)
    assert json.loads((folder / f"{key}.json").read_text())["key"] == key


def test_missing_cell_read_names_the_cell_and_the_folder(ctx):
    cell = Cell(ctx.results, {"config": "nothing@1"})
    with pytest.raises(DamagedFileError, match=cell.key):
        cell.read()


def test_stale_temporary_of_a_killed_writer_is_removed_when_a_sweep_opens_the_store(ctx):
    folder, key = _store_copy(ctx, "store-tmp")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".{key}.json.{dead.stdout.strip()}.0123abcd.tmp"
    stale.write_text("{")
    _rerun(folder)
    assert not stale.exists()


def test_temporary_of_a_live_writer_or_another_host_is_kept(ctx):
    folder, key = _store_copy(ctx, "store-live")
    live = folder / f".{key}.json.{os.getpid()}.0123abcd.tmp"
    remote = folder / f".{key}.json.1.0123abcd.another-host.tmp"
    for path in (live, remote):
        path.write_text("{")
    assert clean_stale_temporaries(folder) == [] and live.exists() and remote.exists()


def test_bad_sweep_leaves_the_store_byte_for_byte(ctx):
    folder, _ = _store_copy(ctx, "store-unchanged")
    before = snapshot(folder)
    with pytest.raises(StudyParameterError):
        run_sweep("toy", "toy-pope", ["random(seed=0)@8", "scope(alpha=0)@8", "fastv(layer=7)@8"],
                  dataset_options=TOY, results_dir=folder, limit=1, batch_size=8, progress=False)
    assert snapshot(folder) == before


def _unfinished(ctx, name) -> tuple[Path, Cell, pd.DataFrame, bytes]:
    """A store copy whose one cell lost its finished file (as if killed before consolidating):
    (folder, the cell, its rows, the bytes of the uninterrupted finished file)."""
    folder, key = _store_copy(ctx, name)
    cell = plan_sweep("toy", "toy-pope", ["random(seed=0)@8"], dataset_options=TOY, results_dir=folder,
                      limit=1).cells[0]
    assert cell.key == key
    finished = cell.parquet.read_bytes()
    rows = cell.read()
    cell.parquet.unlink()
    cell.manifest.unlink()
    return folder, cell, rows, finished


def _bad_part(kind: str, folder: Path, cell: Cell, rows: pd.DataFrame) -> Path:
    """Put a part into ``cell``'s folder that is not its own (module docstring of the store)."""
    if kind == "another-cell":  # a part of random(seed=1) copied into the folder of random(seed=0)
        other = plan_sweep("toy", "toy-pope", ["random(seed=1)@8"], dataset_options=TOY, results_dir=folder,
                           limit=1).cells[0]
        written = other.write_part(rows.head(4), 0.0, batch=0)
        cell.parts_dir.mkdir()
        path = written.rename(cell.parts_dir / written.name)
        other.parts_dir.rmdir()
        return path
    if kind == "foreign-question-id":  # this cell's metadata, one row of a question the dataset lacks
        foreign = rows.head(4).copy()
        foreign.loc[0, "qid"] = "random-99999"
        return cell.write_part(foreign, 0.0, batch=0)
    # written for this key but another list of questions: the question-id digest differs
    return Cell(folder, cell.fields, [*cell.question_ids, "random-99999"]).write_part(rows.head(4), 0.0, batch=0)


BAD_PARTS = {"another-cell": "belongs to cell", "foreign-question-id": "random-99999",
             "other-question-digest": "question-id digest"}


@pytest.mark.parametrize("kind", BAD_PARTS)
def test_a_part_that_is_not_the_cells_is_reported_quarantined_and_recomputed(kind, ctx, capsys):
    folder, cell, rows, finished = _unfinished(ctx, f"store-{kind}")
    part = _bad_part(kind, folder, cell, rows)
    table = verify(folder).set_index("key")
    assert table.loc[cell.key, "status"] == "bad parts" and BAD_PARTS[kind] in table.loc[cell.key, "detail"]
    assert table.loc[cell.key, "action"] == f"quarantine {part.name}"
    assert verify_main([str(folder)]) == 1 and part.name in capsys.readouterr().out
    with pytest.warns(StoreIntegrityWarning, match=f"{part.name}.*{cell.key}.*{BAD_PARTS[kind]}"):
        again = _rerun(folder)
    assert cell.parquet.read_bytes() == finished  # repaired to the uninterrupted result
    pd.testing.assert_frame_equal(again.iloc[:, 5:], rows)
    assert not part.exists() and any((folder / "quarantine").iterdir())


def test_verify_prune_lists_first_repairs_bad_parts_and_keeps_files_the_store_did_not_write(ctx, capsys):
    folder, cell, rows, finished = _unfinished(ctx, "store-prune")
    part = _bad_part("another-cell", folder, cell, rows)
    mine = folder / "0123456789abcdef01234567.json"  # the user's file, named like a store key
    mine.write_text('{"note": "mine"}')
    (folder / "0123456789abcdef01234567.lock").write_text("not a lock of the store")
    listed = []
    with pytest.warns(StoreIntegrityWarning, match=part.name):
        table = verify(folder, prune=True, report=listed.append).set_index("key")
    assert str(part) in listed[0] and "0123456789abcdef01234567" not in listed[0]
    assert table.loc["0123456789abcdef01234567", "status"] == "not a store file"
    assert "keep 0123456789abcdef01234567.json" in table.loc["0123456789abcdef01234567", "action"]
    assert mine.read_text() == '{"note": "mine"}' and not part.exists()
    assert verify(folder).set_index("key").loc[cell.key, "status"] == "partial"  # its parts folder, now empty
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreIntegrityWarning)
        _rerun(folder)
    assert cell.parquet.read_bytes() == finished and mine.exists()


def test_nan_scores_are_refused_naming_the_model_and_nothing_is_stored(ctx):
    from studylib.models.adapter import LlavaAdapter
    from studylib.sweep.scoring import NonFiniteScoresError

    adapter = LlavaAdapter.load("toy")
    with torch.no_grad():  # weights damaged after the load-time check, e.g. by a buggy hook
        adapter.model.get_parameter("model.language_model.layers.0.self_attn.q_proj.weight").view(-1)[7] = math.nan
    folder = ctx.fresh("store-nan") / "results"
    shutil.copytree(ctx.results, folder)
    before = snapshot(folder)
    with pytest.raises(NonFiniteScoresError) as caught:
        run_sweep(adapter, "toy-pope", ["random(seed=0)@8"], dataset_options=TOY, results_dir=folder, limit=1,
                  batch_size=8, progress=False)
    message = str(caught.value)
    assert all(w in message for w in ("NaN or infinite", "model.safetensors", "nothing of this batch is stored",
                                      "re-download"))
    assert snapshot(folder) == before


def test_nan_weights_stop_a_sweep_before_anything_is_stored(ctx):
    checkpoint = ctx.model_copy("store-nan-weights")
    _poison(checkpoint, LLM_WEIGHT, math.nan)
    folder = ctx.fresh("store-nan-weights-results") / "results"
    with pytest.raises(CheckpointError, match="model.safetensors.*re-download"):
        run_sweep(str(checkpoint), "toy-pope", ["random(seed=0)@8"], dataset_options=TOY, results_dir=folder,
                  limit=1, batch_size=8, progress=False)
    assert not folder.exists()  # not even an empty results folder or a lock file


def test_an_undecodable_image_mid_sweep_leaves_no_lock_or_other_file(ctx):
    images = ctx.fresh("store-bad-image") / "images"
    shutil.copytree(ctx.pope.images, images)
    (images / formats.coco_name(1)).write_bytes(b"\xff\xd8garbage" * 10)  # digested as bytes, fails to decode
    options = {"questions": str(ctx.pope.questions), "images": str(images), "splits": [POPE_SPLIT]}
    folder, _ = _store_copy(ctx, "store-bad-image-results")
    before = snapshot(folder)
    with pytest.raises(DataFormatError, match="000000000001.*could not be decoded"):
        run_sweep("toy", "pope", ["random(seed=0)@8"], dataset_options=options, results_dir=folder,
                  batch_size=8, progress=False)
    assert snapshot(folder) == before


def _drop_write_override() -> None:
    """``preexec_fn`` for root: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding
    set, so that after exec file permissions bind the child like any user (chmod works)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)


READ_ONLY_RUN = """
import sys
from pathlib import Path
from studylib.sweep import run_sweep
from studylib.sweep.store import ReadOnlyStoreError
root = Path(sys.argv[1])
try:
    (root / "probe").write_text("x")
    sys.exit(98)  # the store is writable after all
except PermissionError:
    pass
options = dict(dataset_options={"n_images": 2}, results_dir=root, limit=1, batch_size=8, progress=False)
print(run_sweep("toy", "toy-pope", ["random(seed=0)@8"], **options).to_json())
try:
    run_sweep("toy", "toy-pope", ["random(seed=5)@8"], **options)
except ReadOnlyStoreError as error:
    print(error)
"""


def test_a_read_only_store_is_read_and_refuses_only_what_needs_writing(ctx):
    folder, key = _store_copy(ctx, "store-read-only")
    expected = _rerun(ctx.results).to_json()
    before = snapshot(folder)
    paths = [folder, *folder.rglob("*")]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:  # as root, chmod binds only a process without the DAC capabilities
        done = subprocess.run([sys.executable, "-c", READ_ONLY_RUN, str(folder)], capture_output=True, text=True,
                              preexec_fn=_drop_write_override if os.geteuid() == 0 else None)
    finally:
        for path in paths:
            path.chmod(0o755 if path.is_dir() else 0o644)
    if done.returncode in (97, 98):
        pytest.skip("cannot make a folder read-only for this process (root without CAP_SETPCAP)")
    assert done.returncode == 0, done.stderr
    rows, refusal = done.stdout.strip().splitlines()[-2:]
    assert rows == expected
    assert all(w in refusal for w in (str(folder), "is not writable", "random(seed=5)@8", "another results_dir"))
    assert snapshot(folder) == before


HOLD_LOCK = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locks", sys.argv[2])  # the module alone: a quick start
locks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locks)
locks.FileLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_stuck_writer_is_named_and_the_wait_gives_up(ctx, capfd):
    from studylib.sweep import locks

    folder, key = _store_copy(ctx, "store-stuck")
    cell = plan_sweep("toy", "toy-pope", ["random(seed=3)@8"], dataset_options=TOY, results_dir=folder,
                      limit=1).cells[0]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(cell.lock.path), locks.__file__],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(folder)
        with pytest.raises(locks.LockTimeoutError) as caught:
            run_sweep("toy", "toy-pope", ["random(seed=3)@8"], dataset_options=TOY, results_dir=folder, limit=1,
                      batch_size=8, progress=False, lock_timeout=1.5)
        assert snapshot(folder) == before
    finally:
        holder.kill()
        holder.wait()
    message, printed = str(caught.value), capfd.readouterr().err
    assert all(w in message for w in (f"pid {holder.pid}", "since", cell.lock.path.name, "kill", "STUDYLIB_LOCK_TIMEOUT"))
    assert f"locked by another process (held by pid {holder.pid}" in printed and "waiting for the lock" in printed
    rows = _rerun_config(folder, "random(seed=3)@8")  # the dead holder's lock is taken over at once
    assert rows.attrs["cells"][0]["status"] == "computed" and not cell.lock.path.exists()


def _rerun_config(folder: Path, config: str) -> pd.DataFrame:
    return run_sweep("toy", "toy-pope", [config], dataset_options=TOY, results_dir=folder, limit=1, batch_size=8,
                     progress=False)


def test_a_home_relative_results_dir_is_expanded(ctx, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(ctx.results, tmp_path / "store")
    monkeypatch.chdir(tmp_path)
    rows = run_sweep("toy", "toy-pope", ["random(seed=0)@8"], dataset_options=TOY, results_dir="~/store", limit=1,
                     batch_size=8, progress=False)
    assert rows.attrs["cells"][0]["status"] == "cached" and not (tmp_path / "~").exists()


STORE_TESTS = 6 + len(BAD_PARTS) + 7


def test_the_suite_has_at_least_100_cases():
    counts = {"pruners": len(PRUNERS), "metrics": len(METRICS), "analysis": len(ANALYSIS), "sweep": len(SWEEP),
              "cli": len(CLI) + len(CLI_SUBPROCESS), "notebooks": len(NOTEBOOKS), "data_files": len(DATA),
              "images": len(IMAGES), "model_dirs": len(MODEL_DIRS), "store": STORE_TESTS}
    assert counts == {"pruners": 14, "metrics": 18, "analysis": 8, "sweep": 25, "cli": 26, "notebooks": 11,
                      "data_files": 19, "images": 8, "model_dirs": 13, "store": 16}
    assert sum(counts.values()) >= 100
