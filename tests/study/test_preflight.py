"""The workflow's start-up check (``ganstudy.study.preflight``), without Snakemake."""

from __future__ import annotations

import functools
from pathlib import Path

from ganstudy import store
from ganstudy.study import files as study_files
from ganstudy.study import grid as study
from ganstudy.study import memory, preflight
from ganstudy.study import schema as study_schema
from ganstudy.study.workflow import Study

REPO = Path(__file__).resolve().parents[2]
SCHEMA = study_schema.default_schema_path()


@functools.cache
def _default_study(top: tuple) -> Study:
    cfg = study_files.load_configs([REPO / "config" / "config.yaml"])
    return Study.from_config(study.merge(cfg, dict(top)), SCHEMA)


def default_study(**top) -> Study:
    """The default study with top-level keys changed (expanded once per change: it is large)."""
    return _default_study(tuple(sorted(top.items())))


def toy_study(tmp_path: Path, **top) -> Study:
    block = {"datasets": ["ring8"], "archs": ["mlp2d"], "losses": ["gan", "lsgan"], "seeds": 2}
    block["train"] = {"steps": 200_000}
    config = {"experiments": {"toy": block}, "results": str(tmp_path / "results"), **top}
    return Study.from_config(config, SCHEMA)


def test_a_long_local_cpu_study_stops_unless_confirmed():
    s = default_study()
    check = preflight.check(s, [], memory.plan(s, [], 2), local_cores=2)
    assert check.stop and "1540 runs" in check.stop and "max_training_hours (4)" in check.stop
    # The sequential design's cost: the maximum and the expected one, quoted at start.
    quoted = [line for line in check.info if line.startswith("Sequential design")]
    assert quoted and "at most 1,540 runs" in quoted[0]
    assert "expected with no effect: " in quoted[0] and "; with min_effect: " in quoted[0]
    assert any("CPU" in w for w in check.warnings), check.warnings
    confirmed = default_study(confirm_long_run=True)
    assert preflight.check(confirmed, [], memory.plan(confirmed, [], 2), local_cores=2).stop is None
    raised = default_study(max_training_hours=100_000)
    assert preflight.check(raised, [], memory.plan(raised, [], 2), local_cores=2).stop is None


def test_a_cluster_run_gets_no_time_estimate_and_is_not_stopped():
    s = default_study()
    check = preflight.check(s, [], memory.plan(s, [], None), local_cores=None)
    assert check.stop is None
    assert not any("Training takes" in line for line in check.info + check.warnings)


def test_gpus_are_reported_with_the_plan_and_a_time_estimate(tmp_path):
    s = toy_study(tmp_path)
    gpu_plan = memory.plan(s, ["0"], 4, environ={})
    check = preflight.check(s, ["0"], gpu_plan, local_cores=4)
    assert check.info[0] == f"GPUs: 1, {gpu_plan.note}."
    assert any(line.startswith("Training takes about") for line in check.info), check.info


def test_trained_runs_leave_the_time_estimate(tmp_path):
    s = toy_study(tmp_path, max_training_hours=0.001)
    assert preflight.check(s, [], memory.plan(s, [], 1), local_cores=1).stop
    for run in s.runs:
        final = Path(s.run_path(run, store.FINAL))
        final.parent.mkdir(parents=True)
        final.write_bytes(b"")
    assert preflight.trained_runs(s) == {run.run_dir for run in s.runs}
    assert preflight.check(s, [], memory.plan(s, [], 1), local_cores=1).stop is None
