"""Every plot function returns a Figure (Agg backend, nothing shown), says TOY when asked, and the
token overlay dims exactly the dropped patches."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from studylib import plots  # noqa: E402
from studylib.metrics import reliability_bins, risk_coverage_curve  # noqa: E402


@pytest.fixture
def summary():
    records = []
    for alpha in (0.0, 0.5, 1.0):
        for k in (16, 32, 64):
            records.append({"pruner": f"scope(alpha={alpha:g},p=1)", "method": "scope", "k": k,
                            "ece": 0.05 + alpha * 0.01 + 1 / k, "ece_low": 0.04 + 1 / k, "ece_high": 0.07 + 1 / k})
    for seed in (0, 1, 2):
        for k in (16, 32, 64):
            records.append({"pruner": f"random(seed={seed})", "method": "random", "k": k, "ece": 0.1 + seed * 0.01,
                            "ece_low": 0.09, "ece_high": 0.13})
    records.append({"pruner": "full", "method": "full", "k": 144, "ece": 0.04, "ece_low": 0.03, "ece_high": 0.05})
    return pd.DataFrame(records)


def _titles(fig: Figure) -> str:
    texts = [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        texts.append(fig._suptitle.get_text())
    return " ".join(texts)


def test_u_curve(summary, tmp_path):
    fig = plots.u_curve(summary, toy=True)
    assert isinstance(fig, Figure) and "TOY" in _titles(fig)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "random (mean ± sd, 3 seeds)" in labels and "unpruned (K=144)" in labels
    assert sum(lab.startswith("SCOPE") for lab in labels) == 3
    fig.savefig(tmp_path / "u.png")
    assert "TOY" not in _titles(plots.u_curve(summary, y="ece", hue="method"))


def test_alpha_heatmap(summary):
    fig = plots.alpha_heatmap(summary, where={"method": "scope"}, toy=True)
    assert isinstance(fig, Figure) and "TOY" in _titles(fig)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["1.0", "0.5", "0.0"]
    with pytest.raises(ValueError, match="no rows"):
        plots.alpha_heatmap(summary, where={"method": "random"})


def test_reliability_and_risk_coverage_plots():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1, 200)
    correct = rng.random(200) < conf
    bins = {"full": reliability_bins(conf, correct), "scope@16": reliability_bins(conf ** 2, correct)}
    fig = plots.reliability_diagram(bins, toy=True)
    assert isinstance(fig, Figure) and "TOY" in _titles(fig) and len(fig.axes) == 4
    fig = plots.risk_coverage_plot({"full": risk_coverage_curve(conf, correct)}, toy=True)
    assert isinstance(fig, Figure) and "TOY" in _titles(fig)
    assert "AURC" in fig.axes[0].get_legend_handles_labels()[1][0]


def test_token_overlay_dims_dropped_patches():
    image = Image.new("RGB", (96, 96), (255, 255, 255))
    fig = plots.token_overlay(image, [0, 143], (12, 12), dim=0.25)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert shown[0, 0, 0] == pytest.approx(1.0) and shown[95, 95, 0] == pytest.approx(1.0)
    assert shown[0, 8, 0] == pytest.approx(0.25) and shown[50, 50, 0] == pytest.approx(0.25)
    assert fig.axes[0].get_title() == "2/144 tokens kept"
    with pytest.raises(ValueError, match="kept indices"):
        plots.token_overlay(image, [144], (12, 12))
    wide = plots.token_overlay(Image.new("RGB", (120, 60)), [0], (12, 12))
    assert np.asarray(wide.axes[0].images[0].get_array()).shape[:2] == (120, 120)  # padded to square


def test_overlay_gallery():
    images = [Image.new("RGB", (96, 96), (200, 10, 10)), Image.new("RGB", (96, 96), (10, 200, 10))]
    fig = plots.overlay_gallery(images, {"scope": [[0, 1], [2]], "random": [[5], [6, 7]]}, (12, 12), toy=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 4 and "TOY" in _titles(fig)
    with pytest.raises(ValueError, match="entries for 2 images"):
        plots.overlay_gallery(images, {"scope": [[0]]}, (12, 12))


def test_series_label():
    assert plots.series_label("random(seed=2)") == "random"
    assert plots.series_label("scope(alpha=0,p=1)") == "scope(alpha=0,p=1)"
    assert plots.series_label("foo(seed=1,x=2)") == "foo(x=2)"


def test_u_curve_on_another_axis():
    frame = pd.DataFrame({"share": [0.0, 0.5, 1.0], "chair_i": [0.1, 0.2, 0.15], "series": "CHAIR_i"})
    fig = plots.u_curve(frame, x="share", y="chair_i", hue="series")
    assert fig.axes[0].get_xscale() == "linear"
