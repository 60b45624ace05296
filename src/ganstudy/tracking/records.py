"""What an MLflow run records of a training run: its params (the flattened run config), its
tags (factors, status, where it lives, versions), its training data as an MLflow dataset input,
and eval.json's numbers as metrics. Pure functions of configs and files, shared by live tracking
(:mod:`ganstudy.tracking.runs`, called by training) and ``ganstudy track sync``."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ganstudy import store
from ganstudy.data import registry
from ganstudy.metrics import registry as metric_registry

# The files of a run directory its MLflow run holds as artifacts (a folder: all its files).
ARTIFACTS = (
    store.CONFIG, store.METRICS, store.LOG, store.FID_CURVE, store.EVAL, store.SAMPLE_GRID,
    store.SAMPLES_2D, store.SAMPLES,
)  # fmt: skip
# The tag that records what the artifacts held when they were uploaded: {name: digest}.
ARTIFACT_DIGESTS_TAG = "ganstudy.artifact_digests"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_digests(run_dir: Path) -> dict[str, str]:
    """{artifact name: the first 16 hex digits of its sha256} for each of :data:`ARTIFACTS`
    the run directory holds; a folder's digest covers its files' names and contents."""
    out: dict[str, str] = {}
    for name in ARTIFACTS:
        path = run_dir / name
        if path.is_file():
            out[name] = _file_digest(path)[:16]
        elif path.is_dir():
            listing = sorted(p for p in path.rglob("*") if p.is_file())
            text = "".join(f"{p.relative_to(path).as_posix()} {_file_digest(p)}\n" for p in listing)
            out[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping with dotted keys (``train.lr_d``): how a run config becomes params."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def dataset_record(cfg) -> dict:
    """The training data of a run as an MLflow dataset input. Prepared datasets are identified
    by their manifest (source checksums, preparation parameters, counts), mixtures by their
    means and sigma; the digest is the first 16 hex digits of its sha256."""
    spec = registry.dataset(cfg.dataset.name)
    profile = {"shape": list(spec.shape), "split": "train", "citation": spec.citation}
    if spec.mixture is not None:
        mixture = {"means": spec.mixture.means, "sigma": spec.mixture.sigma}
        if cfg.dataset.n_train is not None:
            # A fixed training set: its size and seed identify it.
            mixture |= {"n_train": cfg.dataset.n_train, "sample_seed": cfg.dataset.sample_seed}
            profile["count"] = cfg.dataset.n_train
        identity = json.dumps(mixture)
        source, source_type = f"ganstudy.data.registry:{spec.name}", "code"
        profile["modes"] = len(spec.mixture.means)
    else:
        data_root = store.DataRoot(cfg.dataset.data_root)
        manifest = data_root.manifest(spec.name)
        # The manifest's bytes identify the prepared data (checksums, parameters, counts).
        identity = manifest.read_text() if manifest.is_file() else "not prepared"
        source, source_type = str(manifest.parent.resolve()), "local"
        if manifest.is_file():
            profile["count"] = data_root.prepared_count(spec.name, "train")
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return {
        "name": spec.name,
        "digest": digest,
        "source_type": source_type,
        "source": source,
        "profile": profile,
    }


def run_tags(cfg, run_dir: Path, ensemble_size: int, device, versions: dict) -> dict[str, str]:
    """The MLflow tags of a member run: its factors, status, where it lives and versions."""
    key = store.RunKey.of_config(cfg)
    tags = {
        "study": cfg.tracking.experiment,
        "dataset": key.dataset,
        "arch": key.arch,
        "loss": cfg.loss.name,
        "arm": key.loss,
        "bn": store.bn_label(key.bn_g, key.bn_d).removeprefix("bn-"),
        "variant": key.variant.path,
        "bn_g": str(key.bn_g),
        "bn_d": str(key.bn_d),
        "seed": str(key.seed),
        "status": store.Status.RUNNING.value,
        "run_dir": str(run_dir.resolve()),
        "ensemble_size": str(ensemble_size),
        "device": str(device),
    }
    tags.update({f"version.{k}": str(v) for k, v in versions.items()})
    tags.update(cfg.tracking.tags)
    return tags


def upload_artifacts(client, run_id: str, run_dir: Path, names: list[str], call=None) -> None:
    """Upload the artifacts ``names`` of ``run_dir`` and record every digest uploaded so far in
    :data:`ARTIFACT_DIGESTS_TAG`. ``call`` wraps each client call (e.g. a retry)."""

    def call_(method, *args):
        return method(*args) if call is None else call(method, *args)

    digests = artifact_digests(run_dir)
    run = call_(client.get_run, run_id)
    recorded = json.loads(run.data.tags.get(ARTIFACT_DIGESTS_TAG) or "{}")
    for name in names:
        path = run_dir / name
        if path.is_dir():
            call_(client.log_artifacts, run_id, str(path), path.name)
        elif path.is_file():
            call_(client.log_artifact, run_id, str(path))
        if name in digests:
            recorded[name] = digests[name]
    call_(client.set_tag, run_id, ARTIFACT_DIGESTS_TAG, json.dumps(recorded, sort_keys=True))


def eval_metrics(result: dict) -> dict[str, float]:
    """The numbers of eval.json as MLflow metrics, each under its registry entry's
    ``mlflow_name`` (``eval.<block>.<key>``)."""
    out: dict[str, float] = {}
    for metric in metric_registry.metrics():
        value = metric.read(result) if metric.mlflow else None
        if value is not None and math.isfinite(float(value)):
            out[metric.mlflow_name] = float(value)
    return out
