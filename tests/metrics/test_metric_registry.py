"""The metric registry: every place that shows, mirrors or tests a metric reads it, so a new
metric is its measuring function and its entry."""

from __future__ import annotations

import json
from dataclasses import replace

import mlflow
import pytest

from ganstudy import config, store
from ganstudy.aggregate import summary as aggregate
from ganstudy.analysis.comparisons import metric_tests
from ganstudy.cli import main
from ganstudy.data.registry import DATASETS
from ganstudy.evaluate.mode_metrics import MODE_METRICS
from ganstudy.metrics import registry
from ganstudy.metrics.mode_kinds import MODE_KINDS
from ganstudy.metrics.registry import CONTINUOUS, MEASURES, VALUES, Metric
from ganstudy.tracking.records import eval_metrics
from ganstudy.train.trainer import train


def test_every_mode_kind_has_its_measuring_function():
    assert set(MODE_METRICS) == set(MODE_KINDS)
    assert all(callable(m.measure) for m in MODE_METRICS.values())


def test_entries_are_named_once_and_refuse_a_misplaced_measure():
    names = [m.name for m in registry.metrics()]
    assert len(names) == len(set(names)) and list(registry.METRICS) == names
    assert len({m.mlflow_name for m in registry.metrics()}) == len(names)
    with pytest.raises(ValueError, match="its path must be"):
        replace(registry.FID, name="fid2", measure=lambda samples, spec: 0.0)
    with pytest.raises(ValueError, match="kind"):
        replace(registry.FID, kind="ordinal")


@pytest.mark.parametrize(
    "dataset, tested",
    [
        ("ring8", ["modes_covered", "success", "diverged"]),
        ("grid25", ["modes_covered", "success", "diverged"]),
        ("stacked_mnist", ["fid", "diverged"]),
        ("mnist", ["fid", "diverged"]),
    ],
)
def test_the_per_cell_tests_of_each_dataset(dataset, tested):
    spec = DATASETS[dataset]
    assert [m.name for m in metric_tests(dataset)] == tested
    assert all(m.applies(spec) for m in metric_tests(dataset))
    # results of a dataset the registry does not know: as its runs say
    unknown = [m.name for m in metric_tests("elsewhere", has_fid=False, mode_kind="classes")]
    assert unknown == ["modes_covered", "diverged"]


def test_the_mlflow_record_is_the_registry_s():
    result = {
        "fid": None,
        "modes": {"modes_covered": 7, "modes_total": 8, "kl_to_uniform": 0.1, "success": True},
        "stability": {"diverged": False, "collapsed": None, "best_fid": float("nan")},
    }
    assert eval_metrics(result) == {
        "eval.modes.modes_covered": 7.0,
        "eval.modes.modes_total": 8.0,
        "eval.modes.kl_to_uniform": 0.1,
        "eval.modes.success": 1.0,
        "eval.stability.diverged": 0.0,
    }


def _spread(samples, spec) -> float:
    """The toy metric's function: the SD of the final generator's samples."""
    return float(samples.std())


TOY = Metric(
    "sample_spread", "sample spread", "SD of the final generator's samples", "float", CONTINUOUS,
    None, (MEASURES, "sample_spread"), lambda d: True, "every dataset", panel=VALUES, table=True,
    measure=_spread,
)  # fmt: skip


def test_a_toy_metric_is_its_function_and_its_entry(tmp_path, monkeypatch):
    """The two edits (``_spread`` and ``TOY`` above, registered): the metric is measured into
    eval.json, mirrored to MLflow, a column of summary.csv and shown in the report."""
    monkeypatch.setitem(registry.METRICS, TOY.name, TOY)
    results = tmp_path / "results"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = config.from_dict(
        {
            "dataset": {"name": "ring8"},
            "arch": {"name": "mlp2d", "z_dim": 2},
            "loss": {"name": "lsgan"},
            "train": {"steps": 40, "log_every": 10, "checkpoint_every": 20, "sample_every": 1000},
            "tracking": {"enabled": True, "uri": uri},
        }
    )
    run = results / store.RunKey.of_config(cfg.with_seed(0)).run_dir
    train(cfg, [0], [run], progress=False)
    assert main(["evaluate", "--run", str(run), "--device", "cpu"]) == 0

    evaluation = json.loads((run / store.EVAL).read_text())
    value = evaluation[MEASURES]["sample_spread"]
    assert isinstance(value, float) and value > 0
    run_id = json.loads((run / store.METRICS).read_text())["mlflow_run_id"]
    logged = mlflow.MlflowClient(uri).get_run(run_id).data.metrics
    assert logged["eval.measures.sample_spread"] == pytest.approx(value)

    summary = results / store.SUMMARY
    assert main(["aggregate", "--results", str(results), "--out", str(summary)]) == 0
    df = aggregate.read_summary(summary)
    assert float(df["sample_spread"].iloc[0]) == pytest.approx(value)

    report = tmp_path / "report.html"
    assert main(["report", "--results", str(results), "--out", str(report)]) == 0
    html = report.read_text()
    assert "<th>sample spread</th>" in html
    assert f"{value:.3g}" in html or f"{value:.4g}" in html

    # without the entry, nothing of it is left anywhere
    monkeypatch.delitem(registry.METRICS, TOY.name)
    assert "sample_spread" not in aggregate.collect(results).columns
