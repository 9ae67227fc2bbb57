"""Diversity, attention and hallucination: AgilePruner's claims (seed 002 §4 and App. B).

Seed 002 measures the diversity of the kept tokens by their effective rank (erank) and the
concentration of the [CLS] attention by its entropy.  This experiment runs, on one model:

1. the unpruned model on POPE: each image's erank and attention entropy (its complexity) and
   AgilePruner's reference values (their means, unless given);
2. the erank of the tokens kept by several pruners at K = ``k_main`` (Table 1);
3. greedy captions scored with CHAIR (Tables 2, 8) and DivPrune tokens replaced by
   high-attention ones (Table 3);
4. attention- vs diversity-based pruning on simple and complex images (Table 4);
5. a fixed similarity threshold τ (Table 12);
6. the adaptive methods on POPE and ScienceQA (Tables 5, 6, 7, 11, 13);

and judges the paper's claims (``data/claims/erank_hallucination.yaml``) on these rows.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Iterable, Mapping

import pandas as pd
from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters, require
from studylib.experiments.result import Result
from studylib.pages import rows_by_source, style_table
from studylib.pruners import parse_spec
from studylib.pruners.agile import ENTROPY_AVG_PLACEHOLDER, ERANK_AVG_PLACEHOLDER
from studylib.reported import beside_reported, reported, to_paper_units

#: AgilePruner with a constant threshold: ``erank_avg`` -> 0 saturates the adaptive τ at ``tau_max``
FIXED_TAU = "agile(erank_avg=1e-06,tau_max={tau})"
#: the reference budget of seed 002 Table 13 (adaptive token count)
PAPER_COUNT_K = 88
#: the tasks of the adaptive sweep: (benchmark column of our rows, benchmark in reported.csv, the
#: paper's score: seed 002's POPE column is the F1 of LLaVA-1.5's POPE evaluation, not accuracy)
TASKS = (("POPE", "POPE", "f1"), ("ScienceQA", "ScienceQA-IMG", "accuracy"))
SCORE_NAMES = {"f1": "F1", "accuracy": "accuracy"}
#: adaptive methods: table name -> spec (AgilePruner specs get this run's reference values)
ADAPTIVE = {"vispruner": "vispruner", "VisPruner + adaptive": "agile_mix(div=vispruner)",
            "VisPruner + inverse": "agile_mix(div=vispruner,slope=-1)", "divprune": "divprune", "saliency": "saliency",
            "DivPrune + FasterVLM (fixed)": "agile_mix(slope=0)", "DivPrune + FasterVLM (adaptive)": "agile_mix",
            "visionzip": "visionzip", "agile": "agile", "agile_entropy": "agile_entropy"}
#: the claims' names of the adaptive methods (context of the claims file) -> table name
CLAIM_NAMES = {"vispruner_adaptive": "VisPruner + adaptive", "vispruner_inverse": "VisPruner + inverse",
               "mix_fixed": "DivPrune + FasterVLM (fixed)", "mix_adaptive": "DivPrune + FasterVLM (adaptive)",
               "agile": "agile", "agile_entropy": "agile_entropy"}
COUNT_SPECS = ("agile_count", "agile")
ADAPTIVE_TABLES = ["Table 5", "Table 6", "Table 7", "Table 11", "Table 13"]


def run(*, pope_dataset, pope_options, sqa_dataset, sqa_options, caption_dataset, caption_options, caption_limit,
        max_new_tokens, k_main, budgets, reported_budgets, count_reference_k, erank_pruners, chair_pruners, mix_ratios,
        taus, erank_avg, entropy_avg, accuracy_margin, **settings) -> Result:
    setup = Setup.create("erank_hallucination", settings)
    setup.validate(pope_dataset, pope_options, ["full", *erank_pruners, *chair_pruners], [k_main, *budgets])
    setup.validate(sqa_dataset, sqa_options, ["full", "agile"], [k_main, *budgets, count_reference_k])
    setup.validate(caption_dataset, caption_options, ["full", *chair_pruners], [k_main, *budgets], limit=caption_limit)
    _check_values(mix_ratios, taus, erank_avg, entropy_avg)
    k_map, _, _ = budget_parameters(setup, budgets, reported_budgets)
    tasks = {"POPE": (pope_dataset, pope_options), "ScienceQA": (sqa_dataset, sqa_options)}

    pope_full = setup.sweep(pope_dataset, pope_options, ["full"], [])
    image_erank, image_entropy = image_complexity(pope_full, setup.n_tokens)
    erank_ref = float(image_erank.mean()) if erank_avg is None else float(erank_avg)
    entropy_ref = float(image_entropy.mean()) if entropy_avg is None else float(entropy_avg)
    adapt = partial(adapt_spec, erank_ref=erank_ref, entropy_ref=entropy_ref)
    mix = {r: adapt(f"agile_mix(r={r},slope=0)") for r in mix_ratios}
    tau_spec = {t: FIXED_TAU.format(tau=t) for t in taus}
    specs = {name: adapt(spec) for name, spec in ADAPTIVE.items()}

    erank_rows = setup.sweep(pope_dataset, pope_options, [adapt(p) for p in erank_pruners], [k_main])
    chair_rows, mix_rows = (setup.sweep(caption_dataset, caption_options, pruners, ks, limit=caption_limit,
                                        max_new_tokens=max_new_tokens)
                            for pruners, ks in ((["full", *map(adapt, chair_pruners)], budgets),
                                                (list(mix.values()), [k_main])))
    tau_rows = {task: setup.sweep(*task_data, list(tau_spec.values()), [k_main]) for task, task_data in tasks.items()}
    adaptive_rows = by_task({task: adaptive_sweep(setup, *task_data, list(specs.values()), budgets,
                                                  list(map(adapt, COUNT_SPECS)), count_reference_k)
                             for task, task_data in tasks.items()})
    rows = {"erank": erank_rows, "captions": pd.concat([chair_rows, mix_rows], ignore_index=True),
            "pope": with_complexity(pd.concat([pope_full, erank_rows], ignore_index=True), image_erank),
            "tau": by_task(tau_rows), "adaptive": adaptive_rows}

    full, at_k_main = setup.cfg("full"), partial(setup.cfg, k=k_main)
    erank_table = erank_means(erank_rows)
    chair = analysis.chair_summary(rows["captions"], **setup.stats).assign(length=lambda t: t["mean_length"])
    mixing = mixing_frame(chair, mix, at_k_main)
    tau_table = tau_frame(tau_rows, tau_spec, at_k_main, setup.label)
    adaptive = analysis.calibration_summary(adaptive_rows, by=("benchmark", "config"), **setup.stats)
    adaptive["mean kept tokens"] = adaptive["config"].map(adaptive_rows.groupby("config")["n_kept"].mean())
    as_reported = {adapt(spec): str(parse_spec(spec)) for spec in [*chair_pruners, *ADAPTIVE.values(), *COUNT_SPECS]}

    result = setup.result(rows=rows, summary=adaptive)
    result.tables = {
        "erank": erank_styled(erank_table, k_main, k_map, pope_dataset, setup.label),
        "chair": chair_styled(chair, chair_rows["config"].unique(), as_reported, k_map, caption_dataset, setup.label),
        "examples": examples_styled(rows["captions"], budgets[0], setup.toy),
        "mixing": mixing_styled(mixing, k_main, setup.label),
        "complexity": complexity_styled(rows["pope"], [full, at_k_main("saliency"), at_k_main("divprune")],
                                        image_erank, image_entropy, setup.label, setup.stats),
        "table4": table4_reported(),
        "tau": tau_styled(tau_table, k_main, setup.label),
        **{f"adaptive_{task}": adaptive_styled(adaptive, task, benchmark, metric, as_reported,
                                               {**k_map, count_reference_k: PAPER_COUNT_K}, setup.label)
           for task, benchmark, metric in TASKS},
    }
    result.figures = {"mixing": mixing_figure(mixing, setup.toy),
                      "tau": tau_figure(tau_table, k_main, setup.label, setup.toy)}
    context = _claims_context(specs, mix, tau_spec, adapt("agile_count"), k_main, budgets, count_reference_k, k_map,
                              accuracy_margin)
    result.claims = setup.claims(rows, context)
    chair_by = chair.set_index("config")
    result.values = {
        "erank_divprune": erank_table.set_index("pruner")["erank"].get(str(parse_spec("divprune")), math.nan),
        "erank_ref": erank_ref,
        "full_chair_i": chair_by.loc[full, "chair_i"],
        "full_chair_s": chair_by.loc[full, "chair_s"],
        "n_questions": len(adaptive_rows.drop_duplicates(["benchmark", "qid"])),  # POPE + ScienceQA, scored
    }
    result.notes["run"] = run_note(rows)
    source = "mean over this run's POPE images" if erank_avg is None else "given"
    result.notes["reference"] = (f"reference erank {erank_ref:.2f} ({source}); reference attention entropy "
                                 f"{entropy_ref:.3f} nats; {len(image_erank)} POPE images")
    return result


def _check_values(mix_ratios, taus, erank_avg, entropy_avg) -> None:
    require(len(mix_ratios) > 0 and all(0 <= r <= 1 for r in mix_ratios),
            f"mix_ratios = {mix_ratios} must lie in [0, 1]")
    require(len(taus) > 1 and all(t >= 0 for t in taus), f"taus = {taus} needs at least two thresholds >= 0")
    require(erank_avg is None or erank_avg > 0, f"erank_avg = {erank_avg!r} must be positive or None")
    require(entropy_avg is None or entropy_avg > 0, f"entropy_avg = {entropy_avg!r} must be positive or None")


def run_note(rows: Mapping[str, pd.DataFrame]) -> str:
    """The sizes that ran: POPE and ScienceQA questions and images, captions."""
    adaptive = rows["adaptive"]
    parts = [f"{task}: {frame['qid'].nunique():,} questions about {frame['image'].nunique():,} images"
             for task, frame in adaptive.groupby("benchmark", sort=False)]
    return "; ".join(parts) + f"; captions of {rows['captions']['qid'].nunique():,} images"


def image_complexity(full_rows: pd.DataFrame, n_tokens: int) -> tuple[pd.Series, pd.Series]:
    """Per image (unpruned rows): the erank of its whole token matrix and the entropy of its
    [CLS] attention in nats (the rows hold it normalised by ln N)."""
    per_image = full_rows.drop_duplicates("image").set_index("image")
    return per_image["erank_kept"], per_image["entropy_kept"] * math.log(n_tokens)


def adapt_spec(spec: str, *, erank_ref: float, entropy_ref: float) -> str:
    """``spec`` with this run's reference erank / entropy where it uses AgilePruner's placeholder
    (a spec that sets its own value keeps it); other specs canonicalised unchanged."""
    pruner = parse_spec(spec)
    placeholders = {"erank_avg": (ERANK_AVG_PLACEHOLDER, erank_ref),
                    "entropy_avg": (ENTROPY_AVG_PLACEHOLDER, entropy_ref)}
    changes = {name: ours for name, (placeholder, ours) in placeholders.items()
               if name in pruner.params and pruner.params[name] == placeholder}
    return str(pruner.replace(**changes)) if changes else str(pruner)


def adaptive_sweep(setup: Setup, dataset: str, options, specs: list[str], budgets, count_specs: list[str],
                   count_k: int) -> pd.DataFrame:
    """Rows of the adaptive methods at ``budgets``, then of the token-count pair at ``count_k``."""
    frames = [setup.sweep(dataset, options, specs, budgets), setup.sweep(dataset, options, count_specs, [count_k])]
    return pd.concat(frames, ignore_index=True)


def with_complexity(rows: pd.DataFrame, image_erank: pd.Series) -> pd.DataFrame:
    """``rows`` with a ``complexity`` column: ``simple`` at or below the median image erank, else ``complex``."""
    median = float(image_erank.median())
    complexity = {image: ("simple" if value <= median else "complex") for image, value in image_erank.items()}
    return rows.assign(complexity=rows["image"].map(complexity))


def _claims_context(specs, mix, tau_spec, agile_count, k_main, budgets, count_reference_k, k_map,
                    accuracy_margin) -> dict:
    """What the claims file names: budgets, the adaptive specs of this run, the extreme mixes and thresholds."""
    r_low, r_high, tau_low, tau_high = min(mix), max(mix), min(tau_spec), max(tau_spec)
    return {"k_main": k_main, "budgets": list(budgets), "count_reference_k": count_reference_k,
            "k_map": {count_reference_k: PAPER_COUNT_K, **k_map},
            "tasks": [{"name": task, "benchmark": benchmark, "metric": metric} for task, benchmark, metric in TASKS],
            **{name: specs[table_name] for name, table_name in CLAIM_NAMES.items()}, "agile_count": agile_count,
            "r_low": r_low, "r_high": r_high, "mix_low": mix[r_low], "mix_high": mix[r_high],
            "tau_low": tau_low, "tau_high": tau_high,
            "tau_low_spec": tau_spec[tau_low], "tau_high_spec": tau_spec[tau_high],
            "accuracy_margin": accuracy_margin, "accuracy_margin_pp": accuracy_margin * 100}


# --- tables and figures ----------------------------------------------------------------------

def erank_means(erank_rows: pd.DataFrame) -> pd.DataFrame:
    """Mean erank and normalised attention entropy of the kept tokens per pruner and budget (per image)."""
    return (erank_rows.drop_duplicates(["config", "image"]).groupby(["pruner", "k"], sort=False)
            [["erank_kept", "entropy_kept"]].mean().reset_index().rename(columns={"erank_kept": "erank"}))


def erank_styled(erank_table: pd.DataFrame, k_main: int, k_map: Mapping[int, int], dataset: str, label: str):
    side = beside_reported(erank_table, ["erank", "entropy_kept"], paper="002", table="Table 1", label=label,
                           k_map={k_main: k_map.get(k_main, k_main)})
    return style_table(rows_by_source(side.sort_values(("erank", label), ascending=False)),
                       caption=f"Mean erank of the {k_main} kept tokens on {dataset}: {label} vs. reported "
                               "(seed 002 Table 1)")


def chair_styled(chair: pd.DataFrame, configs: Iterable[str], reported_pruner: Mapping[str, str],
                 k_map: Mapping[int, int], dataset: str, label: str):
    side = beside_reported(chair[chair["config"].isin(list(configs))], ["chair_s", "chair_i", "recall", "length"],
                           paper="002", table="Table 8", label=label, k_map=k_map, reported_pruner=reported_pruner,
                           ci=True)
    return style_table(rows_by_source(side), caption=f"CHAIR on {dataset}: {label} vs. reported (seed 002 Table 8)")


#: words of the toy's other tasks (yes/no answers, option letters) that have no place in a caption
STRAY_WORDS = {"yes", "no", "a", "b", "c", "d"}


def degenerate_toy_caption(caption: str) -> bool:
    """A toy caption ("There are a red circle and a blue box.") that repeats a word back to back or holds
    an answer word of the toy's other tasks after its first word (e.g. "circle circle , , yellow Yes B")."""
    words = str(caption).replace(",", " ").replace(".", " ").split()
    repeated = any(a.lower() == b.lower() and a.isalpha() for a, b in zip(words, words[1:]))
    return repeated or any(w.lower() in STRAY_WORDS and w[0].isupper() for w in words[1:])


def examples_styled(caption_rows: pd.DataFrame, k: int, toy: bool):
    """One caption per method at budget ``k`` (first image); on the toy, the caption says how many of the
    run's captions are degenerate (:func:`degenerate_toy_caption`)."""
    examples = caption_rows[caption_rows["k"] == k].groupby("pruner").head(1)
    caption = f"One caption per method at K={k} (first image)"
    if toy:
        share = caption_rows["caption"].map(degenerate_toy_caption)
        caption += (f". {int(share.sum()):,} of the run's {len(share):,} captions ({100 * share.mean():.0f} %) "
                    "repeat a word back to back or hold an answer word of the toy's other tasks (Yes, No, A–D)")
    return style_table(examples[["pruner", "image", "caption", "hallucinated_objects"]], hide_index=True,
                       caption=caption)


def mixing_frame(chair: pd.DataFrame, mix: Mapping[float, str], cfg: Callable[[str], str]) -> pd.DataFrame:
    """CHAIR rows of the attention/DivPrune mixes, with their attention share r."""
    share = {cfg(spec): r for r, spec in mix.items()}
    mixing = chair[chair["config"].isin(list(share))].copy()
    mixing.insert(0, "attention share r", [share[c] for c in mixing["config"]])
    return mixing


def mixing_styled(mixing: pd.DataFrame, k_main: int, label: str):
    columns = ["attention share r", "chair_s", "chair_i", "recall", "mean_length", "mean_erank_kept"]
    return style_table(to_paper_units(mixing[columns], ["chair_s", "chair_i", "recall"]), hide_index=True,
                       caption=f"CHAIR as attention tokens replace DivPrune tokens (K={k_main}, {label})")


def mixing_figure(mixing: pd.DataFrame, toy: bool) -> Figure:
    fig = Figure(figsize=(plots.PAGE_WIDTH, 3.6), layout="constrained")
    for ax, metric, name in zip(fig.subplots(1, 2), ("chair_i", "chair_s"), ("CHAIR_i", "CHAIR_s")):
        plots.u_curve(mixing.assign(series=name), x="attention share r", y=metric, hue="series", ax=ax, toy=toy,
                      logx=False, title=f"{name} vs. attention share", ylabel=name)
    return fig


def complexity_styled(pope_rows: pd.DataFrame, configs: list[str], image_erank: pd.Series,
                      image_entropy: pd.Series, label: str, stats: Mapping[str, int]):
    """POPE accuracy and ECE of ``configs`` on the simple and the complex half of the images
    (Table 4), with image-bootstrap CIs within each half."""
    median = float(image_erank.median())
    groups = analysis.calibration_summary(pope_rows[pope_rows["config"].isin(configs)], by=("complexity", "config"),
                                          ci=("accuracy", "ece"), **stats)
    simple = image_erank <= median
    groups = groups.merge(pd.DataFrame({
        "complexity": ["simple", "complex"],
        "mean erank (all tokens)": [image_erank[simple].mean(), image_erank[~simple].mean()],
        "mean entropy (nats)": [image_entropy[simple].mean(), image_entropy[~simple].mean()]}), on="complexity")
    columns = ["complexity", "config", "n", "mean erank (all tokens)", "mean entropy (nats)", "accuracy",
               "accuracy_low", "accuracy_high", "ece", "ece_low", "ece_high"]
    return style_table(to_paper_units(groups[columns], ["accuracy"]), hide_index=True,
                       caption=f"POPE by image complexity (median erank {median:.2f}), {label}")


def table4_reported():
    """Seed 002 Table 4 as reported (per benchmark: complexity and both methods' scores)."""
    table = reported("002", "Table 4").pivot_table(index=["benchmark"], columns=["metric", "method"], values="value",
                                                   aggfunc="first")
    return style_table(table, digits={c: 1 for c in table.columns},
                       caption="Seed 002 Table 4 as reported (LLaVA-1.5-7B; MME subtasks in points, "
                               "ScienceQA and POPE in %)")


def by_task(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One frame of the tasks' rows with a ``benchmark`` column naming the task."""
    return pd.concat([frame.assign(benchmark=task) for task, frame in frames.items()], ignore_index=True)


def tau_frame(frames: Mapping[str, pd.DataFrame], tau_spec: Mapping[float, str], cfg: Callable[[str], str],
              label: str) -> pd.DataFrame:
    """Per task and fixed threshold τ: erank of the kept tokens and the task's score (POPE F1,
    ScienceQA accuracy), beside Table 12."""
    reported_t12 = reported("002", "Table 12")
    scores = {task: metric for task, _, metric in TASKS}
    records = []
    for task, frame in frames.items():
        metric = scores.get(task, "accuracy")
        score = analysis.calibration_summary(frame, n_bootstrap=0).set_index("config")[metric]
        erank = frame.drop_duplicates(["config", "image"]).groupby("config")["erank_kept"].mean()
        for tau, spec in tau_spec.items():
            ref = reported_t12[(reported_t12["benchmark"] == task) & (reported_t12["method"] == f"fixed tau={tau:g}")]
            ref = ref.set_index("metric")["value"]
            records.append({"task": task, "tau": tau, f"erank ({label})": erank[cfg(spec)],
                            "erank (reported)": ref.get("erank", float("nan")),
                            "score": SCORE_NAMES[metric],
                            f"score % ({label})": 100 * score[cfg(spec)],
                            "score % (reported)": ref.get(metric, float("nan"))})
    return pd.DataFrame(records)


def tau_styled(tau_table: pd.DataFrame, k_main: int, label: str):
    return style_table(tau_table, hide_index=True, caption=f"Fixed threshold tau at K={k_main}: {label} vs. reported "
                                                           "(seed 002 Table 12, budget not stated)")


def tau_figure(tau_table: pd.DataFrame, k_main: int, label: str, toy: bool) -> Figure:
    fig = Figure(figsize=(plots.PAGE_WIDTH, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for task, part in tau_table.groupby("task", sort=False):
        left.plot(part["tau"], part[f"erank ({label})"], marker="o", label=task)
        right.plot(part["tau"], part[f"score % ({label})"], marker="o", label=f"{task} ({part['score'].iloc[0]})")
    for ax, name in ((left, "erank of kept tokens"), (right, "score (%)")):
        ax.set_xlabel("similarity threshold tau")
        ax.set_ylabel(name)
        ax.set_title(("TOY — " if toy else "") + f"{name} vs. tau (K={k_main})")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def adaptive_styled(summary: pd.DataFrame, task: str, benchmark: str, metric: str,
                    reported_pruner: Mapping[str, str], k_map: Mapping[int, int], label: str):
    side = beside_reported(summary[summary["benchmark"] == task], [metric, "ece"], paper="002",
                           table=ADAPTIVE_TABLES, label=label, k_map=k_map, benchmark=benchmark,
                           reported_pruner=reported_pruner, ci=True)
    return style_table(rows_by_source(side),
                       caption=f"{task}: adaptive methods, {label} vs. reported {SCORE_NAMES[metric]} "
                                     "(seed 002 Tables 5-7, 11, 13)")
