"""``ganstudy evaluate``: every metric of finished runs, with its settings, into each eval.json.

Several runs (the members of one training job) are evaluated in one process: the Inception
network, the classifier and the reference statistics (with the reference images) are loaded once
and shared, which is what dominates evaluation on a GPU. Each run's samples still go through
Inception in the batches of its protocol, exactly as when it is evaluated alone, so a member's
numbers do not depend on which runs it was evaluated with (joining members into larger batches
would not cut the number of forward passes: a batch of the protocol's size already fills a GPU).

The final generator draws a fixed-seed sample set; FID uses its first ``n_generated`` images and
the mode metrics its first ``n_samples``. A diverged run is evaluated like any other from its
last finite checkpoint; whatever cannot be measured (no checkpoint, non-finite samples) is null
with a note. eval.json is written last, to a temporary name renamed into place, so a failure
leaves an earlier eval.json intact. The numbers are also logged to the run's MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganstudy import atomic, provenance, store
from ganstudy import config as config_mod
from ganstudy.data import registry
from ganstudy.errors import ConfigError
from ganstudy.evaluate.mode_metrics import MODE_METRICS, ModeMetric
from ganstudy.metrics import classifiers, stability
from ganstudy.metrics import registry as metric_registry
from ganstudy.numerics import resolve_device
from ganstudy.sample import checkpoint_file, generate, load_generator, save_samples
from ganstudy.tracking.records import eval_metrics
from ganstudy.tracking.runs import log_metrics_to_run

if TYPE_CHECKING:
    from ganstudy.metrics import fid

FORMAT = store.EVAL_FORMAT
SAMPLE_SEED = 0
GRID = 64
FINISHED = store.FINISHED


# ---------------------------------------------------------------------------------------------
# Plan: everything checked before any work starts


@dataclass
class Plan:
    run_dir: Path
    data_root: Path
    device: torch.device
    cfg: object
    metrics: dict
    protocol: fid.FIDProtocol | None = None
    weights: fid.InceptionWeights | None = None
    mode_metric: ModeMetric | None = None
    mode_samples: int = 0
    context: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    shared: Shared | None = None


@dataclass
class Shared:
    """What the runs of one evaluation share: loaded classifiers and reference statistics."""

    classifiers: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)

    def classifier(self, data_root: Path, name: str, device: torch.device):
        key = (str(data_root), name, str(device))
        if key not in self.classifiers:
            self.classifiers[key] = classifiers.load_classifier(data_root, name, device)
        return self.classifiers[key]

    def reference(self, p: Plan):
        key = (p.context["spec"].name, str(p.data_root), p.protocol, p.weights, str(p.device))
        if key not in self.references:
            from ganstudy.metrics import fid

            self.references[key] = fid.reference_statistics(
                p.context["spec"].name,
                p.data_root,
                p.protocol,
                p.weights,
                p.device,
                p.cfg.dataset.mirror,
            )
        return self.references[key]


def plan(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    device: str = "auto",
    fid_weights: str | Path | None = None,
    fid_samples: int | None = None,
    fid_dims: int | None = None,
    fid_preset: str = "full",
    allow_singular_fid: bool = False,
    mode_samples: int | None = None,
    allow_weak_classifier: bool = False,
    mode_min_count: int | None = None,
    shared: Shared | None = None,
) -> Plan:
    """Check the run and every option, resolve the FID weights and load the classifier (from
    ``shared`` where an earlier run of the same evaluation loaded it).

    A classifier whose test accuracy is below its dataset's target is refused unless
    ``allow_weak_classifier``; then it is used and every metric it measures is flagged."""
    run_dir = Path(run_dir)
    for name in (store.CONFIG, store.METRICS):
        if not (run_dir / name).is_file():
            raise ConfigError(f"--run {run_dir}: {name} is missing; is this a run directory?")
    metrics = store.read_record(run_dir / store.METRICS)
    if metrics.get("status") not in FINISHED:
        raise ConfigError(
            f"--run {run_dir}: status {metrics.get('status')!r} in metrics.json; allowed: "
            f"{', '.join(FINISHED)} (resume an unfinished run with `ganstudy train` first)"
        )
    if mode_samples is not None and mode_samples < 1:
        raise ConfigError(f"--mode-samples {mode_samples}: allowed: a positive integer")
    if mode_min_count is not None and mode_min_count < 1:
        raise ConfigError(f"--mode-min-count {mode_min_count}: allowed: a positive integer")
    cfg = config_mod.load(run_dir / store.CONFIG)
    spec = registry.dataset(cfg.dataset.name)
    p = Plan(
        run_dir=run_dir,
        data_root=Path(data_root if data_root is not None else cfg.dataset.data_root),
        device=resolve_device(device),
        cfg=cfg,
        metrics=metrics,
        shared=shared or Shared(),
    )
    p.context["spec"] = spec
    p.context["min_count"] = mode_min_count
    if spec.fid is not None:
        # Here, not at the top: the Inception stack (pytorch-fid, torchvision) takes seconds to
        # import, and the mixtures' evaluation jobs never use it.
        from ganstudy.metrics import fid

        p.protocol = fid.protocol_for(
            spec.name, fid_preset, fid_samples, fid_dims, allow_singular=allow_singular_fid
        )
        p.weights = fid.resolve_weights(fid_weights)
    elif fid_samples is not None or fid_dims is not None:
        # A study passes the same options to every run; a dataset without FID just says so.
        p.notes.append(f"--fid-samples/--fid-dims ignored: {spec.name} has no FID")
    p.mode_metric = MODE_METRICS[spec.mode_metric] if spec.mode_metric else None
    if p.mode_metric is not None:
        p.mode_samples = mode_samples or p.mode_metric.default_samples
        if p.mode_metric.classifier:
            try:
                model, info = p.shared.classifier(p.data_root, spec.name, p.device)
            except FileNotFoundError as err:
                raise ConfigError(str(err)) from err
            name = classifiers.classifier_name(spec.name)
            target = classifiers.training_spec(name).target_accuracy
            accuracy = info.get("test_accuracy")
            below = accuracy is not None and accuracy < target
            if below and not allow_weak_classifier:
                raise ConfigError(
                    f"the {name} classifier in {p.data_root} has test accuracy {accuracy:.3f}, "
                    f"below its target {target:.3f}: its mode counts would not be trustworthy. "
                    "Retrain it with more epochs (`ganstudy classifier train --dataset "
                    f"{name} --epochs N`, or the study key classifiers.epochs), or pass "
                    "--allow-weak-classifier (study key classifiers.below_target: flag) to use "
                    "it with every metric it measures flagged"
                )
            if below:
                p.notes.append(
                    f"the {name} classifier's test accuracy {accuracy:.3f} is below its target "
                    f"{target:.3f}: the mode metrics are flagged"
                )
            p.context["classifier"] = model
            p.context["classifier_info"] = {
                "dataset": name,
                "test_accuracy": accuracy,
                "target_accuracy": target,
                "below_target": below,
            }
    return p


# ---------------------------------------------------------------------------------------------
# Measuring


def _samples(p: Plan) -> tuple[Tensor | None, str | None, str | None]:
    """(samples, checkpoint file name, note): the fixed-seed sample set of the final generator."""
    n = max(p.protocol.n_generated if p.protocol else 0, p.mode_samples, GRID)
    try:
        source = checkpoint_file(p.run_dir)
    except FileNotFoundError as err:
        if p.metrics.get("status") == store.Status.DIVERGED:
            return None, None, f"nothing measured: {err}"
        raise ConfigError(f"--run {p.run_dir}: {err}") from err
    generator, cfg = load_generator(source, p.device)
    samples = generate(generator, cfg, n, seed=SAMPLE_SEED, device=p.device)
    if not torch.isfinite(samples).all():
        return None, source.name, "nothing measured: the generator's samples are not finite"
    return samples, source.name, None


def _fid_block(p: Plan, samples: Tensor | None, note: str | None) -> dict | None:
    if p.protocol is None:
        return None
    from ganstudy.metrics import fid

    if samples is None:
        n_ref = p.protocol.n_reference
        return {
            "value": None,
            "flag": note,
            "settings": fid.settings(p.protocol, p.weights, n_ref),
        }
    reference, ref_settings = p.shared.reference(p)
    result = fid.generated_fid(
        samples[: p.protocol.n_generated], reference, ref_settings, p.protocol, p.weights, p.device
    )
    return result.to_dict()


def _modes_block(p: Plan, samples: Tensor | None) -> dict | None:
    if p.mode_metric is None or samples is None:
        return None
    coverage = p.mode_metric.measure(samples[: p.mode_samples], p.context)
    return coverage.to_dict() | {"classifier": p.context.get("classifier_info")}


def _measures_block(p: Plan, samples: Tensor | None) -> dict | None:
    """The metrics measured by their own function (:func:`ganstudy.metrics.registry.measured_on`)."""
    own = metric_registry.measured_on(p.context["spec"])
    if not own or samples is None:
        return None
    values = {m.key: m.measure(samples, p.context["spec"]) for m in own}
    # A tensor or numpy scalar becomes the plain number JSON keeps.
    return {k: v.item() if hasattr(v, "item") else v for k, v in values.items()}


def _write_sample_files(p: Plan, samples: Tensor) -> list[str]:
    """samples.png (8x8 grid) for images; samples2d.csv (the points of the mode metrics) for 2D."""
    spec = p.context["spec"]
    if spec.kind == "image":
        save_samples(samples[:GRID], spec, p.run_dir / store.SAMPLE_GRID)
        return [store.SAMPLE_GRID]
    points = samples[: p.mode_samples].numpy()
    lines = ["x,y"] + [f"{x!r},{y!r}" for x, y in points.tolist()]
    atomic.write_text(p.run_dir / store.SAMPLES_2D, "\n".join(lines) + "\n")
    return [store.SAMPLES_2D]


def _log_to_mlflow(p: Plan, result: dict) -> tuple[str | None, str | None]:
    run_id, uri = p.metrics.get("mlflow_run_id"), p.metrics.get("mlflow_tracking_uri")
    if not run_id or not uri:
        return None, None
    try:
        log_metrics_to_run(uri, run_id, eval_metrics(result))
    except Exception as err:  # noqa: BLE001 - eval.json stays the record; say why MLflow lacks it
        return None, f"not logged to MLflow run {run_id} at {uri}: {err}"
    return run_id, None


def evaluate(p: Plan, log_mlflow: bool = True) -> dict:
    """Measure a planned run and write eval.json (and the sample files); returns its content."""
    samples, checkpoint, note = _samples(p)
    modes_block = _modes_block(p, samples)
    result = {
        "format": FORMAT,
        "run_dir": str(p.run_dir),
        "dataset": p.context["spec"].name,
        "status": p.metrics["status"],
        "checkpoint": checkpoint,
        "sample_seed": SAMPLE_SEED,
        "fid": _fid_block(p, samples, note),
        "modes": modes_block,
        "stability": stability.stability(p.run_dir, modes_block),
        metric_registry.MEASURES: _measures_block(p, samples),
        "notes": p.notes + ([note] if note else []),
        "files": _write_sample_files(p, samples) if samples is not None else [],
        "versions": provenance.versions(),
        "device": str(p.device),
        "mlflow_run_id": None,
    }
    if log_mlflow:
        result["mlflow_run_id"], error = _log_to_mlflow(p, result)
        if error:
            result["notes"].append(error)
    store.write_record(p.run_dir / store.EVAL, result)
    return result
