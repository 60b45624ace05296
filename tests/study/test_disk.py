"""The disk estimate of the start-up check (``ganstudy.study.disk``), against a hand count."""

from __future__ import annotations

from ganstudy import atomic
from ganstudy.study import disk, memory, preflight
from ganstudy.study import schema as study_schema
from ganstudy.study.workflow import Study

SCHEMA = study_schema.default_schema_path()

# mlp2d without batch norm: G 64 -> 400 -> 400 -> 400 -> 400 -> 2, D 2 -> 200 -> 200 -> 200 -> 1
G_PARAMS = (64 * 400 + 400) + 3 * (400 * 400 + 400) + (400 * 2 + 2)
D_PARAMS = (2 * 200 + 200) + 2 * (200 * 200 + 200) + (200 + 1)
# float32 weights and Adam's two moments per parameter
CHECKPOINT = 4 * 3 * (G_PARAMS + D_PARAMS)
# 1,000 steps: grids at 500 and 1000 and two more (start, end) of 20 kB; 11 log rows of 120 B;
# eval.json and samples2d.csv (2,500 points of 40 B)
SAMPLES = (1000 // 500 + 2) * 20_000 + (1000 // 100 + 1) * 120
EVALUATION = 4_000 + 2_500 * 40


def small_study(tmp_path, **train) -> Study:
    """2 losses x 4 seeds of ring8, trained 2 seeds per job: 8 runs in 4 jobs."""
    block = {
        "datasets": ["ring8"], "archs": ["mlp2d"], "losses": ["gan", "lsgan"], "bn": ["none"],
        "seeds": 4, "seeds_per_job": 2,
        "train": {"steps": 1000, "sample_every": 500, "log_every": 100, **train},
    }  # fmt: skip
    return Study.from_config(
        {"experiments": {"small": block}, "results": str(tmp_path / "results")}, SCHEMA
    )


def test_finished_and_peak_figures_match_a_hand_count(tmp_path):
    s = small_study(tmp_path)
    assert disk.checkpoint_size(s.variants[0].run_config) == CHECKPOINT == 7_070_436
    e = disk.estimate(s, jobs_at_once=3)
    assert (e.runs, e.fid_stats_bytes) == (8, 0)
    assert e.checkpoint_bytes == 8 * CHECKPOINT  # final.pt alone
    assert (e.sample_bytes, e.eval_bytes) == (8 * SAMPLES, 8 * EVALUATION)
    assert e.finished == 8 * (CHECKPOINT + SAMPLES + EVALUATION) == 58_046_048
    # three jobs of two members at once, each member with three checkpoints instead of one
    assert e.peak == e.finished + 3 * 2 * 2 * CHECKPOINT == 142_891_280
    # no more jobs at once than there are
    assert disk.estimate(s, jobs_at_once=10).training_bytes == 4 * 2 * 2 * CHECKPOINT

    kept = disk.estimate(small_study(tmp_path, keep_checkpoints=True), jobs_at_once=3)
    assert kept.checkpoint_bytes == 8 * 2 * CHECKPOINT
    assert kept.peak == kept.finished + 3 * 2 * 1 * CHECKPOINT

    # a trained run is left out, and its job runs one member
    trained = s.variants[0].run_dir(0)
    left = disk.estimate(s, skip={trained}, jobs_at_once=4)
    assert left.runs == 7 and left.checkpoint_bytes == 7 * CHECKPOINT
    assert left.training_bytes == (3 * 2 + 1) * 2 * CHECKPOINT


def test_jobs_at_once_come_from_the_cores_gpu_slots_or_the_cluster_bound(tmp_path):
    s = small_study(tmp_path)  # one thread per training job
    assert disk.jobs_at_once(s, 0, 3, None)[0] == 3
    assert disk.jobs_at_once(s, 2, 16, None)[0] == 2
    assert disk.jobs_at_once(s, 0, None, 100) == (100, "Snakemake's --jobs")
    assert disk.jobs_at_once(s, 0, None, None)[0] == 4  # every job


def test_preflight_quotes_both_and_checks_free_space_against_the_peak(tmp_path, monkeypatch):
    s = small_study(tmp_path)
    e = disk.estimate(s, jobs_at_once=2)
    assert e.peak == 58_046_048 + 2 * 2 * 2 * CHECKPOINT == 114_609_536
    monkeypatch.setattr(atomic, "free_bytes", lambda path: e.peak)
    check = preflight.check(s, [], memory.plan(s, [], 2), local_cores=2)
    (line,) = [line for line in check.info if line.startswith("Disk:")]
    assert "hold about 0.06 GB when trained" in line and "up to 0.11 GB while they train" in line
    assert "2 largest training job(s) at once (2 cores / 1 thread(s) per training job)" in line
    assert not any(w.startswith("Disk:") for w in check.warnings)
    monkeypatch.setattr(atomic, "free_bytes", lambda path: e.peak - 1)  # the finished ones fit
    check = preflight.check(s, [], memory.plan(s, [], 2), local_cores=2)
    (warning,) = [w for w in check.warnings if w.startswith("Disk:")]
    assert "need up to 0.11 GB while they train (2 training job(s) at once" in warning
