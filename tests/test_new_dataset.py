"""Adding a dataset is one registry entry: a throw-away dataset registered in one place is
expanded by a study, trained, evaluated, aggregated and reported."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from ganstudy import cli
from ganstudy.data import registry
from ganstudy.data.registry import DatasetSpec, Mixture
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study

RING4 = DatasetSpec(
    "ring4_throwaway", "mixture2d", (2,), 4,
    "4 Gaussians on a circle of radius 2, sigma 0.02 (a test dataset)",
    mixture=Mixture.ring(4, 2.0, sigma=0.02), mode_metric="mixture2d",
)  # fmt: skip


@pytest.fixture
def ring4(monkeypatch):
    monkeypatch.setitem(registry.DATASETS, RING4.name, RING4)
    return RING4.name


def test_a_registered_dataset_goes_through_every_stage(ring4, tmp_path, capsys):
    study = Study.from_config(
        {
            "results": str(tmp_path / "results"),
            "experiments": {
                "throwaway": {
                    "datasets": [ring4],
                    "archs": ["mlp2d"],
                    "losses": ["gan", "lsgan"],
                    "bn": ["both"],
                    "seeds": 2,
                    "train": {"steps": 60, "log_every": 20, "checkpoint_every": 60},
                }
            },
            "tracking": {"enabled": False},
        },
        default_schema_path(),
    )
    results = tmp_path / "results"
    assert {run.key.dataset for run in study.runs} == {ring4} and len(study.runs) == 4

    for variant in study.variants:
        config = tmp_path / f"{variant.loss}.yaml"
        config.write_text(yaml.safe_dump(variant.run_config))
        out = str(results / variant.run_dir_pattern)
        argv = ["train", "--config", str(config), "--seeds", "0-1", "--out", out, "--quiet"]
        assert cli.main(argv) == 0
    for run in study.runs:
        assert cli.main(["evaluate", "--run", str(results / run.run_dir), "--no-mlflow"]) == 0
        evaluation = json.loads((results / run.run_dir / "eval.json").read_text())
        assert evaluation["dataset"] == ring4 and evaluation["modes"]["modes_total"] == 4
        assert evaluation["fid"] is None

    (results / "design.csv").write_text(
        pd.DataFrame(study.design_rows()).to_csv(index=False, lineterminator="\n")
    )
    assert cli.main(["aggregate", "--results", str(results)]) == 0
    summary = pd.read_csv(results / "summary.csv")
    assert set(summary["dataset"]) == {ring4} and len(summary) == 4
    assert set(summary["modes_total"]) == {4}

    report = tmp_path / "report.html"
    assert cli.main(["report", "--results", str(results), "--out", str(report)]) == 0
    page = report.read_text()
    assert ring4 in page and RING4.description in page
    assert "not in this version's dataset registry" not in page
    capsys.readouterr()


def test_without_its_entry_the_dataset_is_refused_naming_the_allowed_ones(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"name": RING4.name}, "train": {"steps": 5}}))
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"'{RING4.name}' is not allowed" in err and "ring8" in err
