"""What a training job writes for its members: checkpoints (and resuming from them), log.csv,
metrics.json, sample grids, training-time FID, MLflow tracking, and the end of a run (finished
or interrupted by a signal).

:class:`RunOutputs` is the half of :class:`~ganstudy.train.trainer.Trainer` that deals with the
run directories; it uses the trainer's networks, optimizers, streams and step counter.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from torch import Tensor

from ganstudy import checkpoint as ckpt
from ganstudy import store
from ganstudy.data import draws
from ganstudy.errors import CheckpointError, ConfigError
from ganstudy.sample import generate_members, sampling, save_member_samples
from ganstudy.train import runfiles, updates
from ganstudy.train import step as step_maths
from ganstudy.train.signals import StopRequest


class RunOutputs:
    """Checkpoints, logs, metrics.json, samples and tracking of the trainer's members."""

    # -- checkpoints ---------------------------------------------------------------------------

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
            mlflow={"run_id": self._mlflow_id(k), "tracking_uri": self._tracking_uri()},
            rng={
                "scheme": draws.SCHEME,
                "noise": self.noise_draws.member_state(k),
                "data": self.stream.member_state(k),
            },
            d_lr_schedule=self.d_schedule.member_state(k) if self.d_schedule else None,
            run_files=runfiles.read_growing_files(self.run_dirs[k]),
        )

    def save_checkpoint(self) -> None:
        # Each member's MLflow run id goes in as known now: training does not wait for a start
        # still queued (it has long run by the first periodic checkpoint unless the store hangs).
        for k, run_dir in enumerate(self.run_dirs):
            ckpt.atomic_save(
                self._member_checkpoint(k, store.Status.RUNNING.value),
                ckpt.checkpoint_path(run_dir, self.step),
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
        paths = [ckpt.checkpoint_path(d, step) for d in self.run_dirs]
        members = ckpt.load_members(
            paths,
            {"generator": self.G, "discriminator": self.D},
            {"opt_g": self.opt_g, "opt_d": self.opt_d},
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
        for opt in (self.opt_g, self.opt_d):
            updates.keep_capturable(opt, self.capturable)
        self.noise_draws.load_members([m["rng"]["noise"] for m in members])
        self.stream.load_members([m["rng"]["data"] for m in members])
        for k, m in enumerate(members):
            self.diverged_step[k] = m["diverged_step"]
        if self.d_schedule is not None:
            self.d_schedule.load_members([m["d_lr_schedule"] for m in members])
        self.step = step
        self.wall_before = max(m["wall_time_s"] for m in members)
        self._resumed_mlflow = [m.get("mlflow", {}) for m in members]
        self._resumed_files = [m.get("run_files", {}) for m in members]

    def _metrics_path(self, k: int) -> Path:
        return self.run_dirs[k] / store.METRICS

    def _status(self, k: int, finished: bool, interrupted: bool = False) -> str:
        if self.diverged_step[k] is not None:
            return store.Status.DIVERGED.value
        if finished:
            return store.Status.COMPLETED.value
        return (store.Status.INTERRUPTED if interrupted else store.Status.RUNNING).value

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
            mlflow_run_id=self._mlflow_id(k),
            tracking_uri=self._tracking_uri(),
            experiment=self.cfg.tracking.experiment if self.cfg.tracking.enabled else None,
            experiment_id=self.tracking.experiment_id if self.tracking else None,
            versions=self.versions,
            tracking_failure=self.tracking.failure if self.tracking else None,
            # Read from the optimizer: a run resumed from a checkpoint of an older version keeps
            # the implementation its checkpoint's settings name.
            numerics={
                **self.numerics,
                "optimizer_implementation": updates.implementation(self.opt_d),
            },
            training_data=self.training_data,
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
        expected = [store.LOG] + ([store.FID_CURVE] if self.fid is not None else [])
        for run_dir in self.run_dirs:
            if all((run_dir / name).exists() for name in expected):
                continue
            saved = ckpt.load(run_dir / store.FINAL).get("run_files", {})
            runfiles.restore_growing_files(run_dir, saved)
            if self.fid is not None and not (run_dir / store.FID_CURVE).exists():
                runfiles.start_fid_curve(run_dir, 0)

    def _open_logs(self) -> None:
        for run_dir, saved in zip(self.run_dirs, self._resumed_files):
            runfiles.restore_growing_files(run_dir, saved)
        opened = [runfiles.open_log(run_dir, self.step) for run_dir in self.run_dirs]
        self.log_files = [handle for handle, _ in opened]
        self.log_writers = [writer for _, writer in opened]
        if self.fid is not None:
            for run_dir in self.run_dirs:
                runfiles.start_fid_curve(run_dir, self.step)

    def _start_tracking(self) -> None:
        self.tracking = runfiles.start_tracking(
            self._tracking_job,
            self.member_cfgs,
            self.run_dirs,
            self._resumed_mlflow,
            self.device,
            self.versions,
        )

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

    def _save_samples(self) -> None:
        with sampling(self.G):
            samples = self.G(self.sample_z).float().cpu()
        alive = [k for k in range(self.K) if self.diverged_step[k] is None]
        name = store.step_file(self.step, store.SAMPLE_IMAGE_SUFFIX)
        save_member_samples(
            [samples[k] for k in alive],
            self.spec,
            [self.run_dirs[k] / store.SAMPLES / name for k in alive],
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
            if self._tracker(k) is not None:
                self._tracker(k).log_metrics(self.step, {"fid_train": value})

    def _interrupt(self, stop: StopRequest) -> list[dict]:
        """After a stop signal: a checkpoint of every member at this step, metrics.json with
        ``"status": "interrupted"``, the MLflow runs ended as KILLED. The rerun resumes here."""
        if self.tracking is not None:
            self.tracking.wait()  # the run ids, for the checkpoint and metrics.json
        if not ckpt.checkpoint_path(self.run_dirs[0], self.step).is_file():
            self.save_checkpoint()
        results = []
        for k in range(self.K):
            metrics = self._metrics(k, finished=False, stop=stop)
            store.write_record(self._metrics_path(k), metrics)
            if self._tracker(k) is not None:
                self._tracker(k).set_tags({"status": metrics["status"]})
                self._tracker(k).finish("KILLED")
            results.append(metrics)
        self._close_tracking(results)
        print(
            f"[{self._name}] stopped by {stop.name} at step {self.step} of {self.total_steps}: "
            "checkpoint written; run the same command again to resume from it",
            file=sys.stderr,
            flush=True,
        )
        return results

    def _finished(self, k: int) -> bool:
        path = self._metrics_path(k)
        if not path.is_file() or not (self.run_dirs[k] / store.FINAL).is_file():
            return False
        return json.loads(path.read_text()).get("status") in store.FINISHED

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
                    self._tracker(k),
                    self.step,
                    stats[k].tolist(),
                    rate,
                    wall,
                )

    def _finish(self) -> list[dict]:
        if self.tracking is not None:
            self.tracking.wait()  # the run ids, for the checkpoints and metrics.json
        # The last step's checkpoint (what a rerun resumes from where final.pt was removed) and
        # final.pt hold the same state with the final status: written once, one file by a link.
        write_last = not ckpt.checkpoint_path(self.run_dirs[0], self.step).is_file()
        if self.step % self.cfg.train.sample_every != 0:
            self._save_samples()
        results = []
        for k, run_dir in enumerate(self.run_dirs):
            status = self._status(k, finished=True)
            member = self._member_checkpoint(k, status)
            last = ckpt.checkpoint_path(run_dir, self.step)
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
        if not self.cfg.train.keep_checkpoints:
            for run_dir in self.run_dirs:
                ckpt.finish(run_dir)
        self._close_tracking(results)
        return results
