"""The training engine: K seeds of one variant trained at once, each member a complete run.

A run is one dataset x arch x loss x batch-norm setting x seed. The engine trains an ensemble of
K >= 1 members (K = 1 is a solo run) whose parameters carry a leading member dimension, with one
random stream per member for initialisation, noise and data order, so member k follows the
trajectory of a solo run with the same seed. Each member writes its own run directory.

Per step: ``d_steps`` discriminator updates, then one generator update, with the run's optimizer
(Adam or RMSProp) and D's learning-rate schedule, per member. Losses are per member; their sum
is differentiated, which gives every member exactly its own gradient. A member whose losses
become non-finite is recorded as diverged (at the first non-finite step) and frozen: its
gradients and the optimizer state that carries its step's direction are zeroed, so the
optimizer leaves it where it is, while the others go on. When every member has diverged the run
ends. Diverging is an outcome, not a crash.

What both halves of a job use, the members' networks, optimizers, streams and step counter, is
one :class:`~ganstudy.train.state.TrainingState`; the run directories are written from it by
:class:`~ganstudy.train.outputs.RunOutputs`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor

from ganstudy import numerics, store
from ganstudy.config import RunConfig
from ganstudy.data import registry
from ganstudy.data.draws import ChunkedDraws, Part
from ganstudy.data.streams import make_stream
from ganstudy.errors import ConfigError
from ganstudy.losses import build_loss
from ganstudy.numerics import resolve_device
from ganstudy.sample import NOISE_KINDS, draw_noise
from ganstudy.train import runfiles, updates
from ganstudy.train import step as step_maths
from ganstudy.train.outputs import RunOutputs
from ganstudy.train.progress import Progress
from ganstudy.train.signals import StopRequest
from ganstudy.train.state import LoopState, TrainingState

SAMPLE_GRID = 64


class Trainer:
    """Trains the members ``seeds`` of the variant ``cfg``; member k writes ``run_dirs[k]``.

    The step and the loop are here; checkpoints, logs, metrics.json, samples and tracking are
    in :attr:`outputs`, which is given the :attr:`state` both share."""

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
        run_dirs = [Path(d) for d in run_dirs]
        device = (
            torch.device(device)
            if device is not None
            else resolve_device(cfg.train.device, key="key 'train.device':")
        )
        self.progress_enabled = progress
        spec = registry.dataset(cfg.dataset.name)
        member_cfgs = [cfg.with_seed(s) for s in seeds]
        for run_dir, member_cfg in zip(run_dirs, member_cfgs):
            runfiles.check_same_run(run_dir, member_cfg.to_dict())
        tracking_job = runfiles.open_tracking(cfg, flush_seconds)

        settings = numerics.apply(cfg.train, device)
        G, D = step_maths.init_networks(cfg, seeds, device)
        # The step calls these (compiled, or the networks themselves); sampling and checkpoints
        # use the eager networks, which own the same parameters.
        self.G_step = numerics.compiled(G, settings["compile"])
        self.D_step = numerics.compiled(D, settings["compile"])
        t = cfg.train
        capturable = settings["compile"] == "cudagraph"
        opt_g = updates.build_optimizer(G.parameters(), t.lr_g, t, capturable)
        opt_d = updates.build_optimizer(D.parameters(), t.lr_d, t, capturable)
        d_schedule = updates.build_schedule(cfg, len(seeds), device)
        self.direction = updates.direction_state(t)
        member_seeds = [step_maths.MemberSeeds.from_seed(s) for s in seeds]
        noise_gens = [torch.Generator(device=device).manual_seed(m.noise) for m in member_seeds]
        self.d_loss, self.g_loss, self.needs_gp = build_loss(cfg.loss)
        # The noise of every update of a step (and the penalty's mixing weights), drawn ahead
        # for all members: the step's calls do not grow with K (see ganstudy.data.draws).
        noise_parts = [
            Part("z", t.d_steps + 1, (t.batch_size, cfg.arch.z_dim), NOISE_KINDS[cfg.arch.z_dist])
        ]
        if self.needs_gp:
            noise_parts.append(Part("eps", t.d_steps, (t.batch_size,), "uniform"))
        noise_draws = ChunkedDraws(noise_gens, noise_parts, device)
        data_gens = [torch.Generator(device=device).manual_seed(m.data) for m in member_seeds]
        stream = make_stream(cfg, data_gens, [m.data for m in member_seeds], device)
        images = getattr(stream, "images", None)
        training_data = {
            "n_train": None if images is None else len(images),
            "batches_per_epoch": getattr(stream, "batches_per_epoch", None),
        }
        if t.steps is not None:
            total_steps = t.steps
        else:
            total_steps = math.ceil(t.epochs * stream.batches_per_epoch / t.d_steps)
        sample_z = torch.empty(len(seeds), SAMPLE_GRID, cfg.arch.z_dim, device=device)
        draw_noise(
            sample_z,
            [torch.Generator(device=device).manual_seed(m.sample) for m in member_seeds],
            cfg.arch.z_dist,
        )
        self.g_params = list(G.parameters())
        self.d_params = list(D.parameters())
        self.host_checks = device.type == "cpu"  # see _mask
        fid = None
        if t.fid_every > 0 and spec.kind == "image":
            from ganstudy.metrics.fid import TrainingFID  # Inception only where it is used

            fid = TrainingFID(
                cfg.dataset.name,
                cfg.dataset.data_root,
                t.fid_samples,
                dims=t.fid_dims,
                device=device,
                mirror=cfg.dataset.mirror,
            )
        self.state = TrainingState(
            cfg=cfg, seeds=list(seeds), run_dirs=run_dirs, member_cfgs=member_cfgs,
            device=device, spec=spec, numerics=settings, G=G, D=D, opt_g=opt_g, opt_d=opt_d,
            capturable=capturable, d_schedule=d_schedule, noise_draws=noise_draws,
            stream=stream, training_data=training_data, total_steps=total_steps,
            sample_z=sample_z, fid=fid,
        )  # fmt: skip
        self.outputs = RunOutputs(self.state, tracking_job)
        self.graph = None
        if capturable:
            from ganstudy.train.graph import GraphedStep

            self.graph = GraphedStep(self)

    # What callers outside the step read of a trainer; the state is the one place they live.

    @property
    def K(self) -> int:
        return self.state.K

    @property
    def device(self) -> torch.device:
        return self.state.device

    @property
    def run_dirs(self) -> list[Path]:
        return self.state.run_dirs

    @property
    def G(self) -> torch.nn.Module:
        return self.state.G

    @property
    def D(self) -> torch.nn.Module:
        return self.state.D

    @property
    def tracking(self):
        return self.outputs.tracking

    # -- one step ------------------------------------------------------------------------------

    def _mask(self, frozen: Tensor) -> Tensor | None:
        """The frozen mask an update applies, or None where no member is frozen and the host may
        look (``host_checks``): on the CPU reading the mask waits for nothing, and an update
        masked with every member alive is bitwise the unmasked one (where(alive, g, 0) = g,
        state x 1 = state), so skipping it changes no number and saves the masking's two calls
        per parameter (about 1 ms of a 12 ms mlp2d step on one thread). On a GPU, or in a CUDA
        graph, the mask is always applied: reading it would stall the launch queue."""
        if self.host_checks and not bool(frozen.any()):
            return None
        return frozen

    def step_inputs(self, step: int) -> dict:
        """What training step ``step`` reads: its real batches (a list of ``d_steps`` (K, B, ...)
        tensors) and its noise, ``z`` of shape (d_steps + 1, K, B, z_dim) and, for a gradient
        penalty, ``eps`` (d_steps, K, B)."""
        state = self.state
        t = self.cfg.train
        inputs = dict(state.noise_draws.at(step))
        inputs["real"] = [state.stream.batch(step * t.d_steps + i) for i in range(t.d_steps)]
        return inputs

    def train_step(self, step: int, frozen: Tensor, want_stats: bool):
        """Training step ``step``: ``d_steps`` discriminator updates, then one generator update.

        ``frozen`` is the device-side mask of diverged members (shape (K,)); a member whose
        loss is non-finite in this step is added to it before its update is applied, so its
        weights keep their last finite values. Returns (losses, stats, frozen); stats are None
        unless ``want_stats`` (a CUDA graph computes them every step).

        The same calls for any K and no host synchronisation: every member's numbers come from
        the chunk drawn ahead, and divergence stays on the device until the next log row.
        """
        if self.graph is not None:
            return self.graph(step, frozen)
        return self.step_body(self.step_inputs(step), frozen, want_stats)

    def step_body(self, inputs: dict, frozen: Tensor, want_stats: bool):
        """The step's arithmetic on ``inputs`` (see :meth:`step_inputs`), eager or captured."""
        state = self.state
        t = self.cfg.train
        noise = inputs
        # Divergence is judged on the sum of the step's D losses: non-finite if any of them is.
        d_total = 0.0
        for i in range(t.d_steps):
            real = inputs["real"][i]
            with torch.no_grad():
                fake = self.G_step(noise["z"][i])
            d_real, d_fake = self.D_step(real), self.D_step(fake)
            loss_d = self.d_loss(d_real, d_fake)
            if self.needs_gp:
                loss_d = loss_d + step_maths.penalty(
                    self.D_step, real, fake, noise["eps"][i], self.cfg.loss.gp_lambda
                )
            grads_d = torch.autograd.grad(loss_d.sum(), self.d_params)
            d_total = d_total + loss_d.detach()
            frozen = frozen | ~torch.isfinite(loss_d.detach())
            scale = state.d_schedule.factor(loss_d.detach()) if state.d_schedule else None
            step_maths.apply_update(
                self.d_params, grads_d, state.opt_d, self._mask(frozen), scale, self.direction
            )
        d_fake_g = self.D_step(self.G_step(noise["z"][t.d_steps]))
        loss_g = self.g_loss(d_fake_g)
        grads_g = torch.autograd.grad(loss_g.sum(), self.g_params)
        frozen = frozen | ~torch.isfinite(loss_g.detach())
        step_maths.apply_update(
            self.g_params, grads_g, state.opt_g, self._mask(frozen), None, self.direction
        )
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
        # D's effective learning rate, in double precision so that lr_d is logged as given.
        lr_d = torch.full_like(loss_g, self.cfg.train.lr_d, dtype=torch.float64)
        if scale is not None:
            lr_d = lr_d * scale
        return losses, torch.cat([stats.double(), lr_d.unsqueeze(-1)], dim=-1), frozen

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> list[dict]:
        state, outputs = self.state, self.outputs
        state.t_start = time.monotonic()
        if outputs.all_finished():
            return outputs.reopen_finished()
        outputs.start()
        t = self.cfg.train
        frozen_host = [s is not None for s in state.diverged_step]
        progress = (
            Progress(state.total_steps, state.step, state.name) if self.progress_enabled else None
        )
        loop = LoopState(
            stop=StopRequest(state.name),
            progress=progress,
            # Divergence is tracked on the device every step (no host sync), so that a member is
            # frozen at its last finite state; the host learns of it at the next log row.
            frozen=torch.tensor(frozen_host, device=state.device),
            frozen_host=frozen_host,
            history=torch.zeros(t.log_every, state.K, 2, device=state.device),
            last_log_step=state.step,
            last_log_time=time.monotonic(),
        )
        status = "FAILED"
        try:
            with loop.stop:
                self._loop(loop)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            outputs.close_logs()
            if progress is not None:
                progress.close()
            if status != "FINISHED":
                outputs.end_tracking(status)
        stop = loop.stop
        if stop.signal is not None and state.step < state.total_steps and not all(frozen_host):
            return outputs.interrupt(stop)
        return outputs.finish()

    def _loop(self, loop: LoopState) -> None:
        """Train until the planned step, until every member diverged, or until a stop signal
        (then the steps since the last log row are checked for divergence too)."""
        state, outputs = self.state, self.outputs
        t = self.cfg.train
        while state.step < state.total_steps and not all(loop.frozen_host):
            log_now = (state.step + 1) % t.log_every == 0 or state.step + 1 == state.total_steps
            losses, stats, loop.frozen = self.train_step(state.step, loop.frozen, log_now)
            loop.history[state.step - loop.last_log_step].copy_(losses)
            state.step += 1
            if log_now:
                self._log(loop, stats)
            if state.step % t.sample_every == 0:
                outputs.save_samples()
            if state.fid is not None and state.step % t.fid_every == 0:
                outputs.track_fid()
            if state.step % t.checkpoint_every == 0 and state.step < state.total_steps:
                outputs.save_checkpoint()
                outputs.record_running()
            if loop.stop.signal is not None:
                self._record_divergence(
                    loop.history[: state.step - loop.last_log_step],
                    loop.last_log_step,
                    loop.frozen_host,
                )
                return

    def _log(self, loop: LoopState, stats: Tensor) -> None:
        """At a log row: record divergence (the first non-finite step of each member since the
        last row), write the rows, show progress, and start the next row's history."""
        state = self.state
        now = time.monotonic()
        steps = state.step - loop.last_log_step
        rate = steps * self.cfg.train.batch_size * state.K / (now - loop.last_log_time)
        # A member that diverged since the last row still gets this row.
        logged = [not frozen for frozen in loop.frozen_host]
        self._record_divergence(loop.history[:steps], loop.last_log_step, loop.frozen_host)
        self.outputs.log_rows(stats, rate, logged)
        if loop.progress is not None:
            alive = [k for k in range(state.K) if not loop.frozen_host[k]]
            shown = stats[alive[0] if alive else 0].tolist()
            loop.progress.update(state.step, steps, {"loss_d": shown[0], "loss_g": shown[1]})
        loop.last_log_step, loop.last_log_time = state.step, now

    def _record_divergence(self, history: Tensor, first_step: int, frozen_host: list[bool]):
        """Record the first non-finite step of each member in ``history`` (losses of the steps
        after ``first_step``) and mark it frozen."""
        finite = torch.isfinite(history.cpu()).all(dim=-1)  # (steps, K)
        diverged_step = self.state.diverged_step
        for k in range(self.state.K):
            if frozen_host[k]:
                continue
            bad = (~finite[:, k]).nonzero()
            if len(bad):
                diverged_step[k] = first_step + int(bad[0]) + 1
                frozen_host[k] = True


def train(
    cfg: RunConfig,
    seeds: list[int],
    run_dirs: list[str | Path],
    device=None,
    progress: bool = True,
) -> list[dict]:
    """Train (or resume) the runs of ``cfg`` for ``seeds``; returns each member's metrics.json.

    Every member's directory is locked first (:func:`ganstudy.store.writing`): a directory
    another process is writing is refused before anything is read or written."""
    with store.writing(run_dirs, "training"):
        return Trainer(cfg, seeds, run_dirs, device=device, progress=progress).run()
