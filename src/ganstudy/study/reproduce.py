"""Reproduction blocks checked against the published protocols they reproduce.

A study block with ``reproduces: <protocol>`` names a record of ``protocols`` in the package's
references.yaml. Every run config of the block is compared with that record field by field, for
every published number of the protocol whose loss the run trains (:mod:`ganstudy.protocols`).
A field where the block departs from the publication must be declared in the block's
``departures`` with the reason (something the project cannot do the publication's way, or a
choice); any other difference is a conformance failure, and so is a declared departure that
is no longer a difference. Nothing here trains or imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from ganstudy import protocols
from ganstudy.data import registry
from ganstudy.errors import ConfigError
from ganstudy.metrics.mode_kinds import MODE_KINDS
from ganstudy.study import cost
from ganstudy.study.grid import Variant
from ganstudy.study.workflow import Study


@dataclass(frozen=True)
class Check:
    """One variant against one published number of the protocol its block reproduces."""

    block: str
    variant: str
    result: str
    # Every compared field that differs, as "key: published X, ours Y".
    differences: tuple[str, ...]
    # Keys the block declares as departures, with their reasons.
    declared: dict

    @property
    def undeclared(self) -> list[str]:
        return [d for d in self.differences if d.split(":", 1)[0] not in self.declared]

    @property
    def stale(self) -> list[str]:
        """Declared departures that are not differences (the block already follows them)."""
        differing = {d.split(":", 1)[0] for d in self.differences}
        return [k for k in self.declared if k not in differing]

    @property
    def conforms(self) -> bool:
        return not self.undeclared and not self.stale


def _fid_version() -> str | None:
    try:
        return metadata.version("pytorch-fid")
    except metadata.PackageNotFoundError:
        return None


def facts(study: Study, variant: Variant, metric: str) -> protocols.Facts:
    """What the runs of ``variant`` will record, from the study config alone."""
    cfg = variant.run_config
    spec = registry.dataset(variant.dataset)
    n_train = cfg["dataset"].get("n_train")
    if n_train is None and spec.kind == "image":
        n_train = cost.train_size(variant.dataset, study.prepare_params(variant.dataset))
    steps = cost.run_steps(cfg, n_train)
    settings = study.mode_settings(variant)
    is_fid = metric == "fid"
    fid = study.fid_protocol(variant.dataset) if is_fid else None
    n_samples = None
    if is_fid and fid is not None:
        n_samples = fid.n_generated
    elif not is_fid and spec.mode_metric is not None:
        n_samples = settings["samples"] or MODE_KINDS[spec.mode_metric].default_samples
    min_count = None
    if not is_fid and spec.mode_metric is not None:
        min_count = settings.get("min_count") or MODE_KINDS[spec.mode_metric].min_count
    classifier = None
    if not is_fid and spec.classifier is not None:
        classifier = f"ganstudy's {spec.classifier} classifier"
    version = _fid_version()
    return protocols.Facts(
        n_train=n_train,
        steps=steps,
        metric=metric,
        n_samples=n_samples,
        min_count=min_count,
        classifier=classifier,
        fid_implementation=(
            f"pytorch-fid {version} (PyTorch port of the FID Inception)"
            if is_fid and version
            else None
        ),
        n_reference=fid.n_reference if fid is not None else None,
        runs=len(variant.seeds),
    )


def checks(study: Study, references: dict) -> list[Check]:
    """Every reproduction block's variants against the published numbers of its protocol."""
    out = []
    for block_name, block in study.config["experiments"].items():
        name = block.get("reproduces")
        if not block.get("enabled", True) or name is None:
            continue
        if name not in references["protocols"]:
            raise ConfigError(
                f"key 'experiments.{block_name}.reproduces': {name!r} is not a published "
                f"protocol; allowed: {', '.join(references['protocols'])}"
            )
        declared = dict(block.get("departures") or {})
        unknown = sorted(set(declared) - set(protocols.FIELD_KEYS))
        if unknown:
            raise ConfigError(
                f"key 'experiments.{block_name}.departures': {unknown[0]!r} is not a protocol "
                f"field; allowed: {', '.join(protocols.FIELD_KEYS)}"
            )
        results = [r for r in references["results"] if r["protocol"] == name]
        for variant in (v for v in study.variants if v.block == block_name):
            matched = [r for r in results if r["loss"] == variant.loss]
            if not matched:
                raise ConfigError(
                    f"key 'experiments.{block_name}': loss {variant.loss!r} has no published "
                    f"number under protocol {name!r}; allowed: "
                    + ", ".join(sorted({r["loss"] for r in results}))
                )
            for res in matched:
                record = protocols.result_protocol(references, res)
                mine = protocols.ours(variant.run_config, facts(study, variant, res["metric"]))
                diffs = tuple(protocols.conformance(record, mine))
                out.append(Check(block_name, variant.key, res["id"], diffs, declared))
    return out


def report(found: list[Check]) -> str:
    """A plain-text account: per check, its declared departures and any failure."""
    lines = []
    for c in found:
        state = "conforms" if c.conforms else "DOES NOT CONFORM"
        lines.append(f"{c.block}: {c.variant} vs {c.result}: {state}")
        for d in c.differences:
            key = d.split(":", 1)[0]
            reason = c.declared.get(key)
            lines.append(f"  {d}" + (f"  [declared: {reason}]" if reason else "  [UNDECLARED]"))
        for key in c.stale:
            lines.append(f"  {key}: declared as a departure but the block follows the publication")
    return "\n".join(lines)
