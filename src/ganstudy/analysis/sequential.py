"""Group-sequential testing of the primary family: looks, alpha spending, futility, Holm.

The study trains its seeds in waves and analyses the primary family after each (a *look*). At
look k a fraction t_k of each hypothesis' runs is in (the information fraction, t_K = 1).

**Efficacy boundaries** (Lan & DeMets 1983; :mod:`ganstudy.analysis.boundaries`). Each hypothesis
tested at level a spends its type I error over the looks through a spending function a(t):

``obrien_fleming`` (O'Brien-Fleming-like: strict early) or ``pocock`` (Pocock-like: flat); the
two-sided boundary c_k of each look follows from it by recursive numerical integration. A look's
exact test (the stratified Fisher or permutation test of :mod:`ganstudy.analysis.pooled`) is
read on that scale: it rejects when its two-sided p <= 2 (1 - Phi(c_k)), the look's *nominal
level*; a hypothesis' information fraction is its runs so far over its runs at the end.

**Futility** (non-binding): at an interim look a hypothesis whose |Z| = Phi^-1(1 - p/2) is below
the look's bound stops, not rejected, and is not tested again. The efficacy boundaries are
computed as if it never stopped, so stopping for futility can only lower the error rate; it
costs power, which the maximum number of seeds pays back.

**The family** (Holm over looks; Maurer & Bretz 2013, with the sequential p-values of Liu &
Anderson 2008). A hypothesis' *sequential p-value* after look k is the smallest level a at which
its group-sequential test would have rejected it at some look up to k:
q_k = min_{j <= k} inf{a : p_j <= nominal_j(a)}. At every look Holm's step-down runs over the
family's sequential p-values (futile hypotheses count, with q = 1): the smallest is rejected when
q <= alpha / r with r hypotheses not rejected, then the next with one fewer, and so on. This is the
graphical procedure of Maurer & Bretz with Holm's graph (a rejected hypothesis' level passes in
equal parts to the others) and boundaries updated to the new level; with one look it is Holm's
procedure on the p-values. The Holm-adjusted sequential p-values are the final p-values, which
respect the design: a hypothesis' p is below alpha exactly when the procedure rejected it.

Nothing here reads files; scipy is imported on first use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ganstudy.analysis.boundaries import (  # noqa: F401 - the design's names, in one place
    OBRIEN_FLEMING,
    POCOCK,
    SPENDING_NAMES,
    boundaries,
    crossing,
    nominal_levels,
    p_of_z,
    spent,
    z_of_p,
)
from ganstudy.analysis.power import ALPHA

CONTINUE = "continue"
REJECTED = "rejected"
FUTILITY = "stopped for futility"
NOT_REJECTED = "not rejected"
DECIDED = (REJECTED, FUTILITY, NOT_REJECTED)


# ---------------------------------------------------------------------------------------------
# The design and its decisions


@dataclass(frozen=True)
class Design:
    """A study's sequential design (study config ``analysis.sequential``)."""

    fractions: tuple[float, ...] = (1.0,)
    spending: str = OBRIEN_FLEMING
    futility: tuple[float, ...] = ()  # |Z| bounds at the interim looks (K - 1 of them)
    alpha: float = ALPHA

    @classmethod
    def from_config(cls, config: dict | None) -> Design:
        """The design of a (schema-filled) study config; ``waves: 1`` (or none) is fixed."""
        seq = (((config or {}).get("analysis") or {}).get("sequential")) or {}
        fractions = seq.get("fractions")
        waves = seq.get("waves") or 1
        if fractions is None:
            fractions = [w / waves for w in range(1, waves + 1)]
        futility = tuple(float(f) for f in (seq.get("futility") or ()))
        return cls(tuple(float(f) for f in fractions), seq.get("spending") or OBRIEN_FLEMING,
                   futility)  # fmt: skip

    @property
    def looks(self) -> int:
        return len(self.fractions)

    @property
    def sequential(self) -> bool:
        return self.looks > 1

    def futility_bound(self, look: int) -> float:
        """|Z| bound for futility at look ``look`` (0-based); 0 at the final look."""
        return self.futility[look] if look < min(len(self.futility), self.looks - 1) else 0.0

    def bounds(self, level: float, fractions: Sequence[float] | None = None) -> tuple[float, ...]:
        """Boundaries at ``level`` on ``fractions`` (a hypothesis' own; default the design's)."""
        fractions = self.fractions if fractions is None else tuple(fractions)
        return boundaries(tuple(round(t, 12) for t in fractions), round(level, 15), self.spending)

    def nominal(self, level: float, fractions: Sequence[float] | None = None) -> tuple[float, ...]:
        """The two-sided nominal level of each look's test for a hypothesis at ``level``."""
        fractions = self.fractions if fractions is None else tuple(fractions)
        return nominal_levels(tuple(round(t, 12) for t in fractions), round(level, 15),
                              self.spending)  # fmt: skip

    def describe(self) -> str:
        if not self.sequential:
            return "fixed design (one look)"
        looks = ", ".join(f"{t:.3g}" for t in self.fractions)
        fut = ", ".join(f"{f:g}" for f in self.futility[: self.looks - 1])
        fut = f"non-binding futility |Z| < {fut}" if fut else "no stop for futility"
        return (f"{self.looks} looks at information fractions {looks}; "
                f"{self.spending.replace('_', '-')}-like alpha spending (Lan-DeMets); {fut}")  # fmt: skip


def sequential_p(
    design: Design,
    p_looks: Sequence[float],
    fractions: Sequence[float] | None = None,
    tol: float = 1e-4,
) -> float:
    """The smallest level at which the hypothesis' group-sequential test rejects at one of the
    looks of ``p_looks`` (its p at each look, in order): the Liu-Anderson sequential p-value.
    Bisection on log(level) to a relative ``tol``."""
    p_looks = [1.0 if not np.isfinite(p) else float(p) for p in p_looks]
    if not p_looks:
        return 1.0

    def rejects(level: float) -> bool:
        nominal = design.nominal(level, fractions)
        return any(p <= n for p, n in zip(p_looks, nominal))

    if rejects(1e-12):
        return 1e-12
    if not rejects(1.0):
        return 1.0
    lo, hi = math.log(1e-12), 0.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if rejects(math.exp(mid)) else (mid, hi)
    return math.exp(hi)


_STANDARD = NormalDist()


def _z(p: float) -> float:
    """|Z| of one two-sided p (NaN: no test, 0), without scipy's per-call overhead."""
    if not math.isfinite(p) or p >= 1:
        return 0.0
    return -_STANDARD.inv_cdf(max(p, 1e-300) / 2)


@dataclass(frozen=True)
class LookDecision:
    """One hypothesis at one look: its status after the look, the p of the look's test, the
    nominal level it was read against, the |Z| futility bound and its level alpha / r."""

    status: str
    p: float
    nominal: float
    futility: float
    level: float


@dataclass
class Procedure:
    """The sequential Holm procedure over a family, replayed look by look.

    ``fractions``: per hypothesis, its information fraction at each look (planned runs so far
    over its planned runs; by default the design's). A hypothesis whose fraction reaches 1 has its
    final test at that look.
    """

    design: Design
    fractions: list[tuple[float, ...]]
    status: list[str] = field(default_factory=list)
    decided_at: list[int | None] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list)  # p per look per hypothesis

    def __post_init__(self):
        m = len(self.fractions)
        self.status = [CONTINUE] * m
        self.decided_at = [None] * m
        self.history = [[] for _ in range(m)]

    @classmethod
    def of(cls, design: Design, m: int) -> Procedure:
        """``m`` hypotheses on the design's own fractions."""
        return cls(design, [design.fractions] * m)

    @property
    def m(self) -> int:
        return len(self.fractions)

    @property
    def looks_taken(self) -> int:
        return len(self.history[0]) if self.m else 0

    def _rejects(self, i: int, level: float, k: int) -> bool:
        nominal = self.design.nominal(level, self.fractions[i][: k + 1])
        return any(q <= n for q, n in zip(self.history[i][: k + 1], nominal))

    def look(self, p: Sequence[float | None]) -> list[LookDecision]:
        """Take the next look with each hypothesis' p (None or NaN for one that is decided, or
        has no test: read as p = 1). Returns each hypothesis' decision after the look."""
        k = self.looks_taken
        if k >= self.design.looks:
            raise ValueError(
                f"the design has {self.design.looks} looks; this would be look {k + 1}"
            )
        for i in range(self.m):
            value = p[i]
            ok = value is not None and bool(np.isfinite(value)) and self.status[i] == CONTINUE
            self.history[i].append(float(value) if ok else math.nan)
        alpha = self.design.alpha
        # Holm's step-down over the hypotheses not rejected, each at alpha / r; a rejection
        # raises the others' level, so test again until nothing more is rejected.
        rejected_at: dict[int, float] = {}
        while True:
            r = sum(s != REJECTED for s in self.status)
            hit = [i for i in range(self.m) if self.status[i] == CONTINUE
                   and self._rejects(i, alpha / max(1, r), k)]  # fmt: skip
            if not hit:
                break
            for i in hit:
                self.status[i], self.decided_at[i] = REJECTED, k
                rejected_at[i] = alpha / max(1, r)
        after = alpha / max(1, sum(s != REJECTED for s in self.status))
        out = []
        for i in range(self.m):
            fractions = self.fractions[i][: k + 1]
            final = k == self.design.looks - 1 or fractions[-1] >= 1 - 1e-9
            fut = 0.0 if final else self.design.futility_bound(k)
            q = self.history[i][k]
            if self.status[i] == CONTINUE:
                if final:
                    self.status[i], self.decided_at[i] = NOT_REJECTED, k
                elif fut > 0 and _z(q) < fut:
                    self.status[i], self.decided_at[i] = FUTILITY, k
            # A hypothesis rejected here: the level it was rejected at; else the look's last.
            level = rejected_at.get(i, after)
            nominal = (
                float(self.design.nominal(level, fractions)[k]) if np.isfinite(q) else math.nan
            )
            out.append(LookDecision(self.status[i], q, nominal, fut, level))
        return out

    def sequential_ps(self) -> list[float]:
        """Each hypothesis' sequential p-value over the looks it was tested at (1 for one
        stopped for futility: it stays not rejected whatever alpha later passes to it)."""
        return [
            1.0 if s == FUTILITY
            else sequential_p(self.design, h[: len(h)], self.fractions[i][: len(h)])
            for i, (s, h) in enumerate(zip(self.status, self.history))
        ]  # fmt: skip

    def adjusted_p(self) -> list[float]:
        """The final p-values: Holm-adjusted sequential p-values, capped at 1; below alpha
        exactly for the hypotheses the procedure rejected (to the bisection's tolerance)."""
        q = self.sequential_ps()
        order = np.argsort(q, kind="stable")
        out = [1.0] * self.m
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (self.m - rank) * q[i]))
            out[i] = running
        return out


def replay(
    design: Design,
    history: Sequence[Sequence[float | None]],
    fractions: list[tuple[float, ...]] | None = None,
) -> Procedure:
    """The procedure after the looks of ``history`` (per look, each hypothesis' p)."""
    m = len(history[0]) if history else len(fractions or [])
    proc = Procedure(design, fractions or [design.fractions] * m)
    for p in history:
        proc.look(p)
    return proc
