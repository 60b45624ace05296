"""The store: every path of the record is formatted, parsed and found in one place."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ring_config

from ganstudy import store
from ganstudy.errors import ConfigError
from ganstudy.store import RunKey


def test_run_key_formats_and_parses_its_directory():
    key = RunKey("stacked_mnist", "dcgan28", "lsgan_chi2", True, False, 12)
    assert key.run_dir == "runs/stacked_mnist/dcgan28/lsgan_chi2/bn-g1-d0/seed12"
    assert key.variant.path == "stacked_mnist/dcgan28/lsgan_chi2/bn-g1-d0"
    assert RunKey.parse(key.run_dir) == key
    assert RunKey.parse(f"/abs/results/{key.run_dir}") == key
    assert key.design_row() == {
        "dataset": "stacked_mnist",
        "arch": "dcgan28",
        "loss": "lsgan_chi2",
        "bn_g": 1,
        "bn_d": 0,
        "seed": 12,
        "run_dir": key.run_dir,
    }
    assert list(key.design_row()) == list(store.DESIGN_COLUMNS)


@pytest.mark.parametrize(
    "bad",
    ["runs/ring8/mlp2d/gan/bn-g2-d0/seed0", "runs/ring8/mlp2d/gan/seed0", "ring8/mlp2d/gan"],
)
def test_a_path_that_is_not_a_run_directory_is_named(bad):
    with pytest.raises(ValueError, match="is not a run directory"):
        RunKey.parse(bad)


def test_the_key_of_a_config_and_the_seed_pattern():
    cfg = ring_config().with_seed(3)
    key = RunKey.of_config(cfg)
    assert key == RunKey("ring8", "mlp2d", "lsgan", True, True, 3)
    assert key.variant.run_dir_pattern.format(seed=3) == key.run_dir
    assert store.job_label(key.variant.path, "0-7") == "ring8/mlp2d/lsgan/bn-g1-d1/seeds-0-7"


def test_the_paths_of_a_data_root_a_results_dir_and_a_run_dir():
    data = store.DataRoot("d")
    assert data.fetch_record("mnist") == Path("d/raw/mnist/SHA256SUMS")
    assert data.manifest("mnist") == Path("d/prepared/mnist/manifest.json")
    assert data.classifier("mnist") == Path("d/classifiers/mnist.pt")
    assert data.fid_receipt("cats", "full") == Path("d/fid_stats/cats-full.json")
    assert data.prepared_split("mnist", "test") == Path("d/prepared/mnist/test.pt")
    assert data.fid_statistics("cats", "train", 2048, 9, "ab" * 32) == Path(
        "d/fid_stats/cats-train-2048-9-abababababab.npz"
    )
    results = store.ResultsDir("r")
    assert (results.design, results.summary) == (Path("r/design.csv"), Path("r/summary.csv"))
    assert results.run_config("ring8/mlp2d/gan/bn-g1-d1") == Path(
        "r/configs/ring8/mlp2d/gan/bn-g1-d1.yaml"
    )
    run = results.run(RunKey("ring8", "mlp2d", "gan", True, True, 2))
    assert run.metrics == Path("r/runs/ring8/mlp2d/gan/bn-g1-d1/seed2/metrics.json")
    assert run.checkpoint(40) == run.path / "checkpoints" / "step_00000040.pt"
    assert run.sample_image(40) == run.path / "samples" / "step_00000040.png"
    assert store.step_of("step_00000040.png", ".png") == 40
    assert store.step_of("step_00000040.pt.corrupt", ".pt") is None
    assert store.Status("diverged") is store.Status.DIVERGED and str(store.Status.COMPLETED) == (
        "completed"
    )


def test_run_directories_are_found_at_the_depth_of_the_pattern_and_strays_named(tmp_path):
    results = store.ResultsDir(tmp_path)
    keys = [
        RunKey("ring8", "mlp2d", loss, True, False, s) for loss in ("gan", "lsgan") for s in (0, 1)
    ]
    for key in keys:
        (results.run(key).checkpoints).mkdir(parents=True)
    stray = results.runs / "ring8" / "mlp2d" / "gan" / "copy-of-seed0"
    stray.mkdir()
    found, strays = results.find_runs()
    assert [key for key, _ in found] == sorted(keys, key=lambda k: k.run_dir)
    assert all(run.path == tmp_path / key.run_dir for key, run in found)
    assert strays == [stray]
    assert store.ResultsDir(tmp_path / "none").find_runs() == ([], [])


# The names of the record: files of run and results directories, folders of a data root.
RECORD_FILES = {
    store.CONFIG, store.METRICS, store.LOG, store.FINAL, store.FID_CURVE, store.EVAL,
    store.SAMPLE_GRID, store.SAMPLES_2D, store.DESIGN, store.COMPARISONS, store.SUMMARY,
    store.STUDY_CONFIG, store.MANIFEST, store.FETCH_RECORD,
}  # fmt: skip
RECORD_FOLDERS = {
    store.CHECKPOINTS, store.SAMPLES, store.RUNS, store.RUN_CONFIGS, store.RAW, store.PREPARED,
    store.CLASSIFIERS, store.FID_STATS,
}  # fmt: skip
# Paths that are not the record's: pytorch-fid's weights in torch's hub cache, and the layout
# torchvision expects in a scratch folder.
NOT_THE_RECORD = {("metrics/inception.py", "checkpoints"), ("data/builders.py", "raw")}


def record_literals(source: str) -> list[tuple[int, str]]:
    """String constants that spell a record path: a record file's name, a record folder joined
    with ``/`` onto a path, or a record folder as a segment of an f-string path."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and node.value in RECORD_FILES:
                hits.append((node.lineno, node.value))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in RECORD_FOLDERS:
                hits.append((node.lineno, right.value))
        elif isinstance(node, ast.JoinedStr):
            for part in node.values:
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    segments = part.value.split("/")[1:-1] if "/" in part.value else []
                    hits += [(node.lineno, s) for s in segments if s in RECORD_FOLDERS]
    return hits


def test_the_record_finder_finds_planted_literals():
    planted = 'x = run / "checkpoints"\ny = "metrics.json"\nz = f"{root}/prepared/{d}"\n'
    assert [value for _, value in record_literals(planted)] == [
        "checkpoints", "metrics.json", "prepared"
    ]  # fmt: skip


def test_no_path_of_the_record_is_spelled_outside_the_store():
    package = Path(store.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel == "store.py":
            continue
        found += [
            f"{rel}:{line}: {value!r}"
            for line, value in record_literals(path.read_text())
            if (rel, value) not in NOT_THE_RECORD
        ]
    assert not found, "use ganstudy.store instead of spelling these paths:\n" + "\n".join(found)


RENAMED = """
import contextlib, io, sys
from ganstudy import store
store.PREPARED = "tensors"
from ganstudy.data import prepare
from snakemake.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main(["--snakefile", sys.argv[1], "-n", "-p", "--configfile", "config/quick.yaml"])
manifest = prepare.prepared_dir("fashion_mnist", "data-quick") / store.MANIFEST
print(out.getvalue().count(str(manifest)), out.getvalue().count("/prepared/"))
"""


def test_a_renamed_folder_keeps_the_workflow_and_the_package_in_agreement(tmp_path):
    """With one folder constant of the store renamed, the workflow's DAG expects the prepared
    data exactly where the package writes it, and nothing under the old name."""
    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "config", tmp_path / "config")
    result = subprocess.run(
        [sys.executable, "-c", RENAMED, str(repo / "workflow" / "Snakefile")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected, old = map(int, result.stdout.split()[-2:])
    assert expected > 0 and old == 0, result.stdout[-3000:]


def test_the_workflow_takes_its_paths_from_the_store():
    repo = Path(__file__).resolve().parents[1]
    rules = [repo / "workflow" / "Snakefile", *sorted((repo / "workflow" / "rules").glob("*.smk"))]
    names = [f"/{folder}/" for folder in RECORD_FOLDERS]
    names += [f'{q}{name}"' for name in RECORD_FILES for q in ('"', "/")]
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in rules
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if not line.lstrip().startswith(("#", '"""', "configfile:"))
        and any(name in line for name in names)
    ]
    assert not found, "spelled in the workflow instead of taken from ganstudy.store:\n" + "\n".join(
        found
    )


def test_json_records_are_written_atomically_and_bad_ones_named(tmp_path):
    path = tmp_path / "metrics.json"
    store.write_record(path, {"status": store.Status.COMPLETED, "steps": 3})
    assert store.read_record(path) == {"status": "completed", "steps": 3}
    assert store.read_record(tmp_path / "none.json", missing_ok=True) is None
    cases = [
        (b"{", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[1]", "a JSON object"),
    ]
    for content, message in cases:
        path.write_bytes(content)
        with pytest.raises(ConfigError, match=message):
            store.read_record(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        store.read_record(tmp_path / "none.json")
