"""Whole sequential studies by simulation: when each primary hypothesis is decided, and how.

A simulated study draws every run of every stratum of every primary hypothesis up front, in
seed order, and each look sees the runs of the waves trained so far (a prefix of each arm). Each
look's p is the report's test on those runs (:mod:`ganstudy.analysis.fisher`: the exact
conditional test for rates; :mod:`ganstudy.analysis.exact`: the stratified permutation test for
continuous outcomes), and the decisions are those of
:class:`ganstudy.analysis.sequential.Procedure`, the code the workflow's looks run. Hypotheses are
drawn independently of each other.

Models (``Scenario``: per hypothesis an effect, or None for no effect):

- rates: binomial events, the baseline at the hypothesis' ``base_rate``, the candidate at
  base_rate + d (base_rate - d where that leaves [0, 1]);
- continuous: normal values, the candidate shifted by delta in every stratum so that the
  probability of improvement is theta = Phi(delta / sqrt 2); no ties.

``benchmarks/calibration.py`` adds the no-effect model with heterogeneous cells, ties and
divergence, for the error rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ganstudy.analysis import exact, fisher, sequential
from ganstudy.metrics.registry import RATE

SIMULATIONS = 400
SEED = 0


@dataclass(frozen=True)
class Monitored:
    """A primary hypothesis as the looks see it: its outcome kind, base rate, and per look per
    stratum the (candidate, baseline) runs trained so far."""

    kind: str
    base_rate: float
    sizes: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def fractions(self) -> tuple[float, ...]:
        runs = [sum(n + m for n, m in look) for look in self.sizes]
        return tuple(r / (runs[-1] or 1) for r in runs)


def rate_ps(h: Monitored, rng, simulations: int, effect: float | None) -> np.ndarray:
    """p at each look (simulations x looks) of the exact conditional test, and the estimate
    (the candidate's rate minus the baseline's, pooled)."""
    final = h.sizes[-1]
    cand_rate = h.base_rate
    if effect is not None:
        up = h.base_rate + effect
        cand_rate = up if up <= 1 else h.base_rate - effect
    draws = []
    for n, m in final:
        c = np.cumsum(rng.random((simulations, n)) < cand_rate, axis=1)
        b = np.cumsum(rng.random((simulations, m)) < h.base_rate, axis=1)
        draws.append((c, b))
    out = np.ones((simulations, len(h.sizes)))
    est = np.full((simulations, len(h.sizes)), np.nan)
    for k, look in enumerate(h.sizes):
        ex, ey, nx, ny = [], [], [], []
        for (c, b), (n, m) in zip(draws, look):
            ex.append(c[:, n - 1] if n else np.zeros(simulations, dtype=int))
            ey.append(b[:, m - 1] if m else np.zeros(simulations, dtype=int))
            nx.append(np.full(simulations, n))
            ny.append(np.full(simulations, m))
        stack = [np.stack(a, axis=1) for a in (ex, nx, ey, ny)]
        out[:, k] = fisher.stratified_fisher_p(*stack)
        runs_c, runs_b = max(1, stack[1][0].sum()), max(1, stack[3][0].sum())
        est[:, k] = stack[0].sum(axis=1) / runs_c - stack[2].sum(axis=1) / runs_b
    return out, est


def continuous_ps(h: Monitored, rng, simulations: int, effect: float | None) -> np.ndarray:
    """p at each look (simulations x looks) of the stratified permutation test (no ties), and
    the estimate (the mean probability of improvement)."""
    delta = 0.0 if effect is None else math.sqrt(2) * float(sps.norm.ppf(effect))
    draws = [(rng.standard_normal((simulations, n)) + delta, rng.standard_normal((simulations, m)))
             for n, m in h.sizes[-1]]  # fmt: skip
    out = np.ones((simulations, len(h.sizes)))
    est = np.full((simulations, len(h.sizes)), np.nan)
    for k, look in enumerate(h.sizes):
        t = np.zeros(simulations)
        used = []
        for (c, b), (n, m) in zip(draws, look):
            if not n or not m:
                continue
            u = (c[:, :n, None] > b[:, None, :m]).sum(axis=(1, 2))
            t += u / (n * m)
            used.append((n, m))
        if used:
            out[:, k] = exact.StratifiedNull.without_ties(used).p(t)
            est[:, k] = t / len(used)
    return out, est


def draw_ps(h: Monitored, rng, simulations: int, effect: float | None):
    """(p, estimate) at each look, simulations x looks each."""
    fn = rate_ps if h.kind == RATE else continuous_ps
    return fn(h, rng, simulations, effect)


@dataclass(frozen=True)
class Outcome:
    """Simulated studies: per study and hypothesis the look it was decided at (0-based),
    whether it was rejected, and its estimate at that look."""

    decided_at: np.ndarray  # simulations x m
    rejected: np.ndarray  # simulations x m, bool
    estimate: np.ndarray  # simulations x m

    def power(self) -> np.ndarray:
        return self.rejected.mean(axis=0)


def run(
    design: sequential.Design,
    family: Sequence[Monitored],
    effects: Sequence[float | None],
    simulations: int = SIMULATIONS,
    seed: int = SEED,
    draw: Callable | None = None,
) -> Outcome:
    """``simulations`` studies of the family under ``effects`` (one per hypothesis)."""
    rng = np.random.default_rng(seed)
    draw = draw or draw_ps
    drawn = [draw(h, rng, simulations, e) for h, e in zip(family, effects)]
    ps = [d[0] for d in drawn]
    fractions = [h.fractions for h in family]
    m = len(family)
    decided = np.zeros((simulations, m), dtype=int)
    rejected = np.zeros((simulations, m), dtype=bool)
    looks = len(fractions[0]) if m else 0
    for s in range(simulations):
        proc = sequential.Procedure(design, fractions)
        for k in range(looks):
            open_ = [st == sequential.CONTINUE for st in proc.status]
            if not any(open_):
                break
            proc.look([ps[i][s, k] if open_[i] else None for i in range(m)])
        decided[s] = [d if d is not None else looks - 1 for d in proc.decided_at]
        rejected[s] = [st == sequential.REJECTED for st in proc.status]
    estimate = np.stack([d[1][np.arange(simulations), decided[:, i]]
                         for i, d in enumerate(drawn)], axis=1) if m else np.zeros((simulations, 0))  # fmt: skip
    return Outcome(decided, rejected, estimate)
