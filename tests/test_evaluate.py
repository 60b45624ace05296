"""``ganstudy evaluate`` on real (short) runs, on diverged runs and on bad input; the stability
statistics on constructed run files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from ganstudy import checkpoint as ckpt
from ganstudy import config, store
from ganstudy.cli import main
from ganstudy.data.registry import DATASETS
from ganstudy.data.streams import mixture_means
from ganstudy.evaluate import evaluation as evaluate
from ganstudy.evaluate.mode_metrics import MODE_METRICS
from ganstudy.metrics import fid, modes, stability
from ganstudy.train.trainer import train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = SHARED / "fid-inception" / "pt_inception-2015-12-05-6726825d.pth"
EVAL_KEYS = {"format", "run_dir", "dataset", "status", "fid", "modes", "stability", "versions"}
MODES_KEYS = {
    "kind", "n_samples", "modes_total", "modes_covered", "kl_to_uniform",
    "high_quality_fraction", "success", "failure", "rule", "classifier",
}  # fmt: skip
STABILITY_KEYS = {
    "diverged", "diverged_step", "collapsed", "not_converged", "collapse_rule", "best_fid",
    "best_fid_step",
    "final_fid", "grad_norm_g",
}  # fmt: skip


# One pytest-xdist worker runs the whole module, so its trained ring8 run is built once, not once
# per worker.
pytestmark = pytest.mark.xdist_group("test_evaluate")


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> tuple[Path, str]:
    """A short ring8 run tracked in its own MLflow store."""
    root = tmp_path_factory.mktemp("ring")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = config.from_dict(
        {
            "dataset": {"name": "ring8"},
            "arch": {"name": "mlp2d", "z_dim": 2},
            "loss": {"name": "lsgan"},
            "train": {"steps": 60, "log_every": 10, "checkpoint_every": 30, "sample_every": 1000},
            "tracking": {"enabled": True, "uri": uri},
        }
    )
    train(cfg, [0], [root / "run"], progress=False)
    return root / "run", uri


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def _read(run: Path) -> dict:
    return json.loads((run / "eval.json").read_text())


def _mark_diverged(run: Path, step: int) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(status="diverged", diverged_step=step)
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_ring8_run_is_evaluated_into_eval_json_and_mlflow(ring_run, tmp_path):
    source, uri = ring_run
    run = _copy(source, tmp_path)
    assert main(["evaluate", "--run", str(run), "--device", "cpu"]) == 0
    result = _read(run)
    assert set(result) >= EVAL_KEYS and result["format"] == "ganstudy-eval-1"
    assert (result["dataset"], result["status"], result["fid"]) == ("ring8", "completed", None)
    assert set(result["modes"]) >= MODES_KEYS and set(result["stability"]) >= STABILITY_KEYS
    assert result["modes"]["n_samples"] == 2500 and result["modes"]["modes_total"] == 8

    # the mode metrics are those of the points written for the report
    points = pd.read_csv(run / "samples2d.csv")
    assert list(points.columns) == ["x", "y"] and len(points) == 2500
    again = modes.mixture_modes(
        points.to_numpy(), mixture_means("ring8").numpy(), DATASETS["ring8"].mixture.sigma
    )
    assert again.to_dict() | {"classifier": None} == result["modes"]

    norms = pd.read_csv(run / "log.csv")["grad_norm_g"]
    grad = result["stability"]["grad_norm_g"]
    assert grad["max"] == pytest.approx(norms.max()) and grad["final"] == pytest.approx(
        norms.iloc[-1]
    )
    assert result["stability"]["diverged"] is False
    covered = result["modes"]["modes_covered"]
    not_converged = result["modes"]["high_quality_fraction"] < 0.5
    assert result["stability"]["not_converged"] == not_converged
    assert result["stability"]["collapsed"] == (covered < 4 and not not_converged)

    run_id = json.loads((run / "metrics.json").read_text())["mlflow_run_id"]
    assert result["mlflow_run_id"] == run_id
    logged = mlflow.MlflowClient(uri).get_run(run_id).data.metrics
    assert logged["eval.modes.modes_covered"] == covered
    assert logged["eval.modes.high_quality_fraction"] == pytest.approx(
        result["modes"]["high_quality_fraction"]
    )

    first = (run / "samples2d.csv").read_text()
    args = ["--run", str(run), "--device", "cpu", "--no-mlflow", "--fid-samples", "100"]
    assert main(["evaluate", *args]) == 0
    assert (run / "samples2d.csv").read_text() == first  # a fixed sample seed
    assert _read(run)["mlflow_run_id"] is None
    assert _read(run)["notes"] == ["--fid-samples/--fid-dims ignored: ring8 has no FID"]


def test_diverged_run_without_checkpoint_gets_nulls_not_an_exception(ring_run, tmp_path):
    run = _copy(ring_run[0], tmp_path)
    _mark_diverged(run, 45)
    with (run / "log.csv").open("a") as handle:
        handle.write("70,nan,nan,nan,nan,nan,nan,0,0\n")
    (run / "final.pt").unlink()
    shutil.rmtree(run / "checkpoints")
    assert evaluate.evaluate(evaluate.plan(run, device="cpu"), log_mlflow=False)
    result = _read(run)
    assert result["status"] == "diverged" and result["modes"] is None
    assert "nothing measured" in result["notes"][0]
    assert result["stability"]["diverged"] is True and result["stability"]["diverged_step"] == 45
    assert result["stability"]["grad_norm_g"]["n_nonfinite"] == 1
    assert result["stability"]["grad_norm_g"]["final"] is None
    assert not (run / "samples2d.csv").exists()


def test_generator_with_non_finite_output_gets_nulls(ring_run, tmp_path):
    run = _copy(ring_run[0], tmp_path)
    _mark_diverged(run, 55)
    state = torch.load(run / "final.pt", weights_only=True)
    for tensor in state["generator"].values():
        tensor.fill_(float("nan"))
    ckpt.atomic_save(state, run / "final.pt")  # with its checksum record, as training writes it
    evaluate.evaluate(evaluate.plan(run, device="cpu"), log_mlflow=False)
    result = _read(run)
    assert result["modes"] is None and "not finite" in result["notes"][0]
    assert result["checkpoint"] == "final.pt"


def test_bad_input_is_refused_before_work_and_keeps_eval_json(ring_run, tmp_path, capsys):
    run = _copy(ring_run[0], tmp_path)
    (run / "eval.json").write_text('{"kept": true}')
    cases = [
        (["--run", str(tmp_path / "none")], "config.yaml is missing"),
        (["--run", str(run), "--mode-samples", "0"], "allowed: a positive integer"),
    ]
    for args, message in cases:
        assert main(["evaluate", *args]) == 2
        assert message in capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["status"] = "running"
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["evaluate", "--run", str(run)]) == 2
    assert "allowed: completed, diverged" in capsys.readouterr().err
    assert json.loads((run / "eval.json").read_text()) == {"kept": True}


def test_several_runs_are_checked_before_any_is_measured(ring_run, tmp_path, capsys):
    good = _copy(ring_run[0], tmp_path)
    args = ["evaluate", "--device", "cpu", "--no-mlflow", "--run", str(good)]
    assert main([*args, str(tmp_path / "none")]) == 2
    assert f"--run {tmp_path / 'none'}: config.yaml is missing" in capsys.readouterr().err
    assert not (good / "eval.json").exists()
    assert main([*args, str(good)]) == 2
    assert "is given twice" in capsys.readouterr().err
    assert not (good / "eval.json").exists()


class _BrightnessClassifier(torch.nn.Module):
    """Maps an image of constant value v in [-1, 1] to the digit round(4.5 (v + 1))."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        digit = ((x.mean(dim=(1, 2, 3)) + 1) * 4.5).round().long().clamp(0, 9)
        return torch.nn.functional.one_hot(digit, 10).float() + self.anchor


def test_stacked_mnist_modes_classify_each_channel():
    digits = torch.tensor([[3, 1, 4], [1, 5, 9], [3, 1, 4]])
    images = (digits.float() / 4.5 - 1)[:, :, None, None].expand(-1, -1, 28, 28)
    context = {"classifier": _BrightnessClassifier()}
    result = MODE_METRICS["stacked_mnist"].measure(images, context)
    assert result.modes_covered == 2 and result.counts[314] == 2 and result.counts[159] == 1


# -- an image run, end to end ----------------------------------------------------------------


def _fake_fashion(data_root: Path, n: int) -> None:
    root = store.DataRoot(data_root)
    root.prepared("fashion_mnist").mkdir(parents=True)
    gen = torch.Generator().manual_seed(5)
    for split in ("train", "test"):
        images = (torch.rand(n, 1, 28, 28, generator=gen) * 255).round().to(torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=gen)
        torch.save(
            {"images": images, "labels": labels}, root.prepared_split("fashion_mnist", split)
        )


@pytest.mark.slow(seconds=14)
def test_image_run_gets_fid_modes_and_a_sample_grid(tmp_path, monkeypatch):
    if not WEIGHTS.is_file():
        pytest.skip(f"FID Inception weights not found at {WEIGHTS}")
    from PIL import Image

    from ganstudy.metrics.classifiers import build, save_classifier

    data_root = tmp_path / "data"
    _fake_fashion(data_root, 200)
    torch.manual_seed(0)
    info = {"arch": "small_cnn", "arch_params": {"width": 4}, "test_accuracy": 0.5}
    save_classifier(
        build("small_cnn", {"width": 4}), info, data_root / "classifiers" / "fashion_mnist.pt"
    )
    cfg = config.from_dict(
        {
            "dataset": {"name": "fashion_mnist", "data_root": str(data_root)},
            "arch": {"name": "dcgan28_small", "z_dim": 16},
            "train": {
                "steps": 4, "batch_size": 16, "log_every": 2, "sample_every": 1000,
                "fid_every": 2, "fid_samples": 70,
            },
            "tracking": {"enabled": False},
        }
    )  # fmt: skip
    run = tmp_path / "run"
    monkeypatch.setenv("GANSTUDY_FID_WEIGHTS", str(WEIGHTS))
    monkeypatch.setattr(fid, "TRAINING_DIMS", 64)  # 70 samples need a block below 70 dims
    train(cfg, [0], [run], progress=False)
    curve = pd.read_csv(run / "fid_curve.csv")
    assert curve["step"].tolist() == [2, 4] and set(curve["dims"]) == {64}
    args = ["--run", str(run), "--device", "cpu", "--fid-samples", "70", "--fid-dims", "64"]
    # The classifier (test accuracy 0.5) is below Fashion-MNIST's target (0.9): refused by
    # default, used and flagged when allowed.
    assert main(["evaluate", *args, "--mode-samples", "300"]) == 2
    assert not (run / "eval.json").exists()
    args.append("--allow-weak-classifier")
    assert main(["evaluate", *args, "--mode-samples", "300"]) == 0
    result = _read(run)
    fid_block = result["fid"]
    assert fid_block["value"] > 0 and fid_block["flag"] is None
    settings = fid_block["settings"]
    assert (settings["dims"], settings["n_generated"], settings["n_reference"]) == (64, 70, 70)
    assert settings["reference_split"] == "test" and settings["pytorch_fid_version"] == "0.3.0"
    assert settings["weights"].startswith(WEIGHTS.name + " sha256:")
    assert settings["protocol"] == "custom-64d-70"
    assert (data_root / "fid_stats").is_dir()
    m = result["modes"]
    assert (m["kind"], m["n_samples"], m["modes_total"]) == ("classes", 300, 10)
    assert m["classifier"] == {
        "dataset": "fashion_mnist", "test_accuracy": 0.5, "target_accuracy": 0.9,
        "below_target": True,
    }  # fmt: skip
    assert any("below its target" in note for note in result["notes"])
    assert sum(m["counts"]) == 300
    assert Image.open(run / "samples.png").size == (242, 242)  # 8 x 8 tiles of 28 + 2 padding
    best = curve["fid"].min()
    assert result["stability"]["best_fid"] == pytest.approx(best)
    assert result["stability"]["best_fid_step"] == int(curve.loc[curve["fid"].idxmin(), "step"])
    assert result["stability"]["fid_curve"]["dims"] == 64
    # 2048-d features from 70 samples: refused before any work
    assert main(["evaluate", "--run", str(run), "--fid-samples", "70"]) == 2

    # Members of one job in one process: the classifier and the reference statistics are loaded
    # once, and each member's eval.json is what evaluating it alone gives.
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    (twin / "eval.json").unlink()
    alone = _read(run)
    loads = {"classifier": 0, "reference": 0}

    def counted(name, function):
        def wrapper(*a, **k):
            loads[name] += 1
            return function(*a, **k)

        return wrapper

    from ganstudy.metrics import classifiers

    monkeypatch.setattr(
        classifiers, "load_classifier", counted("classifier", classifiers.load_classifier)
    )
    monkeypatch.setattr(fid, "reference_statistics", counted("reference", fid.reference_statistics))
    args = ["--device", "cpu", "--fid-samples", "70", "--fid-dims", "64", "--mode-samples", "300"]
    args += ["--allow-weak-classifier", "--no-mlflow", "--run", str(run), str(twin)]
    assert main(["evaluate", *args]) == 0
    assert loads == {"classifier": 1, "reference": 1}
    for member in (run, twin):
        together = _read(member)
        assert together["run_dir"] == str(member)
        for key in ("fid", "modes", "stability", "notes", "files", "checkpoint"):
            assert together[key] == alone[key], key


# -- stability statistics from run files ------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_stability_from_constructed_run_files(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "completed"}))
    fields = ["step", "loss_d", "loss_g", "grad_norm_g"]
    _write_csv(tmp_path / "log.csv", fields, [[10, 1, 1, 0.5], [20, 1, 1, 2.0], [30, 1, 1, 1.0]])
    curve = [[100, 50.0, 500, 64], [200, 30.0, 1000, 192], [300, 20.0, 1000, 192]]
    curve += [[400, 25.0, 1000, 192], [500, float("nan"), 1000, 192]]
    _write_csv(tmp_path / "fid_curve.csv", ["step", "fid", "n_samples", "dims"], curve)
    coverage = {"modes_covered": 3, "modes_total": 8}
    result = stability.stability(tmp_path, coverage)
    assert (result["diverged"], result["diverged_step"], result["collapsed"]) == (False, None, True)
    assert (result["best_fid"], result["best_fid_step"], result["final_fid"]) == (20.0, 300, None)
    assert result["fid_curve"] == {
        "n_samples": 1000, "dims": 192, "points": 4, "rows_with_other_settings": 1,
    }  # fmt: skip
    assert result["grad_norm_g"] == {
        "mean": pytest.approx(3.5 / 3), "median": 1.0, "max": 2.0, "final": 1.0, "n_nonfinite": 0,
    }  # fmt: skip
    assert (
        stability.stability(tmp_path, {"modes_covered": 4, "modes_total": 8})["collapsed"] is False
    )
    assert stability.stability(tmp_path)["collapsed"] is None

    _write_csv(tmp_path / "log.csv", fields, [[10, 1, 1, 0.5], [20, np.inf, 1, 0.7]])
    assert stability.stability(tmp_path)["diverged"] is True
    assert stability.stability(tmp_path)["diverged_step"] == 20
