"""The study's outcomes and its declared primary hypotheses (study config ``analysis.primary``).

A primary hypothesis is a (candidate vs baseline, outcome, scope) triple: the candidate arm
against the baseline arm on one outcome, pooled over every planned comparison of the two arms
(:class:`~ganstudy.analysis.comparisons.Pair`) on the scope's datasets. Each such pair is a stratum: one
dataset x architecture x batch norm x block (a block fixes every other training setting). Holm's
correction runs over the primary family only; every per-cell comparison is secondary.

Outcomes are the metrics of :data:`ganstudy.metrics.registry.METRICS` marked ``outcome``: a
column of summary.csv, rate or continuous, its direction and the datasets it applies to. Each
has a default smallest effect that matters (``min_effect``): for rates a difference of 0.10 from
the hypothesis' ``base_rate``, for continuous outcomes a probability of improvement of 0.65 (a
published difference: 22% vs 32.5% success on the ring; FID and modes: see config/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ganstudy.analysis.comparisons import Pair
from ganstudy.data import registry
from ganstudy.errors import ConfigError
from ganstudy.metrics import registry as metric_registry
from ganstudy.metrics.registry import CONTINUOUS, RATE, Metric

DEFAULT_RATE_EFFECT = 0.10
DEFAULT_POI_EFFECT = 0.65
DEFAULT_BASE_RATE = 0.5


def default_min_effect(outcome: Metric) -> float:
    return DEFAULT_RATE_EFFECT if outcome.kind == RATE else DEFAULT_POI_EFFECT


@dataclass(frozen=True)
class Hypothesis:
    candidate: str
    baseline: str
    outcome: Metric  # a metric of the registry marked ``outcome``
    scope: tuple[str, ...]
    min_effect: float
    base_rate: float  # rates: the baseline's rate the plan assumes
    # A published effect of the comparison, where one exists (the cost plan's scenario).
    published_effect: float | None = None
    published_source: str = ""

    @property
    def name(self) -> str:
        return (
            f"{self.candidate} vs {self.baseline}: {self.outcome.label} on {'+'.join(self.scope)}"
        )

    def strata(self, pairs: list[Pair]) -> list[Pair]:
        """The planned comparisons this hypothesis pools: its arms on its scope's datasets."""
        return sorted(
            (
                p
                for p in pairs
                if p.dataset in self.scope
                and (p.baseline, p.candidate) == (self.baseline, self.candidate)
            ),
            key=lambda p: (self.scope.index(p.dataset), p.arch, p.bn_g, p.bn_d, p.block),
        )

    def describe_min_effect(self) -> str:
        return self.describe_effect(self.min_effect)

    def describe_effect(self, effect: float) -> str:
        if self.outcome.kind == RATE:
            return f"rate difference {effect:g} from {self.base_rate:g}"
        return f"P(better) {effect:g}"


DEFAULT_CANDIDATE = "lsgan"


def _baseline(config: dict | None) -> str:
    from ganstudy.losses import ComparedLosses

    return ComparedLosses.from_config(config).baseline


def families(pairs: list[Pair], baseline: str, candidate: str) -> list[tuple[str, ...]]:
    """Dataset families of the comparisons of ``candidate`` vs ``baseline``: the datasets of
    each block that compares them, blocks sharing a dataset merged; in the order planned."""
    groups: list[list[str]] = []
    for block in dict.fromkeys(p.block for p in pairs):
        found = [p.dataset for p in pairs if p.block == block
                 and (p.baseline, p.candidate) == (baseline, candidate)]  # fmt: skip
        datasets = list(dict.fromkeys(found))
        if not datasets:
            continue
        overlapping = [g for g in groups if set(g) & set(datasets)]
        merged = [d for g in overlapping for d in g]
        merged += [d for d in datasets if d not in merged]
        groups = [g for g in groups if g not in overlapping] + [merged]
    return [tuple(g) for g in groups]


def default_family(pairs: list[Pair], baseline: str) -> list[dict]:
    """``analysis.primary: null``: lsgan vs the baseline per dataset family: the success and
    collapse rates on the 2D mixtures; elsewhere the diverged rate and quality (modes covered
    where the modes are countable (Stacked MNIST), else FID)."""
    out = []
    for scope in families(pairs, baseline, DEFAULT_CANDIDATE):
        specs = [registry.DATASETS[d] for d in scope if d in registry.DATASETS]
        m = metric_registry
        if specs and all(s.mode_metric == "mixture2d" for s in specs):
            outcomes = [m.SUCCESS, m.COLLAPSED]
        elif specs and all(s.mode_metric == "stacked_mnist" for s in specs):
            outcomes = [m.DIVERGED, m.MODES_COVERED]
        elif specs and all(m.FID.applies(s) for s in specs):
            outcomes = [m.DIVERGED, m.FID]
        else:
            outcomes = [m.DIVERGED]
        out += [
            {"candidate": DEFAULT_CANDIDATE, "baseline": baseline, "outcome": o.name,
             "scope": list(scope)}
            for o in outcomes
        ]  # fmt: skip
    return out


def _error(i: int, key: str, message: str) -> ConfigError:
    return ConfigError(f"key 'analysis.primary[{i}].{key}': {message}")


def config_arms(config: dict | None) -> set[str]:
    """Every arm any block of the config names, switched on or off (a typo check)."""
    arms = set()
    for block in ((config or {}).get("experiments") or {}).values():
        if isinstance(block, dict):
            arms |= set(block.get("losses") or []) | set(block.get("arms") or {})
    return arms


def hypotheses(
    config: dict | None, pairs: list[Pair] | None = None, notes: list[str] | None = None
) -> list[Hypothesis]:
    """The primary family of a (schema-filled) study config, checked against its ``pairs``.

    A name that exists nowhere (an outcome, a dataset, an arm no block of the config names) is
    an error. A hypothesis whose scope has no planned comparison of its two arms (their blocks
    switched off, say by a merged config) is left out, and one whose scope is partly planned
    keeps the datasets that are; each such change is appended to ``notes``.
    """
    items = ((config or {}).get("analysis") or {}).get("primary")
    derived = items is None
    if derived:
        items = default_family(pairs or [], _baseline(config))
    known_arms = config_arms(config)
    out = []
    for i, item in enumerate(items):
        allowed = metric_registry.outcomes()
        outcome = allowed.get(item.get("outcome"))
        if outcome is None:
            raise _error(i, "outcome", f"{item.get('outcome')!r} is not allowed; allowed: "
                         f"{', '.join(allowed)}")  # fmt: skip
        for key in ("candidate", "baseline"):
            if known_arms and item[key] not in known_arms:
                raise _error(i, key, f"{item[key]!r} is not an arm of any block; allowed: "
                             f"{', '.join(sorted(known_arms))}")  # fmt: skip
        scope = tuple(item.get("scope") or ())
        for name in scope:
            spec = registry.DATASETS.get(name)
            if spec is None:
                raise _error(i, "scope", f"{name!r} is not a dataset; allowed: "
                             f"{', '.join(registry.DATASETS)}")  # fmt: skip
            if not outcome.applies(spec):
                raise _error(i, "outcome", f"{outcome.column!r} is not measured on {name!r}; "
                             f"allowed there: outcomes of {outcome.where} only")  # fmt: skip
        min_effect = item.get("min_effect")
        if min_effect is None:
            min_effect = default_min_effect(outcome)
        elif outcome.kind == RATE and not 0 < min_effect < 1:
            raise _error(i, "min_effect", f"{min_effect!r} is not allowed for a rate; allowed: "
                         "a difference of rates in (0, 1)")  # fmt: skip
        elif outcome.kind == CONTINUOUS and not 0.5 < min_effect < 1:
            raise _error(i, "min_effect", f"{min_effect!r} is not allowed for {outcome.label}; "
                         "allowed: a probability of improvement in (0.5, 1)")  # fmt: skip
        base_rate = item.get("base_rate")
        if base_rate is not None and outcome.kind != RATE:
            raise _error(i, "base_rate", f"set for {outcome.label}; allowed: rate outcomes only")
        base_rate = DEFAULT_BASE_RATE if base_rate is None else base_rate
        if outcome.kind == RATE and base_rate - min_effect < 0 and base_rate + min_effect > 1:
            raise _error(i, "min_effect", f"{min_effect!r} from base_rate {base_rate!r} leaves "
                         "[0, 1] both ways; allowed: a difference one way at least")  # fmt: skip
        published = item.get("published_effect")
        if published is not None:
            ok = 0 < published < 1 if outcome.kind == RATE else 0.5 < published < 1
            if not ok:
                raise _error(i, "published_effect", f"{published!r} is not allowed; allowed: "
                             + ("a difference of rates in (0, 1)" if outcome.kind == RATE
                                else "a probability of improvement in (0.5, 1)"))  # fmt: skip
        h = Hypothesis(item["candidate"], item["baseline"], outcome, scope, min_effect, base_rate,
                       published, item.get("published_source") or "")  # fmt: skip
        if pairs is not None and not derived:
            covered = tuple(d for d in scope if any(p.dataset == d for p in h.strata(pairs)))
            missing = [d for d in scope if d not in covered]
            where = f"analysis.primary[{i}] ({h.name})"
            if not covered:
                if notes is not None:
                    notes.append(f"{where}: left out, no planned comparison of {h.candidate} vs "
                                 f"{h.baseline} on {', '.join(scope)} in this study")  # fmt: skip
                continue
            if missing:
                if notes is not None:
                    notes.append(f"{where}: pooled over {', '.join(covered)} only, no planned "
                                 f"comparison on {', '.join(missing)} in this study")  # fmt: skip
                h = replace(h, scope=covered)
        out.append(h)
    names = [h.name for h in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"key 'analysis.primary': {repeated[0]!r} is listed twice; allowed: "
                          "each hypothesis once")  # fmt: skip
    return out
