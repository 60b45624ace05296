"""Power of the primary family's pooled tests, known before any run.

Each primary hypothesis pools strata of (n_candidate, n_baseline) runs (:mod:`.primary`). Its
test is the one the report runs (:mod:`.pooled`), and its power is found by simulation with a
fixed seed, so the plan is the same every time it is printed:

- continuous outcomes: normal values, the candidate shifted by delta in every stratum, so the
  probability of improvement is theta = Phi(delta / sqrt 2); the stratified exact permutation
  test (:class:`ganstudy.analysis.exact.StratifiedNull`, no ties) on each simulated study;
- rates: binomial events, the baseline at the hypothesis' ``base_rate`` and the candidate at
  base_rate +/- d in every stratum; the exact conditional test
  (:func:`ganstudy.analysis.fisher.stratified_fisher_p`) on each simulated study. A difference
  counts as detected when both directions inside [0, 1] are.

Both tests run at the primary family's threshold alpha / m (Holm's first step, m hypotheses).
The detectable effect is the smallest one whose power reaches 80%, found by bisection over the
effect with the same random draws at every step (common random numbers: power then grows with
the effect). The smallest reachable p is that of complete separation in every stratum
(:func:`ganstudy.analysis.exact.min_p_separated`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ganstudy import store
from ganstudy.analysis import exact, fisher
from ganstudy.analysis.power import ALPHA, POWER
from ganstudy.analysis.primary import Hypothesis
from ganstudy.metrics.registry import RATE

SIMULATIONS = 1_000
SEED = 0


def _continuous_power_fn(sizes, level, simulations, seed):
    """power(delta) of the stratified permutation test at ``level``."""
    null = exact.StratifiedNull.without_ties(sizes)
    rng = np.random.default_rng(seed)
    draws = [(rng.standard_normal((simulations, n)), np.sort(rng.standard_normal((simulations, m)),
              axis=1)) for n, m in sizes]  # fmt: skip
    # U per simulation: baseline values below each candidate value, found in one sorted array
    # where row offsets keep each simulation's values apart.
    offsets = np.arange(simulations)[:, None] * 1e3
    rows = np.arange(simulations)[:, None]
    flat = [(base + offsets).ravel() for _, base in draws]

    def power(delta: float) -> float:
        t = np.zeros(simulations)
        for (cand, _), baseline, (n, m) in zip(draws, flat, sizes):
            below = np.searchsorted(baseline, (cand + delta + offsets).ravel())
            u = (below.reshape(simulations, n) - rows * m).sum(axis=1)
            t += u / (n * m)
        return float(np.mean(null.p(t) <= level))

    return power


def _rate_power_fn(sizes, base_rate, level, simulations, seed):
    """power(rate of the candidate) of the exact conditional test at ``level``."""
    rng = np.random.default_rng(seed)
    u_cand = rng.random((simulations, len(sizes)))
    base_events = rng.binomial(
        np.asarray([m for _, m in sizes]), base_rate, (simulations, len(sizes))
    )
    n_c = np.asarray([n for n, _ in sizes])
    n_b = np.asarray([m for _, m in sizes])

    def power(rate: float) -> float:
        cand_events = sps.binom.ppf(u_cand, n_c, rate).astype(int)
        p = fisher.stratified_fisher_p(cand_events, n_c, base_events, n_b)
        return float(np.mean(p <= level))

    return power


def _bisect(ok, lo: float, hi: float, steps: int) -> float | None:
    """Smallest x in (lo, hi] with ok(x), assuming ok is monotone; None if not ok(hi)."""
    if not ok(hi):
        return None
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def detectable_poi(sizes, level, power=POWER, simulations=SIMULATIONS, seed=SEED) -> float | None:
    """Smallest probability of improvement (> 0.5) detected with ``power``; None: none is."""
    if exact.min_p_separated(sizes) > level:
        return None
    fn = _continuous_power_fn(sizes, level, simulations, seed)
    delta = _bisect(lambda d: fn(d) >= power, 0.0, 12.0, 16)
    return None if delta is None else float(sps.norm.cdf(delta / math.sqrt(2)))


def poi_power(sizes, theta, level, simulations=SIMULATIONS, seed=SEED) -> float:
    """Power of the pooled test when every stratum's probability of improvement is theta."""
    fn = _continuous_power_fn(sizes, level, simulations, seed)
    return fn(math.sqrt(2) * float(sps.norm.ppf(theta)))


def rate_power(sizes, base_rate, difference, level, simulations=SIMULATIONS, seed=SEED) -> float:
    """Power against a difference of rates: the smaller of the two directions inside [0, 1]."""
    fn = _rate_power_fn(sizes, base_rate, level, simulations, seed)
    rates = [r for r in (base_rate + difference, base_rate - difference) if 0 <= r <= 1]
    return min(fn(r) for r in rates) if rates else 0.0


def stratified_detectable_rate_difference(
    sizes, base_rate, level, power=POWER, simulations=SIMULATIONS, seed=SEED
) -> float | None:
    """Smallest difference of rates (steps of 0.005) from ``base_rate`` that the stratified exact
    test over cells of ``sizes`` detects with ``power`` (simulated) both ways inside [0, 1];
    None: none is."""
    if exact.min_p_separated(sizes) > level:
        return None
    fn = _rate_power_fn(sizes, base_rate, level, simulations, seed)
    cache: dict[int, bool] = {}

    def ok(step: int) -> bool:
        if step not in cache:
            d = step / 200
            rates = [r for r in (base_rate + d, base_rate - d) if 0 <= r <= 1]
            cache[step] = bool(rates) and all(fn(r) >= power for r in rates)
        return cache[step]

    top = round(200 * max(base_rate, 1 - base_rate))
    if top < 1 or not ok(top):
        return None
    lo, hi = 0, top
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi / 200


# ---------------------------------------------------------------------------------------------
# The study's plan


@dataclass(frozen=True)
class PlannedHypothesis:
    hypothesis: Hypothesis
    sizes: tuple[tuple[int, int], ...]  # (n_candidate, n_baseline) per stratum
    level: float

    @property
    def n_candidate(self) -> int:
        return sum(n for n, _ in self.sizes)

    @property
    def n_baseline(self) -> int:
        return sum(m for _, m in self.sizes)

    @property
    def min_p(self) -> float:
        return exact.min_p_separated(list(self.sizes))

    def detectable(self) -> float | None:
        h = self.hypothesis
        if h.outcome.kind == RATE:
            return stratified_detectable_rate_difference(list(self.sizes), h.base_rate, self.level)
        return detectable_poi(list(self.sizes), self.level)

    def detects_min_effect(self, detectable: float | None) -> bool:
        return detectable is not None and detectable <= self.hypothesis.min_effect + 1e-9


def describe_detectable(h: Hypothesis, detectable: float | None) -> str:
    if detectable is None:
        return "no effect reaches 80% power"
    if h.outcome.kind == RATE:
        return f"rate difference >= {detectable:.3f} from {h.base_rate:.2f}"
    return f"P(better) outside [{1 - detectable:.2f}, {detectable:.2f}]"


def plan(study, alpha: float = ALPHA) -> list[PlannedHypothesis]:
    """The primary family of ``study`` with each stratum's planned seeds."""
    seeds = {v.key: len(v.seeds) for v in study.variants}
    family = study.primary
    level = alpha / max(1, len(family))
    out = []
    for h in family:
        sizes = []
        for p in h.strata(study.pairs):
            base = store.VariantKey(p.dataset, p.arch, p.baseline, p.bn_g, p.bn_d).path
            cand = store.VariantKey(p.dataset, p.arch, p.candidate, p.bn_g, p.bn_d).path
            sizes.append((seeds[cand], seeds[base]))
        out.append(PlannedHypothesis(h, tuple(sizes), level))
    return out


def evaluate(planned: list[PlannedHypothesis]) -> list[tuple[PlannedHypothesis, float | None]]:
    return [(p, p.detectable()) for p in planned]


def table(evaluated, alpha: float = ALPHA) -> str:
    """The primary family as a text table: pooled n, smallest p, detectable and needed effect."""
    if not evaluated:
        return "No primary hypothesis: the study plans no comparison of lsgan with its baseline."
    header = ["primary hypothesis", "cells", "n per arm", "min p", "detectable with 80% power",
              "min_effect", "detects it"]  # fmt: skip
    rows = [
        [p.hypothesis.name, str(len(p.sizes)), f"{p.n_candidate}/{p.n_baseline}",
         f"{p.min_p:.2g}" if p.min_p > 0 else "< 1e-300", describe_detectable(p.hypothesis, d),
         p.hypothesis.describe_min_effect(), "yes" if p.detects_min_effect(d) else "NO"]
        for p, d in evaluated
    ]  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    level = evaluated[0][0].level
    bad = [p for p, d in evaluated if not p.detects_min_effect(d)]
    lines.append(
        f"{len(evaluated)} primary hypotheses, Holm's first threshold {alpha:g}/{len(evaluated)}"
        f" = {level:.3g}; power by simulation ({SIMULATIONS} simulated studies, seed {SEED}); "
        + (
            f"{len(bad)} cannot detect their min_effect: give their arms more seeds."
            if bad
            else "every one detects its min_effect with 80% power."
        )  # fmt: skip
    )
    return "\n".join(lines)


def warning(evaluated) -> str | None:
    """The start-of-study warning about primary hypotheses that miss their min_effect."""
    bad = [(p, d) for p, d in evaluated if not p.detects_min_effect(d)]
    if not bad:
        return None
    shown = "; ".join(
        f"{p.hypothesis.name} (n = {p.n_candidate}/{p.n_baseline}: detects "
        f"{describe_detectable(p.hypothesis, d)}, needed {p.hypothesis.describe_min_effect()})"
        for p, d in bad
    )
    return (
        f"Power: {len(bad)} of {len(evaluated)} primary hypotheses cannot detect the effect "
        f"that matters (analysis.primary[*].min_effect) with 80% power: {shown}. Give their arms "
        "more seeds (`ganstudy study cost` lists the primary family)."
    )
