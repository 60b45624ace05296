"""``ganstudy fid-reference``: a dataset's FID reference statistics, computed once and cached."""

from __future__ import annotations

import argparse
import json

from ganstudy import atomic
from ganstudy.metrics import fid_protocol


def _cli(args) -> int:
    from ganstudy.metrics import fid

    protocol = fid.protocol_for(
        args.dataset, args.fid_preset, args.fid_samples, args.fid_dims, args.allow_singular_fid
    )
    weights = fid.resolve_weights(args.fid_weights)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    stats, settings = fid.reference_statistics(
        args.dataset, args.data_root, protocol, weights, device, args.mirror
    )
    path = fid.stats_path(args.data_root, args.dataset, protocol, stats.count, weights.sha256)
    receipt = {"dataset": args.dataset, "statistics": str(path), "settings": settings}
    atomic.write_text(args.out, json.dumps(receipt, indent=2) + "\n")
    print(f"{args.out}: {args.dataset} reference statistics ({protocol.name}) in {path}")
    return 0


def _fid_options(p) -> None:
    p.add_argument(
        "--fid-preset",
        default="full",
        choices=list(fid_protocol.PRESETS),
        help="see ganstudy evaluate",
    )
    p.add_argument("--fid-samples", type=int, metavar="N", help="reference image count")
    p.add_argument("--fid-dims", type=int, metavar="D", help="Inception feature block")
    p.add_argument("--allow-singular-fid", action="store_true")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default="data")
    p.add_argument("--mirror", help="data mirror (default: $GANSTUDY_MIRROR)")
    p.add_argument("--fid-weights", metavar="PATH", help="default: $GANSTUDY_FID_WEIGHTS")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _fid_options(p)
    p.add_argument("--out", required=True, help="receipt (JSON) naming the cached statistics")
    p.set_defaults(func=_cli)
