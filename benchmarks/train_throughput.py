"""Training throughput of the engine against a minimal plain-PyTorch loop.

Both train the same model (same layers, initialisation, batch, Adam settings, loss) side by side
in one process, in an order that turns every repeat; the medians of the per-repeat ratios are
reported with a distribution-free 95% confidence interval (the machine's speed drifts: a single
run pair proves little). The engine's time includes everything a real run does: per-member
random streams, divergence bookkeeping, the step log every 50 steps, the final checkpoint and
sample grid. A third arm adds MLflow tracking to a local SQLite store (with system metrics, as
by default), to measure its overhead per run; MLflow's import, once per process, is left out by
the warm-up.

With ``--members K`` (K > 1) the engine trains a K-member ensemble and the plain arm is its
plain batched equivalent: the same member-dimension networks in the minimal loop (one noise draw
for all members, the sum of the members' losses differentiated, one optimizer step).
``--control`` times a second plain loop beside the first: their ratio is what the machine's own
drift does to a ratio of identical work. For solo runs a "member layers" arm runs the minimal
loop on the engine's member-dimension networks (K = 1): engine/that isolates the engine's
bookkeeping from the cost of the layers every member shares (a solo run uses the ensemble's
kernels, which keeps member k bitwise equal to solo run k).

    python benchmarks/train_throughput.py [--steps N] [--repeats 9] [--members 1] [--device cpu]

Steps per run default to a few seconds on one CPU thread (mlp2d 300, dcgan28 60).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
from _common import DEFAULT_STEPS, median_ci, median_time, resolve_variant, table, variant_config
from torch import nn

from ganstudy import config
from ganstudy.data.streams import make_stream
from ganstudy.losses import build_loss
from ganstudy.numerics import COMPILE_MODES
from ganstudy.train import updates
from ganstudy.train.step import MemberSeeds, init_networks
from ganstudy.train.trainer import Trainer


def plain_networks(variant: str, z_dim: int) -> tuple[nn.Module, nn.Module]:
    """The same architectures written with torch.nn's standard layers."""
    if resolve_variant(variant).startswith("mlp2d"):
        g = nn.Sequential(
            nn.Linear(z_dim, 400),
            nn.BatchNorm1d(400),
            nn.ReLU(),
            *[m for _ in range(3) for m in (nn.Linear(400, 400), nn.BatchNorm1d(400), nn.ReLU())],
            nn.Linear(400, 2),
        )
        d = nn.Sequential(
            nn.Linear(2, 200),
            nn.BatchNorm1d(200),
            nn.ReLU(),
            *[m for _ in range(2) for m in (nn.Linear(200, 200), nn.BatchNorm1d(200), nn.ReLU())],
            nn.Linear(200, 1),
            nn.Flatten(0),
        )
        return g, d
    g = nn.Sequential(
        nn.Linear(z_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 128 * 49), nn.BatchNorm1d(128 * 49), nn.ReLU(),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * 49, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(0.2),
        nn.Linear(1024, 1), nn.Flatten(0),
    )  # fmt: skip
    return g, d


def plain_loop(cfg, variant: str, device: torch.device):
    """A minimal GAN loop of the model written with torch.nn's standard layers."""
    g, d = plain_networks(variant, cfg.arch.z_dim)
    for m in list(g.modules()) + list(d.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0, 0.02)
            nn.init.zeros_(m.bias)
    return minimal_loop(cfg, g.to(device), d.to(device), 1, device, member_dim=False)


def plain_batched_loop(cfg, members: int, device: torch.device):
    """The plain batched equivalent of a K-member ensemble: the engine's member-dimension
    networks in the minimal loop, with none of the engine's per-member noise streams,
    divergence masks, logs or files."""
    g, d = init_networks(cfg, list(range(members)), device)
    return minimal_loop(cfg, g, d, members, device, member_dim=True)


def minimal_loop(cfg, g, d, members: int, device: torch.device, member_dim: bool):
    """One D step and one G step per iteration, nothing else, with the engine's own optimizer
    implementation (``ganstudy.train.updates``: Adam fused on CUDA, foreach on the CPU), so that
    engine/plain measures the engine's bookkeeping and not a choice of optimizer kernel.

    Networks with a member dimension take (K, B, ...) batches, one noise draw for all members,
    and the members' losses are summed; plain networks take member 0's (B, ...) batch."""
    t = cfg.train
    opt_g = updates.build_optimizer(g.parameters(), t.lr_g, t)
    opt_d = updates.build_optimizer(d.parameters(), t.lr_d, t)
    d_loss, g_loss, _ = build_loss(cfg.loss)
    data_seeds = [MemberSeeds.from_seed(s).data for s in range(members)]
    gens = [torch.Generator(device=device).manual_seed(s) for s in data_seeds]
    stream = make_stream(cfg, gens, data_seeds, device)
    shape = (
        (members, t.batch_size, cfg.arch.z_dim) if member_dim else (t.batch_size, cfg.arch.z_dim)
    )

    position = {"batch": 0}  # the stream reads on across repeats (its draws come in order)

    def run():
        for _ in range(t.steps):
            real = stream.batch(position["batch"])
            position["batch"] += 1
            if not member_dim:
                real = real[0]
            with torch.no_grad():
                fake = g(torch.randn(shape, device=device))
            loss = d_loss(d(real), d(fake))
            opt_d.zero_grad(set_to_none=True)
            (loss.sum() if member_dim else loss).backward()
            opt_d.step()
            loss = g_loss(d(g(torch.randn(shape, device=device))))
            opt_g.zero_grad(set_to_none=True)
            (loss.sum() if member_dim else loss).backward()
            opt_g.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per timed run (default: per variant)"
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--members", type=int, default=1, help="ensemble size K (1: solo runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads of torch (a study job's default: 1)"
    )
    parser.add_argument(
        "--compile",
        default="none",
        choices=COMPILE_MODES,
        help="also time the engine with train.compile set to this (after its compile warm-up)",
    )
    parser.add_argument("--variants", nargs="*", default=["mlp2d/ring8", "dcgan28/fashion_mnist"])
    parser.add_argument(
        "--no-mlflow", action="store_true", help="leave out the arm with MLflow tracking"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="add a second plain loop: its ratio to the first is the machine's noise floor",
    )
    args = parser.parse_args()
    if args.members < 1:
        raise SystemExit(f"--members {args.members}: give an ensemble size of at least 1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="ganstudy-bench-"))
    rows = []
    try:
        for variant in [resolve_variant(v) for v in args.variants]:
            rows.append(measure(variant, args, device, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        table(
            [
                "variant",
                "K",
                "device",
                "threads",
                "batch",
                "steps",
                "repeats",
                "plain steps/s",
                "engine steps/s",
                "engine/plain [95% CI]",
                "engine/member-layers plain",
                "plain/plain control",
                "engine+mlflow steps/s",
                "mlflow overhead",
                "compiled/eager speed",
            ],
            rows,
        )
    )
    print(
        "\nengine/plain and the control: medians of the per-repeat ratios; the interval covers "
        "the true median with the probability given (distribution-free; [min, max] below 6 "
        "repeats)."
    )


def measure(variant: str, args, device: torch.device, work: Path) -> list:
    """One table row: every arm of ``variant`` timed ``args.repeats`` times, in turns."""
    steps = args.steps or DEFAULT_STEPS[variant]
    seeds = list(range(args.members))

    def configs(steps: int) -> dict:
        base = variant_config(variant, work / "data", steps, args.batch_size, args.device)
        tracking = {"enabled": True, "uri": f"sqlite:///{work}/mlflow.db", "experiment": "bench"}
        out = {"engine": base}
        if not args.no_mlflow:
            out["tracked"] = dataclasses.replace(base, tracking=config.TrackingConfig(**tracking))
        if args.compile != "none":
            train = dataclasses.replace(base.train, compile=args.compile)
            out["compiled"] = dataclasses.replace(base, train=train)
        return out

    def plain(c):
        if args.members == 1:
            return plain_loop(c, variant, device)
        return plain_batched_loop(c, args.members, device)

    if not args.no_mlflow:
        # The experiment's artifacts go under the temporary directory too (a SQLite store's
        # default artifact root is ./mlruns in the working directory).
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{work}/mlflow.db")
        if client.get_experiment_by_name("bench") is None:
            client.create_experiment("bench", artifact_location=(work / "artifacts").as_uri())

    counter = {"n": 0}

    def engine(c):
        counter["n"] += 1
        root = work / variant.replace("/", "-") / f"run{counter['n']}"
        Trainer(c, seeds, [root / f"s{s}" for s in seeds], device=device, progress=False).run()

    # Warm-up with short runs: first allocations, lazy imports (MLflow's too), compiling.
    warm_up = min(20, steps)
    plain(configs(warm_up)["engine"])()
    for c in configs(warm_up).values():
        engine(c)
    cfgs = configs(steps)
    arms = {"plain": plain(cfgs["engine"])}
    if args.members == 1:
        arms["layers"] = plain_batched_loop(cfgs["engine"], 1, device)
    if args.control:
        arms["control"] = plain(cfgs["engine"])
    arms.update({name: (lambda c=c: engine(c)) for name, c in cfgs.items()})
    times = {name: [] for name in arms}
    for repeat in range(args.repeats):
        # The order turns every repeat, so that a drifting load favours no arm; the ratios are
        # taken within a repeat.
        turn = repeat % len(arms)
        for name in list(arms)[turn:] + list(arms)[:turn]:
            times[name].append(median_time(arms[name], 1))

    def per_repeat(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(times[a], times[b])]

    def with_ci(ratios: list[float]) -> str:
        middle, low, high, coverage = median_ci(ratios)
        if len(ratios) == 1:
            return f"{middle:.3f}"
        return f"{middle:.3f} [{low:.3f}, {high:.3f}] ({100 * coverage:.0f}%)"

    plain_s, engine_s = (statistics.median(times[n]) for n in ("plain", "engine"))
    tracked_rate = overhead = compiled = control = layers = "-"
    if "layers" in arms:
        layers = with_ci(per_repeat("layers", "engine"))
    if "control" in arms:
        control = with_ci(per_repeat("plain", "control"))
    if "tracked" in arms:
        overhead = f"{100 * (statistics.median(per_repeat('tracked', 'engine')) - 1):+.1f}%"
        tracked_rate = f"{steps / statistics.median(times['tracked']):.1f}"
    if "compiled" in arms:
        compiled = with_ci(per_repeat("engine", "compiled"))
    return [
        variant,
        args.members,
        str(device),
        args.threads,
        args.batch_size,
        steps,
        args.repeats,
        f"{steps / plain_s:.1f}",
        f"{steps / engine_s:.1f}",
        with_ci(per_repeat("plain", "engine")),
        layers,
        control,
        tracked_rate,
        overhead,
        compiled,
    ]


if __name__ == "__main__":
    main()
