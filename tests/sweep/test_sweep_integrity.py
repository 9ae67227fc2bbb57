"""The store never serves stale or damaged rows: a replaced image, a changed prompt, changed
in-memory weights, a changed byte in the middle of a large weight file and a flipped byte in a
stored parquet all give a new or recomputed cell; equivalent option spellings share a cell."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _sweep_helpers import small_adapter
from PIL import Image

import studylib.sweep.digests as digests
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.sweep import StoreIntegrityWarning, StudyParameterError, model_identity, plan_sweep, run_sweep
from studylib.sweep.store import QUARANTINE
from studylib.sweep.verify import main as verify_main
from studylib.sweep.verify import verify

SWEEP = dict(limit=2, batch_size=6, progress=False, model_name="small-random")
OPTIONS = {"n_images": 6}
CONFIG = ["scope(alpha=0)@16"]


@pytest.fixture(scope="module")
def adapter():
    return small_adapter()


def _run(adapter, results, dataset="toy-pope", options=OPTIONS, **kw):
    return run_sweep(adapter, dataset, CONFIG, dataset_options=options, results_dir=results, **{**SWEEP, **kw})


def _status(rows) -> list[str]:
    return [cell["status"] for cell in rows.attrs["cells"]]


def _picture(colour):
    """A one-colour picture with one white pixel (the loaders refuse blank images)."""
    image = Image.new("RGB", (96, 96), colour)
    image.putpixel((0, 0), (255, 255, 255))
    return image


def _pope_folder(tmp_path, colours=((200, 30, 30), (30, 200, 30))):
    questions = tmp_path / "pope"
    images = tmp_path / "images"
    questions.mkdir()
    images.mkdir()
    lines = []
    for i, colour in enumerate(colours):
        name = f"img{i}.png"
        _picture(colour).save(images / name)
        lines += [{"question_id": 2 * i + j, "image": name, "text": f"Is there a {w} in the image?",
                   "label": label} for j, (w, label) in enumerate([("cat", "yes"), ("dog", "no")])]
    (questions / "coco_pope_random.json").write_text("\n".join(json.dumps(line) for line in lines))
    return {"questions": str(questions / "coco_pope_random.json"), "images": str(images)}


def test_a_replaced_image_gives_a_new_cell(adapter, tmp_path):
    options = _pope_folder(tmp_path)
    first = _run(adapter, tmp_path / "results", "pope", options, limit=None)
    image = tmp_path / "images" / "img1.png"
    _picture((250, 250, 20)).save(image)  # same name, new content
    second = _run(adapter, tmp_path / "results", "pope", options, limit=None)
    assert _status(second) == ["computed"]
    assert first.attrs["cells"][0]["key"] != second.attrs["cells"][0]["key"]
    changed = second["image"] == "img1.png"
    assert not np.array_equal(np.stack(first.loc[changed, "probs"]), np.stack(second.loc[changed, "probs"]))
    pd.testing.assert_frame_equal(first[~changed], second[~changed], check_exact=True)
    _picture((30, 200, 30)).save(image)  # the original content again: the first cell
    assert _status(_run(adapter, tmp_path / "results", "pope", options, limit=None)) == ["cached"]


def test_a_changed_prompt_gives_a_new_cell(adapter, tmp_path, monkeypatch):
    first = _run(adapter, tmp_path)
    monkeypatch.setattr(prompts, "SHORT_ANSWER", "Answer with one word.")
    second = _run(adapter, tmp_path)
    assert _status(second) == ["computed"] and first.attrs["cells"][0]["key"] != second.attrs["cells"][0]["key"]
    assert not np.array_equal(np.stack(first["probs"]), np.stack(second["probs"]))
    monkeypatch.setattr(prompts, "YES_NO_VERBALIZER", {"yes": ("Yes",), "no": ("No",)})
    assert plan_sweep(adapter, "toy-pope", CONFIG, dataset_options=OPTIONS, limit=2).cells[0].key not in {
        first.attrs["cells"][0]["key"], second.attrs["cells"][0]["key"]}


def test_changed_in_memory_weights_give_a_new_cell(adapter, tmp_path):
    model = small_adapter()
    first = _run(model, tmp_path)
    with torch.no_grad():
        model.model.model.multi_modal_projector.linear_1.weight[0, 0] += 0.5  # cached features go stale too
    second = _run(model, tmp_path)
    assert _status(second) == ["computed"]
    assert not np.array_equal(np.stack(first["probs"]), np.stack(second["probs"]))


def test_an_adapter_loaded_from_a_directory_shares_its_cells_until_its_weights_change(adapter, tmp_path):
    path = tmp_path / "ckpt"
    adapter.model.save_pretrained(path)
    adapter.processor.save_pretrained(path)
    loaded = LlavaAdapter.load(str(path))
    assert model_identity(loaded) == model_identity(str(path))
    with torch.no_grad():
        next(loaded.model.parameters()).view(-1)[0] += 1.0
    assert "parameters_sha256" in model_identity(loaded)


def test_a_change_in_the_middle_of_a_large_weight_file_changes_the_identity(tmp_path, monkeypatch):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    weights = checkpoint / "model.safetensors"
    with open(weights, "wb") as handle:
        handle.truncate(300 * 2**20)  # sparse, > 256 MiB
    before = model_identity(str(checkpoint))
    hashed = {"n": 0}
    real = digests.sha256_stream

    def counting(handle):
        hashed["n"] += 1
        return real(handle)

    monkeypatch.setattr(digests, "sha256_stream", counting)
    assert model_identity(str(checkpoint)) == before and hashed["n"] == 0  # served from the digest cache
    stat = weights.stat()
    with open(weights, "r+b") as handle:
        handle.seek(150 * 2**20)
        handle.write(b"\x01")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime put back
    after = model_identity(str(checkpoint))
    assert after != before and hashed["n"] == 1
    assert json.loads(digests.cache_path().read_text())  # the digest is cached on disk


def test_equivalent_option_spellings_share_one_cell(adapter, tmp_path):
    first = _run(adapter, tmp_path, options={"split": "all", "n_images": 6})
    second = _run(adapter, tmp_path, options={"n_images": 6, "seed": 0})
    assert _status(second) == ["cached"] and first.attrs["cells"] == [{**c, "status": "computed"}
                                                                      for c in second.attrs["cells"]]
    assert plan_sweep(adapter, "toy-pope", CONFIG, dataset_options=OPTIONS, limit=6).cells[0].key == \
        plan_sweep(adapter, "toy-pope", CONFIG, dataset_options=OPTIONS, limit=None).cells[0].key


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_finished_cell_is_never_served(adapter, tmp_path):
    pristine = tmp_path / "pristine"
    reference = _run(adapter, pristine)
    key = reference.attrs["cells"][0]["key"]
    size = (pristine / f"{key}.parquet").stat().st_size
    plan = plan_sweep(adapter, "toy-pope", CONFIG, dataset_options=OPTIONS, limit=2, results_dir=tmp_path / "work")
    cell = plan.cells[0]
    served_without_manifest = 0
    for offset in range(0, size, max(1, size // 60)):
        for keep_manifest in (True, False):
            shutil.rmtree(tmp_path / "work", ignore_errors=True)
            shutil.copytree(pristine, tmp_path / "work")
            if not keep_manifest:
                cell.manifest.unlink()
            _flip(cell.parquet, offset)
            with pytest.warns(StoreIntegrityWarning) if keep_manifest else warnings.catch_warnings():
                warnings.simplefilter("ignore" if not keep_manifest else "default", StoreIntegrityWarning)
                rows = cell.load()
            if keep_manifest:  # the manifest's sha256 of the file catches every flipped byte
                assert rows is None and not cell.parquet.exists()
            elif rows is not None:  # the embedded checksum alone: identical rows or nothing
                pd.testing.assert_frame_equal(rows, reference.iloc[:, 5:], check_exact=True)
                served_without_manifest += 1
    assert served_without_manifest < len(range(0, size, max(1, size // 60))) / 2  # most flips touch the data
    # end to end: the damaged cell is quarantined, named in a warning, and recomputed
    shutil.rmtree(tmp_path / "work")
    shutil.copytree(pristine, tmp_path / "work")
    _flip(cell.parquet, size // 2)
    with pytest.warns(StoreIntegrityWarning, match=key):
        again = _run(adapter, tmp_path / "work")
    assert _status(again) == ["computed"]
    pd.testing.assert_frame_equal(again, reference, check_exact=True)
    assert len(list((tmp_path / "work" / QUARANTINE).iterdir())) == 2  # the parquet and its manifest


def test_verify_reports_and_prunes(adapter, tmp_path, capsys):
    options = _pope_folder(tmp_path)
    results = tmp_path / "results"
    stale = _run(adapter, results, "pope", options, limit=None).attrs["cells"][0]["key"]
    _picture((0, 0, 255)).save(tmp_path / "images" / "img0.png")
    current = _run(adapter, results, "pope", options, limit=None).attrs["cells"][0]["key"]
    damaged = _run(adapter, results, "pope", options, limit=1).attrs["cells"][0]["key"]
    _flip(results / f"{damaged}.parquet", 100)
    (results / ("f" * 24 + ".json")).write_text(json.dumps({"key": "f" * 24, "fields": {}}))  # a manifest alone
    (results / ("e" * 24 + ".json")).write_text("{}")  # a user's file named like a key: never pruned
    assert verify_main([str(results)]) == 1  # damaged cells: exit status 1
    printed = capsys.readouterr().out
    table = verify(results).set_index("key")
    assert table["status"].to_dict() == {stale: "stale key", current: "ok", damaged: "damaged", "f" * 24: "orphaned",
                                         "e" * 24: "not a store file"}
    assert table.loc[stale, "detail"] == "changed: images" and stale in printed and "1 stale key" in printed
    assert table.loc[stale, "action"] == f"remove {stale}.parquet, {stale}.json"
    with pytest.warns(StoreIntegrityWarning):
        assert verify_main([str(results), "--prune"]) == 0
    assert f"remove {results / stale}.parquet" in capsys.readouterr().out
    assert verify_main([str(results)]) == 0
    assert sorted(p.name for p in results.iterdir() if p.name != QUARANTINE) == sorted(
        [f"{current}.json", f"{current}.parquet", "e" * 24 + ".json"])  # keys hash the code: any order


def test_a_store_is_read_where_the_images_are_missing(adapter, tmp_path):
    options = _pope_folder(tmp_path)
    first = _run(adapter, tmp_path / "results", "pope", options, limit=None)
    (tmp_path / "images" / "img1.png").unlink()  # rendering a copied store on a machine without the images
    again = _run(adapter, tmp_path / "results", "pope", options, limit=None)
    assert _status(again) == ["cached"]
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    with pytest.raises(StudyParameterError, match="img1.png.*not found.*no stored cell matches"):
        _run(adapter, tmp_path / "elsewhere", "pope", options, limit=None)
