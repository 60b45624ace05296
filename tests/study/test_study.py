"""The study: schema checks, grid expansion, design.csv, GPU slots, cost estimate, CLI commands."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ganstudy import config as run_config
from ganstudy import store
from ganstudy.aggregate.summary import read_design
from ganstudy.analysis.comparisons import read_pairs
from ganstudy.cli import main as cli_main
from ganstudy.errors import ConfigError
from ganstudy.study import cost as study_cost
from ganstudy.study import files as study_files
from ganstudy.study import gpu_slots, plan
from ganstudy.study import grid as study
from ganstudy.study import schema as study_schema
from ganstudy.study.workflow import Study

REPO = Path(__file__).resolve().parents[2]
SCHEMA = study_schema.default_schema_path()
DEFAULT = REPO / "config" / "config.yaml"
QUICK = REPO / "config" / "quick.yaml"


def load(*extra: dict, files=(DEFAULT,)) -> dict:
    """The default study config with ``extra`` mappings merged in, as Snakemake merges them."""
    cfg = study_files.load_configs(list(files))
    for item in extra:
        cfg = study.merge(cfg, item)
    return cfg


def expanded(*extra: dict, files=(DEFAULT,)) -> Study:
    return Study.from_config(load(*extra, files=files), SCHEMA)


def small_block(**changes) -> dict:
    block = {"datasets": ["ring8"], "archs": ["mlp2d"], "losses": ["gan"], "train": {"steps": 10}}
    block.update(changes)
    return block


def small_study(**top) -> dict:
    return {"experiments": {"toy": small_block()}, **top}


# ---------------------------------------------------------------------------------------------
# schema


def test_schema_fills_every_default_and_leaves_given_values():
    cfg = small_study(gpus={"jobs_per_gpu": 3})
    study_schema.validate(cfg, SCHEMA)
    assert cfg["gpus"] == {"count": None, "jobs_per_gpu": 3, "lock_dir": None}
    assert cfg["tracking"]["uri"] == "sqlite:///mlflow.db"
    block = cfg["experiments"]["toy"]
    assert block["train"]["steps"] == 10 and block["train"]["batch_size"] == 64
    assert block["bn"] == ["both"] and block["seeds"] == 1 and block["enabled"] is True
    assert set(cfg["bn"]) == {"both", "d_only", "none"}


def test_schema_defaults_of_run_settings_match_the_run_config_defaults():
    # The schema repeats the run config's defaults so config/README.md can list them; they must
    # not drift from ganstudy.config.
    defs = yaml.safe_load(SCHEMA.read_text())["$defs"]
    for section, cls in (
        ("train", run_config.TrainConfig),
        ("arch", run_config.ArchConfig),
        ("loss", run_config.LossConfig),
    ):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        props = defs[section]["properties"]
        expected = set(fields) - {"name", "bn", "device"}
        assert set(props) == expected, section
        for key, prop in props.items():
            assert prop["default"] == fields[key].default, f"{section}.{key}"


def test_every_schema_key_has_a_description():
    schema = yaml.safe_load(SCHEMA.read_text())

    def walk(node, where):
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                assert "description" in sub, f"{where}.{key}"
                walk(sub, f"{where}.{key}")
            for key in ("additionalProperties", "items"):
                if isinstance(node.get(key), dict):
                    walk(node[key], where)

    walk(schema, "config")
    for name, node in schema["$defs"].items():
        walk(node, name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"foo": 1}, "unknown key 'foo'; allowed keys in the top level: analysis, bn, classifiers"),
        (
            {"experiments": {"toy": small_block(trian={})}},
            "unknown key 'experiments.toy.trian'; allowed keys in experiments.toy:",
        ),
        (
            {"experiments": {"toy": small_block(train={"stpes": 3})}},
            "unknown key 'experiments.toy.train.stpes'",
        ),
        (
            {"gpus": {"jobs_per_gpu": 0}},
            "key 'gpus.jobs_per_gpu': 0 is not allowed; allowed: an integer >= 1",
        ),
        (
            {"fid": {"preset": "fast"}},
            "key 'fid.preset': 'fast' is not allowed; allowed: 'full', 'quick'",
        ),
        (
            {"experiments": {"toy": small_block(seeds=[3, 3])}},
            "key 'experiments.toy.seeds': [3, 3] repeats an item",
        ),
        ({"experiments": {"toy": small_block(datasets=[])}}, "key 'experiments.toy.datasets'"),
        ({"bn": {True: {"g": True, "d": True}}}, "the name True is not a string"),
    ],
)
def test_schema_errors_name_the_key_and_what_is_allowed(change, message):
    cfg = study.merge(small_study(), change)
    with pytest.raises(ConfigError) as err:
        study_schema.validate(cfg, SCHEMA)
    assert message in str(err.value)


def test_a_missing_experiments_key_is_an_error():
    with pytest.raises(ConfigError, match="key 'experiments' is missing; it is required"):
        study_schema.validate({}, SCHEMA)


# ---------------------------------------------------------------------------------------------
# the grid


def test_default_study_grid():
    s = expanded()
    by_block = {}
    for run in s.runs:
        by_block.setdefault(run.variant.block, []).append(run)
    # Seeds sized for the primary hypotheses (analysis.primary) under the sequential design (at
    # most): 2 datasets x 3 losses x 2 bn x 48; 2 archs x 2 losses x 3 bn x 24; 2 x 2 x 60;
    # 2 x 2 x 42 and 2 x 42 (cat64's third bn cell); the stabilisers (secondary): 3 arms x 2 bn
    # x 24 on the ring, 3 x 8 on Stacked MNIST, 2 x 8 under RMSProp
    assert {k: len(v) for k, v in by_block.items()} == {
        "mixtures": 576,
        "fashion_mnist": 288,
        "stacked_mnist": 240,
        "cats": 168,
        "stabilisers_ring": 144,
        "stabilisers_stacked_mnist": 24,
        "lsgan_stability_adam": 84,
        "lsgan_stability_rmsprop": 16,
    }
    comparisons = plan.plan(s)
    # 44 LSGAN vs GAN; ring 2 bn x 3 candidates x 3 tests; Stacked MNIST 3 x 2; cats 2 x 2
    assert len(comparisons) == 44 + 18 + 6 + 4 and plan.unreachable(comparisons) == []
    assert len(s.variants) == 45 and len(s.jobs) == 143
    # The primary family: 8 hypotheses, each pooled over the cells of one dataset family.
    assert [(h.outcome.column, h.scope, len(h.strata(s.pairs))) for h in s.primary] == [
        ("modes_covered", ("ring8", "grid25"), 4),
        ("high_quality_fraction", ("ring8", "grid25"), 4),
        ("diverged", ("fashion_mnist",), 6),
        ("fid", ("fashion_mnist",), 6),
        ("diverged", ("stacked_mnist",), 2),
        ("modes_covered", ("stacked_mnist",), 2),
        ("diverged", ("cat64",), 3),
        ("fid", ("cat64",), 3),
    ]
    # Three waves: each primary block's jobs in thirds; the secondary blocks all in the first.
    assert s.waves.looks == 3 and s.waves.waved_blocks == (
        "mixtures", "fashion_mnist", "stacked_mnist", "cats", "lsgan_stability_adam")  # fmt: skip
    assert [len(s.waves.jobs_of_wave(s, w)) for w in (1, 2, 3)] == [55, 44, 44]
    assert all(h.fractions == pytest.approx((1 / 3, 2 / 3, 1)) for h in s.waves.hypotheses)
    assert len({r.run_dir for r in s.runs}) == len(s.runs)
    assert s.datasets == ["ring8", "grid25", "fashion_mnist", "stacked_mnist", "cat64"]
    assert s.classifier_datasets == ["fashion_mnist", "mnist"]
    assert s.prepared_datasets == ["fashion_mnist", "stacked_mnist", "cat64", "mnist"]
    assert s.sources == {"fashion-mnist": "fashion_mnist", "mnist": "stacked_mnist",
                         "cat-dataset": "cat64"}  # fmt: skip
    stacked = s.variant("stacked_mnist/dcgan28/lsgan/bn-g0-d0")
    rc = stacked.run_config
    assert rc["train"]["epochs"] == 50 and rc["train"]["batch_size"] == 64
    assert rc["train"]["lr_g"] == 2e-4 and rc["train"]["beta1"] == 0.5
    assert rc["arch"]["bn"] == {"g": False, "d": False}
    assert (rc["loss"]["a"], rc["loss"]["b"], rc["loss"]["c"]) == (0.0, 1.0, 1.0)
    assert rc["tracking"]["experiment"] == "lsgan-vs-gan"
    assert rc["tracking"]["tags"]["block"] == "stacked_mnist"  # a tag MLflow's UI groups by
    assert rc["tracking"]["tags"]["study"] == "lsgan-vs-gan"
    fmnist = s.variant("fashion_mnist/dcgan28_small/gan/bn-g0-d1")
    assert fmnist.bn_name == "d_only" and fmnist.seeds == tuple(range(24))


def test_default_study_stabilisers_and_their_baselines():
    s = expanded()
    alpha = s.variant("ring8/mlp2d/alpha_d05_g12/bn-g0-d0").run_config
    assert alpha["arm"] == "alpha_d05_g12" and alpha["loss"]["name"] == "alpha"
    assert (alpha["loss"]["alpha_d"], alpha["loss"]["alpha_g"]) == (0.5, 1.2)
    gap = s.variant("stacked_mnist/dcgan28/lsgan_gap_aware/bn-g1-d1").run_config
    assert gap["train"]["d_lr_schedule"] == "gap_aware" and gap["train"]["gap_ema"] == 0.95
    assert (gap["loss"]["a"], gap["loss"]["b"], gap["loss"]["c"]) == (0.0, 1.0, 1.0)
    rms = s.variant("cat64/dcgan64/lsgan_chi2_rmsprop/bn-g0-d0").run_config
    assert rms["train"]["optimizer"] == "rmsprop" and rms["train"]["lr_d"] == 2e-4
    assert rms["train"]["rmsprop_alpha"] == 0.9 and rms["train"]["beta1"] is None
    assert (rms["loss"]["a"], rms["loss"]["b"], rms["loss"]["c"]) == (-1.0, 1.0, 0.0)
    adam = s.variant("cat64/dcgan64/lsgan/bn-g0-d1").run_config
    assert adam["train"]["optimizer"] == "adam" and adam["train"]["beta1"] == 0.5
    assert adam["arch"]["bn"] == {"g": False, "d": True}
    # each candidate with the baseline its block names, not the loss its name begins with
    pairs = {(p.dataset, p.bn_g, p.baseline, p.candidate) for p in s.pairs}
    for bn in (True, False):
        assert ("ring8", bn, "lsgan", "lsgan_gap_aware") in pairs
        assert ("ring8", bn, "gan", "gan_gap_aware") in pairs
        assert ("ring8", bn, "gan", "alpha_d05_g12") in pairs
        assert ("ring8", bn, "gan", "lsgan_gap_aware") not in pairs
    assert ("cat64", False, "gan_rmsprop", "lsgan_chi2_rmsprop") in pairs
    assert ("cat64", False, "gan", "lsgan_chi2_rmsprop") not in pairs
    assert ("cat64", False, "gan", "lsgan") in pairs  # the cats block's own, under Adam
    by_block = {}
    for p in s.pairs:
        by_block.setdefault(p.block, set()).add((p.baseline, p.candidate))
    assert by_block["lsgan_stability_adam"] == {("gan", "lsgan")}
    assert by_block["stabilisers_stacked_mnist"] == {
        ("gan", "alpha_d11_g2"), ("gan", "gan_gap_aware"), ("lsgan", "lsgan_gap_aware")
    }  # fmt: skip


def test_quick_study_covers_every_dataset_family_and_metric():
    s = expanded(files=(DEFAULT, QUICK))
    assert s.name == "lsgan-vs-gan-quick"
    kinds = {v.dataset for v in s.variants}
    assert kinds == {"ring8", "grid25", "fashion_mnist", "stacked_mnist", "cat_faces64"}
    # FID for the image datasets, in a cheap setting whose name says so
    assert {s.fid_protocol(d).name for d in ("fashion_mnist", "stacked_mnist", "cat_faces64")} == {
        "custom-64d-128"
    }
    assert s.classifier_datasets == ["fashion_mnist", "mnist"]
    assert s.classifier_args("mnist") == "--epochs 1 --train-limit 12000"
    assert s.classifier_args("fashion_mnist") == "--epochs 1 --train-limit 12000"
    # a training-time FID curve somewhere, for the FID stability statistics
    assert any(v.run_config["train"]["fid_every"] > 0 for v in s.variants)
    assert all(v.run_config["train"]["steps"] is not None for v in s.variants)
    # one run of each stabiliser: the alpha loss, the gap-aware schedule, RMSProp
    one_each = [
        [v for v in s.variants if v.loss == "alpha"],
        [v for v in s.variants if v.run_config["train"]["d_lr_schedule"] == "gap_aware"],
        [v for v in s.variants if v.run_config["train"]["optimizer"] == "rmsprop"],
    ]
    assert [[len(v.seeds) for v in found] for found in one_each] == [[1], [1], [1]]
    assert {(p.baseline, p.candidate) for p in s.pairs if p.block == "stabilisers_ring"} == {
        ("gan", "alpha_d05_g12"), ("gan", "gan_gap_aware")
    }  # fmt: skip


def test_seeds_are_chunked_into_ensemble_jobs():
    s = expanded_small(small_block(seeds=5, seeds_per_job=2))
    (variant,) = s.variants
    assert [job.seeds for job in s.jobs] == [(0, 1), (2, 3), (4,)]
    assert [job.seeds_arg for job in s.jobs] == ["0-1", "2-3", "4"]
    assert len({job.name for job in s.jobs}) == 3
    assert all(job.name.isidentifier() for job in s.jobs)
    # the global seeds_per_job applies where a block sets none
    s = Study.from_config(small_study(seeds_per_job=4), SCHEMA)
    assert s.variants[0].seeds_per_job == 4


def expanded_small(block: dict, **top) -> Study:
    return Study.from_config({"experiments": {"toy": block}, **top}, SCHEMA)


def test_explicit_seed_lists_and_disabled_blocks():
    s = Study.from_config(
        {
            "experiments": {
                "a": small_block(seeds=[7, 3, 4], seeds_per_job=3),
                "b": small_block(datasets=["grid25"], enabled=False),
            }
        },
        SCHEMA,
    )
    assert [run.seed for run in s.runs] == [3, 4, 7]
    assert s.jobs[0].seeds_arg == "3-4,7"
    assert s.datasets == ["ring8"]


def test_format_seeds():
    assert study.format_seeds([5, 0, 1, 2, 9, 10]) == "0-2,5,9-10"
    assert study.format_seeds([4]) == "4"


@pytest.mark.parametrize(
    ("block", "top", "message"),
    [
        (
            small_block(datasets=["fashion_mnist"], archs=["dcgan64"]),
            {},
            "experiments.toy (dataset fashion_mnist, arch dcgan64, loss gan, bn both): key "
            "'arch.name': 'dcgan64' is not allowed; allowed: an architecture for fashion_mnist",
        ),
        (small_block(datasets=["cifar10"]), {}, "key 'dataset.name': 'cifar10' is not allowed"),
        (small_block(losses=["lsgan", "wgan"]), {}, "key 'loss.name': 'wgan' is not allowed"),
        (small_block(archs=["resnet"]), {}, "key 'arch.name': 'resnet' is not allowed"),
        (
            small_block(bn=["on"]),
            {},
            "key 'experiments.toy.bn': 'on' is not a named bn setting; allowed: both, d_only, none",
        ),
        (small_block(train={"steps": None}), {}, "set exactly one of them"),
        (small_block(train={"steps": 5, "epochs": 1}), {}, "set exactly one of them"),
        (
            small_block(datasets=["fashion_mnist"], archs=["dcgan28"]),
            {"data": {"prepare": {"stacked_mnist": {"n_trian": 5}}}},
            "key 'data.prepare.stacked_mnist': unknown parameter 'n_trian'",
        ),
        (
            small_block(),
            {"classifiers": {"epochs": {"cat64": 3}}},
            "key 'classifiers.epochs.cat64': no classifier is trained on 'cat64'",
        ),
        (
            small_block(datasets=["fashion_mnist"], archs=["dcgan28"]),
            {"fid": {"samples": 100, "dims": 192}},
            "key 'fid' (dataset fashion_mnist): singular covariance",
        ),
    ],
)
def test_impossible_or_unknown_settings_fail_while_expanding(block, top, message):
    with pytest.raises(ConfigError) as err:
        expanded_small(block, **top)
    assert message in str(err.value)


def test_a_run_belongs_to_one_block():
    cfg = {"experiments": {"a": small_block(), "b": small_block(seeds=[0, 1])}}
    with pytest.raises(ConfigError, match="experiments.b and experiments.a both ask for the runs"):
        Study.from_config(cfg, SCHEMA)
    cfg["bn"] = {"x": {"g": True, "d": True}, "y": {"g": True, "d": True}}
    cfg["experiments"] = {"a": small_block(bn=["x", "y"])}
    with pytest.raises(ConfigError, match="both ask for the runs of ring8/mlp2d/gan/bn-g1-d1"):
        Study.from_config(cfg, SCHEMA)


def arms_study(**block_changes) -> dict:
    """A block of gan and a scheduled gan arm on the ring, changed by ``block_changes``."""
    block = small_block(
        losses=["gan", "gan_gap"],
        arms={"gan_gap": {"loss": {"name": "gan"}, "train": {"d_lr_schedule": "gap_aware"}}},
        compare={"baseline": "gan", "candidates": ["gan_gap"]},
    )
    block.update(block_changes)
    return {"experiments": {"toy": block}}


def test_an_arm_is_a_loss_with_settings_of_its_own():
    s = Study.from_config(arms_study(), SCHEMA)
    assert [v.key for v in s.variants] == [
        "ring8/mlp2d/gan/bn-g1-d1",
        "ring8/mlp2d/gan_gap/bn-g1-d1",
    ]
    arm = s.variant("ring8/mlp2d/gan_gap/bn-g1-d1")
    assert arm.loss == "gan" and arm.arm == "gan_gap"
    assert arm.run_config["arm"] == "gan_gap" and arm.run_config["loss"]["name"] == "gan"
    assert arm.run_config["train"]["steps"] == 10  # the block's settings, the arm's on top
    assert s.variant("ring8/mlp2d/gan/bn-g1-d1").run_config["arm"] is None
    assert all(job.name.isidentifier() for job in s.jobs)
    assert [(p.baseline, p.candidate) for p in s.pairs] == [("gan", "gan_gap")]


def test_a_baseline_of_another_block_trained_the_same_way_is_used():
    cfg = arms_study(losses=["gan_gap"])
    cfg["experiments"]["base"] = small_block()
    s = Study.from_config(cfg, SCHEMA)
    (pair,) = s.pairs
    assert (pair.block, pair.baseline, pair.candidate) == ("toy", "gan", "gan_gap")
    assert s.variant("ring8/mlp2d/gan/bn-g1-d1").block == "base"


def test_without_its_own_compare_a_block_compares_only_its_own_runs():
    cfg = {"experiments": {"a": small_block(), "b": small_block(losses=["lsgan"])}}
    assert Study.from_config(cfg, SCHEMA).pairs == []
    cfg["experiments"]["b"]["losses"] = ["gan", "lsgan"]
    cfg["experiments"]["b"]["datasets"] = ["grid25"]
    (pair,) = Study.from_config(cfg, SCHEMA).pairs
    assert (pair.block, pair.dataset, pair.baseline, pair.candidate) == (
        "b", "grid25", "gan", "lsgan"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            arms_study(compare={"baseline": "gan", "candidates": ["gan_gpa"]}),
            "key 'experiments.toy.compare': candidate 'gan_gpa' is not an arm of the block; "
            "allowed: gan, gan_gap",
        ),
        (
            arms_study(compare={"baseline": "lsgan", "candidates": ["gan_gap"]}),
            "key 'experiments.toy.compare': no runs of the baseline 'lsgan' for "
            "ring8/mlp2d/lsgan/bn-g1-d1",
        ),
        (
            {
                "experiments": {
                    "toy": arms_study(losses=["gan_gap"])["experiments"]["toy"],
                    "base": small_block(train={"steps": 10, "batch_size": 32}),
                }
            },
            "key 'experiments.toy.compare': ring8/mlp2d/gan_gap/bn-g1-d1 and its baseline "
            "ring8/mlp2d/gan/bn-g1-d1 (block base) differ in train.batch_size (32 vs 64), which "
            "neither arm sets",
        ),
        (
            arms_study(arms={"lsgan": {"loss": {"name": "gan"}}}),
            "key 'experiments.toy.arms.lsgan': the name is a loss's",
        ),
        (
            arms_study(loss={"name": "gan"}),
            "unknown key 'experiments.toy.loss.name'; allowed keys in experiments.toy.loss:",
        ),
        (
            arms_study(arms={"gan_gap": {"loss": {"name": "gan", "alpha_d": 2}}}),
            "experiments.toy (dataset ring8, arch mlp2d, loss gan_gap, bn both): keys "
            "'loss.alpha_d/alpha_g'",
        ),
        (
            arms_study(arms={"gan_gap": {"loss": {"name": "gan"}, "train": {"d_lr_shedule": 1}}}),
            "unknown key 'train.d_lr_shedule' in train",
        ),
        (
            arms_study(
                arms={
                    "gan_gap": {
                        "loss": {"name": "wgan_gp"},
                        "train": {"d_lr_schedule": "gap_aware"},
                    }
                }
            ),
            "key 'train.d_lr_schedule': 'gap_aware' is not allowed; allowed: none for loss "
            "'wgan_gp', which has no known ideal D loss",
        ),
        (
            arms_study(losses=["gan", "gan_gap", "gan_gpa"]),
            "key 'loss.name': 'gan_gpa' is not allowed",
        ),
    ],
)
def test_bad_arms_and_comparisons_are_named(cfg, message):
    with pytest.raises(ConfigError) as err:
        Study.from_config(cfg, SCHEMA)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            arms_study(arms={"Gan-Gap": {"loss": {"name": "gan"}}}),
            "key 'experiments.toy.arms.Gan-Gap': the name is not allowed",
        ),
        (
            arms_study(arms={"gan_gap": {"train": {}}}),
            "key 'experiments.toy.arms.gan_gap.loss' is missing",
        ),
        (
            arms_study(compare={"baseline": "gan"}),
            "key 'experiments.toy.compare.candidates' is missing",
        ),
        (
            small_study(experiments={"toy": small_block(train={"optimizer": "sgd"})}),
            "key 'experiments.toy.train.optimizer': 'sgd' is not allowed; allowed: 'adam', 'rmsprop'",
        ),
        (
            small_study(experiments={"toy": small_block(loss={"alpha_d": 0})}),
            "key 'experiments.toy.loss.alpha_d': 0 is not allowed; allowed: a number or null > 0",
        ),
    ],
)
def test_schema_checks_the_new_block_keys(change, message):
    with pytest.raises(ConfigError) as err:
        study_schema.validate(change, SCHEMA)
    assert message in str(err.value)


def test_merge_follows_snakemake_config_files():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    merged = study.merge(base, {"a": {"y": [3]}, "c": 2})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}


# ---------------------------------------------------------------------------------------------
# files


def test_design_csv_lists_every_run_for_the_report(tmp_path):
    s = expanded(files=(DEFAULT, QUICK))
    results = tmp_path / "results"
    study_files.atomic_write(results / "design.csv", study_files.design_csv(s.design_rows()))
    with (results / "design.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(s.runs)
    assert list(rows[0]) == list(store.DESIGN_COLUMNS)
    assert rows[0]["run_dir"] == "runs/ring8/mlp2d/gan/bn-g1-d1/seed0"
    parsed = read_design(results)
    assert {(r["dataset"], r["loss"], r["seed"]) for r in parsed} == {
        (run.variant.dataset, run.variant.arm, run.seed) for run in s.runs
    }
    assert not list(results.glob(".*tmp*"))


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "design.csv"
    target.write_text("old\n")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        study_files.atomic_write(target, "new\n")
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]


def test_job_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = small_study(
        data={"mirror": "mirror"},
        fid={"weights": "w.pth"},
        gpus={"count": 2, "jobs_per_gpu": 3},
    )
    s = Study.from_config(cfg, SCHEMA)
    env = s.job_environment(environ={})
    assert env["GANSTUDY_MIRROR"] == str(tmp_path / "mirror")
    assert env["GANSTUDY_FID_WEIGHTS"] == str(tmp_path / "w.pth")
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///mlflow.db"
    assert env[gpu_slots.GPUS_ENV] == "2" and env[gpu_slots.JOBS_PER_GPU_ENV] == "3"
    env = s.job_environment(environ={"MLFLOW_TRACKING_URI": "http://server:5000"})
    assert env["MLFLOW_TRACKING_URI"] == "http://server:5000"
    s = Study.from_config(small_study(tracking={"enabled": False}), SCHEMA)
    env = s.job_environment(environ={})
    assert "MLFLOW_TRACKING_URI" not in env and "GANSTUDY_MIRROR" not in env


# ---------------------------------------------------------------------------------------------
# GPU slots


def test_visible_gpus():
    assert gpu_slots.visible_gpus(3, environ={}) == ["0", "1", "2"]
    assert gpu_slots.visible_gpus(None, environ={"GANSTUDY_GPUS": "2"}) == ["0", "1"]
    assert gpu_slots.visible_gpus(None, environ={"CUDA_VISIBLE_DEVICES": "4,6"}) == ["4", "6"]
    assert gpu_slots.visible_gpus(1, environ={"CUDA_VISIBLE_DEVICES": "4,6"}) == ["4"]
    assert gpu_slots.visible_gpus("auto", environ={"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu_slots.visible_gpus(0, environ={}) == []
    with pytest.raises(ConfigError, match="3 GPUs asked, but CUDA_VISIBLE_DEVICES='4,6'"):
        gpu_slots.visible_gpus(3, environ={"CUDA_VISIBLE_DEVICES": "4,6"})
    with pytest.raises(ConfigError, match=r"\$GANSTUDY_GPUS: 'two' is not allowed"):
        gpu_slots.visible_gpus(None, environ={"GANSTUDY_GPUS": "two"})


def test_slots_spread_over_gpus_then_fill_up(tmp_path):
    claimed = [gpu_slots.try_claim(tmp_path, ["0", "1", "2"], 2) for _ in range(6)]
    assert [(s.gpu, s.index) for s in claimed] == [
        ("0", 0), ("1", 0), ("2", 0), ("0", 1), ("1", 1), ("2", 1)
    ]  # fmt: skip
    assert gpu_slots.try_claim(tmp_path, ["0", "1", "2"], 2) is None
    claimed[4].release()
    again = gpu_slots.try_claim(tmp_path, ["0", "1", "2"], 2)
    assert (again.gpu, again.index) == ("1", 1)
    with pytest.raises(TimeoutError):
        gpu_slots.claim(tmp_path, ["0", "1", "2"], 2, poll_s=0.01, timeout_s=0.05)
    for slot in [*claimed, again]:
        slot.release()


def test_lock_scope_separates_cluster_jobs():
    assert gpu_slots.lock_scope({}).endswith("-local")
    assert gpu_slots.lock_scope({"SLURM_JOB_ID": "42"}).endswith("-42")


RECORD = (
    "import json, os, sys, time; start = time.time(); time.sleep(float(sys.argv[2])); "
    "open(sys.argv[1], 'w').write(json.dumps({'gpu': os.environ['CUDA_VISIBLE_DEVICES'], "
    "'slot': os.environ['GANSTUDY_GPU_SLOT'], 'start': start, 'end': time.time()}))"
)


def _launch(lock_dir: Path, out: Path, gpus: int, jobs_per_gpu: int, seconds: float, env=None):
    command = [
        sys.executable, "-m", "ganstudy.study.gpu_slots", "--gpus", str(gpus),
        "--jobs-per-gpu", str(jobs_per_gpu), "--lock-dir", str(lock_dir),
        "--", sys.executable, "-c", RECORD, str(out), str(seconds),
    ]  # fmt: skip
    env = {**os.environ, **(env or {})}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def test_concurrent_claimants_never_exceed_jobs_per_gpu(tmp_path):
    """Seven jobs on 2 simulated GPUs x 2 slots: each sees one GPU, and no GPU ever holds more
    than two of them at a time (the others wait for a slot)."""
    procs = [_launch(tmp_path / "locks", tmp_path / f"job{i}.json", 2, 2, 1.5) for i in range(7)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    records = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(7)]
    assert {r["gpu"] for r in records} <= {"0", "1"}
    for r in records:
        gpu, index = r["slot"].split(":")
        assert gpu == r["gpu"] and index in ("0", "1")
    events = sorted(
        [(r["start"], 1, r["gpu"]) for r in records] + [(r["end"], -1, r["gpu"]) for r in records]
    )
    running = {"0": 0, "1": 0}
    for _, delta, gpu in events:
        running[gpu] += delta
        assert running[gpu] <= 2, events


def test_a_killed_job_frees_its_slot(tmp_path):
    holder = _launch(tmp_path / "locks", tmp_path / "a.json", 1, 1, 60)
    deadline = time.time() + 30
    lock = tmp_path / "locks" / gpu_slots.lock_scope({}) / "gpu0-slot0.lock"
    while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    waiter = _launch(tmp_path / "locks", tmp_path / "b.json", 1, 1, 0)
    time.sleep(1.0)
    assert waiter.poll() is None  # still waiting for the only slot
    holder.kill()
    holder.wait()
    assert waiter.wait(timeout=30) == 0
    assert json.loads((tmp_path / "b.json").read_text())["gpu"] == "0"


def test_without_gpus_the_command_runs_on_the_cpu(tmp_path):
    proc = _launch(tmp_path / "locks", tmp_path / "cpu.json", 0, 1, 0)
    assert proc.wait(timeout=30) == 0
    record = json.loads((tmp_path / "cpu.json").read_text())
    assert record["gpu"] == "" and record["slot"] == "cpu"
    assert "running on the CPU" in proc.stderr.read()


# ---------------------------------------------------------------------------------------------
# cost


def test_steps_of_runs_set_in_epochs():
    s = expanded()
    fmnist = s.variant("fashion_mnist/dcgan28/gan/bn-g1-d1")
    assert study_cost.run_steps(fmnist.run_config, 60_000) == 20 * (60_000 // 64)
    stacked = s.variant("stacked_mnist/dcgan28/gan/bn-g1-d1")
    assert study_cost.train_size("stacked_mnist", s.prepare_params("stacked_mnist")) == 128_000
    assert study_cost.run_steps(stacked.run_config, 128_000) == 50 * 2000


def toy_cost_study(steps: int) -> Study:
    """ring8 and grid25, 4 seeds each in jobs of 2, batch 200."""
    block = small_block(datasets=["ring8", "grid25"], seeds=4, seeds_per_job=2,
                        train={"steps": steps, "batch_size": 200})  # fmt: skip
    return Study.from_config({"experiments": {"toy": block}}, SCHEMA)


def test_cost_estimate_scales_with_runs_and_steps(monkeypatch):
    monkeypatch.setattr(
        study_cost,
        "STEP_SECONDS",
        {("mlp2d", "ring8", 100, 64): 0.01, ("mlp2d", "grid25", 64, 64): 0.02},
    )
    s = toy_cost_study(steps=1000)
    costs = study_cost.estimate(s)
    ring, grid = costs
    # ring8: measured at batch 100, so batch 200 is twice the time: 4 runs x 1000 x 0.02 s
    assert ring.cpu_seconds == pytest.approx(4 * 1000 * 0.02)
    assert grid.cpu_seconds == pytest.approx(4 * 1000 * 0.02 * 200 / 64)
    assert (ring.runs, ring.jobs, ring.steps_per_run) == (4, 2, 1000)
    # finished runs are left out
    done = {s.variants[0].run_dir(0), s.variants[0].run_dir(1)}
    assert study_cost.estimate(s, skip=done)[0].runs == 2
    text = study_cost.table(costs)
    assert "total" in text and "8,000" in text
    warning = study_cost.cpu_warning(costs, parallel_jobs=2)
    assert "8 runs" in warning and "No GPU" in warning


def test_unmeasured_variants_are_reported_not_guessed(monkeypatch):
    monkeypatch.setattr(study_cost, "STEP_SECONDS", {})
    s = Study.from_config(small_study(), SCHEMA)
    (cost,) = study_cost.estimate(s)
    assert cost.cpu_seconds is None
    assert "1 variant(s) have no measured step time" in study_cost.cpu_warning([cost], 2)


def test_gpu_time_comes_from_measured_jobs_and_the_long_run_check_uses_this_machine(monkeypatch):
    monkeypatch.setattr(study_cost, "STEP_SECONDS", {("mlp2d", "ring8", 200, 64): 0.01})
    monkeypatch.setattr(study_cost, "GPU_STEP_SECONDS", {("mlp2d", "ring8", 200, 64, 2): 0.004})
    ring, grid = study_cost.estimate(toy_cost_study(steps=9000))
    # one job of 2 seeds: 0.004 s per step, 9000 steps, 2 jobs, one after another
    assert ring.gpu_seconds == pytest.approx(0.004 * 9000 * 2)
    assert grid.gpu_seconds is None and grid.cpu_seconds is None
    text = study_cost.table([ring, grid])
    assert "H200-h" in text and "1 variant(s) have no GPU measurement" in text
    # CPU: 4 runs x 9000 x 0.01 s = 360 s, 2 jobs at a time = 0.05 h
    hours, basis = study_cost.local_hours([ring, grid], gpus=0, parallel_jobs=2)
    assert hours == pytest.approx(360 / 3600 / 2)
    assert "2 job(s) at a time" in basis and "1 variant(s) without" in basis
    assert study_cost.long_run_stop([ring], 0, 2, max_hours=0.06) is None
    stop = study_cost.long_run_stop([ring], 0, 2, max_hours=0.04)
    assert stop.startswith("Not starting") and "more than max_training_hours (0.04)" in stop
    assert "config/quick.yaml" in stop and "confirm_long_run=True" in stop
    # GPU: 72 s of GPU time on two GPUs
    hours, basis = study_cost.local_hours([ring], gpus=2, parallel_jobs=16)
    assert hours == pytest.approx(72 / 3600 / 2) and "H200" in basis
    assert study_cost.long_run_stop([ring], 2, 16, max_hours=0.01) is None
    assert study_cost.long_run_stop([ring], 1, 16, max_hours=0.01) is not None


def test_every_variant_of_the_shipped_configs_has_a_measured_gpu_step_time():
    reproduce = DEFAULT.parent / "reproduce.yaml"
    for files in ((DEFAULT,), (DEFAULT, reproduce)):
        s = expanded(files=files)
        assert not [c.key for c in study_cost.estimate(s) if c.gpu_seconds is None]


def test_every_variant_of_the_shipped_configs_has_a_measured_step_time():
    for files in ((DEFAULT,), (DEFAULT, QUICK)):
        s = expanded(files=files)
        missing = [c.key for c in study_cost.estimate(s) if c.cpu_seconds is None]
        assert not missing


# ---------------------------------------------------------------------------------------------
# command line


def test_cli_design_writes_design_and_resolved_config(tmp_path, capsys):
    code = cli_main(
        [
            "study", "design", "--config", str(DEFAULT), str(QUICK), "--schema", str(SCHEMA),
            "--design", str(tmp_path / "design.csv"), "--resolved", str(tmp_path / "study.yaml"),
            "--run-configs", str(tmp_path / "configs"),
            "--comparisons", str(tmp_path / "comparisons.csv"),
        ]
    )  # fmt: skip
    assert code == 0
    assert read_pairs(tmp_path / "comparisons.csv") == expanded(files=(DEFAULT, QUICK)).pairs
    resolved = yaml.safe_load((tmp_path / "study.yaml").read_text())
    assert resolved["study"] == "lsgan-vs-gan-quick" and resolved["gpus"]["jobs_per_gpu"] == 1
    s = expanded(files=(DEFAULT, QUICK))
    assert len((tmp_path / "design.csv").read_text().splitlines()) == len(s.runs) + 1
    assert f"{len(s.runs)} runs" in capsys.readouterr().out
    # each variant's run config, as `ganstudy train --config` reads it
    written = sorted(
        p.relative_to(tmp_path / "configs") for p in (tmp_path / "configs").rglob("*.yaml")
    )
    assert written == sorted(Path(f"{v.key}.yaml") for v in s.variants)
    for v in s.variants:
        assert run_config.load(tmp_path / "configs" / f"{v.key}.yaml").to_dict() == v.run_config


def test_cli_design_reports_bad_config_cleanly(tmp_path, capsys):
    bad = copy.deepcopy(small_study())
    bad["experiments"]["toy"]["archs"] = ["dcgan28"]
    code = cli_main(
        ["study", "design", "--json", json.dumps(bad), "--schema", str(SCHEMA),
         "--design", str(tmp_path / "design.csv")]
    )  # fmt: skip
    assert code == 2
    assert "'arch.name': 'dcgan28' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "design.csv").exists()


def test_cli_init_tracking_creates_the_experiment_once(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):
        assert cli_main(["study", "init-tracking", "--uri", uri, "--experiment", "toy"]) == 0
    names = [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
    assert names.count("toy") == 1


def test_the_study_decides_whether_a_weak_classifier_is_refused_or_flagged():
    assert "--allow-weak-classifier" not in expanded().mode_args()  # the default study refuses
    quick = expanded(files=(DEFAULT, QUICK))
    assert quick.config["classifiers"]["below_target"] == "flag"
    assert "--allow-weak-classifier" in quick.mode_args()
    with pytest.raises(ConfigError, match="classifiers.below_target"):
        expanded({"classifiers": {"below_target": "ignore"}})


# ---------------------------------------------------------------------------------------------
# the sequential design (analysis.sequential)


@pytest.mark.parametrize(
    ("sequential", "message"),
    [
        ({"spending": "haybittle"}, "key 'analysis.sequential.spending': 'haybittle' is not "
         "allowed; allowed: 'obrien_fleming', 'pocock'"),
        ({"waves": 1, "fractions": [0.5, 0.4, 1.0]}, "key 'analysis.sequential.fractions': [0.5, 0.4, 1.0] "
         "is not allowed; allowed: fractions increasing to 1"),
        ({"waves": 2, "fractions": [0.5, 0.9]}, "key 'analysis.sequential.fractions': [0.5, 0.9]"),
        ({"waves": 2, "futility": []}, "key 'analysis.sequential': block mixtures has 3 training job(s) "
         "per variant (48 seeds, seeds_per_job 16), which do not split into whole jobs"),
        ({"waves": 3, "futility": [0.5]}, "key 'analysis.sequential.futility': 1 bound(s) for 2 "
         "interim look(s)"),
        ({"waves": 0}, "key 'analysis.sequential.waves': 0 is not allowed"),
    ],
)  # fmt: skip
def test_a_bad_sequential_design_is_refused_naming_its_key(sequential, message):
    with pytest.raises(ConfigError) as err:
        expanded({"analysis": {"sequential": sequential}})
    assert message in str(err.value)


def test_a_fixed_design_has_one_look_and_one_wave():
    s = expanded({"analysis": {"sequential": {"waves": 1}}})
    assert s.waves.looks == 1 and not s.waves.sequential
    assert len(s.waves.jobs_of_wave(s, 1)) == len(s.jobs)


def test_a_block_outside_the_waves_trains_every_seed_first():
    s = expanded({"analysis": {"sequential": {"waves": 3}}},
                 {"experiments": {"fashion_mnist": {"sequential": False}}})  # fmt: skip
    assert "fashion_mnist" not in s.waves.waved_blocks
    names = [h.name for h in s.primary]
    fashion = s.waves.hypotheses[names.index("lsgan vs gan: FID on fashion_mnist")]
    assert fashion.fractions == (1.0, 1.0, 1.0)
    first = {j.name for j in s.waves.jobs_of_wave(s, 1)}
    assert all(j.name in first for j in s.jobs if j.variant.block == "fashion_mnist")
