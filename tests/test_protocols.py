"""Published protocols as data: complete records, field-by-field differences, and the
conformance of config/reproduce.yaml with the protocols its blocks reproduce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganstudy import config, protocols
from ganstudy.errors import ConfigError
from ganstudy.report.inputs import load_references
from ganstudy.study import reproduce
from ganstudy.study.files import load_configs
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [str(REPO / "config" / "config.yaml"), str(REPO / "config" / "reproduce.yaml")]
# The reproductions config/reproduce.yaml must hold, by protocol, with the losses each trains.
REQUIRED = {
    "welfert2023-ring": {"gan", "lsgan"},
    "welfert2023-stacked-lr2e-4": {"gan", "lsgan"},
    "lin2018-ring": {"gan"},
    "lucic2018-fashion": {"gan", "lsgan_sigmoid"},
}


@pytest.fixture(scope="module")
def references():
    return load_references()


@pytest.fixture(scope="module")
def reproduce_study():
    return Study.from_config(load_configs(CONFIGS), default_schema_path())


def test_every_published_number_carries_its_whole_protocol(references):
    assert references["results"]
    for res in references["results"]:
        record = protocols.result_protocol(references, res)
        assert set(protocols.FIELD_KEYS) <= set(record), res["id"]
        assert record["metric"] == res["metric"]
        # A number's loss is stated, as a registry name where we implement its exact formula.
        assert record["loss"] == res["loss"], res["id"]
    incomplete = {**references, "protocols": dict(references["protocols"])}
    record = dict(incomplete["protocols"]["welfert2023-ring"])
    del record["beta2"]
    incomplete["protocols"]["welfert2023-ring"] = record
    with pytest.raises(ConfigError, match=r"'welfert2023-ring' lacks field\(s\) beta2"):
        protocols.check_references(incomplete)


def _welfert_ring_run(**changes) -> dict:
    data = {
        "dataset": {"name": "ring8", "n_train": 50000, "sample_seed": 1},
        "arch": {"name": "mlp2d_lrelu", "z_dim": 2, "init": "pytorch", "bn": {"g": False, "d": False}},
        "loss": {"name": "lsgan"},
        "train": {"epochs": 400, "batch_size": 128, "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.9,
                  "beta2": 0.99},
    }  # fmt: skip
    for key, value in changes.items():
        node = data
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return config.from_dict(data).to_dict()


def _facts(**changes) -> protocols.Facts:
    base = {"steps": 156_000, "metric": "success_percent", "n_samples": 25_000, "min_count": 1,
            "runs": 200}  # fmt: skip
    return protocols.Facts(**(base | changes))


def test_a_faithful_run_differs_only_where_the_project_cannot_follow(references):
    res = next(r for r in references["results"] if r["id"] == "welfert2023-ring-lsgan")
    record = protocols.result_protocol(references, res)
    diffs = protocols.differences(record, [protocols.ours(_welfert_ring_run(), _facts())])
    assert {d.key for d in diffs if d.compared} == {"steps", "noise", "spread"}
    assert [d.key for d in diffs if not d.compared] == []


def test_the_differences_list_every_field_of_a_deliberately_mismatched_run(references):
    res = next(r for r in references["results"] if r["id"] == "welfert2023-ring-lsgan")
    record = protocols.result_protocol(references, res)
    run = _welfert_ring_run(
        dataset__n_train=None, dataset__sample_seed=0, arch__name="mlp2d", arch__g_layers=3,
        arch__g_width=64, arch__d_layers=2, arch__d_width=32, arch__z_dim=8, arch__init="dcgan",
        arch__bn={"g": True, "d": True}, loss__name="lsgan_chi2", train__epochs=None,
        train__steps=5000, train__batch_size=64, train__lr_g=2e-4, train__lr_d=3e-4,
        train__beta1=0.5, train__beta2=0.999, train__d_steps=2,
    )  # fmt: skip
    mine = protocols.ours(run, _facts(steps=5000, n_samples=2500, min_count=63, runs=3))
    diffs = {d.key: d for d in protocols.differences(record, [mine])}
    expected = {
        "train_size", "training_set", "arch", "g_layers", "g_width", "d_layers", "d_width",
        "bn_g", "bn_d", "init", "z", "loss", "coding", "lr_d", "lr_g", "beta1", "beta2",
        "batch_size", "epochs", "steps", "d_steps", "noise", "n_samples", "min_count", "runs",
        "spread",
    }  # fmt: skip
    assert {k for k, d in diffs.items() if d.compared} == expected
    assert str(diffs["coding"]) == "coding: published (0, 1, 1), ours (-1, 1, 0)"
    assert str(diffs["lr_d"]) == "lr_d: published 0.0001, ours 0.0003"
    assert str(diffs["epochs"]) == "epochs: published 400, ours none: a set number of steps"
    # Fields that match are not listed; fields the record leaves null are "not compared".
    assert "dataset" not in diffs and "optimizer" not in diffs
    lin = next(r for r in references["results"] if r["id"] == "lin2018-ring-gan-modes")
    lin_diffs = protocols.differences(protocols.result_protocol(references, lin), [mine])
    not_compared = {d.key for d in lin_diffs if not d.compared}
    assert {"training_set", "beta2", "noise"} <= not_compared
    assert "beta2: not compared: the publication does not state it" in map(str, lin_diffs)


def test_reproduce_config_conforms_to_every_protocol_it_names(references, reproduce_study):
    found = reproduce.checks(reproduce_study, references)
    failing = [c for c in found if not c.conforms]
    assert not failing, reproduce.report(failing)
    covered: dict[str, set[str]] = {}
    for c in found:
        block = reproduce_study.config["experiments"][c.block]
        covered.setdefault(block["reproduces"], set()).add(c.variant.split("/")[2])
    for protocol, losses in REQUIRED.items():
        assert losses <= covered.get(protocol, set()), protocol
    # Only reproduction blocks run: the default study's blocks are switched off.
    for name, block in reproduce_study.config["experiments"].items():
        if block.get("enabled", True):
            assert block.get("reproduces"), f"block {name} reproduces nothing"
    # The runs follow the published seeds and sample counts.
    by_block = {v.block: v for v in reproduce_study.variants}
    assert len(by_block["welfert_ring"].seeds) == 200
    assert len(by_block["welfert_stacked"].seeds) == 100
    assert len(by_block["pacgan_ring"].seeds) == 10
    assert "--mode-samples 25000 --mode-min-count 1" in reproduce_study.mode_args(
        by_block["welfert_ring"]
    )
    assert "--mode-samples 2500 --mode-min-count 1" in reproduce_study.mode_args(
        by_block["pacgan_ring"]
    )


def test_an_undeclared_difference_fails_the_conformance_check(references, tmp_path):
    data = yaml.safe_load((REPO / "config" / "reproduce.yaml").read_text())
    data["experiments"]["welfert_ring"]["train"]["lr_d"] = 0.0002
    del data["experiments"]["welfert_ring"]["departures"]["noise"]
    data["experiments"]["pacgan_ring"]["departures"]["z"] = "declared but not a difference"
    changed = tmp_path / "reproduce.yaml"
    changed.write_text(yaml.safe_dump(data))
    study = Study.from_config(load_configs([CONFIGS[0], str(changed)]), default_schema_path())
    found = reproduce.checks(study, references)
    ring = [c for c in found if c.block == "welfert_ring"]
    assert all(not c.conforms for c in ring)
    assert all(any(d.startswith("lr_d: published 0.0001, ours 0.0002") for d in c.undeclared)
               for c in ring)  # fmt: skip
    assert all(any(d.startswith("noise:") for d in c.undeclared) for c in ring)
    assert [c.stale for c in found if c.block == "pacgan_ring"] == [["z"], ["z"]]  # 2 numbers
    result = subprocess.run(
        [sys.executable, "-m", "ganstudy", "study", "conformance", CONFIGS[0], str(changed)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "[UNDECLARED]" in result.stdout and "DOES NOT CONFORM" in result.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "ganstudy", "study", "conformance", *CONFIGS],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "checks conform" in ok.stdout


def test_a_block_naming_an_unknown_protocol_or_field_is_refused(references, tmp_path):
    data = yaml.safe_load((REPO / "config" / "reproduce.yaml").read_text())
    data["experiments"]["pacgan_ring"]["reproduces"] = "lin2019-ring"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    study = Study.from_config(load_configs([CONFIGS[0], str(path)]), default_schema_path())
    with pytest.raises(ConfigError, match=r"'experiments.pacgan_ring.reproduces': 'lin2019-ring'"):
        reproduce.checks(study, references)
    data["experiments"]["pacgan_ring"]["reproduces"] = "lin2018-ring"
    data["experiments"]["pacgan_ring"]["departures"]["learning_rate"] = "no such field"
    path.write_text(yaml.safe_dump(data))
    study = Study.from_config(load_configs([CONFIGS[0], str(path)]), default_schema_path())
    with pytest.raises(ConfigError, match=r"departures': 'learning_rate' is not a protocol field"):
        reproduce.checks(study, references)


def test_reproduce_config_states_its_compute():
    result = subprocess.run(
        [sys.executable, "-m", "ganstudy", "study", "cost", *CONFIGS],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    # 400 runs of 156,000 steps; every variant's step time is measured (no unmeasured ones).
    assert rows["welfert_ring"][4] == "62,400,000"
    assert rows["total"][-1] == "0"
