"""The training engine: K seeds of one variant trained at once, each member a complete run.

A run is one dataset x arch x loss x batch-norm setting x seed. The engine trains an ensemble of
K >= 1 members (K = 1 is a solo run) whose parameters carry a leading member dimension, with one
random stream per member for initialisation, noise and data order, so member k follows the
trajectory of a solo run with the same seed. Each member writes its own run directory.

Per step: ``d_steps`` discriminator updates, then one generator update, Adam for both. Losses
are per member; their sum is differentiated, which gives every member exactly its own gradient.
A member whose losses become non-finite is recorded as diverged (at the first non-finite step)
and frozen: its gradients and first moments are zeroed, so Adam leaves it where it is, while the
others go on. When every member has diverged the run ends. Diverging is an outcome, not a crash.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from ganstudy import atomic, layout, provenance
from ganstudy import checkpoint as ckpt
from ganstudy.config import RunConfig
from ganstudy.data import registry
from ganstudy.data.streams import make_stream
from ganstudy.errors import CheckpointError, ConfigError
from ganstudy.losses import build_loss
from ganstudy.sample import draw_noise, generate_members, sampling, save_samples
from ganstudy.train import runfiles
from ganstudy.train import step as step_maths
from ganstudy.train.progress import Progress
from ganstudy.train.signals import StopRequest

SAMPLE_GRID = 64


class Trainer:
    """Trains the members ``seeds`` of the variant ``cfg``; member k writes ``run_dirs[k]``."""

    def __init__(
        self,
        cfg: RunConfig,
        seeds: list[int],
        run_dirs: list[str | Path],
        device: str | torch.device | None = None,
        progress: bool = True,
        flush_seconds: float = 30.0,
    ):
        if len(seeds) != len(run_dirs) or not seeds:
            raise ValueError("give one run directory per seed")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds {seeds} repeat a seed; every member needs its own seed")
        self.cfg = cfg
        self.seeds = list(seeds)
        self.run_dirs = [Path(d) for d in run_dirs]
        self.K = len(seeds)
        self.device = (
            torch.device(device)
            if device is not None
            else step_maths.resolve_device(cfg.train.device)
        )
        self.progress_enabled = progress
        self.flush_seconds = flush_seconds
        self.spec = registry.dataset(cfg.dataset.name)
        self.member_cfgs = [cfg.with_seed(s) for s in seeds]
        self._check_existing()

        self.G, self.D = step_maths.init_networks(cfg, seeds, self.device)
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
        member_seeds = [step_maths.MemberSeeds.from_seed(s) for s in seeds]
        self.noise_gens = [
            torch.Generator(device=self.device).manual_seed(m.noise) for m in member_seeds
        ]
        data_gens = [torch.Generator(device=self.device).manual_seed(m.data) for m in member_seeds]
        self.stream = make_stream(cfg, data_gens, [m.data for m in member_seeds], self.device)
        if t.steps is not None:
            self.total_steps = t.steps
        else:
            self.total_steps = math.ceil(t.epochs * self.stream.batches_per_epoch / t.d_steps)
        self.d_loss, self.g_loss, self.needs_gp = build_loss(cfg.loss)
        self.sample_z = torch.empty(self.K, SAMPLE_GRID, cfg.arch.z_dim, device=self.device)
        draw_noise(
            self.sample_z,
            [torch.Generator(device=self.device).manual_seed(m.sample) for m in member_seeds],
            cfg.arch.z_dist,
        )
        self.step = 0
        self.diverged_step: list[int | None] = [None] * self.K
        self.wall_before = 0.0
        self.g_params = list(self.G.parameters())
        self.d_params = list(self.D.parameters())
        self.fid = None
        if t.fid_every > 0 and self.spec.kind == "image":
            from ganstudy.metrics.fid import TrainingFID  # Inception only where it is used

            self.fid = TrainingFID(
                cfg.dataset.name,
                cfg.dataset.data_root,
                t.fid_samples,
                dims=t.fid_dims,
                device=self.device,
                mirror=cfg.dataset.mirror,
            )

    @property
    def _name(self) -> str:
        return layout.RunKey.of_config(self.cfg).name

    # -- state -------------------------------------------------------------------------------

    def _check_existing(self) -> None:
        for run_dir, member_cfg in zip(self.run_dirs, self.member_cfgs):
            runfiles.check_same_run(run_dir, member_cfg.to_dict())

    def _member_checkpoint(self, k: int, status: str) -> dict:
        return ckpt.member_checkpoint(
            k,
            {"generator": self.G, "discriminator": self.D},
            {"opt_g": self.opt_g, "opt_d": self.opt_d},
            config=self.member_cfgs[k].to_dict(),
            seed=self.seeds[k],
            step=self.step,
            status=status,
            diverged_step=self.diverged_step[k],
            wall_time_s=self.wall_before + (time.monotonic() - self._t_start),
            # The run's MLflow identity travels with its state: a resumed run continues the same
            # MLflow run even where metrics.json was removed (e.g. by a workflow rerun).
            mlflow={"run_id": self.mlflow_ids[k], "tracking_uri": self.tracking_uri},
            rng={"noise": self.noise_gens[k].get_state(), "data": self.stream.state_dict(k)},
        )

    def save_checkpoint(self) -> None:
        for k, run_dir in enumerate(self.run_dirs):
            ckpt.atomic_save(
                self._member_checkpoint(k, "running"), ckpt.checkpoint_path(run_dir, self.step)
            )
        for run_dir in self.run_dirs:
            ckpt.prune(run_dir)

    def _resume_step(self) -> int | None:
        """The newest checkpoint step that every member holds (None: start from scratch)."""
        steps = ckpt.common_steps(self.run_dirs)
        return steps[-1] if steps else None

    def _resume(self) -> int | None:
        """Load the newest step that every member has a good checkpoint of; an unusable file
        is moved aside (``*.corrupt``) with a warning and the previous step is tried. Returns
        the step (None: no checkpoint, start from scratch)."""
        skipped = []
        for step in reversed(ckpt.common_steps(self.run_dirs)):
            try:
                self.load_checkpoint(step)
                return step
            except CheckpointError as err:
                moved = ckpt.move_aside(err.path)
                skipped.append(f"{err} (moved to {moved.name})")
                print(
                    f"[{self._name}] warning: skipping the checkpoint of step {step}: {err}; "
                    f"moved to {moved}; trying the previous one",
                    file=sys.stderr,
                    flush=True,
                )
        if skipped:
            raise CheckpointError(
                "no checkpoint of this run can be used: "
                + "; ".join(skipped)
                + ". Remove the run directories to train from scratch."
            )
        return None

    def load_checkpoint(self, step: int) -> None:
        members = ckpt.load_members(
            [ckpt.checkpoint_path(d, step) for d in self.run_dirs],
            {"generator": self.G, "discriminator": self.D},
            {"opt_g": self.opt_g, "opt_d": self.opt_d},
        )
        for k, m in enumerate(members):
            self.noise_gens[k].set_state(m["rng"]["noise"])
            self.stream.load_state_dict(k, m["rng"]["data"])
            self.diverged_step[k] = m["diverged_step"]
        self.step = step
        self.wall_before = max(m["wall_time_s"] for m in members)
        self._resumed_mlflow = [m.get("mlflow", {}) for m in members]

    # -- one step ------------------------------------------------------------------------------

    def _noise(self) -> Tensor:
        z = torch.empty(self.K, self.cfg.train.batch_size, self.cfg.arch.z_dim, device=self.device)
        return draw_noise(z, self.noise_gens, self.cfg.arch.z_dist)

    def train_step(self, batch_index: int, frozen: Tensor | None, want_stats: bool):
        """One generator step (after ``d_steps`` discriminator steps).

        ``frozen`` (ensembles only) is the device-side mask of diverged members; a member whose
        loss is non-finite in this step is added to it before its update is applied, so its
        weights keep their last finite values. Returns (losses, stats, frozen).
        """
        # Divergence is judged on the sum of the step's D losses: non-finite if any of them is.
        d_total = 0.0
        for i in range(self.cfg.train.d_steps):
            real = self.stream.batch(batch_index + i)
            with torch.no_grad():
                fake = self.G(self._noise())
            d_real, d_fake = self.D(real), self.D(fake)
            loss_d = self.d_loss(d_real, d_fake)
            if self.needs_gp:
                loss_d = loss_d + step_maths.penalty(
                    self.D, real, fake, self.noise_gens, self.cfg.loss.gp_lambda
                )
            grads_d = torch.autograd.grad(loss_d.sum(), self.d_params)
            d_total = d_total + loss_d.detach()
            if frozen is not None:
                frozen = frozen | ~torch.isfinite(loss_d.detach())
            step_maths.apply_update(self.d_params, grads_d, self.opt_d, frozen)
        d_fake_g = self.D(self.G(self._noise()))
        loss_g = self.g_loss(d_fake_g)
        grads_g = torch.autograd.grad(loss_g.sum(), self.g_params)
        if frozen is not None:
            frozen = frozen | ~torch.isfinite(loss_g.detach())
        step_maths.apply_update(self.g_params, grads_g, self.opt_g, frozen)
        losses = torch.stack([d_total, loss_g.detach()], dim=-1)
        if not want_stats:
            return losses, None, frozen
        stats = torch.stack(
            [
                loss_d.detach(), loss_g.detach(),
                d_real.detach().mean(-1), d_fake.detach().mean(-1),
                step_maths.norms(grads_g), step_maths.norms(grads_d),
            ],
            dim=-1,
        )  # fmt: skip
        return losses, stats, frozen

    # -- outputs -------------------------------------------------------------------------------

    def _metrics_path(self, k: int) -> Path:
        return self.run_dirs[k] / layout.METRICS

    def _status(self, k: int, finished: bool, interrupted: bool = False) -> str:
        if self.diverged_step[k] is not None:
            return "diverged"
        if finished:
            return "completed"
        return "interrupted" if interrupted else "running"

    def _metrics(self, k: int, finished: bool, stop: StopRequest | None = None) -> dict:
        extra = {}
        if stop is not None:
            extra = {"interrupted_step": self.step, "signal": stop.name}
        return runfiles.metrics_record(
            self.run_dirs[k],
            status=self._status(k, finished, interrupted=stop is not None),
            steps=self.step,
            steps_planned=self.total_steps,
            diverged_step=self.diverged_step[k],
            wall_time_s=round(self.wall_before + time.monotonic() - self._t_start, 3),
            seed=self.seeds[k],
            member_index=k,
            ensemble_seeds=self.seeds,
            device=self.device,
            mlflow_run_id=self.mlflow_ids[k],
            tracking_uri=self.tracking_uri,
            experiment=self.cfg.tracking.experiment if self.cfg.tracking.enabled else None,
            experiment_id=self.experiment_id,
            versions=self.versions,
            tracking_failure=self._tracking_failure_of(k),
            **extra,
        )

    def _tracking_failure_of(self, k: int) -> str | None:
        tracker = self.trackers[k]
        return tracker.failure if tracker is not None else self._tracking_failure

    def _open_logs(self) -> None:
        opened = [runfiles.open_log(run_dir, self.step) for run_dir in self.run_dirs]
        self.log_files = [handle for handle, _ in opened]
        self.log_writers = [writer for _, writer in opened]

    def _start_tracking(self) -> None:
        started = runfiles.start_tracking(
            self.member_cfgs,
            self.run_dirs,
            self._resumed_mlflow,
            self.device,
            self.versions,
            self.flush_seconds,
        )
        self.tracking_uri, self.experiment_id, self.mlflow_ids, self.trackers = started[:4]
        self._tracking_failure = started[4]

    def _save_samples(self) -> None:
        with sampling(self.G):
            samples = self.G(self.sample_z).float().cpu()
        for k, run_dir in enumerate(self.run_dirs):
            if self.diverged_step[k] is not None:
                continue
            save_samples(
                samples[k], self.spec, run_dir / layout.SAMPLES / f"step_{self.step:08d}.png"
            )

    def generate_all(self, n: int) -> Tensor:
        """n samples of every member, (K, n, *sample_shape) on the CPU, from fixed noise."""
        seeds = [step_maths.MemberSeeds.from_seed(s).sample + 1 for s in self.seeds]
        return generate_members(self.G, self.cfg, seeds, n, self.device)

    def _track_fid(self) -> None:
        samples = self.generate_all(self.cfg.train.fid_samples)
        for k, run_dir in enumerate(self.run_dirs):
            if self.diverged_step[k] is not None:
                continue
            value = float(self.fid(samples[k]))
            runfiles.append_fid(run_dir, self.step, value, self.fid.n_samples, self.fid.dims)
            if self.trackers[k] is not None:
                self.trackers[k].log_metrics(self.step, {"fid_train": value})

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> list[dict]:
        self._t_start = time.monotonic()
        done = [self._finished(k) for k in range(self.K)]
        if all(done):
            return [json.loads(self._metrics_path(k).read_text()) for k in range(self.K)]
        for run_dir, member_cfg in zip(self.run_dirs, self.member_cfgs):
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic.write_text(run_dir / layout.CONFIG, member_cfg.to_yaml())
        self._resumed_mlflow = [{} for _ in range(self.K)]
        resume = self._resume()
        if resume is not None:
            print(f"[{self._name}] resuming from step {resume}", file=sys.stderr, flush=True)
        self.versions = provenance.versions()
        self._start_tracking()
        self._open_logs()
        for k in range(self.K):
            atomic.write_json(self._metrics_path(k), self._metrics(k, finished=False))
        t = self.cfg.train
        frozen_host = [s is not None for s in self.diverged_step]
        # Ensembles track divergence on the device every step (no host sync) so that a member
        # is frozen at its last finite state; a solo run simply ends at the next check.
        frozen = torch.tensor(frozen_host, device=self.device) if self.K > 1 else None
        history = torch.zeros(t.log_every, self.K, 2, device=self.device)
        progress = (
            Progress(self.total_steps, self.step, self._name) if self.progress_enabled else None
        )
        last_log_step, last_log_time = self.step, time.monotonic()
        status = "FAILED"
        stop = StopRequest(self._name)
        try:
            with stop:
                self._loop(
                    stop, progress, frozen, frozen_host, history, last_log_step, last_log_time
                )
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            for f in self.log_files:
                f.close()
            if progress is not None:
                progress.close()
            if status != "FINISHED":
                for tracker in self.trackers:
                    if tracker is not None:
                        tracker.finish(status)
        if stop.signal is not None and self.step < self.total_steps and not all(frozen_host):
            return self._interrupt(stop)
        return self._finish()

    def _loop(self, stop, progress, frozen, frozen_host, history, last_log_step, last_log_time):
        """Train until the planned step, until every member diverged, or until a stop signal
        (then the steps since the last log row are checked for divergence too)."""
        t = self.cfg.train
        while self.step < self.total_steps and not all(frozen_host):
            log_now = (self.step + 1) % t.log_every == 0 or self.step + 1 == self.total_steps
            losses, stats, frozen = self.train_step(self.step * t.d_steps, frozen, log_now)
            history[self.step - last_log_step].copy_(losses)
            self.step += 1
            if log_now:
                now = time.monotonic()
                rate = (self.step - last_log_step) * t.batch_size * self.K / (now - last_log_time)
                self._log(
                    history[: self.step - last_log_step], last_log_step, stats, rate, frozen_host
                )
                if progress is not None:
                    alive = [k for k in range(self.K) if not frozen_host[k]]
                    shown = stats[alive[0] if alive else 0].tolist()
                    progress.update(
                        self.step,
                        self.step - last_log_step,
                        {"loss_d": shown[0], "loss_g": shown[1]},
                    )
                last_log_step, last_log_time = self.step, now
            if self.step % t.sample_every == 0:
                self._save_samples()
            if self.fid is not None and self.step % t.fid_every == 0:
                self._track_fid()
            if self.step % t.checkpoint_every == 0 and self.step < self.total_steps:
                self.save_checkpoint()
                for k in range(self.K):
                    atomic.write_json(self._metrics_path(k), self._metrics(k, finished=False))
            if stop.signal is not None:
                self._record_divergence(
                    history[: self.step - last_log_step], last_log_step, frozen_host
                )
                return

    def _interrupt(self, stop: StopRequest) -> list[dict]:
        """After a stop signal: a checkpoint of every member at this step, metrics.json with
        ``"status": "interrupted"``, the MLflow runs ended as KILLED. The rerun resumes here."""
        if not ckpt.checkpoint_path(self.run_dirs[0], self.step).is_file():
            self.save_checkpoint()
        results = []
        for k in range(self.K):
            metrics = self._metrics(k, finished=False, stop=stop)
            atomic.write_json(self._metrics_path(k), metrics)
            if self.trackers[k] is not None:
                self.trackers[k].set_tags({"status": metrics["status"]})
                self.trackers[k].finish("KILLED")
            results.append(metrics)
        print(
            f"[{self._name}] stopped by {stop.name} at step {self.step} of {self.total_steps}: "
            "checkpoint written; run the same command again to resume from it",
            file=sys.stderr,
            flush=True,
        )
        return results

    def _finished(self, k: int) -> bool:
        path = self._metrics_path(k)
        if not path.is_file() or not (self.run_dirs[k] / layout.FINAL).is_file():
            return False
        return json.loads(path.read_text()).get("status") in ("completed", "diverged")

    def _record_divergence(self, history: Tensor, first_step: int, frozen_host: list[bool]):
        """Record the first non-finite step of each member in ``history`` (losses of the steps
        after ``first_step``) and mark it frozen."""
        finite = torch.isfinite(history.cpu()).all(dim=-1)  # (steps, K)
        for k in range(self.K):
            if frozen_host[k]:
                continue
            bad = (~finite[:, k]).nonzero()
            if len(bad):
                self.diverged_step[k] = first_step + int(bad[0]) + 1
                frozen_host[k] = True

    def _log(
        self, history: Tensor, first_step: int, stats: Tensor, rate: float, frozen_host: list[bool]
    ):
        """Record divergence (the first non-finite step of each member) and write log rows."""
        logged = [not frozen for frozen in frozen_host]
        self._record_divergence(history, first_step, frozen_host)
        stats = stats.cpu()
        wall = round(self.wall_before + time.monotonic() - self._t_start, 3)
        for k in range(self.K):
            if logged[k]:
                runfiles.write_log_row(
                    self.log_writers[k],
                    self.log_files[k],
                    self.trackers[k],
                    self.step,
                    stats[k].tolist(),
                    rate,
                    wall,
                )

    def _finish(self) -> list[dict]:
        if not ckpt.checkpoint_path(self.run_dirs[0], self.step).is_file():
            self.save_checkpoint()
        if self.step % self.cfg.train.sample_every != 0:
            self._save_samples()
        results = []
        for k, run_dir in enumerate(self.run_dirs):
            status = self._status(k, finished=True)
            ckpt.atomic_save(self._member_checkpoint(k, status), run_dir / layout.FINAL)
            metrics = self._metrics(k, finished=True)
            atomic.write_json(self._metrics_path(k), metrics)
            tracker = self.trackers[k]
            if tracker is not None:
                tracker.set_tags({"status": status})
                tracker.log_artifacts([run_dir / name for name in runfiles.ARTIFACTS])
                tracker.finish("FINISHED")
            results.append(metrics)
        return results


def train(
    cfg: RunConfig,
    seeds: list[int],
    run_dirs: list[str | Path],
    device=None,
    progress: bool = True,
) -> list[dict]:
    """Train (or resume) the runs of ``cfg`` for ``seeds``; returns each member's metrics.json."""
    return Trainer(cfg, seeds, run_dirs, device=device, progress=progress).run()
