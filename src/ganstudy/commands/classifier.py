"""``ganstudy classifier train|show``: the evaluation classifiers of the mode metrics."""

from __future__ import annotations

import argparse
import json
import sys

from ganstudy.commands.data import add_location


def _cmd_classifier_train(args) -> int:
    from ganstudy.metrics.classifiers import train_classifier

    _, info = train_classifier(
        args.dataset,
        args.data_root,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        mirror=args.mirror,
        train_limit=args.train_limit,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(
        f"{info['dataset']}: test accuracy {info['test_accuracy']:.4f} "
        f"({info['epochs']} epochs, {info['train_time_s']:.0f} s on {info['device']})"
    )
    return 0


def _cmd_classifier_show(args) -> int:
    from ganstudy.metrics.classifiers import load_classifier

    _, info = load_classifier(args.data_root, args.dataset)
    print(json.dumps(info, indent=2, default=str))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="classifier_command", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train and cache the classifier of a dataset")
    p.add_argument("--dataset", required=True)
    add_location(p)
    p.add_argument("--epochs", type=int, default=None, help="default: the dataset's setting")
    p.add_argument(
        "--train-limit", type=int, metavar="N", help="train on the first N images only (quick runs)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_classifier_train)
    p = sub.add_parser("show", help="print the stored info of a trained classifier")
    p.add_argument("--dataset", required=True)
    add_location(p, mirror=False)
    p.set_defaults(func=_cmd_classifier_show)
