"""Train the full evaluation classifiers and print their test accuracies against their targets.

    python benchmarks/classifier_accuracy.py --mirror DIR [--data-root DIR] [--threads N]

Trains each classifier with its default settings (the ones ``ganstudy classifier train`` uses)
on its prepared train split and measures it on the full test split. Nothing is saved unless
``--save`` is given. Exits with status 1 when a classifier misses its target accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from ganstudy.data.registry import classifier_datasets
from ganstudy.metrics.classifiers import train_classifier


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="default: a temporary directory")
    parser.add_argument("--mirror", default=None, help="dataset mirror (default: $GANSTUDY_MIRROR)")
    parser.add_argument(
        "--datasets", nargs="+", default=classifier_datasets(), choices=classifier_datasets()
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--save", action="store_true", help="keep the trained classifiers")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root or tmp
        rows, ok = [], True
        for name in args.datasets:
            start = time.perf_counter()
            _, info = train_classifier(
                name,
                root,
                seed=args.seed,
                device=args.device,
                mirror=args.mirror,
                save=args.save,
                log=lambda m, n=name: print(f"[{n}] {m}", file=sys.stderr, flush=True),
            )
            wall = time.perf_counter() - start
            passed = info["test_accuracy"] >= info["target_accuracy"]
            ok &= passed
            rows.append((name, info, wall, passed))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'classifier':<14} {'epochs':>6} {'test acc':>9} {'target':>7} {'train s':>8}  result")
    for name, info, _wall, passed in rows:
        print(
            f"{name:<14} {info['epochs']:>6} {info['test_accuracy']:>9.4f} "
            f"{info['target_accuracy']:>7.3f} {info['train_time_s']:>8.1f}  "
            f"{'ok' if passed else 'BELOW TARGET'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
