"""The waves of a sequential study: which training jobs each wave trains, and what each look
of the primary family sees.

With ``analysis.sequential`` (:class:`ganstudy.analysis.sequential.Design`) at more than one
look, every enabled block that holds a stratum of a primary hypothesis (and does not set
``sequential: false``) is *waved*: each variant's training jobs are split in order, the first
round(f_1 J) jobs in wave 1, the next up to round(f_2 J) in wave 2, and so on (J jobs per
variant, f_k the design's fractions); the fractions must give whole jobs. Every other block
(the secondary blocks, a block with ``sequential: false``) trains all its seeds in wave 1.

After wave k the primary family is analysed on every run trained so far (look k). A waved
block trains wave k + 1 only while one of the primary hypotheses with a stratum in it
continues. A hypothesis' information fraction at look k is its planned runs through wave k
over all its planned runs.

Nothing here imports torch; the Snakefile plans the waves when it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganstudy import store
from ganstudy.analysis import sequential
from ganstudy.errors import ConfigError

KEY = "analysis.sequential"


def design_of(config: dict) -> sequential.Design:
    """The checked design of a (schema-filled) study config."""
    seq = (config.get("analysis") or {}).get("sequential") or {}
    waves, fractions = seq.get("waves") or 1, seq.get("fractions")
    if fractions is not None:
        if waves not in (1, len(fractions)):
            raise ConfigError(
                f"key '{KEY}.waves': {waves} with {len(fractions)} fractions; allowed: one of "
                "them, or both giving the same number of waves"
            )
        if any(b <= a for a, b in zip(fractions, fractions[1:])) or abs(fractions[-1] - 1) > 1e-9:
            raise ConfigError(
                f"key '{KEY}.fractions': {list(fractions)} is not allowed; allowed: fractions "
                "increasing to 1, e.g. [0.5, 1]"
            )
    design = sequential.Design.from_config(config)
    futility = seq.get("futility") or []
    if futility and design.looks > 1 and len(futility) != design.looks - 1:
        raise ConfigError(
            f"key '{KEY}.futility': {len(futility)} bound(s) for {design.looks - 1} interim "
            f"look(s); allowed: one |Z| bound per look but the last, or [] for none"
        )
    return design


@dataclass(frozen=True)
class HypothesisLooks:
    """A primary hypothesis' share of the waves: the blocks of its strata and its planned runs
    through each wave (both arms, all strata)."""

    blocks: frozenset[str]
    # Per look, per stratum: (candidate runs, baseline runs) trained through that wave.
    sizes: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def runs_through(self) -> tuple[int, ...]:
        return tuple(sum(n + m for n, m in look) for look in self.sizes)

    @property
    def fractions(self) -> tuple[float, ...]:
        total = self.runs_through[-1] or 1
        return tuple(n / total for n in self.runs_through)


@dataclass(frozen=True)
class WavePlan:
    design: sequential.Design
    wave_of_job: dict[str, int]  # training job name -> its wave (1-based)
    waved_blocks: tuple[str, ...]
    hypotheses: tuple[HypothesisLooks, ...]  # in the order of the study's primary family
    # The variants (keys) of the primary family's strata: the runs a look waits for.
    primary_variants: frozenset[str] = frozenset()

    @property
    def looks(self) -> int:
        return self.design.looks if self.waved_blocks else 1

    @property
    def sequential(self) -> bool:
        return self.looks > 1

    def jobs_of_wave(self, study, wave: int, blocks=None) -> list:
        """The training jobs of ``wave`` (of the waved ``blocks`` only, where given; wave 1 also
        holds every job of the blocks that are not waved)."""
        return [
            job for job in study.jobs
            if self.wave_of_job[job.name] == wave
            and (blocks is None or job.variant.block in blocks
                 or job.variant.block not in self.waved_blocks)
        ]  # fmt: skip

    def runs_of_wave(self, study, wave: int, blocks=None) -> list[str]:
        """The run directories (relative to the results) trained in ``wave``."""
        return [d for job in self.jobs_of_wave(study, wave, blocks) for d in job.run_dirs]

    def continuing_blocks(self, statuses: list[str]) -> list[str]:
        """The waved blocks that train another wave when the family's hypotheses have these
        statuses (one still continuing in a block keeps it going)."""
        going = set()
        for status, h in zip(statuses, self.hypotheses):
            if status == sequential.CONTINUE:
                going |= h.blocks
        return [b for b in self.waved_blocks if b in going]


def _split(jobs: int, fractions: tuple[float, ...]) -> list[int] | None:
    """Cumulative jobs at the end of each wave, or None when a wave would hold part of a job."""
    cumulative = [f * jobs for f in fractions]
    if any(abs(c - round(c)) > 1e-6 for c in cumulative):
        return None
    return [round(c) for c in cumulative]


def plan(study) -> WavePlan:
    """The waves of ``study`` (a :class:`ganstudy.study.workflow.Study`); a ConfigError names
    the block whose jobs cannot be split into the design's waves."""
    design = design_of(study.config)
    experiments = study.config["experiments"]
    variants = {v.key: v for v in study.variants}
    strata_variants = []
    for h in study.primary:
        keys = set()
        for p in h.strata(study.pairs):
            for arm in (p.baseline, p.candidate):
                keys.add(store.VariantKey(p.dataset, p.arch, arm, p.bn_g, p.bn_d).path)
        strata_variants.append(sorted(keys))
    waved: list[str] = []
    if design.sequential:
        held = {variants[k].block for keys in strata_variants for k in keys if k in variants}
        waved = [b for b in experiments if b in held
                 and experiments[b].get("sequential", True) is not False]  # fmt: skip
    wave_of_job: dict[str, int] = {}
    for v in study.variants:
        jobs = v.jobs()
        if v.block not in waved:
            wave_of_job.update((job.name, 1) for job in jobs)
            continue
        ends = _split(len(jobs), design.fractions)
        if ends is None or ends[0] == 0:
            raise ConfigError(
                f"key '{KEY}': block {v.block} has {len(jobs)} training job(s) per variant "
                f"({len(v.seeds)} seeds, seeds_per_job {v.seeds_per_job}), which do not split "
                f"into whole jobs at the waves' fractions {[round(f, 4) for f in design.fractions]}"
                f"; allowed: seeds and seeds_per_job giving a multiple of the waves in jobs, or "
                f"experiments.{v.block}.sequential: false (all its seeds in the first wave)"
            )
        start = 0
        for wave, end in enumerate(ends, start=1):
            wave_of_job.update((job.name, wave) for job in jobs[start:end])
            start = end
    looks = design.looks if waved else 1

    def through(key: str, look: int) -> int:
        v = variants.get(key)
        if v is None:
            return 0
        return sum(len(job.seeds) for job in v.jobs() if wave_of_job[job.name] <= look)

    hypotheses = []
    for h, keys in zip(study.primary, strata_variants):
        blocks = frozenset(variants[k].block for k in keys if k in variants)
        sizes = []
        for look in range(1, looks + 1):
            sizes.append(tuple(
                (through(store.VariantKey(p.dataset, p.arch, p.candidate, p.bn_g, p.bn_d).path, look),
                 through(store.VariantKey(p.dataset, p.arch, p.baseline, p.bn_g, p.bn_d).path, look))
                for p in h.strata(study.pairs)
            ))  # fmt: skip
        hypotheses.append(HypothesisLooks(blocks, tuple(sizes)))
    primary = frozenset(k for keys in strata_variants for k in keys if k in variants)
    return WavePlan(design, wave_of_job, tuple(waved), tuple(hypotheses), primary)
