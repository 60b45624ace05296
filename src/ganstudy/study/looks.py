"""The looks of a sequential study: the decision after each wave, as a record on disk.

``looks/look-<k>.json`` (:meth:`ganstudy.store.ResultsDir.look`) holds, after wave k, each
primary hypothesis' status (rejected, stopped for futility, not rejected, continue), its p on the
runs trained so far, the nominal level it was read against, the futility bound, its Holm level
and its runs; the blocks that train the next wave; and the runs that will never be trained
(the later waves of the blocks that stopped).

A look is decided once. Look k replays the family's procedure on the p-values recorded by looks
1..k-1 (never recomputed) and computes only its own. Its decision is also copied to
``looks/.decided/``: a rerun of the workflow that rewrites the record takes the decision from
there; deleting both recomputes it, the same, from the same runs. A record decided under another
design (waves, spending, futility or family changed after the first look) is refused.

The Snakefile reads the records (:func:`continuing_blocks`) to know which jobs the next wave
holds; nothing here imports a heavy library at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganstudy import store
from ganstudy.analysis import sequential
from ganstudy.errors import ConfigError


def design_record(study) -> dict[str, Any]:
    """What a look record must agree on with the study: the design and the family."""
    d = study.waves.design
    return {
        "looks": study.waves.looks,
        "fractions": list(d.fractions),
        "spending": d.spending,
        "futility": list(d.futility),
        "alpha": d.alpha,
        "hypotheses": [h.name for h in study.primary],
        "hypothesis_fractions": [list(h.fractions) for h in study.waves.hypotheses],
    }


def read(path: str | Path) -> dict[str, Any]:
    record = store.read_record(path)
    if record.get("format") != store.LOOK_FORMAT:
        raise ConfigError(
            f"{path}: key 'format' is {record.get('format')!r}; allowed: {store.LOOK_FORMAT!r}"
        )
    return record


def continuing_blocks(path: str | Path) -> list[str]:
    """The blocks that train the next wave, from a look record."""
    return list(read(path)["continuing_blocks"])


def runs_through(study, records: list[dict[str, Any]], look: int) -> list[str]:
    """The run directories trained by the end of wave ``look`` (1-based), given the records
    of the looks before it."""
    plan = study.waves
    runs = plan.runs_of_wave(study, 1)
    for k in range(1, look):
        runs += plan.runs_of_wave(study, k + 1, records[k - 1]["continuing_blocks"])
    return runs


def not_trained(study, look: int, continuing: list[str], records: list[dict]) -> list[str]:
    """Runs that will never be trained after look ``look``: every wave not trained by now of
    each waved block that does not continue (one stopped at an earlier look included)."""
    plan = study.waves
    trained = set(runs_through(study, records, look))
    stopped = [b for b in plan.waved_blocks if b not in continuing]
    return sorted(
        d for wave in range(2, plan.looks + 1)
        for d in plan.runs_of_wave(study, wave, stopped) if d not in trained
    )  # fmt: skip


def previous(study, results: str | Path, look: int) -> list[dict[str, Any]]:
    """The records of looks 1..look-1, each checked against the study's design."""
    out = []
    expected = design_record(study)
    for k in range(1, look):
        path = store.ResultsDir(results).look(k)
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; look {look} needs the looks before it")
        record = read(path)
        check_design(record, expected, path)
        out.append(record)
    return out


def check_design(record: dict, expected: dict, path) -> None:
    if record.get("design") != expected:
        changed = [k for k in expected if (record.get("design") or {}).get(k) != expected[k]]
        raise ConfigError(
            f"{path} was decided under another design ({', '.join(changed)} differ from the "
            "study config's analysis.sequential and analysis.primary); allowed: the design the "
            "study started with. A sequential design cannot change after its first look: "
            "restore it, or start the study over in a new results directory"
        )


def decide(study, results: str | Path, look: int, p_values: list[float | None],
           runs: list[tuple[int, int]], trained: list[str]) -> dict[str, Any]:  # fmt: skip
    """The record of look ``look`` given this look's p-values and (candidate, baseline) runs
    per hypothesis, replaying the procedure on the recorded looks before it."""
    plan = study.waves
    records = previous(study, results, look)
    fractions = [h.fractions for h in plan.hypotheses]
    history = [[h["p"] for h in r["hypotheses"]] for r in records]
    proc = sequential.replay(plan.design, history, fractions)
    if records and [h["status"] for h in records[-1]["hypotheses"]] != proc.status:
        raise ConfigError(
            f"look {records[-1]['look']}'s recorded decisions differ from their replay; the "
            "record was changed by hand"
        )
    open_ = [s == sequential.CONTINUE for s in proc.status]
    decisions = proc.look([p if o else None for p, o in zip(p_values, open_)])
    continuing = plan.continuing_blocks(proc.status) if look < plan.looks else []
    hypotheses = []
    for i, (h, d) in enumerate(zip(study.primary, decisions)):
        hypotheses.append({
            "name": h.name, "status": d.status, "decided_at": None if proc.decided_at[i] is None
            else proc.decided_at[i] + 1, "p": None if d.p != d.p else d.p,
            "nominal_level": None if d.nominal != d.nominal else d.nominal,
            "futility_bound": d.futility, "level": d.level,
            "fraction": plan.hypotheses[i].fractions[look - 1],
            "runs_candidate": runs[i][0] if open_[i] else None,
            "runs_baseline": runs[i][1] if open_[i] else None,
        })  # fmt: skip
    return {
        "format": store.LOOK_FORMAT,
        "look": look,
        "design": design_record(study),
        "hypotheses": hypotheses,
        "adjusted_p": proc.adjusted_p(),
        "continuing_blocks": continuing,
        "runs_trained": len(trained),
        "not_trained": not_trained(study, look, continuing, records),
    }


def write(results: str | Path, look: int, record: dict, out: str | Path) -> dict:
    """Write ``record`` to ``out`` and the ledger, unless the ledger holds this look's decision
    already: then that decision is written (a look is decided once)."""
    ledger = store.ResultsDir(results).look_ledger(look)
    if ledger.is_file():
        kept = read(ledger)
        check_design(kept, record["design"], ledger)
        record = kept
    else:
        store.write_record(ledger, record)
    store.write_record(out, record)
    return record
