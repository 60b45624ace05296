"""GPU acceptance run: everything a machine with a CUDA GPU should show before a study runs on it,
the most valuable measurements first, in one call that fits in 10 minutes on one H200.

    python benchmarks/gpu_acceptance.py --deadline-s 540 [--out acceptance]   # on the GPU machine
    python benchmarks/gpu_acceptance.py --dry-run --out /tmp/acceptance          # anywhere (CPU)
    python benchmarks/gpu_acceptance.py --config config/config.yaml \
        --config config/config.yaml config/reproduce.yaml                      # two tables

Stages, in this order, each timed, each allowed to fail without stopping the others (the exit
status is 1 if any failed or was skipped):

1. ``step calls``: ATen calls (kernel launches) per training step for K = 1, 16, 64, 256 members,
   mlp2d and dcgan28, and host synchronisations between log rows (``benchmarks/step_calls.py``).
2. ``member-steps``: mlp2d and dcgan28 member-steps/s for K = 1, 16, 64, 256, eager against the
   whole step as one CUDA graph (``train.compile: cudagraph``), with the GPU's busy fraction
   (``benchmarks/member_steps.py``).
3. ``mixtures block``: the mixtures block's jobs timed as in 5, for ``--fraction`` of their steps.
4. ``quick study``: the quick study, end to end, with Snakemake on the GPU (into ``OUT/quick``).
5. ``default study blocks``: one training job of every block of the default study, its first
   variant with the block's ``seeds_per_job`` members (trained with ``--compile``, the CUDA
   graph by default), for ``--fraction`` of its planned steps (at least ``--min-steps``), timed
   after one warm-up step. Its time per step is the training loop's own (the step log's clock
   between its first and last rows); the rest of the job's time (set-up, the end-of-run sample
   grids, checkpoints and metrics of every member) is reported beside it, once per job. A
   block's GPU-hours are (time per step x planned steps per job + the rest) x its jobs, jobs one
   after another, summed over variants (each variant timed where its architecture, dataset,
   batch size, width or members differ from one already timed; settings timed in stage 3 are
   not timed again); periodic checkpoints, sample grids and training-time FIDs during a run are
   not in it. Image data are random pixels of the dataset's shape (throughput does not depend
   on them). The table goes to ``OUT/gpu_hours.md`` (and ``.json``), ready for
   config/README.md. Each further ``--config`` (a list of config files merged as Snakemake
   merges them, e.g. the default config and config/reproduce.yaml) gets a table of its own,
   ``OUT/gpu_hours-<last file's stem>.md``.
6. ``gpu tests``: ``pytest -n 0 -m gpu tests/test_gpu.py tests/train/test_graph.py`` (solo and
   ensemble on CUDA, kill and resume, FID CUDA vs CPU, the slot launcher, graph against eager).
7. The ensemble benchmark (K = 32 against solo runs) and the compiled training step against
   eager (``reduce-overhead``), the older measurements.

``OUT/goals.md`` (and ``goals`` in ``OUT/acceptance.json``) sets what was measured beside the
goals on one H200: K = 256 mlp2d member-steps/s at least 100 x K = 1; the GPU busy at least 80%
while the largest ensembles train; the mixtures block in 10 minutes or less and the default
study in 3 GPU-hours or less (jobs one after another); the quick study in under 10 minutes.

``--deadline-s`` bounds the whole run: a stage that would start after it is recorded as
skipped, a running command stage is stopped at it, and the block timings stop between
settings (the table then says which were not timed). ``OUT/acceptance.json`` and
``OUT/goals.md`` are rewritten after every stage, so a run cut off from outside still leaves
what it measured.

``--dry-run`` runs every stage on the CPU at a tiny size (the gpu tests skip, Snakemake only
plans the quick study, one setting per architecture with 2 members for 2 steps, the step calls
of mlp2d for K = 1 and 16, the member-steps eagerly, the ensemble and compile benchmarks on
mlp2d only) so that CI keeps the script working; its tables say it is not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # helpers.write_fake_prepared
sys.path.insert(0, str(REPO / "benchmarks"))


class Clock:
    """The run's deadline: how long a stage may still take."""

    def __init__(self, deadline_s: float | None):
        self.end = None if deadline_s is None else time.monotonic() + deadline_s

    def left(self, wanted: float) -> float:
        return wanted if self.end is None else min(wanted, self.end - time.monotonic())


def skipped(name: str, results: list[dict]) -> None:
    print(f"== {name}: skipped, the deadline has passed", flush=True)
    results.append({"stage": name, "ok": False, "seconds": 0.0, "output": "skipped: deadline"})


STAGES = ["calls", "member-steps", "mixtures", "quick", "blocks", "tests", "ensemble", "compile"]
GOALS = {
    "k256_speedup": ("mlp2d member-steps/s, K = 256 over K = 1", ">=", 100.0),
    "gpu_busy_percent": ("GPU busy while K = 256 trains (%)", ">=", 80.0),
    "mixtures_minutes": ("mixtures block, minutes", "<=", 10.0),
    "default_study_hours": ("default study, GPU-hours", "<=", 3.0),
    "quick_study_minutes": ("quick study end to end, minutes", "<", 10.0),
}


def stage(name: str, results: list[dict], command: list[str], cwd: Path = REPO, timeout=3600):
    """Run one command stage; record its status, time and the tail of its output."""
    if timeout <= 1:
        return skipped(name, results)
    print(f"== {name}: {' '.join(command)}", flush=True)
    start = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
        ok, output = done.returncode == 0, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        partial = (err.stdout or b"") + (err.stderr or b"")
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        ok, output = False, f"{text}\ntimed out after {timeout:.0f} s"
    seconds = time.monotonic() - start
    results.append(
        {"stage": name, "ok": ok, "seconds": round(seconds, 1), "output": output[-4000:]}
    )
    print(output, flush=True)  # whole, for the log; the summary keeps the tail
    print(f"== {name}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s", flush=True)


def _fake_data(data_root: Path, dataset: str, n: int) -> None:
    from helpers import write_fake_prepared

    from ganstudy import store
    from ganstudy.data import registry

    spec = registry.dataset(dataset)
    prepared = store.DataRoot(data_root).prepared_split(dataset, "train")
    if spec.kind == "image" and not prepared.exists():
        write_fake_prepared(data_root, dataset, n, tuple(spec.shape))


def time_blocks(
    args, configs: list[str], device: str, work: Path, clock: Clock, blocks=None, measured=None
) -> list[dict]:
    """Time one job of each distinct setting of every block (of ``blocks`` only, if given);
    GPU-hours per block. Settings not reached before the deadline get no row (the table names
    them). ``measured`` (setting -> times) is shared between calls: a setting is timed once."""
    import torch

    from ganstudy import config, store
    from ganstudy.study import cost
    from ganstudy.study.files import load_configs
    from ganstudy.study.schema import default_schema_path
    from ganstudy.study.workflow import Study
    from ganstudy.train.trainer import Trainer

    study = Study.from_config(load_configs(configs), default_schema_path())
    measured = {} if measured is None else measured
    rows = []
    for v in study.variants:
        if blocks is not None and v.block not in blocks:
            continue
        t = v.run_config["train"]
        planned = cost.planned_steps(study, v)
        members = 2 if args.dry_run else v.seeds_per_job
        setting = (v.arch, v.dataset, t["batch_size"], v.run_config["arch"]["width"], members)
        if args.dry_run:
            setting = (v.arch,)  # one timing per architecture is enough to exercise the code
        if setting not in measured and clock.left(60) < 60:
            rows.append({"block": v.block, "variant": v.key, "not_timed": "deadline"})
            continue
        if setting not in measured:
            steps = 2 if args.dry_run else max(args.min_steps, math.ceil(planned * args.fraction))
            _fake_data(work / "data", v.dataset, 1000 if args.dry_run else 20_000)
            seeds = list(range(members))

            def job(n_steps: int, name: str):
                data = json.loads(json.dumps(v.run_config))
                data["dataset"]["data_root"] = str(work / "data")
                data["train"].update(
                    steps=n_steps, epochs=None, device=device, fid_every=0, compile=args.compile,
                    log_every=max(1, n_steps // 20),
                    checkpoint_every=10 * n_steps, sample_every=10 * n_steps,
                )  # fmt: skip
                data["tracking"] = {"enabled": False}
                out = store.ResultsDir(work).runs / f"{len(rows)}-{name}"
                dirs = [out / f"s{s}" for s in seeds]
                return Trainer(config.from_dict(data), seeds, dirs, progress=False)

            # One step outside the clock: allocations, cuDNN autotuning, compilation.
            job(1, "warm-up").run()
            timed = job(steps, "timed")
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            timed.run()
            if device == "cuda":
                torch.cuda.synchronize()
            whole = time.perf_counter() - start
            step_s = steady_step_seconds(timed.run_dirs[0] / store.LOG)
            # The rest of the job's time: set-up and the end-of-run writes of every member
            # (sample grid, checkpoints, metrics), paid once per job.
            measured[setting] = (step_s, max(0.0, whole - step_s * steps))
            print(f"   {v.key} x{members}: {step_s * 1000:.2f} ms per step, "
                  f"{measured[setting][1]:.2f} s per job besides ({whole:.2f} s in all)",
                  flush=True)  # fmt: skip
        jobs = math.ceil(len(v.seeds) / v.seeds_per_job)
        rows.append(
            {
                "block": v.block,
                "variant": v.key,
                "runs": len(v.seeds),
                "jobs": jobs,
                "members_per_job": v.seeds_per_job,
                "steps_per_run": planned,
                "seconds_per_step": measured[setting][0],
                "seconds_per_job_besides": measured[setting][1],
                "hours": (measured[setting][0] * planned + measured[setting][1]) * jobs / 3600,
            }
        )
    return rows


def steady_step_seconds(log_csv: Path) -> float:
    """Training seconds per step between the first and the last row of a run's step log (its
    ``wall_s`` is the training loop's own clock), so start-up and end-of-run writes stay out."""
    import csv

    with log_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    first, last = rows[0], rows[-1]
    steps = int(last["step"]) - int(first["step"])
    if steps <= 0:
        return float(last["wall_s"]) / max(1, int(last["step"]))
    return (float(last["wall_s"]) - float(first["wall_s"])) / steps


def gpu_hours_table(rows: list[dict], device_name: str, dry_run: bool, configs=()) -> str:
    missing = [r["variant"] for r in rows if "not_timed" in r]
    rows = [r for r in rows if "not_timed" not in r]
    blocks: dict[str, list[dict]] = {}
    for row in rows:
        blocks.setdefault(row["block"], []).append(row)
    lines = [
        f"Measured on {device_name} with `benchmarks/gpu_acceptance.py`"
        + (f" for {' + '.join(Path(f).name for f in configs)}" if configs else "")
        + (" (DRY RUN on the CPU: not a measurement)" if dry_run else ""),
        "",
        "| block | variants | runs | jobs | steps per run | ms per step (job) "
        "| s per job besides the steps | GPU-hours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, items in [*blocks.items(), ("total", rows)]:
        steps = sorted({r["steps_per_run"] for r in items})
        per_step = sorted({round(r["seconds_per_step"] * 1000, 2) for r in items})
        besides = sorted({round(r["seconds_per_job_besides"], 1) for r in items})
        lines.append(
            f"| {name} | {len(items)} | {sum(r['runs'] for r in items)} | "
            f"{sum(r['jobs'] for r in items)} | "
            f"{', '.join(f'{s:,}' for s in steps) if name != 'total' else '-'} | "
            f"{', '.join(map(str, per_step)) if name != 'total' else '-'} | "
            f"{', '.join(map(str, besides)) if name != 'total' else '-'} | "
            f"{sum(r['hours'] for r in items):,.2f} |"
        )
    if missing:
        lines += ["", f"Not timed (deadline reached, not in the total): {', '.join(missing)}"]
    return "\n".join(lines) + "\n"


def goals(summary: dict, results: list[dict], block_tables: dict) -> list[dict]:
    """What was measured beside each goal (None: not measured, e.g. its stage did not run)."""
    found: dict[str, float | None] = dict.fromkeys(GOALS)
    rates = {(r["variant"], r["mode"], r["K"]): r for r in summary.get("member_steps", [])}
    best = None
    for mode in ("cudagraph", "none"):
        one, many = rates.get(("mlp2d/ring8", mode, 1)), rates.get(("mlp2d/ring8", mode, 256))
        if one and many and one["member_steps_per_s"] and many["member_steps_per_s"]:
            ratio = many["member_steps_per_s"] / one["member_steps_per_s"]
            if best is None or ratio > best[0]:
                best = (ratio, many.get("gpu_busy_percent"))
    if best is not None:
        found["k256_speedup"], found["gpu_busy_percent"] = best
    mixtures = [r for r in block_tables.get("mixtures block", []) if "not_timed" not in r]
    if mixtures and all("not_timed" not in r for r in block_tables["mixtures block"]):
        found["mixtures_minutes"] = sum(r["hours"] for r in mixtures) * 60
    default = block_tables.get("default study blocks")
    if default and all("not_timed" not in r for r in default):
        found["default_study_hours"] = sum(r["hours"] for r in default)
    quick = [r for r in results if r["stage"] == "quick study" and r["ok"]]
    if quick and not summary.get("dry_run"):
        found["quick_study_minutes"] = quick[0]["seconds"] / 60
    out = []
    for key, (what, sign, goal) in GOALS.items():
        value = found[key]
        met = None if value is None else {
            ">=": value >= goal, "<=": value <= goal, "<": value < goal}[sign]  # fmt: skip
        out.append({"goal": key, "what": what, "target": f"{sign} {goal:g}",
                    "measured": None if value is None else round(value, 2), "met": met})  # fmt: skip
    return out


def goals_table(rows: list[dict], device_name: str, dry_run: bool) -> str:
    lines = [
        f"Goals on {device_name}, `benchmarks/gpu_acceptance.py`"
        + (" (DRY RUN on the CPU: not a measurement)" if dry_run else ""),
        "",
        "| goal | target | measured | met |",
        "|---|---|---:|---|",
    ]
    for r in rows:
        measured = "not measured" if r["measured"] is None else f"{r['measured']:,}"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['what']} | {r['target']} | {measured} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="acceptance", help="output directory")
    parser.add_argument(
        "--config",
        nargs="+",
        action="append",
        metavar="FILE",
        help="config files merged into one study whose blocks are timed; repeat for another "
        "table (default: config/config.yaml)",
    )
    parser.add_argument("--fraction", type=float, default=0.01, help="of each block's steps")
    parser.add_argument("--min-steps", type=int, default=200)
    parser.add_argument("--dry-run", action="store_true", help="everything on the CPU, tiny")
    parser.add_argument("--ensemble-steps", type=int, default=300)
    parser.add_argument("--ensemble-repeats", type=int, default=3)
    parser.add_argument(
        "--quick-config",
        nargs="*",
        default=[],
        metavar="FILE",
        help="config files merged on top of the quick study (to leave out blocks, say)",
    )
    parser.add_argument(
        "--quick-dir", default=None, help="the quick study's working directory (default OUT/quick)"
    )
    parser.add_argument(
        "--deadline-s", type=float, default=None, help="stop starting stages after this long"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=STAGES)
    parser.add_argument(
        "--compile",
        default=None,
        choices=["none", "default", "reduce-overhead", "cudagraph"],
        help="train.compile of the timed block jobs (default: cudagraph on a GPU, none on the CPU)",
    )
    args = parser.parse_args()
    import torch

    from ganstudy import atomic

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    studies = args.config or [[str(REPO / "config" / "config.yaml")]]
    for path in [f for group in studies for f in group] + args.quick_config:
        if not Path(path).is_file():
            print(f"config file {path} does not exist", file=sys.stderr)
            return 2
    device = "cpu" if args.dry_run else "cuda"
    args.compile = args.compile or ("none" if args.dry_run else "cudagraph")
    device_name = "the CPU" if args.dry_run else torch.cuda.get_device_name(0)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.deadline_s)
    results: list[dict] = []
    py = sys.executable
    summary = {
        "device": device_name,
        "dry_run": args.dry_run,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "stages": results,
    }

    block_tables: dict[str, list[dict]] = {}

    def record() -> None:
        summary["goals"] = goals(summary, results, block_tables)
        atomic.write_text(out / "goals.md", goals_table(summary["goals"], device_name,
                                                         args.dry_run))  # fmt: skip
        atomic.write_text(out / "acceptance.json", json.dumps(summary, indent=2))

    measured: dict = {}  # block settings timed, shared by the mixtures and blocks stages

    def in_process(name: str, work, write) -> None:
        """Run ``work()`` as stage ``name``; ``write(result)`` returns its table."""
        if clock.left(60) < 60:
            skipped(name, results)
            return
        print(f"== {name}", flush=True)
        start = time.monotonic()
        try:
            note, ok = write(work()), True
            print(note, flush=True)
        except Exception as err:  # noqa: BLE001 - one failed stage must not hide the others
            ok, note = False, f"{type(err).__name__}: {err}"
            print(note, file=sys.stderr)
        results.append({"stage": name, "ok": ok,
                        "seconds": round(time.monotonic() - start, 1), "output": note[-4000:]})  # fmt: skip
        record()

    if "calls" not in args.skip:
        import step_calls

        variants, members = (["mlp2d"], [1, 16]) if args.dry_run else (
            ["mlp2d", "dcgan28"], [1, 16, 64, 256])  # fmt: skip

        def write_calls(rows):
            summary["step_calls"] = rows
            atomic.write_text(out / "step_calls.json", json.dumps(rows, indent=2))
            return step_calls.render(rows)

        in_process("step calls", lambda: step_calls.rows(variants, members, device), write_calls)
    if "member-steps" not in args.skip:
        import member_steps

        size = dict(variants=["mlp2d"], members=[1, 2], steps=2, warm_up=1) if args.dry_run \
            else dict(variants=["mlp2d", "dcgan28"], members=[1, 16, 64, 256], steps=100,
                      warm_up=10)  # fmt: skip

        def write_member_steps(rows):
            summary["member_steps"] = rows
            atomic.write_text(out / "member_steps.json", json.dumps(rows, indent=2))
            return member_steps.render(rows)

        in_process("member-steps", lambda: member_steps.rows(
            device=device, batch_size=64, **size), write_member_steps)  # fmt: skip

    def blocks_stage(name: str, configs, suffix: str, blocks=None) -> None:
        def work():
            with tempfile.TemporaryDirectory(prefix="ganstudy-accept-") as tmp:
                return time_blocks(args, configs, device, Path(tmp), clock, blocks, measured)

        def write(rows):
            block_tables[name] = rows
            table = gpu_hours_table(rows, device_name, args.dry_run, configs)
            atomic.write_text(out / f"gpu_hours{suffix}.json", json.dumps(rows, indent=2))
            atomic.write_text(out / f"gpu_hours{suffix}.md", table)
            return table

        in_process(name, work, write)

    if "mixtures" not in args.skip:
        blocks_stage("mixtures block", studies[0], "-mixtures", blocks={"mixtures"})
    if "quick" not in args.skip:
        quick = Path(args.quick_dir).resolve() if args.quick_dir else out / "quick"
        quick.mkdir(parents=True, exist_ok=True)
        configs = [str(REPO / "config" / "config.yaml"), str(REPO / "config" / "quick.yaml"),
                   *[str(Path(f).resolve()) for f in args.quick_config]]  # fmt: skip
        command = [py, "-m", "snakemake", "--cores", "all",
                   "--snakefile", str(REPO / "workflow" / "Snakefile"),
                   "--configfile", *configs, "--directory", str(quick)]  # fmt: skip
        stage("quick study", results, [*command, "-n"] if args.dry_run else command,
              timeout=clock.left(7200))  # fmt: skip
        record()
    if "blocks" not in args.skip:
        for index, configs in enumerate(studies):
            names = " + ".join(Path(f).name for f in configs)
            name = "default study blocks" if index == 0 else f"blocks of {names}"
            blocks_stage(name, configs, "" if index == 0 else f"-{Path(configs[-1]).stem}")
    if "tests" not in args.skip:
        stage(
            "gpu tests",
            results,
            # One process (-n 0): the GPU tests share one device and time some of their steps.
            [py, "-m", "pytest", "-q", "-n", "0", "-m", "gpu", "-rA", "tests/test_gpu.py",
             "tests/train/test_graph.py"],
            timeout=clock.left(1200),
        )  # fmt: skip
        record()
    if "ensemble" not in args.skip:
        size = ["--members", "2", "--steps", "2", "--repeats", "1"] if args.dry_run else [
            "--members", "32", "--steps", str(args.ensemble_steps),
            "--repeats", str(args.ensemble_repeats)]  # fmt: skip
        variants = ["mlp2d"] if args.dry_run else ["mlp2d", "dcgan28"]
        stage("ensemble benchmark", results, [py, "benchmarks/ensemble_throughput.py", *size,
              "--device", device, "--variants", *variants], timeout=clock.left(1800))  # fmt: skip
        record()
    if "compile" not in args.skip:
        size = ["--steps", "3", "--repeats", "1", "--variants", "mlp2d"] if args.dry_run else [
            "--steps", "300", "--repeats", "3", "--variants", "mlp2d", "dcgan28"]  # fmt: skip
        # Compiling costs about 30 s on a CPU: the dry run checks the stage with the eager arms.
        mode = "none" if args.dry_run else "reduce-overhead"
        stage("compiled vs eager", results, [py, "benchmarks/train_throughput.py", *size,
              "--device", device, "--compile", mode, "--no-mlflow"],
              timeout=clock.left(1800))  # fmt: skip
        record()

    print("\n".join(f"{r['stage']:<22} {'ok' if r['ok'] else 'FAILED':<7} {r['seconds']:>8.1f} s"
                    for r in results))  # fmt: skip
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
