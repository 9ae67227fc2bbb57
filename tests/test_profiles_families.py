"""The LLaVA-1.5-13B, LLaVA-NeXT-7B and Qwen2.5-VL-7B profiles fit every notebook, and their
budgets fit each model's N (the largest budget is N: `full`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studylib import build

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PROFILES = {"llava-1.5-13b": ("llava-hf/llava-1.5-13b-hf", 576), "llava-next-7b": ("llava-hf/llava-v1.6-vicuna-7b-hf", 2880),
            "qwen2.5-vl-7b": ("Qwen/Qwen2.5-VL-7B-Instruct", 16384)}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_family_profiles_fit_every_notebook(profile):
    loaded = build.load_profile(profile)
    model, n = PROFILES[profile]
    assert loaded["defaults"]["model"] == model and loaded["defaults"]["dtype"] == "bfloat16"
    for path in NOTEBOOKS:
        params = build.notebook_parameters(loaded, path.stem, build.declared_parameters(path))
        budgets = params.get("budgets", [])
        assert all(1 <= k <= n for k in budgets)
    assert loaded["notebooks"]["u_curve"]["budgets"][0] == n
