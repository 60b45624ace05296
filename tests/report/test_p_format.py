"""p-values as the report prints them: never 0."""

from __future__ import annotations

import math

import pytest

from ganstudy.analysis import stats
from ganstudy.report.html import fmt, fmt_p


@pytest.mark.parametrize("p", [1.0, 0.05, 1e-13, 7.8e-64, 1.8e-81, 1e-289, 1e-300, 5e-324])
def test_a_positive_p_is_never_printed_as_zero(p):
    text = fmt_p(p)
    assert float(text.removeprefix("< ")) > 0
    # below 1e-290 products of probabilities may have underflowed: a bound, not a value
    assert text == (f"{p:.3g}" if p >= 1e-290 else "< 1e-290")
    assert fmt_p(p, relation=True) == (f"= {p:.3g}" if p >= 1e-290 else "< 1e-290")


def test_an_underflowed_p_is_stated_as_a_bound():
    assert fmt(0.0) == "0"  # the general number format, which p-values do not use
    assert fmt_p(0.0) == "< 1e-290" and fmt_p(math.nan) == "-" and fmt_p(None) == "-"
    cmp = stats.compare([30.0, 31.0, 32.0, 33.0, 34.0], [20.0, 21.0, 22.0, 23.0, 24.0], "FID",
                        higher_is_better=False)  # fmt: skip
    assert "Holm-adjusted p < 1e-290)" in stats.verdict(cmp, 0.0, "gan", "lsgan")
    assert "Holm-adjusted p = 0.00794)" in stats.verdict(cmp, 2 / 252, "gan", "lsgan")
