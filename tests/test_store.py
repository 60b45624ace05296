"""The store: every path of the record is formatted, parsed and found in one place."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ring_config

from ganstudy import store
from ganstudy.data.registry import DATASETS
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


# The names of the record: files of run and results directories and of a data root (the
# prepared splits' files among them), and the folders that hold them.
SPLIT_FILES = {
    store.split_file(split)
    for spec in DATASETS.values()
    if spec.preparation is not None
    for split in spec.preparation.splits
}
RECORD_FILES = {
    store.CONFIG, store.METRICS, store.LOG, store.FINAL, store.FID_CURVE, store.EVAL,
    store.SAMPLE_GRID, store.SAMPLES_2D, store.DESIGN, store.COMPARISONS, store.SUMMARY,
    store.STUDY_CONFIG, store.MANIFEST, store.FETCH_RECORD, *SPLIT_FILES,
}  # fmt: skip
RECORD_FOLDERS = {
    store.CHECKPOINTS, store.SAMPLES, store.RUNS, store.RUN_CONFIGS, store.RAW, store.PREPARED,
    store.CLASSIFIERS, store.FID_STATS, store.LOOKS,
}  # fmt: skip
# Names the store formats from a record's parts, "{}" standing for each part: a step's file
# (step_{}.pt, step_{}.png), a prepared split ({}.pt) and FID statistics ({}-...npz).
FORMATTED = re.compile(
    rf"{re.escape(store.STEP_PREFIX)}\{{\}}.*|\{{\}}{re.escape(store.SPLIT_SUFFIX)}"
    rf"|\{{\}}.*{re.escape(store.FID_STATISTICS_SUFFIX)}"
)
# Paths that are not the record's: pytorch-fid's weights in torch's hub cache, the layout
# torchvision expects in a scratch folder, and a page of MLflow's UI.
NOT_THE_RECORD = {
    ("src/ganstudy/metrics/inception.py", "checkpoints"), ("src/ganstudy/data/builders.py", "raw"),
    ("src/ganstudy/tracking/ui.py", "runs"),
}  # fmt: skip
# The project's own configs (config/config.yaml) share a name with a run's config.yaml.
PROJECT_CONFIGS = "config"
REPO = Path(__file__).resolve().parents[1]

FIELD = re.compile(r"\$?\{[^{}]*\}|%[-#0 +]*\d*(?:\.\d+)?[sdifrx]|\$\w+")
PATH_CALLS = {"Path", "PurePath", "PurePosixPath", "join", "joinpath"}


def template(node: ast.AST) -> str | None:
    """A string expression with "{}" for each part computed when it runs: a literal (its
    format fields too), an f-string, str.format or % on a literal, a + of strings."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return FIELD.sub("{}", node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(template(p) if isinstance(p, ast.Constant) else "{}" for p in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return template(node.func.value) if node.func.attr == "format" else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        left, right = template(node.left), template(node.right)
        if isinstance(node.op, ast.Mod) or left is None and right is None:
            return left
        return (left or "{}") + (right or "{}")
    return None


def names_in(text: str, is_path: bool = False) -> list[str]:
    """The record's names in a template: a file's or a formatted name as a segment of it, a
    folder's as a segment of a path (a template with a "/", or a part of a path's join)."""
    segments = text.split("/")
    is_path = is_path or len(segments) > 1
    return [
        s
        for before, s in zip(["", *segments], segments)
        if (s in RECORD_FILES and before != PROJECT_CONFIGS)
        or FORMATTED.fullmatch(s)
        or (is_path and s in RECORD_FOLDERS)
    ]


def path_template(node: ast.AST, read: set[int]) -> str | None:
    """A path joined with ``/`` or by a call of PATH_CALLS as one template, "{}" standing for
    each part that is not a string; the nodes it reads are added to ``read``."""
    read.add(id(node))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = path_template(node.left, read), path_template(node.right, read)
        return f"{left or '{}'}/{right or '{}'}"
    if isinstance(node, ast.Call) and _call_name(node) in PATH_CALLS and node.args:
        return "/".join(path_template(arg, read) or "{}" for arg in node.args)
    text = template(node)
    if text is not None:
        read |= {id(part) for part in ast.walk(node)}
    return text


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def python_names(source: str) -> set[tuple[int, str]]:
    """(line, name) of every name of the record that ``source`` spells or builds."""
    tree = ast.parse(source)
    skipped = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    # A part of an f-string is read with the whole f-string.
    skipped |= {id(p) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for p in n.values}
    found = set()
    for node in ast.walk(tree):
        is_path = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
        is_path |= isinstance(node, ast.Call) and _call_name(node) in PATH_CALLS
        if id(node) in skipped:
            continue
        read: set[int] = set()
        # A path's parts are read with the whole path, where a config/ before a name is seen.
        text = path_template(node, read) if is_path else template(node)
        skipped |= read
        found |= {(node.lineno, name) for name in names_in(text or "", is_path)}
    return found


STRING = re.compile(r"""[rRfFbB]*("|')((?:\\.|(?!\1).)*)\1""")


def text_names(source: str) -> set[tuple[int, str]]:
    """The same for a Snakefile, its rules or a shell script: the names in each literal string
    and in each word outside strings, comments and docstrings left out."""
    found, in_docstring = set(), False
    for number, line in enumerate(source.splitlines(), start=1):
        quotes = line.count('"""')
        skip = in_docstring or quotes or line.lstrip().startswith(("#", "configfile:"))
        in_docstring ^= quotes % 2 == 1
        if skip:
            continue
        line = re.sub(r"(^|\s)#.*", "", line.replace("{{", "<").replace("}}", ">"))
        words = [m.group(2) for m in STRING.finditer(line)]
        words += re.split(r"[\s=(),\[\]:]+", STRING.sub(" ", line))
        found |= {(number, name) for word in words for name in names_in(FIELD.sub("{}", word))}
    return found


def record_names(path: Path) -> list[str]:
    """Where ``path`` (a module, a Snakefile or rule file, a script) spells or builds a name of
    the record instead of taking it from the store."""
    rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
    source = path.read_text()
    found = python_names(source) if path.suffix == ".py" else text_names(source)
    return [
        f"{rel}:{line}: {name!r}"
        for line, name in sorted(found)
        if (rel, name) not in NOT_THE_RECORD
    ]


def test_the_record_finder_finds_names_spelled_and_built():
    planted = """
x = run / "checkpoints"
y = "metrics.json"
z = f"{root}/prepared/{d}"
a = f"{split}.pt"
b = f"step_{step:08d}.png"
c = "prepared/" + name + "/train.pt"
d = Path(root) / "prepared" / name / "train.pt"
e = "step_{:08d}.pt".format(step)
f = "%s/%s-%s.npz" % (stats, dataset, n)
g = os.path.join(root, "runs", name)
"""
    assert sorted(python_names(planted)) == [
        (2, "checkpoints"), (3, "metrics.json"), (4, "prepared"), (5, "{}.pt"),
        (6, "step_{}.png"), (7, "prepared"), (7, "train.pt"), (8, "prepared"), (8, "train.pt"),
        (9, "step_{}.pt"), (10, "{}-{}.npz"), (11, "runs"),
    ]  # fmt: skip
    rules = 'rule a:\n    output: f"{RESULTS}/runs/{{run}}/metrics.json", "d/step_{step}.png"\n'
    assert sorted(text_names(rules)) == [(2, "metrics.json"), (2, "runs"), (2, "step_{}.png")]
    fine = 'x = f"{i:05d}.png"\ny = "completed"\nz = f"no {store.RUNS}/ directory"\n'
    assert python_names(fine) == set() and text_names(fine) == set()


def test_a_name_built_in_a_benchmark_fails_the_scan(tmp_path):
    copy = tmp_path / "benchmarks" / "_common.py"
    copy.parent.mkdir()
    source = (REPO / "benchmarks" / "_common.py").read_text()
    assert record_names(REPO / "benchmarks" / "_common.py") == []
    copy.write_text(source + '\nPLANTED = Path("data") / f"prepared/{NAME}/{SPLIT}.pt"\n')
    assert [line.split(": ", 1)[1] for line in record_names(copy)] == ["'prepared'", "'{}.pt'"]


def scanned_files() -> list[Path]:
    package = REPO / "src" / "ganstudy"
    files = [
        p for p in sorted(package.rglob("*.py")) if p.name != "store.py" or p.parent != package
    ]
    files += [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    files += sorted((REPO / "benchmarks").rglob("*.py"))
    return files + sorted(p for p in (REPO / "scripts").rglob("*") if p.is_file())


def test_no_name_of_the_record_is_spelled_or_built_outside_the_store():
    files = scanned_files()
    assert len(files) > 60 and any(p.suffix == ".smk" for p in files)
    found = [hit for path in files for hit in record_names(path)]
    assert not found, "take these names from ganstudy.store:\n" + "\n".join(found)


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
