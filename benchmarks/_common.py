"""Shared pieces of the training benchmarks."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import write_fake_prepared  # noqa: E402

from ganstudy import config, store  # noqa: E402

VARIANTS = {
    "mlp2d/ring8": {"dataset": {"name": "ring8"}, "arch": {"name": "mlp2d"}},
    "dcgan28/fashion_mnist": {"dataset": {"name": "fashion_mnist"}, "arch": {"name": "dcgan28"}},
}
# Steps per timed run where a benchmark is not told: a few seconds per run on one CPU thread.
DEFAULT_STEPS = {"mlp2d/ring8": 300, "dcgan28/fashion_mnist": 60}


def resolve_variant(name: str) -> str:
    """A benchmark variant by its full name (``mlp2d/ring8``) or its architecture (``mlp2d``)."""
    if name in VARIANTS:
        return name
    by_arch = {v.split("/")[0]: v for v in VARIANTS}
    if name in by_arch:
        return by_arch[name]
    raise SystemExit(
        f"unknown variant {name!r}; allowed: {', '.join(VARIANTS)} (or the architecture alone: "
        f"{', '.join(by_arch)})"
    )


def variant_config(
    variant: str, data_root: Path, steps: int, batch_size: int, device: str, tracking=None
):
    """A run config of a benchmark variant; image data is random uint8 of the right shape
    (throughput does not depend on the pixels) unless a prepared set already exists."""
    data = {
        **VARIANTS[resolve_variant(variant)],
        "loss": {"name": "lsgan"},
        "train": {
            "steps": steps,
            "batch_size": batch_size,
            "log_every": 50,
            "checkpoint_every": 10 * steps,
            "sample_every": 10 * steps,
            "device": device,
        },
        "tracking": tracking or {"enabled": False},
    }
    data["dataset"] = {**data["dataset"], "data_root": str(data_root)}
    name = data["dataset"]["name"]
    prepared = store.DataRoot(data_root).prepared_split(name, "train")
    if name == "fashion_mnist" and not prepared.exists():
        write_fake_prepared(data_root, name, 60_000, (1, 28, 28))
    return config.from_dict(data)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """The median of ``values`` with a distribution-free confidence interval: (median, low,
    high, coverage).

    For n independent values, the interval between the j-th smallest and the j-th largest
    covers the true median with probability 1 - 2 P(Binomial(n, 1/2) < j); j is the largest
    whose coverage is still at least ``level``. Below n = 6 no such j exists for 95%; the
    interval is then [min, max] with its own, lower, coverage.
    """
    from math import comb

    xs = sorted(values)
    n = len(xs)

    def coverage(j: int) -> float:
        return 1.0 - 2.0 * sum(comb(n, i) for i in range(j)) / 2**n

    j = 1
    while j + 1 <= (n + 1) // 2 and coverage(j + 1) >= level:
        j += 1
    return statistics.median(xs), xs[j - 1], xs[n - j], coverage(j)


def table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
