"""The result store: one cell per (model, dataset + options + limit, config); a rerun reads
instead of computing (no model call); a crashed run resumes without lost or duplicated rows;
parts are written atomically; rows carry the documented columns."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from _sweep_helpers import N_TOKENS, ForwardCounter, small_adapter

import studylib.sweep as sweep
import studylib.sweep.run as sweep_run
import studylib.sweep.store as sweep_store
from studylib.data import load_dataset
from studylib.sweep import score_dataset
from studylib.models.adapter import LlavaAdapter
from studylib.pruners import get_pruner
from studylib.sweep import (CAPTION_COLUMNS, SCORED_COLUMNS, StudyParameterError, list_cells, plan_sweep,
                             run_sweep)

DATASET, OPTIONS, LIMIT = "toy-pope", {"n_images": 6}, 2  # 30 questions per config
BATCH = 6
CONFIGS = ["scope(alpha=0)@16", "random(seed=1)@8"]
ADDED = ["model", "dataset", "config", "method", "seed"]


@pytest.fixture(scope="module")
def adapter():
    return small_adapter()


def _run(adapter, results_dir, configs=CONFIGS, **kw):
    options = {"dataset_options": OPTIONS, "limit": LIMIT, "batch_size": BATCH, "progress": False,
               "model_name": "small-random", **kw}
    return run_sweep(adapter, DATASET, configs, results_dir=results_dir, **options)


@pytest.fixture(scope="module")
def reference(adapter, tmp_path_factory):
    return _run(adapter, tmp_path_factory.mktemp("reference"))


def test_rows_have_the_documented_columns(reference):
    assert list(reference.columns) == ADDED + SCORED_COLUMNS
    questions = sweep.select_questions(load_dataset(DATASET, **OPTIONS), LIMIT)
    assert len(reference) == len(CONFIGS) * len(questions) == 2 * 30
    assert reference.groupby("config")["qid"].apply(list).to_dict() == {str(sweep.Config.parse(c)): [q.qid for q in questions]
                                                                        for c in CONFIGS}
    assert set(reference["image"]) == {"toy-0", "toy-1"}
    assert (reference["kept"].map(len) == reference["k"]).all() and (reference["n_kept"] == reference["k"]).all()
    probs = np.array(reference["probs"].tolist())
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(reference["confidence"], probs.max(1))
    random_rows = reference[reference["method"] == "random"]
    assert (random_rows["seed"] == 1).all() and reference.loc[reference["method"] == "scope", "seed"].isna().all()
    assert reference["dataset"].eq(DATASET).all() and reference["model"].eq("small-random").all()


def test_rows_match_score_dataset(adapter, reference):
    data = load_dataset(DATASET, **OPTIONS)
    direct = score_dataset(adapter, data, get_pruner("scope(alpha=0)"), 16, batch_size=BATCH,
                           questions=sweep.select_questions(data, LIMIT), progress=False)
    mine = reference[reference["config"] == "scope(alpha=0,p=1)@16"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[SCORED_COLUMNS], direct, check_exact=True)  # one scoring path


def test_rerun_reads_the_store_without_calling_the_model(adapter, tmp_path):
    first = _run(adapter, tmp_path)
    assert {c["status"] for c in first.attrs["cells"]} == {"computed"}
    counter = ForwardCounter(adapter)
    try:
        again = _run(adapter, tmp_path, batch_size=5)  # batch size is not part of the key
    finally:
        counter.remove()
    assert counter.calls == 0
    assert {c["status"] for c in again.attrs["cells"]} == {"cached"}
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    cells = list_cells(tmp_path)
    assert sorted(cells["config"]) == sorted(str(sweep.Config.parse(c)) for c in CONFIGS)
    assert (cells["n_rows"] == 30).all()
    manifest = json.loads((tmp_path / f"{first.attrs['cells'][0]['key']}.json").read_text())
    assert manifest["fields"]["limit"] == LIMIT and "torch" in manifest["versions"] and manifest["wall_time_s"] > 0
    assert not list(tmp_path.glob("*.parts")) and not list(tmp_path.glob(".*.tmp"))


def test_same_run_twice_gives_identical_rows(adapter, reference, tmp_path):
    pd.testing.assert_frame_equal(_run(adapter, tmp_path), reference, check_exact=True)


def _keys(model, **changes):
    kw = {"dataset_options": OPTIONS, "limit": LIMIT, **changes}
    dataset = kw.pop("dataset", DATASET)
    configs = kw.pop("configs", CONFIGS[:1])
    return [c.key for c in plan_sweep(model, dataset, configs, **kw).cells]


def test_store_keys(adapter, tmp_path):
    base = _keys(adapter)
    assert _keys(adapter) == base
    assert _keys(adapter, configs=["scope(alpha=0,p=1)@16"]) == base  # same canonical config
    variants = [
        _keys(adapter, limit=3), _keys(adapter, limit=None), _keys(adapter, dataset_options={"n_images": 7}),
        _keys(adapter, dataset_options={**OPTIONS, "split": "random"}), _keys(adapter, configs=["scope(alpha=0)@8"]),
        _keys(adapter, configs=["scope(alpha=0.5)@16"]), _keys(adapter, dataset="toy-scienceqa"),
        _keys(small_adapter(seed=1)),
    ]
    assert len({tuple(base), *map(tuple, variants)}) == len(variants) + 1

    # a checkpoint directory is keyed by its content: a copy elsewhere shares cells, new weights do not
    adapter.model.save_pretrained(tmp_path / "a")
    adapter.processor.save_pretrained(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert _keys(str(tmp_path / "a")) == _keys(str(tmp_path / "b"))
    small_adapter(seed=2).model.save_pretrained(tmp_path / "b")
    assert _keys(str(tmp_path / "a")) != _keys(str(tmp_path / "b"))


def test_a_model_path_is_not_loaded_when_everything_is_cached(adapter, tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt")
    adapter.model.save_pretrained(path)
    adapter.processor.save_pretrained(path)
    first = _run(path, tmp_path / "results", configs=CONFIGS[:1], model_name=None)
    assert first["model"].eq(path).all()
    assert _keys(LlavaAdapter.load(path)) == _keys(path)  # an adapter loaded from a directory shares its cells

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded although every cell is cached")

    monkeypatch.setattr(LlavaAdapter, "load", no_load)
    again = _run(path, tmp_path / "results", configs=CONFIGS[:1], model_name=None)
    assert again.attrs["cells"][0]["status"] == "cached"
    pd.testing.assert_frame_equal(first, again, check_exact=True)


def test_crashed_run_resumes_without_lost_or_duplicated_rows(adapter, reference, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = sweep_run.score_batch

    def crash_mid_cell(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # cell 1 has 5 batches of 6: crash in the middle of cell 2
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep_run, "score_batch", crash_mid_cell)
    with pytest.raises(KeyboardInterrupt):
        _run(adapter, tmp_path)
    monkeypatch.setattr(sweep_run, "score_batch", original)
    assert len(list(tmp_path.glob("*.parquet"))) == 1  # cell 1 finished
    parts = sorted(tmp_path.glob("*.parts/part-*.parquet"))
    assert len(parts) == 2

    counter = ForwardCounter(adapter)
    try:
        resumed = _run(adapter, tmp_path)
    finally:
        counter.remove()
    assert [c["status"] for c in resumed.attrs["cells"]] == ["cached", "resumed"]
    assert counter.calls == 3  # only the 3 remaining batches were scored (images already encoded)
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)


def test_part_writes_are_atomic(adapter, reference, tmp_path, monkeypatch):
    real_write = sweep_store.pq.write_table
    writes = {"n": 0}

    def dying_write(table, where, **kwargs):
        writes["n"] += 1
        if writes["n"] == 3:  # die half-way through writing the third part
            real_write(table, where, **kwargs)
            with open(where, "r+b") as handle:
                handle.truncate(100)
            raise OSError("disk died mid-write")
        return real_write(table, where, **kwargs)

    monkeypatch.setattr(sweep_store.pq, "write_table", dying_write)
    with pytest.raises(OSError, match="mid-write"):
        _run(adapter, tmp_path)
    monkeypatch.setattr(sweep_store.pq, "write_table", real_write)
    parts_dir = next(tmp_path.glob("*.parts"))
    visible = sorted(p.name for p in parts_dir.iterdir())
    assert visible == ["part-000000.parquet", "part-000001.parquet"]  # no partial file under a real name
    for part in parts_dir.glob("part-*.parquet"):
        assert len(pd.read_parquet(part)) == BATCH
    # a SIGKILL during a write leaves only a temporary file: it is ignored and removed
    (parts_dir / ".part-000002.parquet.999.deadbeef.tmp").write_bytes(b"PAR1 half a file")
    resumed = _run(adapter, tmp_path)
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)
    assert not list(tmp_path.rglob("*.tmp"))


def test_parts_group_batches_by_scoring_time(adapter, reference, tmp_path, monkeypatch):
    """A part holds the batches scored within PART_SECONDS: one part per slice when scoring is
    fast, one per batch at 0; either way the cell consolidates to the same rows."""
    written = []
    real_write = sweep_store.Cell.write_part

    def counting_write(cell, rows, seconds, batch=None):
        written.append((cell.key, batch, len(rows)))
        return real_write(cell, rows, seconds, batch=batch)

    monkeypatch.setattr(sweep_store.Cell, "write_part", counting_write)
    monkeypatch.setattr(sweep_run, "PART_SECONDS", 1e9)
    grouped = _run(adapter, tmp_path / "grouped")
    assert [(batch, n) for _, batch, n in written] == [(0, 30), (0, 30)]  # one part per cell of 5 batches
    written.clear()
    monkeypatch.setattr(sweep_run, "PART_SECONDS", 0.0)
    _run(adapter, tmp_path / "per-batch")
    assert [(batch, n) for _, batch, n in written] == [(j, BATCH) for _ in CONFIGS for j in range(5)]
    pd.testing.assert_frame_equal(grouped, reference, check_exact=True)


def test_caption_rows_and_adaptive_count(adapter, tmp_path):
    rows = run_sweep(adapter, "toy-captions", ["scope(alpha=0)@16", "agile_count@16"], dataset_options={"n_images": 4},
                     limit=3, batch_size=2, max_new_tokens=6, results_dir=tmp_path, progress=False)
    assert list(rows.columns) == ADDED + CAPTION_COLUMNS
    assert len(rows) == 6 and rows["caption"].map(lambda c: isinstance(c, str)).all()
    objects = load_dataset("toy-captions", n_images=4).objects
    assert (rows["n_gt"] == rows["image"].map(lambda k: len(objects[k]))).all()
    assert (rows["n_hallucinated"] <= rows["n_mentions"]).all()
    assert (rows["hallucinated"] == (rows["n_hallucinated"] > 0)).all()
    assert (rows["n_mentions"] == rows["mentioned"].map(len)).all()
    assert (rows["kept"].map(len) == rows["n_kept"]).all()
    scope = rows[rows["method"] == "scope"]
    assert (scope["n_kept"] == 16).all()
    keys = [c.key for c in plan_sweep(adapter, "toy-captions", ["scope(alpha=0)@16"], dataset_options={"n_images": 4},
                                      limit=3, max_new_tokens=7).cells]
    assert keys[0] != rows.attrs["cells"][0]["key"]  # max_new_tokens is part of a caption cell's key


@pytest.mark.parametrize("configs, match", [
    ([], "configs is empty"),
    (["scope@500"], "exceeds the model's N = 144"),
    (["full@100"], "use k = N = 144"),
    (["scoop@8"], "unknown pruner"),
])
def test_run_sweep_rejects_bad_configs(adapter, tmp_path, configs, match):
    with pytest.raises(StudyParameterError, match=match):
        _run(adapter, tmp_path, configs=configs)
    assert not list(tmp_path.iterdir())


def test_full_config_runs(adapter, tmp_path):
    rows = _run(adapter, tmp_path, configs=[f"full@{N_TOKENS}"], limit=1)
    assert (rows["n_kept"] == N_TOKENS).all() and rows["config"].eq("full@144").all()
