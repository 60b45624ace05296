"""Every benchmark runs: each is smoke-run at a tiny size (its numbers are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import env_without_tracking_uri

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CONFIGS = BENCHMARKS.parent / "config"
SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "fid-inception" / "pt_inception-2015-12-05-6726825d.pth"


def _run(tmp_path: Path, script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=tmp_path,  # the benchmarks' MLflow stores and outputs stay in the test's directory
        capture_output=True,
        text=True,
        timeout=300,
        env=env_without_tracking_uri() | {"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow(seconds=15)
def test_train_throughput_of_two_variants_named_by_their_architecture(tmp_path):
    out = _run(tmp_path, "train_throughput.py", "--steps", "3", "--repeats", "1",
               "--batch-size", "8", "--variants", "mlp2d", "dcgan28")  # fmt: skip
    assert "engine/plain" in out and "mlp2d/ring8" in out and "dcgan28/fashion_mnist" in out
    assert "engine/member-layers plain" in out


@pytest.mark.slow(seconds=20)
def test_train_throughput_of_ensembles_with_the_control_arm(tmp_path):
    out = _run(tmp_path, "train_throughput.py", "--steps", "3", "--repeats", "2", "--members",
               "2", "--batch-size", "8", "--control", "--no-mlflow", "--variants", "mlp2d",
               "dcgan28")  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith(("mlp2d", "dcgan28"))]
    assert [row[:2] for row in rows] == [["mlp2d/ring8", "2"], ["dcgan28/fashion_mnist", "2"]]
    # Two repeats: each ratio with its [min, max] interval, the control's too.
    assert all(line.count("[") == 2 for line in out.splitlines() if line.startswith("mlp2d"))


def test_an_unknown_variant_is_named_with_the_allowed_ones(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_throughput.py"), "--variants", "mlp3d"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "unknown variant 'mlp3d'" in result.stderr and "mlp2d/ring8" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow(seconds=13)
def test_ensemble_throughput(tmp_path):
    out = _run(tmp_path, "ensemble_throughput.py", "--members", "2", "--steps", "3",
               "--repeats", "1", "--batch-size", "8", "--variants", "mlp2d", "dcgan28")  # fmt: skip
    assert "mlp2d/ring8" in out and "dcgan28/fashion_mnist" in out


def test_step_calls_per_member_count(tmp_path):
    out = _run(tmp_path, "step_calls.py", "--members", "1", "3", "--json", "calls.json")
    rows = json.loads((tmp_path / "calls.json").read_text())
    assert [r["K"] for r in rows] == [1, 3] and all(r["host_syncs"] == 0 for r in rows)
    assert "kernels_per_step" in out


def test_member_steps_eager_on_the_cpu(tmp_path):
    out = _run(tmp_path, "member_steps.py", "--members", "1", "2", "--steps", "2",
               "--warm-up", "1", "--variants", "mlp2d", "dcgan28", "--batch-size", "4")  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith(("mlp2d", "dcgan28"))]
    assert [row[:3] for row in rows] == [
        ["mlp2d/ring8", "none", "1"], ["mlp2d/ring8", "none", "2"],
        ["dcgan28/fashion_mnist", "none", "1"], ["dcgan28/fashion_mnist", "none", "2"],
    ]  # fmt: skip


def test_study_cost(tmp_path):
    mixtures_only = tmp_path / "mixtures.yaml"
    mixtures_only.write_text(
        "experiments:\n"
        "  fashion_mnist: {enabled: false}\n"
        "  stacked_mnist: {enabled: false}\n"
        "  cats: {enabled: false}\n"
        "  stabilisers_ring: {enabled: false}\n"
        "  stabilisers_stacked_mnist: {enabled: false}\n"
        "  lsgan_stability_adam: {enabled: false}\n"
        "  lsgan_stability_rmsprop: {enabled: false}\n"
    )
    out = _run(tmp_path, "study_cost.py", str(mixtures_only), "--members", "2", "--steps", "2",
               "--warmup", "1", "--repeats", "1")  # fmt: skip
    assert "STEP_SECONDS = {" in out and "('mlp2d', 'ring8', 256, 64)" in out


def test_fid_throughput(tmp_path):
    if not WEIGHTS.is_file():
        pytest.skip(f"FID Inception weights not found at {WEIGHTS}")
    out = _run(tmp_path, "fid_throughput.py", "--weights", str(WEIGHTS), "--n", "20",
               "--dims", "64", "--repeats", "1", "--batch-size", "10")  # fmt: skip
    assert "same statistics" in out


@pytest.mark.slow(seconds=35)
def test_gpu_acceptance_dry_run_exercises_every_stage_on_the_cpu(tmp_path):
    # The ensemble benchmark stage is the script above, smoke-run already.
    _run(tmp_path, "gpu_acceptance.py", "--dry-run", "--out", str(tmp_path / "acc"),
         "--skip", "ensemble", "--config", str(CONFIGS / "config.yaml"),
         "--config", str(CONFIGS / "config.yaml"), str(CONFIGS / "reproduce.yaml"))  # fmt: skip
    summary = json.loads((tmp_path / "acc" / "acceptance.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == [
        "step calls",
        "member-steps",
        "mixtures block",
        "quick study",
        "default study blocks",
        "blocks of config.yaml + reproduce.yaml",
        "gpu tests",
        "compiled vs eager",
    ]
    assert all(s["ok"] for s in summary["stages"]), summary
    assert [(r["K"], r["host_syncs"]) for r in summary["step_calls"]] == [(1, 0), (16, 0)]
    assert [r["K"] for r in summary["member_steps"]] == [1, 2]
    goals = (tmp_path / "acc" / "goals.md").read_text()
    assert "DRY RUN" in goals and "| mixtures block, minutes | <= 10 |" in goals
    assert {g["goal"] for g in summary["goals"]} >= {"k256_speedup", "default_study_hours"}
    table = (tmp_path / "acc" / "gpu_hours.md").read_text()
    assert "DRY RUN" in table
    for block in ("mixtures", "fashion_mnist", "stacked_mnist", "cats", "total"):
        assert f"| {block} |" in table
    reproduce = (tmp_path / "acc" / "gpu_hours-reproduce.md").read_text()
    for block in ("welfert_ring", "welfert_stacked", "pacgan_ring", "lucic_fashion"):
        assert f"| {block} |" in reproduce


def test_gpu_acceptance_stops_starting_stages_at_its_deadline(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_acceptance.py"), "--dry-run", "--out",
         str(tmp_path / "acc"), "--skip", "ensemble", "compile", "--deadline-s", "0"],
        capture_output=True, text=True, timeout=300, env=env_without_tracking_uri(),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]  # a skipped stage is not a pass
    stages = json.loads((tmp_path / "acc" / "acceptance.json").read_text())["stages"]
    assert [s["output"] for s in stages] == ["skipped: deadline"] * 6, stages


def test_median_interval_by_the_binomial_order_statistics():
    sys.path.insert(0, str(BENCHMARKS))
    from _common import median_ci

    # n = 9: the 2nd smallest to the 2nd largest covers the median with 1 - 2 (1 + 9) / 2^9;
    # the 3rd to the 3rd would cover it with 1 - 2 (1 + 9 + 36) / 2^9 = 0.82 < 0.95.
    middle, low, high, coverage = median_ci([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0])
    assert (middle, low, high) == (5.0, 2.0, 8.0)
    assert coverage == pytest.approx(1 - 20 / 512)
    # Below 6 values no interval reaches 95%: [min, max] with its own coverage.
    assert median_ci([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0, 0.75)


def test_calibration_of_the_primary_family(tmp_path):
    out = _run(tmp_path, "calibration.py", str(CONFIGS / "config.yaml"), "--studies", "3",
               "--out", "calibration.json")  # fmt: skip
    assert "family-wise false-positive rate" in out and "power at alpha/m" in out
    assert "lsgan vs gan: FID on fashion_mnist" in out
    record = json.loads((tmp_path / "calibration.json").read_text())
    assert record["studies"] == 3 and len(record["power"]) >= 8
