"""Aggregation of a small synthetic results tree (see synthetic_results.py)."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
from synthetic_results import (
    DIVERGED,
    MISSING,
    MODES_STACKED,
    NOT_EVALUATED,
    design_rows,
    expected_fid,
    make_results,
    mlflow_id,
    run_rel,
)

from ganstudy import cli
from ganstudy.aggregate import summary as aggregate
from ganstudy.errors import ConfigError


@pytest.fixture
def results(tmp_path):
    return make_results(tmp_path)


def _row(df, dataset, loss, bn, seed):
    sel = df[
        (df["dataset"] == dataset)
        & (df["loss"] == loss)
        & (df["bn_g"] == bool(bn[0]))
        & (df["bn_d"] == bool(bn[1]))
        & (df["seed"] == seed)
    ]
    assert len(sel) == 1
    return sel.iloc[0]


def test_one_row_per_design_row_with_states(results):
    df = aggregate.collect(results)
    assert len(df) == len(design_rows()) == 30
    assert list(df.columns) == list(aggregate.column_names())
    assert df["state"].value_counts().to_dict() == {
        "completed": 27,
        "diverged": 1,
        "not evaluated": 1,
        "missing": 1,
    }
    assert _row(df, *DIVERGED)["state"] == "diverged"
    assert _row(df, *MISSING)["state"] == "missing"
    assert _row(df, *NOT_EVALUATED)["state"] == "not evaluated"


def test_values_factors_and_settings(results):
    df = aggregate.collect(results)
    row = _row(df, "fashion_mnist", "lsgan", (1, 1), 3)
    assert row["fid"] == expected_fid("lsgan", (1, 1), 3) == 23.0
    assert row["best_fid"] == 22.0 and row["best_fid_step"] == 750
    assert row["fid_n_generated"] == 10000 and row["fid_dims"] == 2048
    assert row["fid_pytorch_fid_version"] == "0.3.0"
    assert (row["loss_a"], row["loss_b"], row["loss_c"]) == (0.0, 1.0, 1.0)
    assert row["loss_label"] == "lsgan"
    assert row["lr_g"] == 2e-4 and row["batch_size"] == 64 and row["steps"] == 1000
    assert row["mlflow_run_id"] == mlflow_id("fashion_mnist", "lsgan", (1, 1), 3)
    assert row["wall_time_s"] == 13.0
    assert row["run_dir"] == run_rel("fashion_mnist", "dcgan28", "lsgan", (1, 1), 3)
    assert not row["diverged"] and not row["collapsed"]
    stacked = _row(df, "stacked_mnist", "gan", (1, 1), 2)
    assert stacked["modes_covered"] == MODES_STACKED["gan"] + 20
    assert pd.isna(stacked["fid"])
    ring = _row(df, "ring8", "lsgan", (0, 0), 0)
    assert ring["success"] and not ring["failure"] and ring["modes_covered"] == 8


def test_diverged_missing_and_not_evaluated_rows_are_kept(results):
    df = aggregate.collect(results)
    div = _row(df, *DIVERGED)
    assert div["diverged"] and div["diverged_step"] == 600 and pd.isna(div["fid"])
    assert div["note"] == "diverged at step 600"
    missing = _row(df, *MISSING)
    assert pd.isna(missing["mlflow_run_id"]) and pd.isna(missing["diverged"])
    assert "no run directory" in missing["note"]
    not_eval = _row(df, *NOT_EVALUATED)
    assert not not_eval["evaluated"] and pd.isna(not_eval["modes_covered"])
    # the run is known from metrics.json even without eval.json
    assert not_eval["mlflow_run_id"] == mlflow_id("ring8", "lsgan", (0, 0), 2)
    assert not not_eval["diverged"]


def test_unfinished_training_is_missing_with_a_note(results):
    run = results / run_rel("ring8", "mlp2d", "gan", (0, 0), 1)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(status="running", steps=300)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "eval.json").unlink()
    row = _row(aggregate.collect(results), "ring8", "gan", (0, 0), 1)
    assert row["state"] == "missing"
    assert row["note"] == "training not finished (status 'running', 300 of 1000 steps)"


def test_without_design_csv_the_runs_on_disk_are_the_design(results):
    (results / "design.csv").unlink()
    stray = results / "runs" / "ring8" / "mlp2d" / "gan" / "bn-g0-d0" / "seed1.tmp"
    stray.mkdir()
    with pytest.warns(UserWarning, match="seed1.tmp"):
        df = aggregate.collect(results)
    assert len(df) == 29  # the missing run has no directory, so it is not known
    assert "missing" not in set(df["state"])


def test_summary_round_trip_and_atomic_write(results, tmp_path):
    df = aggregate.collect(results)
    out = aggregate.write_summary(df, tmp_path / "out" / "summary.csv")
    pd.testing.assert_frame_equal(aggregate.read_summary(out), df)
    assert [p.name for p in out.parent.iterdir()] == ["summary.csv"]  # no temporary left


def test_failed_write_keeps_previous_summary(results, monkeypatch):
    path = results / "summary.csv"
    path.write_text("previous\n")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        aggregate.write_summary(aggregate.collect(results), path)
    assert path.read_text() == "previous\n"
    assert sorted(p.name for p in results.iterdir()) == ["design.csv", "runs", "summary.csv"]


def test_staleness_rebuilds_after_a_run_changes(results):
    summary = results / "summary.csv"
    assert aggregate.is_stale(results, summary)
    aggregate.load_or_build(results)
    assert not aggregate.is_stale(results, summary)
    eval_path = results / run_rel("ring8", "mlp2d", "gan", (0, 0), 0) / "eval.json"
    doc = json.loads(eval_path.read_text())
    doc["modes"]["modes_covered"] = 3
    eval_path.write_text(json.dumps(doc))
    # File times can be coarse: date the summary before the edit rather than relying on timing.
    past = eval_path.stat().st_mtime - 10
    os.utime(summary, (past, past))
    assert aggregate.is_stale(results, summary)
    df = aggregate.load_or_build(results)
    assert _row(df, "ring8", "gan", (0, 0), 0)["modes_covered"] == 3
    assert not aggregate.is_stale(results, summary)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: (r / "design.csv").write_text("dataset,arch\nx,y\n"), "missing column"),
        (
            lambda r: (r / "design.csv").write_text(
                "dataset,arch,loss,bn_g,bn_d,seed,run_dir\nring8,mlp2d,gan,yes,0,0,runs/x\n"
            ),
            "column 'bn_g': 'yes' is not allowed; allowed: 0, 1, true, false",
        ),
        (
            lambda r: (r / run_rel("ring8", "mlp2d", "gan", (0, 0), 0) / "eval.json").write_text(
                "{not json"
            ),
            "eval.json is not valid JSON",
        ),
        (
            lambda r: (r / run_rel("ring8", "mlp2d", "gan", (0, 0), 0) / "eval.json").write_text(
                json.dumps({"format": "other-2"})
            ),
            "key 'format' is 'other-2'; allowed: 'ganstudy-eval-1'",
        ),
    ],
)
def test_bad_input_is_named(results, mutate, message):
    mutate(results)
    with pytest.raises(ConfigError, match=message):
        aggregate.collect(results)


def test_empty_or_absent_results_dir(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        aggregate.collect(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no design.csv and no run directories"):
        aggregate.collect(tmp_path)


def test_cli_writes_summary_and_reports_bad_input(results, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "summary.csv"
    assert cli.main(["aggregate", "--results", str(results), "--out", str(out)]) == 0
    assert len(aggregate.read_summary(out)) == 30
    assert "27 completed, 1 diverged, 1 not evaluated, 1 missing" in capsys.readouterr().err
    shutil.rmtree(results / "runs")
    (results / "design.csv").unlink()
    assert cli.main(["aggregate", "--results", str(results)]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_numerics_label_names_the_optimizer_implementation_where_recorded():
    from ganstudy.aggregate.columns import _numerics_label

    record = {"deterministic": True, "tf32": False, "compile": "none"}
    assert _numerics_label(record) == "deterministic, TF32 off, compile none"
    record |= {"optimizer_implementation": "fused"}
    assert _numerics_label(record) == "deterministic, TF32 off, compile none, fused optimizer"
    assert _numerics_label(None) is None
