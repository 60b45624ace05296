"""HTML building blocks of the report: escaped text, tags, tables, embedded images, numbers.

Everything is built from strings with :mod:`html` escaping; :class:`Html` marks text that is
already markup so it is not escaped twice. Images are embedded as base64 ``data:`` URIs, so the
page needs nothing beyond itself.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ganstudy.analysis import stats

LEVEL = 0.95


class Html(str):
    """Text that is already HTML: :func:`esc` passes it through unchanged."""


def esc(value: Any) -> Html:
    return value if isinstance(value, Html) else Html(html.escape(str(value)))


def join(parts: Iterable[Any]) -> Html:
    return Html("\n".join(esc(p) for p in parts if p))


def tag(name: str, body: Any = "", **attrs: Any) -> Html:
    attr = "".join(f' {k.rstrip("_")}="{html.escape(str(v))}"' for k, v in attrs.items())
    return Html(f"<{name}{attr}>{esc(body)}</{name}>")


def table(headers: list[str], rows: list[list[Any]], cls: str = "") -> Html:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    # A wide table scrolls in its own box, never the page.
    return Html(
        f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def img(png: bytes, alt: str, cls: str = "") -> Html:
    data = base64.b64encode(png).decode("ascii")
    return Html(f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')


def run_list(runs: pd.DataFrame) -> Html:
    """A collapsible list of the runs behind a figure or table: MLflow run id and run dir."""
    items = [
        tag("li", join([tag("code", r.mlflow_run_id or "no MLflow run id"), f" {r.run_dir}"]))
        for r in runs.sort_values(["loss_label", "arch", "bn_g", "bn_d", "seed"]).itertuples()
    ]
    summary = tag("summary", f"Runs drawn on ({len(items)}): MLflow run ids")
    return tag("details", join([summary, tag("ul", join(items))]))


def figure(png: bytes, caption: str, runs: pd.DataFrame) -> Html:
    return tag("figure", join([img(png, caption), tag("figcaption", caption), run_list(runs)]))


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, (float, np.floating)):
        # Counts and settings stored as floats (2048.0) read better as integers.
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:.{digits}g}"
    return str(x)


def fmt_p(p: Any, relation: bool = False) -> str:
    """A p-value (:func:`ganstudy.analysis.stats.format_p`): 3 significant digits, never "0"
    (:func:`fmt` prints a 0.0 as one); ``relation``: "= 0.012" or "< 1e-290" after a "p"."""
    return stats.format_p(p, relation)


def summarize(values: pd.Series, scale: float = 1.0) -> str:
    """'mean +/- SD [95% bootstrap CI] (n)' of the finite values."""
    x = pd.to_numeric(values, errors="coerce").astype(float).to_numpy() * scale
    mean, sd, n = stats.mean_sd(x)
    if n == 0:
        return "-"
    lo, hi = stats.bootstrap_ci_mean(x, level=LEVEL)
    ci = f" [{fmt(lo)}, {fmt(hi)}]" if not math.isnan(lo) else ""
    return f"{fmt(mean)} ± {fmt(sd)}{ci} (n={n})"
