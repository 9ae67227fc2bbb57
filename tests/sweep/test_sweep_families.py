"""run_sweep by the names of the tiny random LLaVA-NeXT and Qwen2.5-VL models, end to end, and
the store keeps the results of different models apart."""

from __future__ import annotations

import pytest

from studylib.sweep import plan_sweep, run_sweep
from studylib.sweep.identity import model_identity, model_num_tokens

DATASET, OPTIONS, LIMIT = "toy-pope", {"n_images": 2}, 1  # one image: 18 questions per config
NAMES = ["tiny-random", "tiny-random-llava-next", "tiny-random-qwen2.5-vl"]


def _run(name, results_dir, configs):
    return run_sweep(name, DATASET, configs, dataset_options=OPTIONS, limit=LIMIT, results_dir=results_dir,
                     batch_size=8, progress=False)


@pytest.mark.parametrize("name", NAMES[1:])
def test_run_sweep_by_family_name(name, tmp_path):
    n = model_num_tokens(name)
    rows = _run(name, tmp_path, ["random(seed=0)@8", f"full@{n}"])
    assert len(rows) == 36 and set(rows["model"]) == {name}
    random_rows = rows[rows["method"] == "random"]
    assert (random_rows["n_kept"] == 8).all()
    full = rows[rows["method"] == "full"]
    assert (full["n_kept"] <= n).all() and full["probs"].map(lambda p: abs(sum(p) - 1) < 1e-6).all()
    again = _run(name, tmp_path, ["random(seed=0)@8"])
    assert again.attrs["cells"][0]["status"] == "cached"


def test_models_never_share_store_cells(tmp_path):
    assert len({str(model_identity(name)) for name in NAMES}) == len(NAMES)
    keys = {plan_sweep(name, DATASET, ["random(seed=0)@8"], dataset_options=OPTIONS, limit=LIMIT,
                       results_dir=tmp_path).cells[0].key for name in NAMES}
    assert len(keys) == len(NAMES)
    _run(NAMES[1], tmp_path, ["random(seed=0)@8"])
    other = _run(NAMES[2], tmp_path, ["random(seed=0)@8"])
    assert other.attrs["cells"][0]["status"] == "computed" and set(other["model"]) == {NAMES[2]}
