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

import contextlib
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganstudy import atomic, provenance, tracking
from ganstudy import checkpoint as ckpt
from ganstudy.config import ConfigError, RunConfig
from ganstudy.data import DATASETS, make_stream
from ganstudy.layers import BatchNorm, init_members
from ganstudy.losses import build_loss, gradient_penalty
from ganstudy.nets import build_pair

LOG_FIELDS = [
    "step", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_g", "grad_norm_d",
    "member_images_per_s", "wall_s",
]  # fmt: skip
SAMPLE_GRID = 64


@dataclass(frozen=True)
class MemberSeeds:
    """Independent seeds of one member's random streams, derived from its run seed."""

    init: int
    noise: int
    data: int
    sample: int

    @classmethod
    def from_seed(cls, seed: int) -> MemberSeeds:
        words = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint32)
        return cls(*(int(w) for w in words))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("key 'train.device': 'cuda' is not available here; allowed: auto, cpu")
    return torch.device(name)


def init_networks(cfg: RunConfig, seeds: list[int], device: torch.device):
    """The (G, D) ensemble, member k initialised from its own generator (on the CPU, so the
    initial weights do not depend on the device)."""
    spec = DATASETS[cfg.dataset.name]
    generator, discriminator = build_pair(cfg, len(seeds), spec.shape)
    for k, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(MemberSeeds.from_seed(seed).init)
        init_members(generator, k, gen)
        init_members(discriminator, k, gen)
    return generator.to(device), discriminator.to(device)


@contextlib.contextmanager
def sampling(generator: torch.nn.Module):
    """Draw from G as it trains (batch statistics) without touching its running statistics."""
    layers = [m for m in generator.modules() if isinstance(m, BatchNorm)]
    for layer in layers:
        layer.update_stats = False
    try:
        with torch.no_grad():
            yield
    finally:
        for layer in layers:
            layer.update_stats = True


def draw_noise(out: Tensor, generators: list[torch.Generator], dist: str) -> Tensor:
    """Fill out[k] from member k's generator: N(0, 1) or U(-1, 1)."""
    for k, gen in enumerate(generators):
        if dist == "normal":
            out[k].normal_(generator=gen)
        else:
            out[k].uniform_(-1.0, 1.0, generator=gen)
    return out


def _norms(grads: tuple[Tensor, ...]) -> Tensor:
    """Per-member L2 norm over all parameters: sqrt(sum_p ||grad_p[k]||^2)."""
    # (K, P) rows reduced along their contiguous dimension: the same rounding for any K.
    per_param = torch.stack([g.detach().flatten(1).square().sum(1) for g in grads], dim=1)
    return per_param.sum(1).sqrt()


def _apply(params: list[Tensor], grads: tuple[Tensor, ...], optimizer, frozen: Tensor | None):
    for p, g in zip(params, grads):
        p.grad = g
    if frozen is not None:
        # Zero gradient and first moment: Adam's update m_hat / (sqrt(v_hat) + eps) is then 0.
        keep_shape = [(-1,) + (1,) * (p.dim() - 1) for p in params]
        for p, shape in zip(params, keep_shape):
            alive = ~frozen.view(shape)
            p.grad = torch.where(alive, p.grad, torch.zeros((), device=p.device))
            state = optimizer.state.get(p)
            if state:
                state["exp_avg"].mul_(alive)
    optimizer.step()


def _same_run(stored: dict, wanted: dict) -> list[str]:
    """Keys whose values differ between two configs (tracking settings may change)."""
    a = tracking.flatten({k: v for k, v in stored.items() if k != "tracking"})
    b = tracking.flatten({k: v for k, v in wanted.items() if k != "tracking"})
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class Progress:
    """tqdm on a terminal, plain lines at most every ``every_s`` seconds otherwise."""

    def __init__(self, total: int, initial: int, label: str, every_s: float = 15.0):
        self.total, self.label, self.every_s = total, label, every_s
        self.bar = None
        self._last = 0.0
        self._t0, self._s0 = time.monotonic(), initial
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=label, unit="step", dynamic_ncols=True
            )

    def update(self, step: int, n: int, info: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in info.items()}, refresh=False)
            return
        now = time.monotonic()
        if now - self._last < self.every_s and step < self.total:
            return
        self._last = now
        rate = (step - self._s0) / max(now - self._t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        values = " ".join(f"{k} {v:.4g}" for k, v in info.items())
        print(
            f"[{self.label}] step {step}/{self.total} ({100 * step / self.total:.0f}%) {values} "
            f"{rate:.1f} steps/s ETA {eta / 60:.1f} min",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
            torch.device(device) if device is not None else resolve_device(cfg.train.device)
        )
        self.progress_enabled = progress
        self.flush_seconds = flush_seconds
        self.spec = DATASETS[cfg.dataset.name]
        self.member_cfgs = [cfg.with_seed(s) for s in seeds]
        self._check_existing()

        self.G, self.D = init_networks(cfg, seeds, self.device)
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
        member_seeds = [MemberSeeds.from_seed(s) for s in seeds]
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
            from ganstudy.fid import TrainingFID

            self.fid = TrainingFID(
                cfg.dataset.name,
                cfg.dataset.data_root,
                t.fid_samples,
                dims=t.fid_dims,
                device=self.device,
                mirror=cfg.dataset.mirror,
            )

    # -- state -------------------------------------------------------------------------------

    def _check_existing(self) -> None:
        for run_dir, member_cfg in zip(self.run_dirs, self.member_cfgs):
            stored = run_dir / "config.yaml"
            if stored.is_file():
                import yaml

                diff = _same_run(yaml.safe_load(stored.read_text()), member_cfg.to_dict())
                if diff:
                    raise ConfigError(
                        f"{run_dir} already holds a run with a different config (keys: "
                        f"{', '.join(diff)}); use another output directory"
                    )

    def _member_checkpoint(self, k: int, status: str) -> dict:
        return {
            "format": ckpt.FORMAT,
            "config": self.member_cfgs[k].to_dict(),
            "seed": self.seeds[k],
            "step": self.step,
            "status": status,
            "diverged_step": self.diverged_step[k],
            "wall_time_s": self.wall_before + (time.monotonic() - self._t_start),
            "generator": ckpt.member_module_state(self.G, k),
            "discriminator": ckpt.member_module_state(self.D, k),
            "opt_g": ckpt.member_optimizer_state(self.opt_g, k),
            "opt_d": ckpt.member_optimizer_state(self.opt_d, k),
            # The run's MLflow identity travels with its state: a resumed run continues the same
            # MLflow run even where metrics.json was removed (e.g. by a workflow rerun).
            "mlflow": {"run_id": self.mlflow_ids[k], "tracking_uri": self.tracking_uri},
            "rng": {
                "noise": self.noise_gens[k].get_state(),
                "data": self.stream.state_dict(k),
            },
        }

    def save_checkpoint(self) -> None:
        for k, run_dir in enumerate(self.run_dirs):
            ckpt.atomic_save(
                self._member_checkpoint(k, "running"), ckpt.checkpoint_path(run_dir, self.step)
            )
        for run_dir in self.run_dirs:
            ckpt.prune(run_dir)

    def _resume_step(self) -> int | None:
        common = set(ckpt.available_steps(self.run_dirs[0]))
        for run_dir in self.run_dirs[1:]:
            common &= set(ckpt.available_steps(run_dir))
        return max(common) if common else None

    def load_checkpoint(self, step: int) -> None:
        members = [ckpt.load(ckpt.checkpoint_path(d, step)) for d in self.run_dirs]
        self.G.load_state_dict(ckpt.stack_module_states([m["generator"] for m in members]))
        self.D.load_state_dict(ckpt.stack_module_states([m["discriminator"] for m in members]))
        self.opt_g.load_state_dict(ckpt.stack_optimizer_states([m["opt_g"] for m in members]))
        self.opt_d.load_state_dict(ckpt.stack_optimizer_states([m["opt_d"] for m in members]))
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

    def _penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        shape = real.shape[:2] + (1,) * (real.dim() - 2)
        eps = torch.empty(shape, device=self.device)
        for k, gen in enumerate(self.noise_gens):
            eps[k].uniform_(generator=gen)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x_hat).sum(), x_hat, create_graph=True)
        return self.cfg.loss.gp_lambda * gradient_penalty(grad, real.dim() - 2)

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
                loss_d = loss_d + self._penalty(real, fake)
            grads_d = torch.autograd.grad(loss_d.sum(), self.d_params)
            d_total = d_total + loss_d.detach()
            if frozen is not None:
                frozen = frozen | ~torch.isfinite(loss_d.detach())
            _apply(self.d_params, grads_d, self.opt_d, frozen)
        d_fake_g = self.D(self.G(self._noise()))
        loss_g = self.g_loss(d_fake_g)
        grads_g = torch.autograd.grad(loss_g.sum(), self.g_params)
        if frozen is not None:
            frozen = frozen | ~torch.isfinite(loss_g.detach())
        _apply(self.g_params, grads_g, self.opt_g, frozen)
        losses = torch.stack([d_total, loss_g.detach()], dim=-1)
        if not want_stats:
            return losses, None, frozen
        stats = torch.stack(
            [
                loss_d.detach(), loss_g.detach(),
                d_real.detach().mean(-1), d_fake.detach().mean(-1),
                _norms(grads_g), _norms(grads_d),
            ],
            dim=-1,
        )  # fmt: skip
        return losses, stats, frozen

    # -- outputs -------------------------------------------------------------------------------

    def _metrics_path(self, k: int) -> Path:
        return self.run_dirs[k] / "metrics.json"

    def _status(self, k: int, finished: bool) -> str:
        if self.diverged_step[k] is not None:
            return "diverged"
        return "completed" if finished else "running"

    def _metrics(self, k: int, finished: bool) -> dict:
        data = {
            "status": self._status(k, finished),
            "steps": self.step,
            "steps_planned": self.total_steps,
            "diverged_step": self.diverged_step[k],
            "wall_time_s": round(self.wall_before + time.monotonic() - self._t_start, 3),
            "seed": self.seeds[k],
            "member_index": k,
            "ensemble_size": self.K,
            "ensemble_seeds": self.seeds,
            "device": str(self.device),
            "device_name": provenance.device_name(self.device),
            "mlflow_run_id": self.mlflow_ids[k],
            "mlflow_tracking_uri": self.tracking_uri,
            "mlflow_experiment": self.cfg.tracking.experiment
            if self.cfg.tracking.enabled
            else None,
            "mlflow_experiment_id": self.experiment_id,
            "versions": self.versions,
        }
        data.update(_log_summary(self.run_dirs[k] / "log.csv"))
        return data

    def _open_logs(self) -> None:
        self.log_files = []
        for run_dir in self.run_dirs:
            path = run_dir / "log.csv"
            rows = []
            if path.is_file():
                with path.open() as handle:
                    rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= self.step]
            tmp = path.with_name(".log.csv.tmp")
            with tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, LOG_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, path)
            self.log_files.append(path.open("a", newline=""))
        self.log_writers = [csv.DictWriter(f, LOG_FIELDS) for f in self.log_files]

    def _start_tracking(self) -> None:
        self.mlflow_ids: list[str | None] = [None] * self.K
        self.trackers: list[tracking.RunTracker | None] = [None] * self.K
        self.tracking_uri = self.experiment_id = None
        if not self.cfg.tracking.enabled:
            return
        self.tracking_uri = tracking.resolve_uri(self.cfg.tracking.uri)
        self.experiment_id = tracking.init_store(self.tracking_uri, self.cfg.tracking.experiment)
        for k in range(self.K):
            previous = None
            stored = self._resumed_mlflow[k]
            metrics = self._metrics_path(k)
            if metrics.is_file():
                data = json.loads(metrics.read_text())
                stored = {
                    "run_id": data.get("mlflow_run_id"),
                    "tracking_uri": data.get("mlflow_tracking_uri"),
                }
            if stored.get("tracking_uri") == self.tracking_uri:
                previous = stored.get("run_id")
            tracker = tracking.RunTracker(self.tracking_uri, self.experiment_id, self.flush_seconds)
            name = self.cfg.tracking.run_name or run_name(self.member_cfgs[k])
            self.mlflow_ids[k] = tracker.start(
                previous, name, self.member_cfgs[k].to_dict(), self._tags(k)
            )
            self.trackers[k] = tracker

    def _tags(self, k: int) -> dict[str, str]:
        c = self.member_cfgs[k]
        tags = {
            "study": c.tracking.experiment,
            "dataset": c.dataset.name,
            "arch": c.arch.name,
            "loss": c.loss.name,
            "bn": f"g{int(c.arch.bn.g)}-d{int(c.arch.bn.d)}",
            "bn_g": str(c.arch.bn.g),
            "bn_d": str(c.arch.bn.d),
            "seed": str(c.seed),
            "status": "running",
            "run_dir": str(self.run_dirs[k].resolve()),
            "ensemble_size": str(self.K),
            "device": str(self.device),
        }
        tags.update({f"version.{k2}": str(v) for k2, v in self.versions.items()})
        tags.update(c.tracking.tags)
        return tags

    def _save_samples(self) -> None:
        with sampling(self.G):
            samples = self.G(self.sample_z).float().cpu()
        for k, run_dir in enumerate(self.run_dirs):
            if self.diverged_step[k] is not None:
                continue
            save_samples(samples[k], self.spec, run_dir / "samples" / f"step_{self.step:08d}.png")

    def generate_all(self, n: int) -> Tensor:
        """n samples of every member, (K, n, *sample_shape) on the CPU, from fixed noise."""
        gens = [
            torch.Generator(device=self.device).manual_seed(MemberSeeds.from_seed(s).sample + 1)
            for s in self.seeds
        ]
        batch = self.cfg.train.batch_size
        out = []
        with sampling(self.G):
            for start in range(0, n, batch):
                z = torch.empty(self.K, batch, self.cfg.arch.z_dim, device=self.device)
                draw_noise(z, gens, self.cfg.arch.z_dist)
                out.append(self.G(z)[:, : n - start].float().cpu())
        return torch.cat(out, dim=1)

    def _track_fid(self) -> None:
        samples = self.generate_all(self.cfg.train.fid_samples)
        for k, run_dir in enumerate(self.run_dirs):
            if self.diverged_step[k] is not None:
                continue
            value = float(self.fid(samples[k]))
            path = run_dir / "fid_curve.csv"
            new = not path.exists()
            with path.open("a") as handle:
                if new:
                    handle.write("step,fid,n_samples,dims\n")
                handle.write(f"{self.step},{value},{self.fid.n_samples},{self.fid.dims}\n")
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
            (run_dir / "config.yaml").write_text(member_cfg.to_yaml())
        self._resumed_mlflow = [{} for _ in range(self.K)]
        resume = self._resume_step()
        if resume is not None:
            self.load_checkpoint(resume)
            print(
                f"[{run_name(self.cfg)}] resuming from step {resume}", file=sys.stderr, flush=True
            )
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
            Progress(self.total_steps, self.step, run_name(self.cfg))
            if self.progress_enabled
            else None
        )
        last_log_step, last_log_time = self.step, time.monotonic()
        status = "FAILED"
        try:
            while self.step < self.total_steps and not all(frozen_host):
                log_now = (self.step + 1) % t.log_every == 0 or self.step + 1 == self.total_steps
                losses, stats, frozen = self.train_step(self.step * t.d_steps, frozen, log_now)
                history[self.step - last_log_step].copy_(losses)
                self.step += 1
                if log_now:
                    now = time.monotonic()
                    rate = (
                        (self.step - last_log_step) * t.batch_size * self.K / (now - last_log_time)
                    )
                    self._log(
                        history[: self.step - last_log_step],
                        last_log_step,
                        stats,
                        rate,
                        frozen_host,
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
        return self._finish()

    def _finished(self, k: int) -> bool:
        path = self._metrics_path(k)
        if not path.is_file() or not (self.run_dirs[k] / "final.pt").is_file():
            return False
        return json.loads(path.read_text()).get("status") in ("completed", "diverged")

    def _log(
        self, history: Tensor, first_step: int, stats: Tensor, rate: float, frozen_host: list[bool]
    ):
        """Record divergence (the first non-finite step of each member) and write log rows."""
        history = history.cpu()
        stats = stats.cpu()
        finite = torch.isfinite(history).all(dim=-1)  # (steps, K)
        wall = round(self.wall_before + time.monotonic() - self._t_start, 3)
        for k in range(self.K):
            if frozen_host[k]:
                continue
            bad = (~finite[:, k]).nonzero()
            if len(bad):
                self.diverged_step[k] = first_step + int(bad[0]) + 1
                frozen_host[k] = True
            row = dict(zip(LOG_FIELDS[1:7], stats[k].tolist()))
            row.update(step=self.step, member_images_per_s=round(rate, 2), wall_s=wall)
            self.log_writers[k].writerow(row)
            self.log_files[k].flush()
            if self.trackers[k] is not None:
                metrics = {key: row[key] for key in LOG_FIELDS[1:8]}
                self.trackers[k].log_metrics(
                    self.step, {m: v for m, v in metrics.items() if math.isfinite(v)}
                )

    def _finish(self) -> list[dict]:
        if not ckpt.checkpoint_path(self.run_dirs[0], self.step).is_file():
            self.save_checkpoint()
        if self.step % self.cfg.train.sample_every != 0:
            self._save_samples()
        results = []
        for k, run_dir in enumerate(self.run_dirs):
            status = self._status(k, finished=True)
            ckpt.atomic_save(self._member_checkpoint(k, status), run_dir / "final.pt")
            metrics = self._metrics(k, finished=True)
            atomic.write_json(self._metrics_path(k), metrics)
            tracker = self.trackers[k]
            if tracker is not None:
                tracker.set_tags({"status": status})
                tracker.log_artifacts(
                    [
                        run_dir / "config.yaml",
                        run_dir / "metrics.json",
                        run_dir / "log.csv",
                        run_dir / "samples",
                    ]
                )
                tracker.finish("FINISHED")
            results.append(metrics)
        return results


def _log_summary(path: Path) -> dict:
    """Gradient-norm summary of G and the last logged values, from a run's log.csv."""
    if not path.is_file():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    norms = np.array([float(r["grad_norm_g"]) for r in rows])
    finite = norms[np.isfinite(norms)]
    summary = None
    if len(finite):
        summary = {
            "mean": float(finite.mean()),
            "median": float(np.median(finite)),
            "max": float(finite.max()),
            "final": float(norms[-1]),
        }
    last = {k: float(rows[-1][k]) for k in ("loss_d", "loss_g", "d_real", "d_fake")}
    return {"grad_norm_g": summary, "last": last}


def run_name(cfg: RunConfig) -> str:
    bn = f"bn-g{int(cfg.arch.bn.g)}-d{int(cfg.arch.bn.d)}"
    return f"{cfg.dataset.name}/{cfg.arch.name}/{cfg.loss.name}/{bn}/seed{cfg.seed}"


def save_samples(samples: Tensor, spec, path: Path) -> None:
    """A sample grid (images) or a scatter over the true modes (2D), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    if spec.kind == "image":
        from torchvision.utils import save_image

        save_image(samples.clamp(-1, 1) * 0.5 + 0.5, tmp, nrow=8)
    else:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ganstudy.data import mixture_means

        means = mixture_means(spec.name)
        fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
        ax.scatter(means[:, 0], means[:, 1], c="red", s=20, marker="x", label="modes")
        points = samples.numpy()
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
        lim = float(means.abs().max()) * 1.5
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        fig.tight_layout()
        fig.savefig(tmp)
        plt.close(fig)
    os.replace(tmp, path)


def train(
    cfg: RunConfig,
    seeds: list[int],
    run_dirs: list[str | Path],
    device=None,
    progress: bool = True,
) -> list[dict]:
    """Train (or resume) the runs of ``cfg`` for ``seeds``; returns each member's metrics.json."""
    return Trainer(cfg, seeds, run_dirs, device=device, progress=progress).run()


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part.strip()[1:]:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


def _cli(args) -> int:
    import yaml

    from ganstudy import config as config_mod

    if args.config and not Path(args.config).is_file():
        raise ConfigError(f"config file {args.config} does not exist")
    data = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    cfg = config_mod.from_dict(config_mod.override(data or {}, args.set or []))
    seeds = _parse_seeds(args.seeds) if args.seeds else [cfg.seed]
    if len(seeds) > 1 and "{seed}" not in args.out:
        raise ConfigError(
            f"--out {args.out!r}: with several seeds, --out must contain '{{seed}}' "
            "(one run directory per seed)"
        )
    run_dirs = [Path(args.out.format(seed=s)) for s in seeds]
    results = train(cfg, seeds, run_dirs, device=args.device, progress=not args.quiet)
    for seed, res in zip(seeds, results):
        print(
            f"seed {seed}: {res['status']} after {res['steps']} steps -> {run_dirs[seeds.index(seed)]}"
        )
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one run (or several seeds of one variant as one batched ensemble)",
        description="Train a GAN run described by a YAML config; resumes from DIR's last checkpoint.",
    )
    p.add_argument("--config", help="run config (YAML); every key has a default")
    p.add_argument(
        "--out", required=True, help="run directory; with several seeds a pattern with {seed}"
    )
    p.add_argument(
        "--seeds",
        help="train these seeds as one ensemble, e.g. '0-15' or '0,3,7' (default: the config's seed)",
    )
    p.add_argument(
        "--set", nargs="*", metavar="KEY=VALUE", help="override config keys, e.g. train.steps=500"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="override train.device")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cli)
