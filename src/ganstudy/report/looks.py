"""The report's account of a sequential study: at which look each primary hypothesis was
decided and on how many runs, what the stops saved, and each hypothesis' tests against the
boundaries. Reads the look records (``looks/look-<k>.json``, :mod:`ganstudy.study.looks`).

The final p-values are the Holm-adjusted sequential p-values of the record
(:mod:`ganstudy.analysis.sequential`): below alpha exactly for the hypotheses the looks rejected.
The effect's interval is a repeated confidence interval: at the confidence 1 - the nominal level
of the study's last look for the hypothesis at alpha / m, an interval that holds at every look
at once (Jennison & Turnbull 1989).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ganstudy import store
from ganstudy.analysis import sequential
from ganstudy.analysis.power import ALPHA
from ganstudy.errors import ConfigError
from ganstudy.report import figures
from ganstudy.report.html import Html, figure, fmt, fmt_p, join, table, tag
from ganstudy.study import looks as study_looks

# From benchmarks/calibration.py on config/config.yaml (config/README.md, "Stopping when the
# answer is in"): how far an estimate after an early stop lies from the truth.
BIAS_NOTE = (
    "An estimate from a study that stopped early is biased away from no effect: a look stops "
    "for efficacy when the runs so far happen to show a large effect. In the calibration of "
    "the default design (benchmarks/calibration.py, 1,000 studies with every hypothesis at its "
    "min_effect; config/README.md), the hypotheses rejected at the first look overestimated "
    "P(better) by 0.13 to 0.17 on average, and differences of rates of 25 points by about 30 "
    "points. The repeated confidence intervals keep their coverage at every look."
)


@dataclass(frozen=True)
class StudyLooks:
    records: list[dict[str, Any]]

    @property
    def final(self) -> dict[str, Any]:
        return self.records[-1]

    @property
    def design(self) -> dict[str, Any]:
        return self.final["design"]

    @property
    def names(self) -> list[str]:
        return list(self.design["hypotheses"])

    @property
    def adjusted_p(self) -> list[float]:
        return list(self.final["adjusted_p"])

    def of(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None

    def procedure_design(self) -> sequential.Design:
        d = self.design
        return sequential.Design(tuple(d["fractions"]), d["spending"], tuple(d["futility"]),
                                 d["alpha"])  # fmt: skip

    def rci_level(self, name: str) -> float:
        """The confidence of the hypothesis' repeated confidence interval at the last look."""
        i = self.of(name)
        m = len(self.names)
        looks = len(self.records)
        fractions = self.design["hypothesis_fractions"][i][:looks]
        nominal = self.procedure_design().nominal(ALPHA / m, fractions)[looks - 1]
        return float(1 - nominal)


def read(results) -> StudyLooks | None:
    """The study's look records, in order; None for a study without looks."""
    latest = store.ResultsDir(results).latest_look()
    if latest is None:
        return None
    records = []
    for k in range(1, latest[0] + 1):
        path = store.ResultsDir(results).look(k)
        if not path.is_file():
            raise ConfigError(f"{path} does not exist, but look {latest[0]} does")
        records.append(study_looks.read(path))
    return StudyLooks(records)


def _saved(looks: StudyLooks, config_text: str | None) -> str:
    """What the runs not trained would have cost (CPU-hours, H200-hours)."""
    skipped = looks.final.get("not_trained") or []
    if not skipped or not config_text:
        return ""
    import yaml

    from ganstudy.study import cost
    from ganstudy.study.schema import default_schema_path
    from ganstudy.study.workflow import Study

    try:
        study = Study.from_config(yaml.safe_load(config_text), default_schema_path())
    except ConfigError:
        return ""
    per_run = {}
    for c in cost.estimate(study):
        per_run[c.key] = (
            (c.cpu_seconds or 0.0) / c.runs,
            None if c.gpu_seconds is None else c.gpu_seconds / c.runs,
        )
    cpu = gpu = 0.0
    for run_dir in skipped:
        key = store.RunKey.parse(run_dir).variant.path
        c, g = per_run.get(key, (0.0, None))
        cpu += c
        gpu += g or 0.0
    return f", about {cpu / 3600:,.0f} CPU-hours and {gpu / 3600:,.1f} H200-hours"


def section(looks: StudyLooks, config_text: str | None, used: pd.DataFrame) -> Html:
    """The paragraph, table and figure of the looks."""
    d = looks.design
    k, total = len(looks.records), d["looks"]
    skipped = len(looks.final.get("not_trained") or [])
    trained = looks.final["runs_trained"]
    stopped = (f"The study stopped after look {k} of {total}" if k < total and not
               looks.final["continuing_blocks"] else f"The study ran its {k} look(s) of {total}")  # fmt: skip
    text = (
        f"A sequential design ({looks.procedure_design().describe()}): {stopped}; it trained "
        f"{trained} runs, and the stops left {skipped} runs of the design untrained"
        f"{_saved(looks, config_text)} against training every seed (the fixed design of these "
        "seeds). Each look analyses every run trained so far; a block trains its next wave only "
        "while one of its primary hypotheses is undecided. The secondary comparisons and the "
        "stabilisers' blocks use the runs that were trained: they are exploratory."
    )
    rows, plot = [], []
    for i, name in enumerate(looks.names):
        last = looks.final["hypotheses"][i]
        decided = last["decided_at"]
        at = looks.records[(decided or k) - 1]["hypotheses"][i]
        per_look = []
        for j, r in enumerate(looks.records, start=1):
            h = r["hypotheses"][i]
            fut = h["futility_bound"]
            if h["nominal_level"] is None:  # decided at an earlier look: not tested here
                continue
            plot.append({"panel": str(i), "look": j, "p": math.nan if h["p"] is None else h["p"],
                         "efficacy": h["nominal_level"],
                         "futility": float(sequential.p_of_z(fut)) if fut else math.nan})  # fmt: skip
            if h["p"] is not None:
                per_look.append(f"look {j}: p {fmt_p(h['p'], True)} (boundary {fmt(h['nominal_level'])}"
                                + (f", futility below |Z| {fut:g}" if fut else "") + ")")  # fmt: skip
        runs = (f"{at['runs_candidate']} / {at['runs_baseline']}"
                if at.get("runs_candidate") is not None else "-")  # fmt: skip
        rows.append([name, last["status"], decided if decided is not None else "-", runs,
                     "; ".join(per_look) or "-", fmt_p(looks.adjusted_p[i])])  # fmt: skip
    titles = {str(i): n for i, n in enumerate(looks.names)}
    parts = [
        tag("p", text),
        table(
            [
                "primary hypothesis",
                "decision",
                "at look",
                "runs at that look (candidate / baseline)",
                "each look's p against its boundary",
                "final p (sequential, Holm)",
            ],
            rows,
            cls="answer-table",
        ),  # fmt: skip
        figure(
            figures.looks(pd.DataFrame(plot), titles),
            "The looks: -log10 p of each look's test (points) against the efficacy boundary "
            "(red: at or above it, rejected) and the futility boundary (grey, dashed: below it, "
            "stopped, not rejected), each hypothesis at its Holm level at that look.",
            used,
        ),
        tag("p", BIAS_NOTE, class_="note"),
    ]
    return join(parts)
