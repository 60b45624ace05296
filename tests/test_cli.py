"""The command line starts at once: help never imports torch, commands come from one table."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import yaml

from ganstudy import cli, config, store

PROBE = (
    "import sys\n"
    "from ganstudy.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('\\nHEAVY:' + ','.join(m for m in ('torch', 'pytorch_fid', 'seaborn', 'scipy')\n"
    "                          if m in sys.modules))\n"
)


def _help(*args: str) -> tuple[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    ).stdout
    text, _, heavy = out.rpartition("\nHEAVY:")
    return text, [m for m in heavy.strip().split(",") if m]


def test_top_level_help_lists_every_command_without_importing_torch():
    text, heavy = _help("--help")
    assert heavy == []
    for name, command in cli.COMMANDS.items():
        assert name in text and command.help[:30] in " ".join(text.split())


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_command_help_imports_no_heavy_library(name):
    text, heavy = _help(name, "--help")
    assert heavy == [], f"`ganstudy {name} --help` imported {heavy}"
    assert f"ganstudy {name}" in text


def test_every_command_module_configures_its_parser():
    for name, command in cli.COMMANDS.items():
        module = importlib.import_module(command.module)
        assert callable(module.configure), name
    parser = cli.build_parser()  # every command's options, as documentation shows them
    args = parser.parse_args(["train", "--out", "run", "--set", "train.steps=5"])
    assert args.command == "train" and callable(args.func)


def test_only_the_chosen_command_is_configured():
    parser = cli.build_parser(["aggregate", "--results", "r"])
    args = parser.parse_args(["aggregate", "--results", "r"])
    assert args.results == "r"
    with pytest.raises(SystemExit):  # train's options were not added
        parser.parse_args(["train", "--out", "x"])


def test_python_dash_m_ganstudy_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "ganstudy", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ganstudy ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "3-1", "--out", "r{seed}"],
         "--seeds '3-1': the range '3-1' runs backwards; allowed:"),
        (["--seeds", "1,x", "--out", "r{seed}"], "--seeds '1,x': 'x' is not a seed or a range"),
        (["--seeds", "0-2,2", "--out", "r{seed}"], "--seeds '0-2,2': seed 2 is given twice"),
        (["--config", "bad.yaml", "--out", "r"],
         "config file bad.yaml line 2, column 5: not valid YAML: while parsing a flow mapping"),
        (["--config", "list.yaml", "--out", "r"], "list.yaml: expected a mapping of keys"),
        (["--out", "a_file"], "--out a_file: a file of that name exists; allowed: a run directory"),
    ],
)  # fmt: skip
def test_train_names_bad_input_without_a_traceback(tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("dataset: {name: ring8\narch: [mlp2d\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "a_file").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "ganstudy", "train", *args, "--set", "train.steps=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "bad.yaml", "list.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.steps=[1,"],
         "--set 'train.steps=[1,': the value of key 'train.steps' is not valid YAML (expected"),
        (["--set", "train.steps=5"],
         "--set 'train.steps=2': key 'train.steps' is already set ('train.steps=5'); allowed: "
         "each key once"),
        (["--set", "seed"], "--set 'seed' is not of the form key.sub=value"),
        # Estimated on PyTorch's meta device: no memory is taken to refuse it.
        (["--seeds", "0-99999"], "--seeds: 100000 seeds in one job need about"),
    ],
)  # fmt: skip
def test_train_options_that_are_refused_before_any_work(tmp_path, capsys, args, message):
    out = str(tmp_path / "runs" / "s{seed}")
    argv = ["train", "--out", out, *args, "--set", "train.steps=2", "dataset.name=ring8"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_repeated_set_options_accumulate(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--quiet", "--set", "dataset.name=ring8",
            "arch.name=mlp2d", "--set", "train.steps=3", "--set", "seed=7"]  # fmt: skip
    assert cli.main(argv) == 0
    stored = config.from_dict(yaml.safe_load((out / store.CONFIG).read_text()))
    assert (stored.seed, stored.train.steps, stored.arch.name) == (7, 3, "mlp2d")


def test_a_job_too_large_for_memory_names_the_largest_that_fits(tmp_path, monkeypatch, capsys):
    from ganstudy.study import memory

    monkeypatch.setattr(memory, "host_free_bytes", lambda: 300 * memory.MIB)
    argv = ["train", "--out", str(tmp_path / "s{seed}"), "--quiet", "--seeds", "0-499",
            "--set", "dataset.name=ring8", "arch.name=mlp2d", "train.device=cpu", "train.steps=3"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    fits = int(err.split("allowed: at most ")[1].split()[0])
    cfg = config.from_dict(
        {"dataset": {"name": "ring8"}, "arch": {"name": "mlp2d"}, "train": {"steps": 3}}
    )
    usable = 300 * memory.MIB * memory.HEADROOM
    assert memory.training_memory(cfg.to_dict(), fits).total - memory.CUDA_CONTEXT_BYTES <= usable
    assert (
        memory.training_memory(cfg.to_dict(), fits + 1).total - memory.CUDA_CONTEXT_BYTES > usable
    )
    assert not any(tmp_path.iterdir())
