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
        manifest = store.DataRoot(cfg.dataset.data_root).manifest(spec.name)
        identity = manifest.read_text() if manifest.is_file() else "not prepared"
        source, source_type = str(manifest.parent.resolve()), "local"
        if manifest.is_file():
            profile["count"] = json.loads(identity)["splits"]["train"]["count"]
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


def eval_metrics(result: dict) -> dict[str, float]:
    """The numbers of eval.json as flat MLflow metric names (``eval.<block>.<key>``)."""
    out: dict[str, float] = {}
    blocks = {
        "fid": {"value": (result["fid"] or {}).get("value")},
        "modes": {
            k: (result["modes"] or {}).get(k)
            for k in ("modes_covered", "modes_total", "kl_to_uniform", "high_quality_fraction")
        },
        "stability": {
            "diverged": result["stability"]["diverged"],
            "collapsed": result["stability"]["collapsed"],
            "best_fid": result["stability"]["best_fid"],
            "final_fid": result["stability"]["final_fid"],
        },
    }
    for block, values in blocks.items():
        for key, value in values.items():
            if value is not None and math.isfinite(float(value)):
                out[f"eval.{block}.{key}"] = float(value)
    return out
