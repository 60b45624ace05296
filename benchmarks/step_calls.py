"""ATen calls per training step (each a kernel launch on a GPU, views aside) against the
ensemble's members K, and the host synchronisations between log rows (there should be none).

Counted with a ``TorchDispatchMode`` (``ganstudy.train.calls.per_step``): two steps inside a
chunk of drawn numbers, plus 1 / ``CHUNK_STEPS`` of what the step that draws the next chunk adds
(its K calls per part), after a first step that builds the optimizers' state. Kernels are the
calls that are not views (on a GPU, the launches).

    python benchmarks/step_calls.py                                 # mlp2d, K = 1, 16, 64, 256
    python benchmarks/step_calls.py --variants mlp2d dcgan28 --members 1 16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _common import resolve_variant, table, variant_config

from ganstudy.data.draws import CHUNK_STEPS
from ganstudy.train import calls
from ganstudy.train.trainer import Trainer


def count(variant: str, members: int, work: Path, device: str, batch_size: int):
    cfg = variant_config(variant, work / "data", 10 * CHUNK_STEPS, batch_size, device)
    dirs = [work / f"{variant.replace('/', '-')}-{members}" / f"s{k}" for k in range(members)]
    return calls.per_step(Trainer(cfg, list(range(members)), dirs, progress=False))


def rows(variants, members, device="cpu", batch_size=4) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="ganstudy-calls-"))
    out = []
    try:
        for variant in [resolve_variant(v) for v in variants]:
            for K in members:
                found = count(variant, K, work, device, batch_size)
                out.append({
                    "variant": variant, "K": K, "device": device,
                    "aten_calls_per_step": round(found.total, 1),
                    "kernels_per_step": round(found.kernels, 1),
                    "drawing_calls_per_chunk": round(found.drawing_total),
                    "host_syncs": len(found.syncs),
                })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def render(found: list[dict]) -> str:
    keys = ["variant", "K", "device", "aten_calls_per_step", "kernels_per_step",
            "drawing_calls_per_chunk", "host_syncs"]  # fmt: skip
    return table(keys, [[r[k] for k in keys] for r in found])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="*", default=["mlp2d"])
    parser.add_argument("--members", nargs="*", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    found = rows(args.variants, args.members, args.device, args.batch_size)
    print(render(found))
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
