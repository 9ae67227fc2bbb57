"""Names a reader sees for pruners and configurations: ``SCOPE α=0, K=32`` instead of
``scope(alpha=0,p=1)@32``, ``AgilePruner (erank 19.94)`` instead of
``agile(erank_avg=19.939622218863605,tau_max=0.25)``.

The spec strings stay the study's identifiers (result store, rows, claims); these functions only
change what a page prints.  A pruner's parameters are shown when they differ from the registered
default or are in :data:`ALWAYS_SHOWN` (SCOPE's α), each in the notation of its paper
(:data:`PARAMETER_FORMATS`), numbers to at most 4 significant digits.  A pruner registered later
without an entry in :data:`METHOD_NAMES` is shown under its registry name.
"""

from __future__ import annotations

import re
from typing import Any

from studylib.pruners import PrunerConfigError, parse_spec

#: registry name -> the method's name in its paper
METHOD_NAMES = {
    "full": "unpruned", "random": "random", "saliency": "saliency-only", "scope": "SCOPE",
    "scope_adaptive": "adaptive-α SCOPE", "divprune": "DivPrune", "fps": "FPS", "visionzip": "VisionZip",
    "vispruner": "VisPruner", "cdpruner": "CDPruner", "idselect": "ID-Selection", "agile": "AgilePruner",
    "agile_entropy": "AgilePruner-entropy", "agile_mix": "AgilePruner mix", "agile_count": "AgilePruner count",
    "fastv": "FastV", "dart": "DART", "hired": "HiRED", "pdrop": "PyramidDrop", "sparsevlm": "SparseVLM",
}

#: parameters shown even at their default (the knob a reader must always see)
ALWAYS_SHOWN = {"alpha"}

#: parameter name -> how it reads ({} is the value); parenthesised ones attach to the name without a comma
PARAMETER_FORMATS = {
    "alpha": "α={}", "gap_power": "p={}", "erank_avg": "(erank {})", "entropy_avg": "(entropy {})",
    "tau_max": "τ_max={}", "ratio": "r={}", "important_ratio": "r={}", "seed": "(seed {})", "layer": "layer {}",
    "gamma": "γ={}", "slope": "slope {}", "inverse": "inverse", "importance": "{} importance", "div": "with {}",
    "signal": "by {}", "max_change": "±{}", "contextual_ratio": "context ratio {}",
}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _parameter(name: str, value: Any) -> str:
    template = PARAMETER_FORMATS.get(name, f"{name}={{}}")
    if isinstance(value, bool) and "{}" not in template:
        return template if value else f"not {template}"
    return template.format(_value(value))


def pruner_label(spec: str) -> str:
    """``scope(alpha=0,p=1)`` -> ``SCOPE α=0``; an unparsable spec comes back unchanged."""
    try:
        pruner = parse_spec(str(spec))
    except (PrunerConfigError, ValueError):
        return str(spec)
    shown = [_parameter(p.name, pruner.params[p.name]) for p in pruner.info.params
             if p.name in ALWAYS_SHOWN or pruner.params[p.name] != p.default]
    name = METHOD_NAMES.get(pruner.name, pruner.name)
    attached = [s for s in shown if s.startswith("(")]
    listed = [s for s in shown if not s.startswith("(")]
    return " ".join([name, *attached]) + (" " + ", ".join(listed) if listed else "")


def config_label(config: str, n_tokens: int | None = None) -> str:
    """``scope(alpha=0,p=1)@32`` -> ``SCOPE α=0, K=32``; ``full@144`` -> ``unpruned (K=144)``; text that
    is not a configuration comes back unchanged."""
    spec, at, budget = str(config).rpartition("@")
    if not at or not budget.strip().isdigit():
        return pruner_label(config) if _is_spec(config) else str(config)
    label = pruner_label(spec)
    if spec.split("(")[0].strip() in ("full", "none"):
        return f"{label} (K={budget})"
    return f"{label}, K={budget}"


def _is_spec(text: str) -> bool:
    try:
        parse_spec(str(text))
    except (PrunerConfigError, ValueError):
        return False
    return True


# a pruner spec with parameters and/or a budget inside free text: name(params)@K, name(params), name@K
_SPEC = re.compile(r"(?<!\w)([a-z][a-z0-9_]*)(\([^()\[\]]*\))?(@\d+)?(?![\w(])")


def humanize(text: str) -> str:
    """``text`` with every configuration or parameterised spec in it replaced by its label
    (``"ECE[scope(alpha=0,p=1)@32] − ECE[full@144]"`` -> ``"ECE[SCOPE α=0, K=32] − ECE[unpruned (K=144)]"``);
    bare words ("saliency") stay as they are."""
    def replace(match: re.Match) -> str:
        name, params, budget = match.groups()
        if not (params or budget) or not _is_spec(name + (params or "")):
            return match.group(0)
        return config_label(name + (params or "") + (budget or ""))

    return _SPEC.sub(replace, str(text))


__all__ = ["ALWAYS_SHOWN", "METHOD_NAMES", "PARAMETER_FORMATS", "config_label", "humanize", "pruner_label"]
