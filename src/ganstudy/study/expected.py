"""What a sequential study is expected to cost: its runs, CPU-hours and H200-hours, the maximum
(every wave trained) and the expected value under scenarios of the truth, by simulation of whole
studies with the looks' own decision code (:mod:`ganstudy.analysis.simulate`).

Scenarios (an effect per primary hypothesis):

- ``no effect``: every hypothesis null;
- ``min_effect``: every hypothesis at its ``min_effect``;
- ``2 x min_effect``: rates at twice the difference; continuous outcomes at twice the shift
  (P(better) = Phi(2 Phi^-1(min_effect)));
- ``published``: the hypotheses that declare ``published_effect`` at it, the others null.

A waved block trains wave k + 1 only while one of its hypotheses continues after look k; every
other block trains all its seeds. A run's cost is its variant's (:mod:`ganstudy.study.cost`).
Waves run one after another: the wall-clock of a wave on N GPUs is its GPU-hours over N, or its
longest job where that is longer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ganstudy.analysis import simulate
from ganstudy.metrics.registry import RATE
from ganstudy.study import cost

SIMULATIONS = 400
NO_EFFECT, MIN_EFFECT, TWICE, PUBLISHED = "no effect", "min_effect", "2 x min_effect", "published"


@dataclass(frozen=True)
class Scenario:
    name: str
    effects: tuple[float | None, ...]
    note: str = ""


def twice(h) -> float:
    if h.outcome.kind == RATE:
        d = 2 * h.min_effect
        return (
            d if h.base_rate + d <= 1 or h.base_rate - d >= 0 else max(h.base_rate, 1 - h.base_rate)
        )
    return float(sps.norm.cdf(2 * sps.norm.ppf(h.min_effect)))


def scenarios(study) -> list[Scenario]:
    family = study.primary
    out = [
        Scenario(NO_EFFECT, tuple(None for _ in family)),
        Scenario(MIN_EFFECT, tuple(h.min_effect for h in family)),
        Scenario(TWICE, tuple(twice(h) for h in family)),
    ]
    published = [h.published_effect for h in family]
    if any(e is not None for e in published):
        named = "; ".join(f"{h.name}: {h.describe_effect(h.published_effect)} ({h.published_source})"
                          for h in family if h.published_effect is not None)  # fmt: skip
        out.append(Scenario(PUBLISHED, tuple(published), named))
    return out


def monitored(study) -> list[simulate.Monitored]:
    return [simulate.Monitored(h.outcome.kind, h.base_rate, looks.sizes)
            for h, looks in zip(study.primary, study.waves.hypotheses)]  # fmt: skip


@dataclass(frozen=True)
class WaveCosts:
    """Per block and wave (1-based index - 1): runs, CPU seconds, GPU seconds, the longest job
    (GPU seconds, else CPU seconds)."""

    blocks: tuple[str, ...]
    runs: np.ndarray  # blocks x waves
    cpu: np.ndarray
    gpu: np.ndarray
    longest: np.ndarray
    gpu_unknown: int

    def per_block(self, waves_trained: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs, CPU seconds and GPU seconds (studies x blocks each) when block b of a study
        trains its first waves_trained[study, b] waves."""
        mask = np.arange(self.runs.shape[1])[None, None, :] < waves_trained[:, :, None]
        return tuple((a[None] * mask).sum(axis=2) for a in (self.runs, self.cpu, self.gpu))

    def maximum(self) -> tuple[float, float, float]:
        """Runs, CPU-hours and GPU-hours of the whole study, every wave trained."""
        return (float(self.runs.sum()), float(self.cpu.sum()) / 3600,
                float(self.gpu.sum()) / 3600)  # fmt: skip

    def wall_seconds(self, waves_trained: np.ndarray, gpus: int) -> float:
        mask = np.arange(self.runs.shape[1])[None, :] < waves_trained[:, None]
        per_wave = (self.gpu * mask).sum(axis=0) / max(1, gpus)
        longest = (self.longest * mask).max(axis=0)
        return float(np.maximum(per_wave, longest).sum())


def wave_costs(study, data_root=None) -> WaveCosts:
    plan = study.waves
    looks = plan.looks
    blocks = list(dict.fromkeys(v.block for v in study.variants))
    shape = (len(blocks), looks)
    runs, cpu, gpu, longest = (np.zeros(shape) for _ in range(4))
    unknown = 0
    by_key = {c.key: c for c in cost.estimate(study, data_root=data_root)}
    for v in study.variants:
        c = by_key[v.key]
        b = blocks.index(v.block)
        per_run_cpu = (c.cpu_seconds or 0.0) / c.runs
        per_job_gpu = None if c.gpu_seconds is None else c.gpu_seconds / c.jobs
        unknown += c.gpu_seconds is None
        for job in v.jobs():
            w = plan.wave_of_job[job.name] - 1
            runs[b, w] += len(job.seeds)
            cpu[b, w] += per_run_cpu * len(job.seeds)
            job_time = per_job_gpu if per_job_gpu is not None else 0.0
            gpu[b, w] += job_time
            longest[b, w] = max(longest[b, w], job_time)
    return WaveCosts(tuple(blocks), runs, cpu, gpu, longest, unknown)


@dataclass(frozen=True)
class Expected:
    """A scenario's simulated studies: per block the mean runs, CPU-h, H200-h; the mean wall
    clock on ``gpus`` GPUs; the hypotheses' rejection rates."""

    scenario: Scenario
    runs: dict[str, float]
    cpu_hours: dict[str, float]
    gpu_hours: dict[str, float]
    wall_hours: float
    power: tuple[float, ...]
    simulations: int


def waves_trained(study, decided_at: np.ndarray, costs: WaveCosts) -> np.ndarray:
    """Per simulated study and block: the waves it trains (decided_at: looks, 0-based)."""
    plan = study.waves
    out = np.ones((decided_at.shape[0], len(costs.blocks)), dtype=int)
    for b, block in enumerate(costs.blocks):
        if block not in plan.waved_blocks:
            continue
        held = [i for i, h in enumerate(plan.hypotheses) if block in h.blocks]
        out[:, b] = decided_at[:, held].max(axis=1) + 1 if held else plan.looks
    return out


def expected(study, scenario: Scenario, costs: WaveCosts, gpus: int,
             simulations: int = SIMULATIONS, seed: int = simulate.SEED) -> Expected:  # fmt: skip
    outcome = simulate.run(study.waves.design, monitored(study), scenario.effects,
                           simulations, seed)  # fmt: skip
    trained = waves_trained(study, outcome.decided_at, costs)
    runs, cpu, gpu = (a.mean(axis=0) for a in costs.per_block(trained))
    wall = np.mean([costs.wall_seconds(row, gpus) for row in trained])
    return Expected(
        scenario,
        dict(zip(costs.blocks, runs.tolist())),
        dict(zip(costs.blocks, (cpu / 3600).tolist())),
        dict(zip(costs.blocks, (gpu / 3600).tolist())),
        float(wall) / 3600,
        tuple(float(p) for p in outcome.power()),
        len(trained),
    )


def maximum_per_block(costs: WaveCosts) -> dict[str, tuple[float, float, float]]:
    return {name: (float(costs.runs[b].sum()), float(costs.cpu[b].sum()) / 3600,
                   float(costs.gpu[b].sum()) / 3600) for b, name in enumerate(costs.blocks)}  # fmt: skip


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 or x == int(x) else f"{x:,.1f}"


def table(study, gpus: int, simulations: int = SIMULATIONS, data_root=None) -> str:
    """Per block and in total: the maximum and, per scenario, the expected runs, CPU-hours and
    H200-hours, with the expected wall-clock on ``gpus`` GPUs."""
    costs = wave_costs(study, data_root)
    found = [expected(study, s, costs, gpus, simulations) for s in scenarios(study)]
    top = maximum_per_block(costs)
    header = ["block", "max runs", "max CPU-h", "max H200-h"]
    for e in found:
        header += [f"{e.scenario.name}: runs", "CPU-h", "H200-h"]
    rows = []
    for name in [*costs.blocks, "total"]:
        m = costs.maximum() if name == "total" else top[name]
        row = [name, *(_fmt(x) for x in m)]
        for e in found:
            if name == "total":
                vals = [sum(d.values()) for d in (e.runs, e.cpu_hours, e.gpu_hours)]
            else:
                vals = [e.runs[name], e.cpu_hours[name], e.gpu_hours[name]]
            row += [_fmt(x) for x in vals]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    fixed_wall = max(
        costs.maximum()[2] / max(1, gpus), float(costs.longest.max(initial=0.0)) / 3600
    )
    wall = "; ".join(f"{e.scenario.name} {e.wall_hours:,.1f} h" for e in found)
    lines.append(
        f"{study.waves.design.describe()}; {simulations} simulated studies per scenario (seed "
        f"{simulate.SEED}). Expected wall-clock of training on {gpus} GPU(s), waves one after "
        f"another: {wall}; every wave: {costs.wall_seconds(np.full(len(costs.blocks), study.waves.looks), gpus) / 3600:,.1f} h "
        f"(all jobs side by side, as a fixed design runs: {fixed_wall:,.1f} h)."
    )
    for e in found:
        if e.scenario.note:
            lines.append(f"Published effects: {e.scenario.note}.")
    lines.append("Rejection rate per primary hypothesis: " + "; ".join(
        f"{e.scenario.name}: " + ", ".join(f"{p:.2f}" for p in e.power) for e in found) + ".")  # fmt: skip
    if costs.gpu_unknown:
        lines.append(f"{costs.gpu_unknown} variant(s) have no GPU measurement: not in the H200-h.")
    return "\n".join(lines)


def summary_line(study, gpus: int, simulations: int = 200, data_root=None) -> str:
    """One line for the workflow's start-up check: maximum and expected cost."""
    costs = wave_costs(study, data_root)
    m = costs.maximum()
    parts = []
    for s in scenarios(study)[:2]:
        e = expected(study, s, costs, gpus, simulations)
        parts.append(f"{s.name}: {sum(e.runs.values()):,.0f} runs, "
                     f"{sum(e.cpu_hours.values()):,.0f} CPU-h, {sum(e.gpu_hours.values()):,.1f} H200-h")  # fmt: skip
    return (
        f"Sequential design ({study.waves.design.describe()}): at most {m[0]:,.0f} runs, "
        f"{m[1]:,.0f} CPU-h, {m[2]:,.1f} H200-h; expected with {'; with '.join(parts)} "
        "(`ganstudy study cost` gives every scenario per block)."
    )
