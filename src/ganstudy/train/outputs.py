"""What a training job writes for its members: checkpoints (and resuming from them), log.csv,
metrics.json, sample grids, training-time FID, MLflow tracking, and the end of a run (finished
or interrupted by a signal).

:class:`RunOutputs` is the half of a training job that deals with the run directories; the
other half, :class:`~ganstudy.train.trainer.Trainer`, trains. All it knows of training is the
:class:`~ganstudy.train.state.TrainingState` it is given: the networks, optimizers and streams it
checkpoints (and loads a checkpoint into), the step counter and each member's divergence.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from torch import Tensor

from ganstudy import atomic, provenance, store
from ganstudy import checkpoint as ckpt
from ganstudy.data import draws
from ganstudy.errors import CheckpointError, ConfigError
from ganstudy.sample import sampling, save_member_samples
from ganstudy.train import runfiles, updates
from ganstudy.train.signals import StopRequest
from ganstudy.train.state import TrainingState


class RunOutputs:
    """Checkpoints, logs, metrics.json, samples and tracking of the members of ``state``.

    ``tracking_job`` is the job :func:`~ganstudy.train.runfiles.open_tracking` opened before
    the networks were built (None: tracking is off)."""

    def __init__(self, state: TrainingState, tracking_job) -> None:
        self.state = state
        self.tracking_job = tracking_job
        self.tracking = None  # the job once its members' MLflow runs are started
        self.versions: dict | None = None
        # What the resumed checkpoint carried of each member's MLflow run and growing files.
        self.resumed_mlflow: list[dict] = [{} for _ in range(state.K)]
        self.resumed_files: list[dict] = [{} for _ in range(state.K)]
        self.log_files: list = []
        self.log_writers: list = []

    # -- the start of a run --------------------------------------------------------------------

    def all_finished(self) -> bool:
        return all(self._finished(k) for k in range(self.state.K))

    def reopen_finished(self) -> list[dict]:
        """Each member's metrics.json, for a job whose members all finished earlier: nothing is
        trained or tracked, and removed log files come back from final.pt."""
        if self.tracking_job is not None:
            self.tracking_job.abandon()
        self._restore_finished_files()
        return [store.read_record(self._metrics_path(k)) for k in range(self.state.K)]

    def start(self) -> None:
        """Everything before the first step: config.yaml, resuming from the newest usable
        checkpoint, the MLflow runs, the log files, and metrics.json saying "running"."""
        s = self.state
        for run_dir, member_cfg in zip(s.run_dirs, s.member_cfgs):
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic.write_text(run_dir / store.CONFIG, member_cfg.to_yaml())
        resume = self._resume()
        if resume is not None:
            print(f"[{s.name}] resuming from step {resume}", file=sys.stderr, flush=True)
        self.versions = provenance.versions()
        self.tracking = runfiles.start_tracking(
            self.tracking_job, s.member_cfgs, s.run_dirs, self.resumed_mlflow, s.device,
            self.versions,
        )  # fmt: skip
        self._open_logs()
        self.record_running()

    def record_running(self) -> None:
        for k in range(self.state.K):
            store.write_record(self._metrics_path(k), self._metrics(k, finished=False))

    # -- checkpoints ---------------------------------------------------------------------------

    def _member_checkpoint(self, k: int, status: str) -> dict:
        s = self.state
        return ckpt.member_checkpoint(
            k,
            {"generator": s.G, "discriminator": s.D},
            {"opt_g": s.opt_g, "opt_d": s.opt_d},
            config=s.member_cfgs[k].to_dict(),
            seed=s.seeds[k],
            step=s.step,
            status=status,
            diverged_step=s.diverged_step[k],
            wall_time_s=s.wall_before + (time.monotonic() - s.t_start),
            # The run's MLflow identity travels with its state: a resumed run continues the same
            # MLflow run even where metrics.json was removed (e.g. by a workflow rerun).
            mlflow={"run_id": self._mlflow_id(k), "tracking_uri": self._tracking_uri()},
            rng={
                "scheme": draws.SCHEME,
                "noise": s.noise_draws.member_state(k),
                "data": s.stream.member_state(k),
            },
            d_lr_schedule=s.d_schedule.member_state(k) if s.d_schedule else None,
            run_files=runfiles.read_growing_files(s.run_dirs[k]),
        )

    def save_checkpoint(self) -> None:
        # Each member's MLflow run id goes in as known now: training does not wait for a start
        # still queued (it has long run by the first periodic checkpoint unless the store hangs).
        s = self.state
        for k, run_dir in enumerate(s.run_dirs):
            ckpt.atomic_save(
                self._member_checkpoint(k, store.Status.RUNNING.value),
                ckpt.checkpoint_path(run_dir, s.step),
            )
        for run_dir in s.run_dirs:
            ckpt.prune(run_dir)

    def resume_step(self) -> int | None:
        """The newest checkpoint step that every member holds (None: start from scratch)."""
        steps = ckpt.common_steps(self.state.run_dirs)
        return steps[-1] if steps else None

    def _resume(self) -> int | None:
        """Load the newest step that every member has a good checkpoint of; an unusable file
        is moved aside (``*.corrupt``) with a warning and the previous step is tried. Returns
        the step (None: no checkpoint, start from scratch)."""
        skipped = []
        for step in reversed(ckpt.common_steps(self.state.run_dirs)):
            try:
                self.load_checkpoint(step)
                return step
            except CheckpointError as err:
                moved = ckpt.move_aside(err.path)
                skipped.append(f"{err} (moved to {moved.name})")
                print(
                    f"[{self.state.name}] warning: skipping the checkpoint of step {step}: {err}; "
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
        s = self.state
        paths = [ckpt.checkpoint_path(d, step) for d in s.run_dirs]
        members = ckpt.load_members(
            paths,
            {"generator": s.G, "discriminator": s.D},
            {"opt_g": s.opt_g, "opt_d": s.opt_d},
        )
        for path, m in zip(paths, members):
            if m["rng"].get("scheme") != draws.SCHEME:
                # Not a damaged file (it is not moved aside): the run cannot go on bitwise.
                raise ConfigError(
                    f"{path} was written by a ganstudy that drew its random numbers another way "
                    f"(scheme {m['rng'].get('scheme', 'per step')!r}, this one: {draws.SCHEME!r}): "
                    "resuming it would not continue its trajectory. Finish the run with that "
                    "version, or remove its run directory to train it again."
                )
        for opt in (s.opt_g, s.opt_d):
            updates.keep_capturable(opt, s.capturable)
        s.noise_draws.load_members([m["rng"]["noise"] for m in members])
        s.stream.load_members([m["rng"]["data"] for m in members])
        for k, m in enumerate(members):
            s.diverged_step[k] = m["diverged_step"]
        if s.d_schedule is not None:
            s.d_schedule.load_members([m["d_lr_schedule"] for m in members])
        s.step = step
        s.wall_before = max(m["wall_time_s"] for m in members)
        self.resumed_mlflow = [m.get("mlflow", {}) for m in members]
        self.resumed_files = [m.get("run_files", {}) for m in members]

    def _metrics_path(self, k: int) -> Path:
        return self.state.run_dirs[k] / store.METRICS

    def _status(self, k: int, finished: bool, interrupted: bool = False) -> str:
        if self.state.diverged_step[k] is not None:
            return store.Status.DIVERGED.value
        if finished:
            return store.Status.COMPLETED.value
        return (store.Status.INTERRUPTED if interrupted else store.Status.RUNNING).value

    def _metrics(self, k: int, finished: bool, stop: StopRequest | None = None) -> dict:
        s = self.state
        extra = {}
        if stop is not None:
            extra = {"interrupted_step": s.step, "signal": stop.name}
        return runfiles.metrics_record(
            s.run_dirs[k],
            status=self._status(k, finished, interrupted=stop is not None),
            steps=s.step,
            steps_planned=s.total_steps,
            diverged_step=s.diverged_step[k],
            wall_time_s=round(s.wall_before + time.monotonic() - s.t_start, 3),
            seed=s.seeds[k],
            member_index=k,
            ensemble_seeds=s.seeds,
            device=s.device,
            mlflow_run_id=self._mlflow_id(k),
            tracking_uri=self._tracking_uri(),
            experiment=s.cfg.tracking.experiment if s.cfg.tracking.enabled else None,
            experiment_id=self.tracking.experiment_id if self.tracking else None,
            versions=self.versions,
            tracking_failure=self.tracking.failure if self.tracking else None,
            # Read from the optimizer: a run resumed from a checkpoint of an older version keeps
            # the implementation its checkpoint's settings name.
            numerics={**s.numerics, "optimizer_implementation": updates.implementation(s.opt_d)},
            training_data=s.training_data,
            **extra,
        )

    # -- tracking ------------------------------------------------------------------------------

    def _mlflow_id(self, k: int) -> str | None:
        return self.tracking.trackers[k].run_id if self.tracking else None

    def _tracking_uri(self) -> str | None:
        return self.tracking.uri if self.tracking else None

    def _tracker(self, k: int):
        return self.tracking.trackers[k] if self.tracking else None

    def _restore_finished_files(self) -> None:
        """A finished run whose log.csv or fid_curve.csv was removed gets them back from its
        final.pt (an earlier version's final.pt does not carry them); a FID curve without a
        point gets its header."""
        s = self.state
        expected = [store.LOG] + ([store.FID_CURVE] if s.fid is not None else [])
        for run_dir in s.run_dirs:
            if all((run_dir / name).exists() for name in expected):
                continue
            saved = ckpt.load(run_dir / store.FINAL).get("run_files", {})
            runfiles.restore_growing_files(run_dir, saved)
            if s.fid is not None and not (run_dir / store.FID_CURVE).exists():
                runfiles.start_fid_curve(run_dir, 0)

    def _open_logs(self) -> None:
        s = self.state
        for run_dir, saved in zip(s.run_dirs, self.resumed_files):
            runfiles.restore_growing_files(run_dir, saved)
        opened = [runfiles.open_log(run_dir, s.step) for run_dir in s.run_dirs]
        self.log_files = [handle for handle, _ in opened]
        self.log_writers = [writer for _, writer in opened]
        if s.fid is not None:
            for run_dir in s.run_dirs:
                runfiles.start_fid_curve(run_dir, s.step)

    def close_logs(self) -> None:
        for f in self.log_files:
            f.close()

    def end_tracking(self, status: str) -> None:
        """End every member's MLflow run as ``status`` where training stopped without reaching
        its end (an exception, or KILLED by a keyboard interrupt)."""
        if self.tracking is not None:
            for tracker in self.tracking.trackers:
                tracker.finish(status)
            self.tracking.close()

    def _close_tracking(self, results: list[dict]) -> None:
        """Wait (bounded) for the queued MLflow calls; where tracking failed meanwhile,
        metrics.json is rewritten to say so."""
        if self.tracking is None:
            return
        self.tracking.close()
        failure = self.tracking.failure
        for k, metrics in enumerate(results):
            if failure and metrics.get("tracking", {}).get("error") != failure:
                metrics["tracking"] = {"status": "failed", "error": failure}
                store.write_record(self._metrics_path(k), metrics)

    def save_samples(self) -> None:
        s = self.state
        with sampling(s.G):
            samples = s.G(s.sample_z).float().cpu()
        alive = [k for k in range(s.K) if s.diverged_step[k] is None]
        name = store.step_file(s.step, store.SAMPLE_IMAGE_SUFFIX)
        save_member_samples(
            [samples[k] for k in alive],
            s.spec,
            [s.run_dirs[k] / store.SAMPLES / name for k in alive],
        )

    def track_fid(self) -> None:
        s = self.state
        samples = s.generate_all(s.cfg.train.fid_samples)
        for k, run_dir in enumerate(s.run_dirs):
            if s.diverged_step[k] is not None:
                continue
            value = float(s.fid(samples[k]))
            runfiles.append_fid(run_dir, s.step, value, s.fid.n_samples, s.fid.dims)
            if self._tracker(k) is not None:
                self._tracker(k).log_metrics(s.step, {"fid_train": value})

    # -- the end of a run ----------------------------------------------------------------------

    def interrupt(self, stop: StopRequest) -> list[dict]:
        """After a stop signal: a checkpoint of every member at this step, metrics.json with
        ``"status": "interrupted"``, the MLflow runs ended as KILLED. The rerun resumes here."""
        s = self.state
        if self.tracking is not None:
            self.tracking.wait()  # the run ids, for the checkpoint and metrics.json
        if not ckpt.checkpoint_path(s.run_dirs[0], s.step).is_file():
            self.save_checkpoint()
        results = []
        for k in range(s.K):
            metrics = self._metrics(k, finished=False, stop=stop)
            store.write_record(self._metrics_path(k), metrics)
            if self._tracker(k) is not None:
                self._tracker(k).set_tags({"status": metrics["status"]})
                self._tracker(k).finish("KILLED")
            results.append(metrics)
        self._close_tracking(results)
        print(
            f"[{s.name}] stopped by {stop.name} at step {s.step} of {s.total_steps}: "
            "checkpoint written; run the same command again to resume from it",
            file=sys.stderr,
            flush=True,
        )
        return results

    def _finished(self, k: int) -> bool:
        path = self._metrics_path(k)
        if not path.is_file() or not (self.state.run_dirs[k] / store.FINAL).is_file():
            return False
        return store.read_record(path).get("status") in store.FINISHED

    def log_rows(self, stats: Tensor, rate: float, logged: list[bool]) -> None:
        """A log row of each member in ``logged`` (those not frozen before these steps: the
        row of a member's diverging steps is still written)."""
        s = self.state
        stats = stats.cpu()
        wall = round(s.wall_before + time.monotonic() - s.t_start, 3)
        for k in range(s.K):
            if logged[k]:
                runfiles.write_log_row(
                    self.log_writers[k],
                    self.log_files[k],
                    self._tracker(k),
                    s.step,
                    stats[k].tolist(),
                    rate,
                    wall,
                )

    def finish(self) -> list[dict]:
        s = self.state
        if self.tracking is not None:
            self.tracking.wait()  # the run ids, for the checkpoints and metrics.json
        # The last step's checkpoint (what a rerun resumes from where final.pt was removed) and
        # final.pt hold the same state with the final status: written once, one file by a link.
        write_last = not ckpt.checkpoint_path(s.run_dirs[0], s.step).is_file()
        if s.step % s.cfg.train.sample_every != 0:
            self.save_samples()
        results = []
        for k, run_dir in enumerate(s.run_dirs):
            status = self._status(k, finished=True)
            member = self._member_checkpoint(k, status)
            last = ckpt.checkpoint_path(run_dir, s.step)
            if write_last:
                ckpt.atomic_save(member, last)
                ckpt.save_same_as(last, run_dir / store.FINAL)
            else:
                ckpt.atomic_save(member, run_dir / store.FINAL)
                ckpt.save_same_as(run_dir / store.FINAL, last)
            ckpt.prune(run_dir)
            metrics = self._metrics(k, finished=True)
            store.write_record(self._metrics_path(k), metrics)
            tracker = self._tracker(k)
            if tracker is not None:
                tracker.set_tags({"status": status})
                tracker.log_run_files(run_dir)
                tracker.finish("FINISHED")
            results.append(metrics)
        # Only once every member's final.pt is written: until then a rerun resumes from a step
        # that every member holds.
        if not s.cfg.train.keep_checkpoints:
            for run_dir in s.run_dirs:
                ckpt.finish(run_dir)
        self._close_tracking(results)
        return results
