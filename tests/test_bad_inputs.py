"""Bad inputs, table-driven: every one ends in ONE error of the library's own type whose message
names the parameter or file and the fix, and leaves the results directory and ``book/`` as they
were (issue 16).

Categories (cases): pruners 14, metrics 18, analysis 8, sweep 18, cli 18 (16 through the build
script's planning step in-process, 2 as subprocesses), notebooks 8, data_files 14, images 5,
model_dirs 11, store 6; 120 in all
(:func:`test_the_suite_has_at_least_100_cases` keeps the count honest).

Each row: ``(id, call, error type, words)``; ``call(ctx)`` gets the module's prepared inputs
(:class:`Inputs`); every word must occur in the message (case-insensitive).
"""

from __future__ import annotations

import contextlib
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
from fixtures import formats

from studylib import analysis, build, experiments
from studylib import metrics as m
from studylib.data import DataFormatError, DataNotFoundError, ImageNotFoundError, load_dataset
from studylib.data.coco import load_coco_captions
from studylib.data.pope import load_pope
from studylib.data.scienceqa import load_scienceqa
from studylib.metrics import MetricInputError
from studylib.models.loading import (TOY_MODEL_DIR, CheckpointError, ModelNotFoundError, ModelSettingError,
                                     load_model, resolve_checkpoint)
from studylib.pruners import PrunerConfigError, get_pruner, parse_spec
from studylib.sweep import Config, StudyParameterError, config_grid, plan_sweep, run_sweep, validate_parameters
from studylib.sweep.grid import check_budget
from studylib.sweep.store import Cell, DamagedFileError, StoreIntegrityWarning, clean_stale_temporaries

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
    settings = dict(dataset_options=TOY, limit=1, batch_size=8, progress=False) | kw
    return lambda c: run_sweep(settings.pop("model", "toy"), "toy-pope", list(configs), results_dir=c.results,
                               **settings)


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
]


@pytest.mark.parametrize("case", SWEEP, ids=ids(SWEEP))
def test_sweep_parameters(case, ctx):
    check(case, ctx, [ctx.results])


# ----------------------------------------------------------------------------------- cli


def _plan(*argv):
    """``scripts/build_book.py``'s planning step in-process: must exit 2 with one stderr line."""
    def call(ctx):
        module = build_book_module.cached
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as caught:
            module.plan(module.make_parser().parse_args(["--only", "u_curve", "--results", str(ctx.results), *argv]))
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
]


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
]


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
]


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


STORE_TESTS = 6


def test_the_suite_has_at_least_100_cases():
    counts = {"pruners": len(PRUNERS), "metrics": len(METRICS), "analysis": len(ANALYSIS), "sweep": len(SWEEP),
              "cli": len(CLI) + len(CLI_SUBPROCESS), "notebooks": len(NOTEBOOKS), "data_files": len(DATA),
              "images": len(IMAGES), "model_dirs": len(MODEL_DIRS), "store": STORE_TESTS}
    assert counts == {"pruners": 14, "metrics": 18, "analysis": 8, "sweep": 18, "cli": 18, "notebooks": 8,
                      "data_files": 14, "images": 5, "model_dirs": 11, "store": 6}
    assert sum(counts.values()) >= 100
