"""What an experiment returns: tables, figures, claims and headline values, ready for a page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from IPython.display import display
from matplotlib.figure import Figure

from studylib.claims import Claim
from studylib.pages import glue_claims, glue_value, show_claims
from studylib.reported import paper_questions


@dataclass
class Result:
    """The outcome of ``studylib.experiments.<name>.run(**params)``.

    ``tables`` map a name to a display-ready table (a pandas Styler or DataFrame); ``figures``
    to a matplotlib Figure; ``claims`` are the experiment's declared claims judged on this
    run; ``values`` are the headline numbers glued for the book and the tests (as
    ``<name>_<key>``); ``rows`` the result rows of every sweep (by frame name) and ``summary``
    the per-configuration metrics, for readers who want to go further in the notebook.
    """

    name: str
    model: str
    label: str
    tables: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    notes: dict[str, str] = field(default_factory=dict)
    n_bootstrap: int | None = None  # resamples of every CI of the experiment (glued for the status page)

    def _repr_markdown_(self) -> str:
        """What ran (the notes: questions, images, configurations, reference values), shown under
        a notebook's run cell."""
        notes = dict(self.notes)
        if self.n_bootstrap:
            notes["confidence intervals"] = f"95 %, {self.n_bootstrap:,} bootstrap resamples of whole images"
        return "\n\n".join(f"**{name}:** {text}".replace("\n", "  \n") for name, text in notes.items())

    def table(self, name: str):
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"{self.name} has no table {name!r}; tables: {sorted(self.tables)}") from None

    def figure(self, name: str) -> Figure:
        try:
            return self.figures[name]
        except KeyError:
            raise KeyError(f"{self.name} has no figure {name!r}; figures: {sorted(self.figures)}") from None

    def show(self, *names: str) -> None:
        """Display, in one cell, the table and then the figure of each name (either may be absent)."""
        missing = [n for n in names if n not in self.tables and n not in self.figures]
        if missing:
            raise KeyError(f"{self.name} has no table or figure {missing}; tables: {sorted(self.tables)}, "
                           f"figures: {sorted(self.figures)}")
        display(*[item for n in names for item in (self.tables.get(n), self.figures.get(n)) if item is not None])

    def claims_table(self, expand: bool = True):
        """The page's claims table: claim, test, estimate [95 % CI], reported, verdict."""
        return show_claims(self.claims, expand=expand)

    def glue(self) -> None:
        """Glue every headline value, the number of questions scored (``n_questions``, for the
        intro's verdict table) and the papers' number on the same benchmarks (``paper_n_questions``),
        the number of bootstrap resamples (``n_bootstrap``, for the status page) and every claim
        (:func:`studylib.pages.glue_claims`)."""
        values = dict(self.values)
        if "n_questions" not in values and "rows" in self.rows:
            values["n_questions"] = int(self.rows["rows"]["qid"].nunique())
        if "rows" in self.rows and "dataset" in self.rows["rows"]:
            paper = paper_questions(self.rows["rows"]["dataset"].unique())
            if paper:
                values.setdefault("paper_n_questions", paper)
        if self.n_bootstrap is not None:
            values["n_bootstrap"] = int(self.n_bootstrap)
        for key, value in values.items():
            glue_value(f"{self.name}_{key}", value)
        glue_claims(self.claims, prefix=f"{self.name}_")
