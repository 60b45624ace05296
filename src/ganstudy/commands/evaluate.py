"""``ganstudy evaluate``: every metric of finished runs, with its settings, into each eval.json."""

from __future__ import annotations

import argparse
import sys

from ganstudy import store
from ganstudy.errors import ConfigError
from ganstudy.metrics import fid_protocol
from ganstudy.metrics.registry import KL_TO_UNIFORM, MEASURES, MODES_COVERED, MODES_TOTAL, in_block


def _summary(result: dict) -> str:
    parts = [f"{result['dataset']} ({result['status']})"]
    if result["fid"]:
        value = result["fid"]["value"]
        settings = result["fid"]["settings"]
        shown = "null" if value is None else f"{value:.3f}"
        parts.append(
            f"FID {shown} [{settings['protocol']}: {settings['dims']}-d, "
            f"{settings['n_generated']} vs {settings['n_reference']} {settings['reference_split']}]"
        )
    if result["modes"]:
        covered, total, kl = (m.read(result) for m in (MODES_COVERED, MODES_TOTAL, KL_TO_UNIFORM))
        parts.append(f"modes {covered}/{total}, KL {'null' if kl is None else f'{kl:.3f}'}")
    parts += [
        f"{m.label} {m.read(result)}" for m in in_block(MEASURES) if m.read(result) is not None
    ]
    return ", ".join(parts)


def _cli(args) -> int:
    repeated = sorted({r for r in args.run if args.run.count(r) > 1})
    if repeated:
        raise ConfigError(f"--run {repeated[0]} is given twice; allowed: each run directory once")
    with store.writing(args.run, "evaluation", create=False):
        return _evaluate(args)


def _evaluate(args) -> int:
    from ganstudy.evaluate.evaluation import Shared, evaluate, plan

    shared = Shared()
    # Every run is checked before any is measured: a bad member stops the job before work.
    plans = [
        plan(
            run,
            data_root=args.data_root,
            device=args.device,
            fid_weights=args.fid_weights,
            fid_samples=args.fid_samples,
            fid_dims=args.fid_dims,
            fid_preset=args.fid_preset,
            allow_singular_fid=args.allow_singular_fid,
            mode_samples=args.mode_samples,
            mode_min_count=args.mode_min_count,
            allow_weak_classifier=args.allow_weak_classifier,
            shared=shared,
        )
        for run in args.run
    ]
    for p in plans:
        result = evaluate(p, log_mlflow=not args.no_mlflow)
        print(f"{p.run_dir / store.EVAL}: {_summary(result)}", flush=True)
        for note in result["notes"]:
            print(f"note: {note}", file=sys.stderr)
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Evaluate finished (or diverged) runs; writes RUN/eval.json of each and logs the metrics "
        "to the run's MLflow run. Several runs (e.g. the members of one training job) share one "
        "process: the Inception network, classifier and reference statistics are loaded once."
    )
    p.add_argument(
        "--run", required=True, nargs="+", metavar="DIR", help="run directories (one or more)"
    )
    p.add_argument(
        "--data-root",
        help="data root with prepared data, classifiers and FID statistics "
        "(default: the run config's dataset.data_root)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--fid-weights",
        metavar="PATH",
        help=f"FID Inception weights ({fid_protocol.WEIGHTS_FILE}); default ${fid_protocol.WEIGHTS_ENV}, "
        "else pytorch-fid's copy in $TORCH_HOME/hub/checkpoints (downloaded if missing)",
    )
    p.add_argument(
        "--fid-preset",
        default="full",
        choices=list(fid_protocol.PRESETS),
        help="full: the literature protocol (10k generated vs 10k test images, cats: vs the "
        "whole training set; 2048-d); quick: 1k vs 1k, 192-d (not comparable with full)",
    )
    p.add_argument("--fid-samples", type=int, metavar="N", help="generated and reference count")
    p.add_argument(
        "--fid-dims", type=int, choices=list(fid_protocol.DIMS), help="Inception feature block"
    )
    p.add_argument(
        "--allow-singular-fid",
        action="store_true",
        help="compute FID with fewer samples than dims (flagged) instead of refusing",
    )
    p.add_argument("--mode-samples", type=int, metavar="N", help="samples for the mode metrics")
    p.add_argument(
        "--mode-min-count",
        type=int,
        metavar="N",
        help="a mode is covered with at least N (high-quality) samples (default: a fifth of a "
        "perfect generator's share for mixtures and classes, 1 for Stacked MNIST)",
    )
    p.add_argument(
        "--allow-weak-classifier",
        action="store_true",
        help="use a classifier below its target accuracy, flagging the mode metrics (default: "
        "refuse it)",
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to the run's MLflow run")
    p.set_defaults(func=_cli)
