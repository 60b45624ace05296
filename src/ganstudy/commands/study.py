"""``ganstudy study design|init-tracking|cost|look|conformance``: the study-level steps of the workflow."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ganstudy import store
from ganstudy.analysis.comparisons import pairs_csv
from ganstudy.errors import ConfigError
from ganstudy.study.files import atomic_write, design_csv, load_configs, run_config_yaml
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study


def _schema_path(arg: str | None) -> Path:
    path = Path(arg) if arg else default_schema_path()
    if not path.is_file():
        raise ConfigError(f"study config schema {path} does not exist")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: an integer >= 1")
    return value


def _json_arg(text: str, option: str) -> dict:
    return store.parse_json_object(text, option)


def _cmd_design(args) -> int:
    config = _json_arg(args.json, "--json") if args.json else load_configs(args.config)
    study = Study.from_config(config, _schema_path(args.schema))
    atomic_write(args.design, design_csv(study.design_rows()))
    if args.comparisons:
        atomic_write(args.comparisons, pairs_csv(study.pairs))
    if args.resolved:
        atomic_write(args.resolved, yaml.safe_dump(study.config, sort_keys=False))
    if args.run_configs:
        for variant in study.variants:
            path = Path(args.run_configs) / f"{variant.key}.yaml"
            atomic_write(path, run_config_yaml(variant.run_config))
    print(f"{args.design}: {len(study.runs)} runs of study {study.name}")
    return 0


def _cmd_init_tracking(args) -> int:
    from ganstudy.tracking import backend, ui

    backend.bound_http_waits()
    uri = backend.resolve_uri(args.uri)
    try:
        experiment_id = backend.init_store(uri, args.experiment)
    except Exception as err:  # noqa: BLE001 - the store only mirrors the runs: warn, go on
        backend.warn_failure("study", uri, f"opening the store: {backend.describe_error(err)}")
        return 0
    print(f"MLflow store {uri}: experiment {args.experiment!r} (id {experiment_id})")
    print(ui.ui_hint(uri, experiment_id))
    return 0


def _gpu_memory_lines(study) -> list[str]:
    """The study against the GPUs' free memory: ConfigError for a job that cannot fit; the
    largest job and the jobs per GPU. $GANSTUDY_GPU_MEMORY_MIB checks it against a GPU of that
    size where there is none."""
    import os

    from ganstudy.study import gpu_slots, memory

    gpus = gpu_slots.visible_gpus(study.config["gpus"]["count"])
    if not gpus and os.environ.get(memory.GPU_MEMORY_ENV):
        gpus = ["0"]
    gpu = memory.plan(study, gpus)
    if gpu.largest is None:
        return [
            f"GPU memory: not checked ({gpu.note}); ${memory.GPU_MEMORY_ENV}=<MiB> checks the "
            "study against a GPU with that much free memory."
        ]
    lines = [f"GPU memory: the largest job is {gpu.largest.name}: about {gpu.largest.describe()}."]
    lines.append(
        f"Every job fits on a GPU with {gpu.free_bytes / 2**30:,.2f} GiB free; {gpu.note}."
    )
    if gpu.warning:
        lines.append(gpu.warning)
    return lines


def _cmd_cost(args) -> int:
    from ganstudy.analysis import planning
    from ganstudy.study import cost, plan

    study = Study.from_config(load_configs(args.config), _schema_path(args.schema))
    # Before any output: a job that cannot fit on the GPU is a config error.
    gpu_lines = _gpu_memory_lines(study)
    print(cost.table(cost.estimate(study, data_root=args.data_root)))
    print("\n".join(gpu_lines))
    print(_disk_line(study))
    print()
    print("Primary hypotheses (analysis.primary), each pooled over its cells:")
    print(planning.table(planning.evaluate(planning.plan(study))))
    for note in study.primary_notes:
        print(f"Note: {note}.")
    if study.waves.sequential:
        from ganstudy.study import expected

        print()
        print("Sequential design (analysis.sequential): maximum and expected cost per block, by "
              "simulation of whole studies:")  # fmt: skip
        gpus = args.gpus if args.gpus is not None else _gpu_count(study)
        print(expected.table(study, gpus, args.simulations, data_root=args.data_root))
    print()
    print("Secondary comparisons (exploratory), per cell, Holm over their own family:")
    print(plan.table(plan.plan(study)))
    return 0


def _disk_line(study) -> str:
    """The disk the whole study holds when finished and at its peak with as many training jobs
    at once as this machine runs (its cores, and its GPUs' slots where it has GPUs)."""
    import os

    from ganstudy.study import disk, gpu_slots, memory

    cores = os.cpu_count() or 1
    gpus = gpu_slots.visible_gpus(study.config["gpus"]["count"])
    slots = len(gpus) * memory.plan(study, gpus, cores).jobs_per_gpu
    at_once, basis = disk.jobs_at_once(study, slots, cores, None)
    return disk.summary(disk.estimate(study, jobs_at_once=at_once), f"this machine: {basis}")


def _gpu_count(study) -> int:
    from ganstudy.study import gpu_slots

    return max(1, len(gpu_slots.visible_gpus(study.config["gpus"]["count"])))


def _cmd_look(args) -> int:
    from ganstudy.aggregate import summary
    from ganstudy.analysis import strata
    from ganstudy.report.inputs import plain
    from ganstudy.study import looks

    if not Path(args.config).is_file():
        raise ConfigError(f"--config {args.config} does not exist")
    study = Study.from_config(load_configs([args.config]), _schema_path(args.schema))
    plan = study.waves
    if not plan.sequential:
        raise ConfigError(
            f"--config {args.config}: analysis.sequential has one look (a fixed design); "
            "allowed: a study with waves > 1"
        )
    if not 1 <= args.look <= plan.looks:
        raise ConfigError(f"--look {args.look} is not allowed; allowed: 1 to {plan.looks}")
    records = looks.previous(study, args.results, args.look)
    trained = looks.runs_through(study, records, args.look)
    runs = plain(summary.collect(args.results))
    runs = runs[runs["run_dir"].isin(set(trained))]
    p_values, sizes = [], []
    for h in study.primary:
        p, n_candidate, n_baseline = strata.look_p(h, runs, study.pairs)
        p_values.append(p)
        sizes.append((n_candidate, n_baseline))
    record = looks.decide(study, args.results, args.look, p_values, sizes, trained)
    record = looks.write(args.results, args.look, record, args.out)
    for h in record["hypotheses"]:
        if h["nominal_level"] is None:
            print(f"look {args.look}: {h['name']}: {h['status']} at look {h['decided_at']}")
            continue
        p = "-" if h["p"] is None else f"{h['p']:.3g}"
        print(f"look {args.look}: {h['name']}: {h['status']} (p {p}, boundary p <= "
              f"{h['nominal_level']:.3g})")  # fmt: skip
    going = record["continuing_blocks"]
    print(f"next wave: {', '.join(going)}" if going else "the study stops here")
    return 0


def _cmd_conformance(args) -> int:
    from ganstudy.report.inputs import load_references
    from ganstudy.study import reproduce

    study = Study.from_config(load_configs(args.config), _schema_path(args.schema))
    found = reproduce.checks(study, load_references())
    if not found:
        raise ConfigError(
            "no enabled block of the study names a published protocol (key 'reproduces'); "
            "allowed: a study such as config/reproduce.yaml"
        )
    print(reproduce.report(found))
    failing = [c for c in found if not c.conforms]
    print(
        f"\n{len(found) - len(failing)} of {len(found)} checks conform"
        + (f"; {len(failing)} do not" if failing else "")
    )
    return 1 if failing else 0


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", required=True, metavar="ACTION")

    p = sub.add_parser(
        "design",
        help="check a study config; write design.csv (the expected runs) and the run configs",
        description="Check a study config against the schema, expand its grid (every run config "
        "validated) and write design.csv; optionally the resolved config with every default and "
        "each variant's run config (<dir>/<dataset>/<arch>/<arm>/bn-g<0|1>-d<0|1>.yaml) and the "
        "planned comparisons.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", nargs="+", help="study config file(s), merged in order")
    source.add_argument("--json", help="the study config as one JSON object")
    p.add_argument("--schema", help="config schema (default: the one shipped with ganstudy)")
    p.add_argument("--design", required=True, help="design.csv to write")
    p.add_argument("--resolved", help="also write the resolved study config (YAML) here")
    p.add_argument(
        "--comparisons",
        help="also write the planned comparisons here (comparisons.csv: baseline and candidate "
        "arm per dataset, architecture and batch norm)",
    )
    p.add_argument("--run-configs", metavar="DIR", help="also write every variant's run config")
    p.set_defaults(func=_cmd_design)

    p = sub.add_parser(
        "init-tracking", help="create the MLflow store and the study's experiment once"
    )
    p.add_argument("--experiment", required=True)
    p.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite)")
    p.set_defaults(func=_cmd_init_tracking)

    p = sub.add_parser(
        "cost",
        help="runs, steps and estimated compute of a study config, the power of its primary "
        "hypotheses and its planned per-cell comparisons",
        description="Estimate a study's training compute from the CPU throughput measured per "
        "architecture (ganstudy.study.cost.STEP_SECONDS).",
    )
    p.add_argument("config", nargs="+", help="study config file(s), merged in order")
    p.add_argument("--schema", help="config schema (default: the one shipped with ganstudy)")
    p.add_argument("--data-root", help="read training-set sizes from prepared manifests here")
    p.add_argument(
        "--gpus", type=_positive_int, metavar="N",
        help="GPUs for the expected wall-clock of a sequential study (default: this machine's, "
        "at least 1)",
    )  # fmt: skip
    p.add_argument(
        "--simulations", type=_positive_int, default=400, metavar="N",
        help="simulated studies per scenario for a sequential study's expected cost (default 400)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_cost)

    p = sub.add_parser(
        "look",
        help="the interim analysis after a wave of a sequential study: decide each primary "
        "hypothesis and the blocks that train the next wave",
        description="Analyse the primary family on every run trained by the end of wave LOOK, "
        "with the decisions of the looks before it as recorded, and write the look's record "
        "(looks/look-<k>.json): per hypothesis rejected, stopped for futility, not rejected or "
        "continue, and the blocks that train the next wave. A look is decided once: a record "
        "kept in looks/.decided/ is written again rather than decided anew.",
    )
    p.add_argument("--config", required=True, help="the resolved study config (study.yaml)")
    p.add_argument("--schema", help="config schema (default: the one shipped with ganstudy)")
    p.add_argument("--results", required=True, help="results directory (holds runs/)")
    p.add_argument("--look", required=True, type=_positive_int, help="the look (1-based)")
    p.add_argument("--out", required=True, help="the look record to write")
    p.set_defaults(func=_cmd_look)

    p = sub.add_parser(
        "conformance",
        help="check the reproduction blocks of a study against their published protocols",
        description="Compare every run config of each block with `reproduces: <protocol>` with "
        "that published protocol (references.yaml), field by field; every difference must be a "
        "departure the block declares with its reason. Exit 1 if any check fails.",
    )
    p.add_argument("config", nargs="+", help="study config file(s), merged in order")
    p.add_argument("--schema", help="config schema (default: the one shipped with ganstudy)")
    p.set_defaults(func=_cmd_conformance)
