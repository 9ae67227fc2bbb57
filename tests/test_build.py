"""Build helpers (studylib.build), pages, reported numbers, claims and the book's static wiring."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from studylib import build, claims, pages, reported, summary
from studylib.claims import Claim
from studylib.experiments import common
from studylib.sweep import validate

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


# ----------------------------------------------------------------------------- profiles

@pytest.mark.parametrize("profile", ["toy", "llava-1.5-7b"])
def test_profiles_fit_every_notebook(profile):
    loaded = build.load_profile(profile)
    assert loaded["name"] == profile
    assert set(loaded["notebooks"]) <= {p.stem for p in NOTEBOOKS}, "profile names a notebook that does not exist"
    for path in NOTEBOOKS:
        declared = build.declared_parameters(path)
        params = build.notebook_parameters(loaded, path.stem, declared)  # raises on unknown keys
        if "model" in declared:
            assert "model" in params


def test_the_toy_profile_passes_the_up_front_check_of_every_notebook():
    """What build_book checks before any notebook runs (every_pruner's ``pruners = "all"`` included)."""
    loaded = build.load_profile("toy")
    for path in NOTEBOOKS:
        declared = build.declared_parameters(path)
        validate.check_run_parameters({**declared, **build.notebook_parameters(loaded, path.stem, declared)})


def test_the_leaderboard_profile_runs_every_pruner_at_the_papers_sizes_on_the_toys_store():
    """toy-leaderboard: every_pruner alone, at the sizes the toy profile gives the POPE and ScienceQA pages,
    in the toy profile's result store (so the cells those pages computed are reused)."""
    toy, board = build.load_profile("toy"), build.load_profile("toy-leaderboard")
    path = next(p for p in NOTEBOOKS if p.stem == "every_pruner")
    declared = build.declared_parameters(path)
    params = build.notebook_parameters(board, "every_pruner", declared)
    validate.check_run_parameters({**declared, **params})
    assert list(board["notebooks"]) == ["every_pruner"]
    assert params["pope_options"] == toy["notebooks"]["u_curve"]["dataset_options"] and params["limit"] is None
    assert params["sqa_options"] == toy["notebooks"]["scienceqa"]["dataset_options"]
    assert board["defaults"]["results_dir"] == toy["defaults"]["results_dir"]


def test_profiles_say_what_they_run():
    toy = build.load_profile("toy")
    assert toy["defaults"]["model"] == "toy" and toy["defaults"]["device"] == "cpu"
    assert toy["notebooks"]["u_curve"]["budgets"] == [144, 48, 32, 16, 8]
    real = build.load_profile("llava-1.5-7b")
    assert real["defaults"]["model"] == "llava-hf/llava-1.5-7b-hf"
    assert real["defaults"]["dtype"] == "bfloat16" and real["defaults"]["device"] == "cuda"
    assert real["defaults"]["n_bootstrap"] == 1000 and real["defaults"]["limit"] is None
    assert real["notebooks"]["u_curve"]["budgets"] == [576, 192, 128, 64, 32]


def test_profile_errors(tmp_path):
    with pytest.raises(build.ProfileError, match="available"):
        build.load_profile("no-such-profile")
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: {}\n")
    with pytest.raises(build.ProfileError, match="unknown top-level"):
        build.load_profile(bad)
    profile = {"name": "x", "defaults": {"model": "toy", "unused": 1}, "notebooks": {"nb": {"typo": 1}}}
    with pytest.raises(build.ProfileError, match="typo"):
        build.notebook_parameters(profile, "nb", ["model"])
    assert build.notebook_parameters({"defaults": {"model": "toy", "unused": 1}}, "nb", ["model"], {"model": "m"}) == {"model": "m"}


def test_parse_overrides():
    out = build.parse_overrides(["limit=50", "u_curve.budgets=[144, 8]", "model=toy"], ["u_curve"])
    assert out == {"*": {"limit": 50, "model": "toy"}, "u_curve": {"budgets": [144, 8]}}
    with pytest.raises(build.ProfileError, match="unknown notebook"):
        build.parse_overrides(["nope.limit=1"], ["u_curve"])
    with pytest.raises(build.ProfileError, match="key=value"):
        build.parse_overrides(["limit"], ["u_curve"])


def test_declared_parameters_reads_specs_with_equals_signs():
    declared = build.declared_parameters(REPO / "notebooks" / "u_curve.ipynb")
    assert declared["pruner"] == "scope(alpha=1)"
    assert declared["budgets"] == [576, 192, 128, 64, 32]
    assert declared["limit"] is None


def test_run_settings_come_from_the_profile_or_the_defaults():
    declared = build.declared_parameters(REPO / "notebooks" / "u_curve.ipynb")
    assert {k: declared[k] for k in common.RUN_SETTINGS} == common.RUN_SETTINGS, "not in the parameters cell"
    toy = build.experiment_parameters("toy", "u_curve", batch_size=8, n_bootstrap=1000)
    assert (toy["batch_size"], toy["n_bootstrap"], toy["results_dir"], toy["profile"]) == (8, 1000, "results/toy", "toy")
    setup = common.Setup.create("u_curve", {"model": "toy", "device": "cpu", "limit": 5, "n_bootstrap": 10})
    assert (setup.batch_size, setup.n_bootstrap, setup.results_dir, setup.limit) == (32, 10, "results/toy", 5)
    assert (setup.dtype, setup.bootstrap_seed) == ("bfloat16", 0)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['n_boostrap'\].*run settings"):
        common.Setup.create("u_curve", {"model": "toy", "n_boostrap": 10})
    namespace = {"model": "toy", "batch_size": 4, "unrelated": 1}
    assert common.parameters_for(lambda *, model, limit=None, **settings: None, namespace) == \
        {"model": "toy", "batch_size": 4}


def test_parameters_that_follow_the_budgets():
    derive = validate.derived_budget_parameters
    toy = derive([144, 48, 32, 16, 8], 144)  # the toy profile's values, derived
    assert toy == {"moderate_k": 32, "aggressive_k": 8, "k_map": {144: 576, 48: 192, 32: 128, 16: 64, 8: 32}}
    assert derive([576, 192, 128, 64, 32], 576) == {"moderate_k": 128, "aggressive_k": 32,
                                                    "k_map": {576: 576, 192: 192, 128: 128, 64: 64, 32: 32}}
    other = derive([144, 72, 24, 12, 4], 144)
    assert (other["moderate_k"], other["aggressive_k"]) == (24, 4) and other["k_map"][72] == 288
    assert derive([144, 32], 144, reported_budgets=[576, 128])["k_map"] == {144: 576, 32: 128}
    assert derive([144, 32], 144, reported_budgets=None)["k_map"] == {144: "—", 32: "—"}
    with pytest.raises(ValueError, match="reported_budgets .* give the paper's budget") as error:
        derive([144, 32], 144, moderate_k=7, reported_budgets=[576])
    assert "moderate_k = 7 is not one of budgets [144, 32]" in str(error.value)  # both problems, one message
    with pytest.raises(ValueError, match="moderate_k"):
        common.check_choice("moderate_k", 7, [144, 32])


def test_set_budgets_alone_drops_the_profiles_derived_values():
    profile = build.load_profile("toy")
    declared = build.declared_parameters(REPO / "notebooks" / "u_curve.ipynb")
    kept = build.notebook_parameters(profile, "u_curve", declared, {"limit": 5})
    assert kept["moderate_k"] == 32 and kept["reported_budgets"] == [576, 192, 128, 64, 32]
    chosen = build.notebook_parameters(profile, "u_curve", declared, {"budgets": [144, 72, 24, 12, 4]})
    assert not {"moderate_k", "aggressive_k", "reported_budgets"} & set(chosen)  # derived from the new budgets
    both = build.notebook_parameters(profile, "u_curve", declared, {"budgets": [144, 72], "moderate_k": 72})
    assert both["moderate_k"] == 72
    validate.check_run_parameters({**declared, **chosen})  # and the result passes the up-front check


def test_the_up_front_check_names_missing_data_paths_and_derived_values(tmp_path):
    params = {"model": "toy", "budgets": [144, 72, 24], "moderate_k": 32, "dataset": "pope",
              "dataset_options": {"questions": str(tmp_path / "nope"), "images": str(tmp_path)},
              "tasks": {"X": {"dataset": "toy-pope", "dataset_options": {"n_image": 3}}}}
    with pytest.raises(ValueError) as error:
        validate.check_run_parameters(params)
    message = str(error.value)
    assert message.startswith("3 problems with the parameters")
    assert "moderate_k = 32 is not one of budgets [144, 72, 24]" in message
    assert f"questions = '{tmp_path / 'nope'}' does not exist" in message
    assert "tasks.X.dataset options for 'toy-pope'" in message and "n_image" in message


def test_reported_budgets_null_shows_no_paper_budget():
    ours = pd.DataFrame({"pruner": ["full", "scope(alpha=1,p=1)"], "k": [144, 32], "ece": [0.05, 0.02]})
    k_map = validate.derived_budget_parameters([144, 32], 144, reported_budgets=None)["k_map"]
    side = reported.beside_reported(ours, ["ece"], paper="000", table="Table 1", label="x", k_map=k_map)
    assert side.index.get_level_values("paper K").tolist() == [576, "—"]  # the unpruned model is the paper's
    assert side[("ece", "reported")].iloc[0] == pytest.approx(0.041) and math.isnan(side[("ece", "reported")].iloc[1])


def test_labels():
    assert pages.is_toy("toy") and not pages.is_toy("llava-hf/llava-1.5-7b-hf")
    assert pages.model_label("toy") == "TOY model"
    assert "TOY model" in pages.run_banner("toy", "toy")


# ----------------------------------------------------------------------------- reported beside ours

def test_beside_reported_maps_budgets_and_units():
    ours = pd.DataFrame({"pruner": ["full", "scope(alpha=1,p=1)"], "k": [144, 32],
                         "accuracy": [0.8, 0.75], "ece": [0.05, 0.02], "ece_low": [0.04, 0.01], "ece_high": [0.06, 0.03]})
    side = reported.beside_reported(ours, ["accuracy", "ece"], paper="000", table="Table 1", label="this run (TOY)",
                                k_map={144: 576, 32: 128}, ci=True)
    assert side[("accuracy", "this run (TOY)")].tolist() == pytest.approx([80.0, 75.0])
    assert side[("accuracy", "reported")].tolist() == pytest.approx([86.9, 86.9])
    assert side[("ece", "reported")].tolist() == pytest.approx([0.041, 0.024])
    assert side[("ece", "95% CI low")].tolist() == pytest.approx([0.04, 0.01])
    assert side[("ece", "95% CI high")].tolist() == pytest.approx([0.06, 0.03])
    assert side.index.get_level_values("paper K").tolist() == [576, 128]
    missing = reported.beside_reported(ours.assign(k=[144, 7]), ["ece"], paper="000", table="Table 1", label="x")
    assert math.isnan(missing[("ece", "reported")].iloc[1])


def _cells(styler) -> tuple[list[str], list[list[str]]]:
    """Visible column headers (last level) and body cells of a Styler's HTML."""
    import re
    html = styler.to_html()
    head = re.findall(r'<th id="T_\w+_level(\d+)_col\d+"[^>]*>(.*?)</th>', html)
    last = max((int(level) for level, _ in head), default=0)
    headers = [text for level, text in head if int(level) == last]
    rows = [[re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r'<td id="T_\w+_row\d+_col\d+"[^>]*>(.*?)</td>', row)]
            for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)]  # cell text without its markup (the CI's span)
    return headers, [r for r in rows if r]


def test_style_table_precision():
    html = pages.style_table(pd.DataFrame({"accuracy": [86.91], "ece": [0.04123]}), caption="c").to_html()
    assert "86.9<" in html and "0.041<" in html


def test_style_table_formats_per_metric():
    frame = pd.DataFrame({"config": ["full"], "n": [2400], "accuracy": [0.8691], "selective_accuracy_80": [0.9012],
                          "chair_s": [0.25], "ece": [0.04123], "brier": [0.1], "nll": [0.41], "t_mean": [1.2345],
                          "erank_kept": [12.345]})
    headers, rows = _cells(pages.style_table(frame, hide_index=True))
    assert headers == ["configuration", "questions", "accuracy (%)", "selective accuracy at 80 % coverage (%)",
                       "CHAIR_s (%)", "ECE", "Brier", "NLL", "T* (cross-validated)", "erank of kept tokens"]
    assert rows == [["unpruned", "2400", "86.9", "90.1", "25.0", "0.041", "0.100", "0.410", "1.23", "12.35"]]
    assert frame["accuracy"].iloc[0] == 0.8691, "display only: the data stay fractions"


def test_style_table_keeps_percent_columns_and_converted_frames():
    already = reported.to_paper_units(pd.DataFrame({"chair_i": [0.004], "accuracy": [0.9]}), ["chair_i", "accuracy"])
    assert already.attrs["paper_units"] == ["accuracy", "chair_i"]
    _, rows = _cells(pages.style_table(already))
    assert rows == [["0.4", "90.0"]], "to_paper_units marks its columns: not scaled twice"
    _, rows = _cells(pages.style_table(pd.DataFrame({"accuracy": [85.5, 0.5]})))
    assert rows == [["85.5"], ["0.5"]], "a column with values above 1 is already in %"


def test_style_table_merges_ci_columns():
    frame = pd.DataFrame({"config": ["a", "b"], "accuracy": [0.869, 0.851], "accuracy_low": [0.851, 0.83],
                          "accuracy_high": [0.886, 0.87], "ece": [0.024, 0.031], "ece_low": [0.018, np.nan],
                          "ece_high": [0.030, np.nan]})
    styler = pages.style_table(frame, hide_index=True)
    headers, rows = _cells(styler)
    assert headers == ["configuration", "accuracy (%) [95 % CI]", "ECE [95 % CI]"]
    assert rows == [["a", "86.9 [85.1, 88.6]", "0.024 [0.018, 0.030]"], ["b", "85.1 [83.0, 87.0]", "0.031"]]
    assert list(styler.data.columns) == list(frame.columns), "the Styler keeps the numeric frame"


def test_style_table_two_level_headers_and_ci():
    ours = pd.DataFrame({"pruner": ["full", "scope(alpha=1,p=1)"], "k": [144, 32], "accuracy": [0.8, 0.75],
                         "ece": [0.05, 0.02], "ece_low": [0.04, 0.01], "ece_high": [0.06, 0.03]})
    side = reported.beside_reported(ours, ["accuracy", "ece"], paper="000", table="Table 1", label="this run (TOY)",
                                    k_map={144: 576, 32: 128}, ci=True)
    styler = pages.style_table(side)
    html = styler.to_html()
    headers, rows = _cells(styler)
    assert headers == ["this run (TOY)", "reported", "this run (TOY) [95 % CI]", "reported"]
    assert rows[0] == ["80.0", "86.9", "0.050 [0.040, 0.060]", "0.041"]
    assert ">accuracy (%)</th>" in html and ">ECE</th>" in html, "metric headers in words"
    assert "index_name level1\" >K</th>" in html and "index_name level2\" >paper's K</th>" in html


def test_header_words():
    assert pages.header_words("ece") == "ECE" and pages.header_words("config") == "configuration"
    assert pages.header_words("mean_erank_kept") == "mean erank of kept tokens"
    assert pages.header_words("some_new_metric") == "some new metric"
    assert pages.header_words("sel_acc_90") == "sel acc 90 (%)"
    assert pages.header_words("ece_low") == "ECE low"


def test_runtime_estimate():
    flops = build.prefill_flops(1000, [576], text_tokens=0)
    assert flops == pytest.approx(1000 * 576 * 2 * 7e9)
    assert build.estimated_seconds(989e12 * 0.35) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- glued values

def _glued_notebook(tmp_path, values):
    cell = nbformat.v4.new_code_cell("glue(...)")
    for name, value in values.items():
        cell.outputs.append(nbformat.v4.new_output(
            "display_data", data={f"{build.GLUE_PREFIX}text/plain": repr(value)},
            metadata={"scrapbook": {"name": name, "mime_prefix": build.GLUE_PREFIX}}))
    nb = nbformat.v4.new_notebook(cells=[cell])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_read_glued(tmp_path):
    path = _glued_notebook(tmp_path, {"x_ece": 0.031, "x_C1_verdict": "holds", "n": 12})
    assert build.read_glued(path) == {"x_ece": 0.031, "x_C1_verdict": "holds", "n": 12}


def test_hide_parameter_cells():
    """The page shows no code: the default parameters cell is removed, the injected one shows its values in a
    collapsed block, hidden inputs become removed ones; a second pass changes nothing."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("# Parameters\na = 2", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("result", metadata={"tags": ["hide-input"]})])
    build.hide_parameter_cells(nb)
    assert nb.cells[0].metadata["tags"] == ["parameters", "remove-cell"]
    assert nb.cells[1].metadata["tags"] == ["injected-parameters", "remove-input"]
    assert nb.cells[2].cell_type == "markdown"
    assert nb.cells[2].source.startswith("````{dropdown} Parameters of this run")
    assert "a = 2" in nb.cells[2].source and "# Parameters" not in nb.cells[2].source
    assert nb.cells[3].metadata["tags"] == ["remove-input"]
    build.hide_parameter_cells(nb)
    assert len(nb.cells) == 4


def test_findings_open_the_page():
    """"What this run found" goes right under the title and the run banner, generated from the glued claims."""
    claims = [Claim("C1", "seed 000", "lower ECE", "ece", "ece[a@1] − ece[b@1] < 0", -0.02, -0.03, -0.01, "holds",
                    "0.024 vs 0.041")]
    glue = nbformat.v4.new_code_cell("glue")
    glue.outputs.append(nbformat.v4.new_output(
        "display_data", data={f"{build.GLUE_PREFIX}text/plain": repr(summary.claims_to_json(claims))},
        metadata={"scrapbook": {"name": "u_curve_claims", "mime_prefix": build.GLUE_PREFIX}}))
    title = "# U-curve — TOY model\n\n```{warning}\nTOY model results.\n```\n\n**Paper:** seed 000."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(title), glue])
    build.lead_with_findings(nb, "u_curve", toy=True)
    assert nb.cells[0].source.endswith("```") and nb.cells[1].source.startswith("## What this run found")
    assert "holds" in nb.cells[1].source and "−0.017 in the paper" in nb.cells[1].source
    assert nb.cells[2].source.strip() == "**Paper:** seed 000."
    build.lead_with_findings(nb, "u_curve", toy=True)  # a second build replaces the block
    assert sum(c.source.startswith("## What this run found") for c in nb.cells) == 1


# ----------------------------------------------------------------------------- claims

def _rows(configs: dict[str, float], n_images: int = 60, per_image: int = 4, seed: int = 0) -> pd.DataFrame:
    """Yes/no rows where config c answers correctly with probability p_c, always with confidence 0.9."""
    rng = np.random.default_rng(seed)
    records = []
    for config, p_correct in configs.items():
        draws = np.random.default_rng(seed).random((n_images, per_image)) < p_correct
        for i in range(n_images):
            for j in range(per_image):
                label = "yes" if (i + j) % 2 else "no"
                correct = bool(draws[i, j])
                prediction = label if correct else ("no" if label == "yes" else "yes")
                p_yes = 0.9 if prediction == "yes" else 0.1
                records.append({"config": config, "dataset": "d", "qid": f"{i}-{j}", "image": f"im{i}", "task": "yesno",
                                "label": label, "choices": ["yes", "no"], "probs": [p_yes, 1 - p_yes],
                                "logits": [math.log(p_yes), math.log(1 - p_yes)], "prediction": prediction,
                                "confidence": 0.9, "correct": correct, "erank_kept": 10.0 + (config == "b@1") + rng.random()})
    return pd.DataFrame(records)


def test_delta_claim_verdicts_follow_the_numbers():
    rows = _rows({"a@1": 0.9, "b@1": 0.5})  # a: calibrated at confidence 0.9; b: far over-confident
    common = dict(source="test", statement="s", metric="ece", n_bootstrap=200)
    holds = claims.delta_claim(rows, id="X", a="a@1", b="b@1", direction="less", **common)
    assert holds.verdict == "holds" and holds.estimate < 0 and holds.low <= holds.estimate <= holds.high
    fails = claims.delta_claim(rows, id="Y", a="b@1", b="a@1", direction="less", **common)
    assert fails.verdict == "reversed"
    same = claims.delta_claim(rows, id="Z", a="a@1", b="a@1", direction="less", **common)
    assert same.verdict.startswith("inconclusive (zero-width CI")
    missing = claims.delta_claim(rows, id="M", a="a@1", b="nope@1", direction="less", **common)
    assert missing.verdict == "not applicable: needs nope@1"


def test_equivalence_and_mean_claims():
    rows = _rows({"a@1": 0.8, "b@1": 0.81})  # the same answers but for the few draws in [0.8, 0.81)
    eq = claims.equivalence_claim(rows, id="E", source="t", statement="s", a="a@1", b="b@1", metric="accuracy",
                                  margin=0.05, n_bootstrap=100)
    assert eq.verdict == "holds"
    far = claims.equivalence_claim(_rows({"a@1": 0.95, "b@1": 0.5}), id="F", source="t", statement="s", a="a@1",
                                   b="b@1", metric="accuracy", margin=0.05, n_bootstrap=100)
    assert far.verdict == "reversed"  # a change larger than the margin
    mean = claims.mean_delta_claim(rows, id="R", source="t", statement="s", a="b@1", b="a@1", column="erank_kept",
                                   direction="greater", n_bootstrap=100)
    assert mean.verdict == "holds" and mean.estimate == pytest.approx(1.0, abs=0.2)


def test_point_and_composite_claims():
    yes = claims.point_claim(1.0, 2.0, id="P", source="t", statement="s", metric="m", comparison="c", direction="less")
    no = claims.point_claim(3.0, 2.0, id="Q", source="t", statement="s", metric="m", comparison="c", direction="less")
    assert yes.verdict == "holds (point estimate)" and no.verdict == "reversed (point estimate)"
    assert claims.point_claim(float("nan"), 1.0, id="N", source="t", statement="s", metric="m", comparison="c",
                              direction="less").verdict.startswith("not applicable")
    inconclusive = claims.Claim("I", "t", "s", verdict="inconclusive (CI includes 0)")
    untested = claims.Claim("U", "t", "s")
    tested = claims.Claim("T", "t", "s", verdict="holds")
    assert claims.all_of([tested, tested], id="A", source="t", statement="s").verdict == "holds"
    # a composite is only as strong as its weakest part: point-estimate parts make it a point estimate
    assert claims.all_of([yes, tested], id="A", source="t", statement="s").verdict == "holds (point estimate)"
    assert claims.all_of([yes, no], id="A", source="t", statement="s").verdict == "reversed (point estimate)"
    assert claims.all_of([tested, inconclusive], id="A", source="t", statement="s").verdict == "inconclusive"
    assert claims.all_of([tested, untested], id="A", source="t", statement="s").verdict == "inconclusive"
    assert claims.all_of([untested], id="A", source="t", statement="s").verdict == "not applicable"
    assert claims.any_of([no, yes], id="B", source="t", statement="s").verdict == "holds (point estimate)"
    assert claims.any_of([no, no], id="B", source="t", statement="s").verdict == "reversed (point estimate)"
    with pytest.raises(ValueError, match="verdict"):
        claims.Claim("V", "t", "s", verdict="probably")


def test_claims_table_lists_parts():
    part = claims.point_claim(1.0, 2.0, id="P", source="t", statement="s", metric="m", comparison="c", direction="less")
    table = claims.claims_table([claims.all_of([part], id="A", source="t", statement="whole")])
    assert table["id"].tolist() == ["A", "  ↳ P"]
    assert list(table.columns) == ["id", "source", "claim", "test on this run", "estimate [95% CI]", "reported",
                                   "verdict", "note"]


# ----------------------------------------------------------------------------- book wiring

def test_book_css_makes_wide_tables_scroll():
    """book/_static/study.css (linked by Jupyter Book 1.x from book/_static) scrolls cell outputs."""
    css = (REPO / "book" / "_static" / "study.css").read_text()
    assert ".cell_output .output.text_html" in css and "overflow-x: auto" in css
    assert "table.study-table.claims td.verdict" in css and ".verdicts table" in css
    assert "position: sticky" not in css, "no column is pinned over another"
    intro = (REPO / "book" / "intro.md").read_text()
    assert ":::{container} verdicts" in intro and ":::{container} study-answer" in intro
    built = REPO / "book" / "_build" / "html" / "intro.html"
    if built.exists():
        assert "_static/study.css" in built.read_text(), "the built pages link study.css"


def test_book_config_is_offline_and_does_not_execute():
    config = yaml.safe_load((REPO / "book" / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["launch_buttons"]["thebe"] is False and not config["launch_buttons"]["binderhub_url"]
    assert config["sphinx"]["config"]["intersphinx_mapping"] == {}


def test_toc_and_build_order_cover_every_notebook():
    toc = (REPO / "book" / "_toc.yml").read_text()
    from studylib.experiments import ORDER

    for path in NOTEBOOKS:
        assert f"experiments/{path.stem}" in toc, path.stem
        assert path.stem in ORDER, path.stem


def test_verdicts_page_covers_every_intro_claim_and_says_what_did_not_run(tmp_path):
    from studylib.claim_specs import load_specs
    from studylib.experiments import ORDER

    page = build.verdicts_page(ORDER, tmp_path)  # nothing executed in tmp_path
    intro_claims = [spec for name in ORDER if (REPO / "data" / "claims" / f"{name}.yaml").exists()
                    for spec in load_specs(name) if spec.intro is not None]
    assert len(intro_claims) >= 20
    assert page.count(build.NOT_RUN) == len(intro_claims)
    assert "{include} verdicts.md" in (REPO / "book" / "intro.md").read_text()


def test_a_custom_run_does_not_replace_the_intros_numbers(tmp_path):
    """A page run with --set values or a plug-in shows its own numbers; the intro's verdict row names
    the custom run instead of taking them, and a run with the profile's parameters fills it."""
    from studylib.claim_specs import load_specs

    spec = next(s for s in load_specs("u_curve") if s.intro is not None)
    claim = claims.Claim(spec.id, "s", "x", "ece", "ece[a@1] − ece[b@1] < 0", 0.0123, 0.01, 0.015, claims.HOLDS)
    values = {f"u_curve_{spec.id}_verdict": "holds", f"u_curve_{spec.id}_estimate": "0.0123",
              "u_curve_claims": summary.claims_to_json([claim])}
    executed = tmp_path / "experiments"
    executed.mkdir()
    path = _glued_notebook(tmp_path, values)
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["studylib"] = {"custom": build.page_scope({"limit": 30}, ["/x/l2norm.py"])}
    nbformat.write(nb, str(executed / "u_curve.ipynb"))
    row = next(line for line in build.verdicts_page(["u_curve"], executed).splitlines() if spec.intro[:30] in line)
    assert "custom run (limit=30, plug-in l2norm.py)" in row and "0.0123" not in row and "**holds**" not in row
    assert build.custom_scope(executed / "u_curve.ipynb") == {"set": {"limit": 30}, "plugins": ["l2norm.py"]}

    nb.metadata["studylib"] = {"custom": build.page_scope({}, [])}
    nbformat.write(nb, str(executed / "u_curve.ipynb"))
    row = next(line for line in build.verdicts_page(["u_curve"], executed).splitlines() if spec.intro[:30] in line)
    assert "**holds**" in row and "+0.012 [+0.010, +0.015]" in row


def test_verdict_counts_and_the_intro_table_read_the_glued_outcomes(tmp_path):
    values = {"u_curve_C1_outcome": "holds", "u_curve_C1_estimator_sensitive": True,
              "u_curve_C1_verdict": "holds (estimator-sensitive; debiased ECE: inconclusive)",
              "u_curve_C2_outcome": "reversed", "u_curve_C2_estimator_sensitive": False,
              "u_curve_C3_outcome": "inconclusive", "u_curve_C3_estimator_sensitive": False,
              "u_curve_n_questions": 1400, "u_curve_paper_n_questions": 8910}
    debiased = claims.Claim("C1", "s", "x", "ece_debiased", "", -0.01, -0.03, 0.01, claims.INCONCLUSIVE)
    glued = [claims.Claim("C1", "s", "x", "ece", "", -0.02, -0.03, -0.01, claims.HOLDS, estimators=(debiased,)),
             claims.Claim("C2", "s", "x", "ece", "", 0.02, 0.01, 0.03, claims.REVERSED)]
    values["u_curve_claims"] = summary.claims_to_json(glued)
    path = _glued_notebook(tmp_path, values)
    path.rename(tmp_path / "u_curve.ipynb")
    counts = build.verdict_counts(["u_curve", "gallery"], tmp_path)
    assert counts == {**dict.fromkeys(claims.OUTCOMES, 0), "holds": 1, "reversed": 1, "inconclusive": 1,
                      "estimator-sensitive": 1}
    headline = build.verdict_counts(["u_curve"], tmp_path, headline_only=True)  # C1 and C2 have intro lines
    assert headline["holds"] == 1 and headline["reversed"] == 1 and headline["inconclusive"] == 0
    page = build.verdicts_page(["u_curve"], tmp_path)
    assert page.startswith(claims.LEGEND + "\n")
    assert "**holds** (estimator-sensitive; debiased ECE: inconclusive)" in page
    assert "1,400 (fewer than the paper's 8,910)" in page


def test_the_intro_counts_what_each_claim_was_tested_on():
    """The questions column gives the claim's own sample (500 captions, 2,017 ScienceQA questions), not
    the page's first benchmark; the paper's count is compared only on the page's whole question set."""
    glued = {"p_n_questions": 8970, "p_paper_n_questions": 9000}
    pope = Claim("a", "s", "s", n_questions=8970)
    assert build._questions(glued, "p", pope) == "8,970 (fewer than the paper's 9,000)"
    assert build._questions(glued, "p", Claim("b", "s", "s", n_questions=2017)) == "2,017"
    assert build._questions(glued, "p", Claim("c", "s", "s", n_questions=500, unit="captions")) == "500 captions"
    assert build._questions(glued, "p", Claim("d", "s", "s")) == "8,970 (fewer than the paper's 9,000)"
    assert build._questions({}, "p", Claim("e", "s", "s")) == ""
