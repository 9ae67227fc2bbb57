"""Gallery: which tokens does each pruner keep, on the simplest and the most cluttered images?

The first ``candidates`` images are ranked by the effective rank of their full token matrix
(AgilePruner's image-complexity measure); the ``n_per_group`` simplest and most cluttered are
shown under every vision-stage pruner at one budget (in-LLM pruners select inside the LLM).
"""

from __future__ import annotations


from studylib import plots
from studylib.experiments.common import Setup, require
from studylib.experiments.result import Result
from studylib.pruners import erank, parse_spec
from studylib.sweep.validate import load_checked_dataset


def run(*, dataset, dataset_options, candidates, n_per_group, pruners, k, **settings) -> Result:
    setup = Setup.create("gallery", settings)
    setup.validate(dataset, dataset_options, pruners, [k], limit=None)
    require(isinstance(candidates, int) and candidates >= 2 * n_per_group,
            f"candidates = {candidates!r} must be an integer >= 2 * n_per_group = {2 * n_per_group}")
    adapter = setup.load_adapter()
    data = load_checked_dataset(dataset, dict(dataset_options or {}))
    keys = data.image_keys()[:candidates]
    images = {key: data.load_image(key) for key in keys}
    tokens = adapter.encode([images[key] for key in keys], keys)
    complexity = erank(tokens.features).cpu().numpy()
    order = complexity.argsort()
    chosen = [int(i) for i in list(order[:n_per_group]) + list(order[-n_per_group:])]
    picked = tokens[chosen]
    vision = [spec for spec in pruners if parse_spec(spec).stage == "vision"]
    selections = {spec: [row.tolist() for row in parse_spec(spec)(picked, k).indices.cpu()] for spec in vision}
    result = setup.result()
    titles = [f"{'simple' if n < n_per_group else 'cluttered'}\nerank {complexity[i]:.1f}"
              for n, i in enumerate(chosen)]
    result.figures["gallery"] = plots.overlay_gallery(
        [images[keys[i]] for i in chosen], selections, picked.grid, toy=setup.toy, image_titles=titles,
        title=f"Kept tokens at K={k} of {picked.num_patches}: simple and cluttered images")
    result.notes["images"] = "\n".join(
        f"{'simple   ' if n < n_per_group else 'cluttered'} image {keys[i]}: erank {complexity[i]:.1f}"
        for n, i in enumerate(chosen))
    return result
