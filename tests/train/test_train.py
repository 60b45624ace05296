"""The training engine: learning, outputs, divergence, kill-and-resume."""

import csv
import json
import os
import signal
import subprocess
import time

import pytest
import torch
import yaml
from helpers import ring_config, train_command

from ganstudy import checkpoint as ckpt
from ganstudy import losses, store
from ganstudy.data.streams import mixture_means
from ganstudy.sample import generate, load_generator
from ganstudy.train.trainer import Trainer, train


def ring_distance(points: torch.Tensor) -> torch.Tensor:
    return (points.norm(dim=1) - 1).abs()


def test_short_ring8_run_learns_and_writes_its_outputs(tmp_path):
    cfg = ring_config(steps=1000)
    run = tmp_path / "run"
    trainer = Trainer(cfg, [0], [run], progress=False)
    before = ring_distance(trainer.state.generate_all(2000)[0])
    (metrics,) = trainer.run()
    assert metrics["status"] == "completed" and metrics["steps"] == 1000
    generator, loaded_cfg = load_generator(run)
    samples = generate(generator, loaded_cfg, 2000, seed=1)
    after = ring_distance(samples)
    # samples move onto the circle: half the median distance, three times the share near it
    assert after.median() < 0.5 * before.median(), (before.median(), after.median())
    near_before, near_after = (before < 0.25).float().mean(), (after < 0.25).float().mean()
    assert near_after > max(3 * near_before, 0.4), (near_before, near_after)
    # and spread over several modes, not one point
    nearest = torch.cdist(samples, mixture_means("ring8")).argmin(1)
    assert len(torch.unique(nearest)) >= 3
    for name in ("config.yaml", "final.pt", "log.csv", "metrics.json"):
        assert (run / name).is_file()
    images = store.RunDir(run).samples.iterdir()
    assert any(store.step_of(p.name, store.SAMPLE_IMAGE_SUFFIX) is not None for p in images)
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(25, 1001, 25))
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_g", "grad_norm_d"):
        assert all(torch.isfinite(torch.tensor(float(r[key]))) for r in rows)
    assert {float(r["lr_d"]) for r in rows} == {cfg.train.lr_d}  # no schedule: constant
    assert metrics["versions"]["torch"] == torch.__version__
    assert metrics["numerics"]["optimizer_implementation"] == "foreach"  # Adam on the CPU
    assert metrics["grad_norm_g"]["max"] >= metrics["grad_norm_g"]["mean"] > 0
    assert yaml.safe_load((run / "config.yaml").read_text()) == cfg.to_dict()
    state = torch.load(run / "final.pt", weights_only=True)
    assert state["step"] == 1000 and state["config"] == cfg.to_dict()


def test_the_last_checkpoint_and_final_pt_are_one_write(tmp_path, monkeypatch):
    # 60 steps, checkpoints every 50: the loop writes step 50; the end writes step 60 once
    cfg = ring_config(steps=60, checkpoint_every=50, keep_checkpoints=True)
    runs = [tmp_path / "linked", tmp_path / "copied", tmp_path / "copied_not_kept"]
    train(cfg, [0], [runs[0]], progress=False)
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links here")))
    train(cfg, [0], [runs[1]], progress=False)
    train(ring_config(steps=60, checkpoint_every=50), [0], [runs[2]], progress=False)
    for run in runs[:2]:
        last, final = ckpt.checkpoint_path(run, 60), run / "final.pt"
        assert last.read_bytes() == final.read_bytes()
        assert ckpt.load(final)["status"] == ckpt.load(last)["status"] == "completed"
        assert ckpt.available_steps(run) == [50, 60]
    assert os.path.samefile(ckpt.checkpoint_path(runs[0], 60), runs[0] / "final.pt")
    assert not os.path.samefile(ckpt.checkpoint_path(runs[1], 60), runs[1] / "final.pt")
    # without links the last checkpoint is a second copy of final.pt, which a run that keeps
    # none does not keep
    assert ckpt.available_steps(runs[2]) == [] and ckpt.load(runs[2] / "final.pt")["step"] == 60
    # a checksum record of its own: a damaged final.pt is recognised as such
    final = runs[1] / "final.pt"
    final.write_bytes(final.read_bytes()[:-10])
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load(final)


def _checkpoint_files(run) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_a_finished_run_keeps_final_pt_alone_and_a_rerun_trains_nothing(tmp_path, capsys):
    # 50 steps, checkpoints every 20: 20 and 40 while it trains, 50 at the end
    cfg = ring_config(steps=50, checkpoint_every=20)
    runs = [tmp_path / "s0", tmp_path / "s1"]  # an ensemble: every member's directory
    train(cfg, [0, 1], runs, progress=False)
    for run in runs:
        # the newest is final.pt under a second name: no space of its own
        assert _checkpoint_files(run) == ["step_00000050.pt", "step_00000050.pt.sha256"]
        assert os.path.samefile(ckpt.checkpoint_path(run, 50), run / "final.pt")
    stamps = [(run / "final.pt").stat().st_mtime_ns for run in runs]
    logs = [(run / "log.csv").read_text() for run in runs]
    capsys.readouterr()
    results = train(cfg, [0, 1], runs, progress=False)
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert [(run / "final.pt").stat().st_mtime_ns for run in runs] == stamps
    assert [(run / "log.csv").read_text() for run in runs] == logs
    assert "resuming" not in capsys.readouterr().err
    # Snakemake removes a job's outputs before it runs the job again: the run resumes at its
    # last step and trains none
    weights = ckpt.load(runs[1] / "final.pt")["generator"]
    for run in runs:
        for name in ("final.pt", "metrics.json", "log.csv"):
            (run / name).unlink()
    results = train(cfg, [0, 1], runs, progress=False)
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert "resuming from step 50" in capsys.readouterr().err
    assert [(run / "log.csv").read_text() for run in runs] == logs
    again = ckpt.load(runs[1] / "final.pt")["generator"]
    assert all(torch.equal(weights[name], again[name]) for name in weights)
    for run in runs:
        assert _checkpoint_files(run) == ["step_00000050.pt", "step_00000050.pt.sha256"]
        assert os.path.samefile(ckpt.checkpoint_path(run, 50), run / "final.pt")


def test_nothing_is_removed_while_final_pt_does_not_read_back_as_written(tmp_path):
    run = tmp_path / "run"
    for step in (20, 40):
        ckpt.atomic_save({"format": ckpt.FORMAT, "step": step}, ckpt.checkpoint_path(run, step))
    ckpt.save_same_as(ckpt.checkpoint_path(run, 40), run / "final.pt")
    (run / "final.pt.sha256").write_text(f"{'0' * 64}  final.pt\n")  # as if the bytes changed
    with pytest.raises(ckpt.CheckpointError, match="does not read back as it was written"):
        ckpt.finish(run)
    assert ckpt.available_steps(run) == [20, 40]
    ckpt.save_same_as(ckpt.checkpoint_path(run, 40), run / "final.pt")
    ckpt.finish(run)
    assert ckpt.available_steps(run) == [40]


def test_keep_checkpoints_keeps_the_newest_two_and_is_not_part_of_the_run(tmp_path):
    cfg = ring_config(steps=50, checkpoint_every=20, keep_checkpoints=True)
    run = tmp_path / "run"
    train(cfg, [0], [run], progress=False)
    assert ckpt.available_steps(run) == [40, 50]
    # what a run keeps, not what it computes: asked with the other value, it is the same run
    (metrics,) = train(ring_config(steps=50, checkpoint_every=20), [0], [run], progress=False)
    assert metrics["status"] == "completed"


def test_rerun_of_a_finished_run_does_nothing(tmp_path):
    cfg = ring_config(steps=50)
    run = tmp_path / "run"
    train(cfg, [0], [run], progress=False)
    stamp = (run / "final.pt").stat().st_mtime_ns
    (metrics,) = train(cfg, [0], [run], progress=False)
    assert metrics["status"] == "completed"
    assert (run / "final.pt").stat().st_mtime_ns == stamp


def test_other_config_in_same_dir_is_refused(tmp_path):
    from ganstudy.errors import ConfigError

    run = tmp_path / "run"
    train(ring_config(steps=50), [0], [run], progress=False)
    with pytest.raises(ConfigError, match="different config.*train.steps"):
        Trainer(ring_config(steps=60), [0], [run], progress=False)


def test_a_run_of_a_version_without_the_newer_keys_is_still_the_same_run(tmp_path):
    from ganstudy.errors import ConfigError
    from ganstudy.train.runfiles import check_same_run

    cfg = ring_config(steps=50)
    old = cfg.to_dict()
    for key in ("optimizer", "rmsprop_alpha", "rmsprop_eps", "rmsprop_momentum", "d_lr_schedule"):
        del old["train"][key]
    del old["loss"]["alpha_d"], old["arm"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_same_run(tmp_path, cfg.to_dict())  # the defaults are what that version did
    rms = ring_config(steps=50, optimizer="rmsprop")
    with pytest.raises(ConfigError, match="different config.*train.optimizer"):
        check_same_run(tmp_path, rms.to_dict())


def _poisoned_loss(monkeypatch, member: int | None, after_calls: int):
    """Register a loss whose G loss turns NaN for one member (or all) after some calls."""
    calls = {"n": 0}
    base = losses.LOSSES["lsgan"]
    base_g_loss = base.functions()[1]

    def g_loss(d_fake, c):
        calls["n"] += 1
        out = base_g_loss(d_fake, c)
        if calls["n"] > after_calls:
            # Multiplying by NaN poisons the gradients as well as the loss value.
            factor = torch.ones_like(out)
            if member is None:
                factor.fill_(float("nan"))
            else:
                factor[member] = float("nan")
            out = out * factor
        return out

    monkeypatch.setitem(
        losses.LOSSES,
        "poisoned",
        losses.Loss(
            "poisoned",
            base.d_loss,
            g_loss,
            "test",
            coding=(0.0, 1.0, 1.0),
            ideal_d_loss=base.ideal_d_loss,
        ),  # fmt: skip
    )


def test_diverged_run_is_an_outcome(tmp_path, monkeypatch):
    _poisoned_loss(monkeypatch, None, after_calls=30)
    from ganstudy import config

    cfg = config.from_dict({**ring_config().to_dict(), "loss": {"name": "poisoned"}})
    run = tmp_path / "run"
    (metrics,) = train(cfg, [0], [run], progress=False)
    assert metrics["status"] == "diverged"
    assert metrics["diverged_step"] == 31
    assert metrics["steps"] == 50  # stopped at the first check after divergence, not at 200
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["status"] == "diverged"
    assert torch.load(run / "final.pt", weights_only=True)["status"] == "diverged"


@pytest.mark.parametrize(
    "train",
    [{}, {"optimizer": "rmsprop", "rmsprop_momentum": 0.9, "d_lr_schedule": "gap_aware"}],
)
def test_diverged_member_is_frozen_while_others_continue(tmp_path, monkeypatch, train):
    _poisoned_loss(monkeypatch, member=1, after_calls=30)
    from ganstudy import config

    data = {
        **ring_config(steps=150, keep_checkpoints=True, **train).to_dict(),
        "loss": {"name": "poisoned"},
    }
    cfg = config.from_dict(data)
    dirs = [tmp_path / f"s{s}" for s in (0, 1, 2)]
    trainer = Trainer(cfg, [0, 1, 2], dirs, progress=False)
    results = trainer.run()
    assert [r["status"] for r in results] == ["completed", "diverged", "completed"]
    assert results[1]["diverged_step"] == 31
    assert all(r["steps"] == 150 for r in results)
    # the frozen member's weights keep their last finite values: those of step 30
    # (batch-norm running statistics, which neither training nor sampling uses, still track)
    g50 = ckpt.load(ckpt.checkpoint_path(dirs[1], 100))["generator"]
    g_final = ckpt.load(dirs[1] / "final.pt")["generator"]
    weights = [name for name in g50 if "running_" not in name]
    assert len(weights) == 18
    for name in weights:
        assert torch.isfinite(g_final[name]).all()
        assert torch.equal(g50[name], g_final[name]), name
    # its log stops at the check that found it
    steps = [int(r["step"]) for r in csv.DictReader((dirs[1] / "log.csv").open())]
    assert steps[-1] == 50


@pytest.mark.slow(seconds=52)
def test_sigkill_and_resume_gives_bitwise_identical_weights(tmp_path):
    cfg = ring_config(steps=1500, checkpoint_every=100, log_every=50)
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(train_command(path, straight), check=True, env=env)

    proc = subprocess.Popen(train_command(path, killed), env=env)
    deadline = time.monotonic() + 120
    while not any(s >= 300 for s in ckpt.available_steps(killed)):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final.pt").exists()
    resumed_from = max(ckpt.available_steps(killed))
    assert resumed_from < 1500
    subprocess.run(train_command(path, killed), check=True, env=env)

    a = torch.load(straight / "final.pt", weights_only=True)
    b = torch.load(killed / "final.pt", weights_only=True)
    for part in ("generator", "discriminator"):
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), (part, name)
    for part in ("opt_g", "opt_d"):
        for idx, state in a[part]["state"].items():
            for key in state:
                assert torch.equal(state[key], b[part]["state"][idx][key])
    rows = list(csv.DictReader((killed / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(50, 1501, 50))  # no duplicate rows


def test_member_scatters_drawn_on_one_figure_are_the_files_of_separate_figures(tmp_path):
    from ganstudy.data import registry
    from ganstudy.sample import save_member_samples, save_samples

    spec = registry.dataset("ring8")
    points = [torch.randn(64, 2, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    shared = [tmp_path / "shared" / f"m{k}.png" for k in range(3)]
    save_member_samples(points, spec, shared)
    for k, p in enumerate(points):
        alone = tmp_path / "alone" / f"m{k}.png"
        save_samples(p, spec, alone)
        assert shared[k].read_bytes() == alone.read_bytes()
    # Each member's file shows its own points: the three files differ.
    assert len({path.read_bytes() for path in shared}) == 3
    assert sorted(x.name for x in (tmp_path / "shared").iterdir()) == ["m0.png", "m1.png", "m2.png"]


def test_run_csvs_keep_only_the_rows_up_to_the_resumed_step(tmp_path):
    """A resumed run trains the steps after its last checkpoint again: their rows in log.csv
    and fid_curve.csv are dropped, not written twice; fid_curve.csv exists (header only) as soon
    as a run that takes a FID curve starts."""
    from ganstudy.train import runfiles

    runfiles.start_fid_curve(tmp_path, 0)
    assert (tmp_path / "fid_curve.csv").read_text() == "step,fid,n_samples,dims\n"
    for step in (2, 4, 6):
        runfiles.append_fid(tmp_path, step, 10.0 / step, 70, 64)
    runfiles.start_fid_curve(tmp_path, 4)
    runfiles.append_fid(tmp_path, 6, 1.5, 70, 64)
    lines = (tmp_path / "fid_curve.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["step", "2", "4", "6"]
    assert lines[-1] == "6,1.5,70,64"


def test_a_resumed_run_gets_its_log_back_from_the_checkpoint(tmp_path):
    """The workflow removes a failed training job's declared outputs, log.csv among them: the
    checkpoint carries the rows up to its step, and the resumed run starts from those."""
    cfg = ring_config(steps=100, checkpoint_every=50, log_every=10, keep_checkpoints=True)
    run = tmp_path / "run"
    train(cfg, [0], [run], progress=False)
    first = list(csv.DictReader((run / "log.csv").open()))
    for name in ("final.pt", "metrics.json", "log.csv"):
        (run / name).unlink()
    ckpt.checkpoint_path(run, 100).unlink()
    train(cfg, [0], [run], progress=False)
    again = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in again] == list(range(10, 101, 10))
    assert again[:5] == first[:5]  # the rows up to step 50 as written then (same wall clock)
    for before, after in zip(first, again):
        assert before["loss_d"] == after["loss_d"] and before["loss_g"] == after["loss_g"]
    # A finished run asked again trains nothing and gets a removed log.csv back from final.pt.
    (run / "log.csv").unlink()
    train(cfg, [0], [run], progress=False)
    assert list(csv.DictReader((run / "log.csv").open())) == again
