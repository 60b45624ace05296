"""The report's figures: seaborn/matplotlib drawings of tidy data frames, returned as PNG bytes.

Every function takes plain data frames (float columns with NaN, string columns) and draws; it
reads no files and computes no statistics beyond what seaborn shows (box quartiles, mean and SD
bands). Matplotlib runs on the Agg backend, so no display is needed.
"""

from __future__ import annotations

import io
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

DPI = 80
PANEL_W, PANEL_H = 4.0, 3.2
MAX_COLS = 4


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _grid(n_panels: int, sharey: bool = True):
    cols = min(n_panels, MAX_COLS)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(PANEL_W * cols, PANEL_H * rows), squeeze=False, sharey=sharey
    )
    flat = axes.ravel()
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)


def box_strip(
    data: pd.DataFrame,
    y: str,
    ylabel: str,
    panel: str = "arch",
    hue: str = "bn",
    sharey: bool = True,
) -> bytes:
    """Box plot of ``y`` by loss with the individual seeds on top, one panel per ``panel`` value,
    boxes coloured by ``hue`` (the batch-norm setting)."""
    _theme()
    panels = sorted(data[panel].unique())
    order = sorted(data["loss_label"].unique())
    hue_order = sorted(data[hue].unique())
    fig, axes = _grid(len(panels), sharey=sharey)
    for ax, name in zip(axes, panels):
        sub = data[data[panel] == name]
        kw = dict(x="loss_label", y=y, hue=hue, order=order, hue_order=hue_order, ax=ax)
        with warnings.catch_warnings():
            # seaborn passes matplotlib a deprecated boxplot argument; nothing to change here.
            warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
            sns.boxplot(data=sub, showfliers=False, fill=False, legend=False, **kw)
        sns.stripplot(data=sub, dodge=True, size=5, alpha=0.8, legend=ax is axes[-1], **kw)
        ax.set(title=str(name), xlabel="loss", ylabel=ylabel)
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.0, 1.0), title=hue)
    return _png(fig)


def rates(data: pd.DataFrame, columns: dict[str, str]) -> bytes:
    """Bar chart of the share of runs (0-1) with each boolean column true, by loss and variant.

    ``columns`` maps a column to its axis label; one panel per column.
    """
    _theme()
    fig, axes = _grid(len(columns), sharey=True)
    order = sorted(data["loss_label"].unique())
    hue_order = sorted(data["variant"].unique())
    for ax, (col, label) in zip(axes, columns.items()):
        sub = data[data[col].notna()].assign(**{col: lambda d, c=col: d[c].astype(float)})
        sns.barplot(
            data=sub,
            x="loss_label",
            y=col,
            hue="variant",
            order=order,
            hue_order=hue_order,
            errorbar=None,
            ax=ax,
            legend=ax is axes[-1],
        )
        ax.set(ylim=(0, 1), xlabel="loss", ylabel=f"{label} (share of runs)", title=label)
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.0, 1.0), title="variant")
    return _png(fig)


def curves(data: pd.DataFrame, y: str, ylabel: str, logy: bool = False) -> bytes:
    """Mean over seeds (line) and +/- 1 SD band of ``y`` against ``step``, one line per loss,
    one panel per variant (architecture x batch norm)."""
    _theme()
    panels = sorted(data["variant"].unique())
    order = sorted(data["loss_label"].unique())
    fig, axes = _grid(len(panels))
    for ax, name in zip(axes, panels):
        sns.lineplot(
            data=data[data["variant"] == name],
            x="step",
            y=y,
            hue="loss_label",
            hue_order=order,
            errorbar="sd",
            estimator="mean",
            ax=ax,
            legend=ax is axes[-1],
        )
        ax.set(title=str(name), xlabel="step", ylabel=ylabel)
        if logy:
            ax.set_yscale("log")
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.0, 1.0), title="loss")
    return _png(fig)


def scatter2d(
    points: dict[tuple[str, str], pd.DataFrame], means: np.ndarray, titles: dict[tuple, str]
) -> bytes:
    """Generated 2D points (dots) over the true mixture means (red circles).

    ``points`` maps (variant, loss) to a frame with x, y columns; rows are variants, columns
    losses. ``titles`` gives each panel's title (e.g. the seed shown).
    """
    _theme()
    variants = sorted({v for v, _ in points})
    losses = sorted({loss for _, loss in points})
    # Frame the modes, widened to show stray points, but not so far that the modes shrink to dots.
    reach = float(np.abs(means).max())
    spread = max(
        (float(np.nanpercentile(np.abs(p[["x", "y"]]), 99)) for p in points.values()), default=0.0
    )
    lim = max(reach * 1.5 + 0.5, min(spread * 1.1, reach * 4 + 1))
    fig, axes = plt.subplots(
        len(variants),
        len(losses),
        figsize=(3.2 * len(losses), 3.2 * len(variants)),
        squeeze=False,
    )
    for i, variant in enumerate(variants):
        for j, loss in enumerate(losses):
            ax = axes[i, j]
            pts = points.get((variant, loss))
            # Means first and hollow, so points sitting on a mode stay visible.
            ax.scatter(
                means[:, 0], means[:, 1], marker="o", s=90, facecolors="none",
                edgecolors="tab:red", linewidths=1.2, zorder=2,
            )  # fmt: skip
            if pts is not None:
                ax.scatter(
                    pts["x"], pts["y"], s=4, alpha=0.5, color="tab:blue", linewidths=0, zorder=3
                )
            else:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
            ax.set_title(titles.get((variant, loss), f"{loss}\n{variant}"), fontsize=8)
    return _png(fig)


def forest(data: pd.DataFrame, panel_titles: dict[str, str]) -> bytes:
    """Forest plot: per panel (a hypothesis) each cell's effect with its CI and the pooled one
    (row ``pooled`` True, drawn as a diamond), a dashed line at no effect (``null``).

    Columns: panel, label, effect, low, high, pooled (bool), null (the no-effect value), log
    (bool: a log x axis, for odds ratios), xlabel.
    """
    _theme()
    panels = list(dict.fromkeys(data["panel"]))
    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    height = max(2.0, 0.32 * data.groupby("panel").size().max() + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, height * rows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, name in zip(flat, panels):
        sub = data[data["panel"] == name].reset_index(drop=True)
        y = np.arange(len(sub))[::-1]
        for yi, row in zip(y, sub.itertuples()):
            finite = math.isfinite(row.low) and math.isfinite(row.high)
            colour = "#b22222" if row.pooled else "#333333"
            if finite:
                ax.plot([row.low, row.high], [yi, yi], color=colour, lw=1.4)
            if math.isfinite(row.effect) and (not sub["log"].iloc[0] or row.effect > 0):
                ax.plot(row.effect, yi, "D" if row.pooled else "s", color=colour,
                        ms=7 if row.pooled else 5)  # fmt: skip
        ax.axvline(sub["null"].iloc[0], color="#888888", ls="--", lw=1)
        if sub["log"].iloc[0]:
            ax.set_xscale("log")
        else:  # a probability
            ax.set_xlim(-0.02, 1.02)
        ax.set_yticks(y, sub["label"])
        ax.set(title=panel_titles.get(name, name), xlabel=sub["xlabel"].iloc[0])
        ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return _png(fig)


def looks(data: pd.DataFrame, panel_titles: dict[str, str]) -> bytes:
    """The looks of a sequential study: per panel (a hypothesis) -log10 p of each look's test
    (points), the efficacy boundary (red: at or above it the hypothesis is rejected) and the
    futility boundary (grey: below it the hypothesis stops, not rejected).

    Columns: panel, look, p (NaN: not tested at that look), efficacy (the nominal level),
    futility (the p of the |Z| futility bound; NaN where there is none).
    """
    _theme()
    panels = list(dict.fromkeys(data["panel"]))
    fig, axes = _grid(len(panels), sharey=False)
    flat = axes.ravel()
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, name in zip(flat, panels):
        sub = data[data["panel"] == name].sort_values("look")
        ax.plot(sub["look"], -np.log10(sub["efficacy"]), color="#b22222", marker="_", ms=14,
                lw=1, label="efficacy boundary")  # fmt: skip
        fut = sub[sub["futility"].notna()]
        if not fut.empty:
            ax.plot(fut["look"], -np.log10(fut["futility"]), color="#888888", marker="_",
                    ms=14, lw=1, ls="--", label="futility boundary")  # fmt: skip
        tested = sub[sub["p"].notna()]
        ax.plot(tested["look"], -np.log10(tested["p"].clip(lower=1e-300)), "o",
                color="#333333", label="-log10 p")  # fmt: skip
        ax.set_xticks(sorted(set(data["look"])))
        ax.set_xlim(0.5, data["look"].max() + 0.5)
        ax.set(title=panel_titles.get(name, name), xlabel="look", ylabel="-log10 p")
        ax.set_ylim(bottom=0)
    flat[0].legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _png(fig)
