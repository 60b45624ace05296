"""A small synthetic results tree following docs/design.md, for the aggregate and report tests.

Values are a pure function of the factors, so tests can assert exact numbers:

* fashion_mnist / dcgan28, losses gan and lsgan: bn-g1-d1 with seeds 0-4 (lsgan clearly better:
  complete separation, significant), bn-g0-d0 with seeds 0-2. FID = FID_BASE[loss] +
  FID_BN_OFFSET[bn] + seed. The lsgan bn-g0-d0 seed 2 run diverged; the gan bn-g0-d0 seed 2 run is
  missing (in design.csv, no directory).
* stacked_mnist / dcgan28, gan and lsgan, bn-g1-d1, seeds 0-3: no FID; modes covered =
  MODES_STACKED[loss] + 10 * seed, overlapping between the losses (no significant difference).
* ring8 / mlp2d, gan and lsgan, bn-g0-d0, seeds 0-2: 2D mode metrics; lsgan seed 2 was trained but
  not evaluated.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

FID_BASE = {"gan": 30.0, "lsgan": 20.0}
FID_BN_OFFSET = {(1, 1): 0.0, (0, 0): 5.0}
MODES_STACKED = {"gan": 700, "lsgan": 705}
RING_COVERED = {"gan": [6, 7, 5], "lsgan": [8, 8, 8]}
DIVERGED = ("fashion_mnist", "lsgan", (0, 0), 2)
MISSING = ("fashion_mnist", "gan", (0, 0), 2)
NOT_EVALUATED = ("ring8", "lsgan", (0, 0), 2)

PLAN = (
    # dataset, arch, losses, bn setting, seeds
    ("fashion_mnist", "dcgan28", ("gan", "lsgan"), (1, 1), (0, 1, 2, 3, 4)),
    ("fashion_mnist", "dcgan28", ("gan", "lsgan"), (0, 0), (0, 1, 2)),
    ("stacked_mnist", "dcgan28", ("gan", "lsgan"), (1, 1), (0, 1, 2, 3)),
    ("ring8", "mlp2d", ("gan", "lsgan"), (0, 0), (0, 1, 2)),
)
CODING = {"lsgan": (0.0, 1.0, 1.0)}
STEPS = 1000


def run_rel(dataset, arch, loss, bn, seed) -> str:
    return f"runs/{dataset}/{arch}/{loss}/bn-g{bn[0]}-d{bn[1]}/seed{seed}"


def mlflow_id(dataset, loss, bn, seed) -> str:
    return f"run-{dataset}-{loss}-g{bn[0]}d{bn[1]}-s{seed}"


def expected_fid(loss, bn, seed) -> float:
    return FID_BASE[loss] + FID_BN_OFFSET[bn] + seed


def _config(dataset, arch, loss, bn, seed) -> dict:
    a, b, c = CODING.get(loss, (None, None, None))
    return {
        "seed": seed,
        "dataset": {"name": dataset, "data_root": "data", "mirror": None},
        "arch": {
            "name": arch,
            "width": 64,
            "z_dim": 64,
            "z_dist": "normal",
            "bn": {"g": bool(bn[0]), "d": bool(bn[1])},
        },
        "loss": {"name": loss, "a": a, "b": b, "c": c, "gp_lambda": 10.0},
        "train": {
            "steps": STEPS,
            "epochs": None,
            "batch_size": 64,
            "lr_g": 2e-4,
            "lr_d": 2e-4,
            "beta1": 0.5,
            "beta2": 0.999,
            "d_steps": 1,
            "log_every": 50,
            "checkpoint_every": 500,
            "sample_every": 500,
            "fid_every": 250,
            "fid_samples": 1000,
            "device": "cpu",
        },
        "tracking": {
            "enabled": True,
            "uri": None,
            "experiment": "ganstudy",
            "run_name": None,
            "tags": {},
        },
    }


def _metrics(dataset, loss, bn, seed, diverged: bool) -> dict:
    steps = 600 if diverged else STEPS
    return {
        "status": "diverged" if diverged else "completed",
        "steps": steps,
        "steps_planned": STEPS,
        "diverged_step": 600 if diverged else None,
        "wall_time_s": 10.0 + seed,
        "seed": seed,
        "mlflow_run_id": mlflow_id(dataset, loss, bn, seed),
        "mlflow_tracking_uri": "sqlite:///mlflow.db",
        "mlflow_experiment_id": "1",
        "versions": {
            "python": "3.11.0",
            "torch": "2.5.0",
            "cuda": None,
            "ganstudy": "0.1.0",
            "git_revision": "abc123",
        },
        "device": "cpu",
        "grad_norm_g": {"mean": 0.5, "median": 0.4, "max": 2.0, "final": 0.3},
        "last": {"loss_d": 1.2, "loss_g": 0.8, "d_real": 0.6, "d_fake": -0.4},
    }


def _log_rows(loss, seed, steps) -> list[dict]:
    rng = np.random.default_rng(seed)
    scale = 1.0 if loss == "gan" else 0.3
    rows = []
    for step in range(50, steps + 1, 50):
        g = scale * (1 + 0.1 * rng.standard_normal()) * math.exp(-step / 2000)
        rows.append(
            {
                "step": step,
                "loss_d": 1.0,
                "loss_g": 0.7,
                "d_real": 0.5,
                "d_fake": -0.5,
                "grad_norm_g": g,
                "grad_norm_d": 2 * g,
                "member_images_per_s": 1000.0,
                "wall_s": step / 100,
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _samples_png(path: Path, seed: int, channels: int) -> None:
    rng = np.random.default_rng(seed)
    size = 8 * 28
    pixels = rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze()).save(path)


def _ring_points(loss, seed, covered) -> list[dict]:
    rng = np.random.default_rng(100 + seed)
    angles = 2 * np.pi * rng.integers(0, covered, size=200) / 8
    pts = np.stack([np.cos(angles), np.sin(angles)], 1) + 0.02 * rng.standard_normal((200, 2))
    return [{"x": float(x), "y": float(y)} for x, y in pts]


def _eval(dataset, loss, bn, seed, run_dir: Path, diverged: bool) -> dict:
    fid = None
    fid_block = None
    modes = None
    if dataset == "fashion_mnist":
        fid = None if diverged else expected_fid(loss, bn, seed)
        fid_block = {
            "value": fid,
            "flag": "diverged: no FID" if diverged else None,
            "settings": {
                "protocol": "test10k",
                "pytorch_fid_version": "0.3.0",
                "dims": 2048,
                "n_generated": 10000,
                "n_reference": 10000,
                "reference_split": "test",
                "resize": "bilinear to 299x299",
                "input": "[0, 1] floats, grey repeated to 3 channels",
                "weights": "pt_inception-2015-12-05",
            },
        }
    elif dataset == "stacked_mnist":
        covered = MODES_STACKED[loss] + 10 * seed
        modes = {
            "kind": "stacked_mnist",
            "n_samples": 26000,
            "modes_total": 1000,
            "modes_covered": covered,
            "kl_to_uniform": 1.0 - covered / 1000,
            "high_quality_fraction": None,
            "success": None,
            "failure": None,
            "rule": "a mode is covered when at least one sample is classified into it",
            "classifier": {"dataset": "mnist", "test_accuracy": 0.993},
        }
    else:
        covered = RING_COVERED[loss][seed]
        modes = {
            "kind": "mixture2d",
            "n_samples": 2500,
            "modes_total": 8,
            "modes_covered": covered,
            "kl_to_uniform": 0.1 * (8 - covered),
            "high_quality_fraction": 0.9,
            "success": covered == 8,
            "failure": covered < 6,
            "rule": "success: all 8 modes covered; failure: fewer than 6",
            "classifier": None,
        }
    return {
        "format": "ganstudy-eval-1",
        "run_dir": str(run_dir),
        "dataset": dataset,
        "status": "diverged" if diverged else "completed",
        "fid": fid_block,
        "modes": modes,
        "stability": {
            "diverged": diverged,
            "diverged_step": 600 if diverged else None,
            "collapsed": dataset == "ring8" and loss == "gan" and seed == 2,
            "collapse_rule": "fewer than half of the modes covered",
            "best_fid": None if fid is None else fid - 1.0,
            "best_fid_step": None if fid is None else 750,
            "final_fid": fid,
            "grad_norm_g": {"mean": 0.1, "median": 0.1, "max": 0.5, "final": 0.09},
        },
        "versions": {"ganstudy": "0.1.0", "torch": "2.5.0", "pytorch_fid": "0.3.0"},
        "mlflow_run_id": mlflow_id(dataset, loss, bn, seed),
    }


def design_rows() -> list[dict]:
    rows = []
    for dataset, arch, losses, bn, seeds in PLAN:
        for loss in losses:
            for seed in seeds:
                rows.append(
                    {
                        "dataset": dataset,
                        "arch": arch,
                        "loss": loss,
                        "bn_g": bn[0],
                        "bn_d": bn[1],
                        "seed": seed,
                        "run_dir": run_rel(dataset, arch, loss, bn, seed),
                    }
                )
    return rows


def make_results(root: Path, design: bool = True) -> Path:
    """Write the synthetic results tree under ``root / "results"`` and return that path."""
    results = root / "results"
    results.mkdir(parents=True)
    rows = design_rows()
    if design:
        _write_csv(results / "design.csv", rows)
    for row in rows:
        dataset, loss, bn, seed = (
            row["dataset"],
            row["loss"],
            (row["bn_g"], row["bn_d"]),
            row["seed"],
        )
        key = (dataset, loss, bn, seed)
        if key == MISSING:
            continue
        run_dir = results / row["run_dir"]
        run_dir.mkdir(parents=True)
        diverged = key == DIVERGED
        (run_dir / "config.yaml").write_text(
            yaml.safe_dump(_config(dataset, row["arch"], loss, bn, seed), sort_keys=False)
        )
        metrics = _metrics(dataset, loss, bn, seed, diverged)
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        _write_csv(run_dir / "log.csv", _log_rows(loss, seed, metrics["steps"]))
        if dataset == "ring8":
            covered = RING_COVERED[loss][seed]
            _write_csv(run_dir / "samples2d.csv", _ring_points(loss, seed, covered))
        else:
            _samples_png(run_dir / "samples.png", seed, 1 if dataset == "fashion_mnist" else 3)
        if dataset == "fashion_mnist":
            final = expected_fid(loss, bn, seed)
            curve = [
                {"step": s, "fid": final + 100.0 * (1 - s / STEPS), "n_samples": 1000, "dims": 2048}
                for s in range(250, metrics["steps"] + 1, 250)
            ]
            _write_csv(run_dir / "fid_curve.csv", curve)
        if key != NOT_EVALUATED:
            (run_dir / "eval.json").write_text(
                json.dumps(_eval(dataset, loss, bn, seed, run_dir, diverged))
            )
    return results
