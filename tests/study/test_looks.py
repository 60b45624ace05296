"""The looks of a sequential study as records: the runs each look sees, the blocks that go on,
the runs never trained, and a decision that is made once."""

from __future__ import annotations

import json

import pytest

from ganstudy import store
from ganstudy.aggregate import summary
from ganstudy.analysis import sequential
from ganstudy.errors import ConfigError
from ganstudy.study import looks
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study


def toy(tmp_path, futility=(0.5,), waves=2) -> Study:
    """Two blocks of lsgan vs gan (two primary hypotheses each: diverged rate and modes), two
    seeds per job, four seeds: two waves of one job."""
    block = {"archs": ["mlp2d"], "losses": ["gan", "lsgan"], "bn": ["both"], "seeds": 4,
             "seeds_per_job": 2, "train": {"steps": 10}}  # fmt: skip
    config = {
        "results": str(tmp_path / "results"),
        "bn": {"both": {"g": True, "d": True}},
        "analysis": {
            "primary": [
                {"candidate": "lsgan", "baseline": "gan", "outcome": "success", "scope": ["ring8"]},
                {
                    "candidate": "lsgan",
                    "baseline": "gan",
                    "outcome": "modes_covered",
                    "scope": ["grid25"],
                },
            ],  # fmt: skip
            "sequential": {"waves": waves, "futility": list(futility)},
        },
        "experiments": {
            "ring": {**block, "datasets": ["ring8"]},
            "grid": {**block, "datasets": ["grid25"]},
        },  # fmt: skip
    }
    return Study.from_config(config, default_schema_path())


def test_the_first_look_sees_the_first_wave_and_stops_a_decided_block(tmp_path):
    s = toy(tmp_path)
    results = s.results
    first = looks.runs_through(s, [], 1)
    assert sorted(first) == sorted(
        f"runs/{d}/mlp2d/{arm}/bn-g1-d1/seed{seed}"
        for d in ("ring8", "grid25") for arm in ("gan", "lsgan") for seed in (0, 1)
    )  # fmt: skip
    # The ring's hypothesis is rejected outright, the grid's goes on.
    record = looks.decide(s, results, 1, [1e-9, 0.2], [(2, 2), (2, 2)], first)
    assert [h["status"] for h in record["hypotheses"]] == [sequential.REJECTED, sequential.CONTINUE]
    assert record["continuing_blocks"] == ["grid"]
    assert record["not_trained"] == sorted(
        f"runs/ring8/mlp2d/{arm}/bn-g1-d1/seed{seed}" for arm in ("gan", "lsgan") for seed in (2, 3)
    )  # fmt: skip
    out = store.ResultsDir(results).look(1)
    looks.write(results, 1, record, out)
    # Look 2 sees the grid's second wave, not the ring's.
    through = looks.runs_through(s, [looks.read(out)], 2)
    assert "runs/grid25/mlp2d/lsgan/bn-g1-d1/seed3" in through
    assert "runs/ring8/mlp2d/lsgan/bn-g1-d1/seed3" not in through
    second = looks.decide(s, results, 2, [None, 0.01], [(0, 0), (4, 4)], through)
    assert [h["status"] for h in second["hypotheses"]] == [sequential.REJECTED,
                                                           sequential.REJECTED]  # fmt: skip
    assert second["hypotheses"][0]["decided_at"] == 1 and second["continuing_blocks"] == []
    # The ring stopped at look 1: its second wave is still never trained after look 2.
    assert second["not_trained"] == record["not_trained"]
    assert all(p < 0.05 for p in second["adjusted_p"])


def test_a_look_is_decided_once(tmp_path):
    s = toy(tmp_path)
    results = s.results
    first = looks.runs_through(s, [], 1)
    out = store.ResultsDir(results).look(1)
    kept = looks.write(results, 1, looks.decide(s, results, 1, [0.9, 0.2], [(2, 2)] * 2, first),
                       out)  # fmt: skip
    assert kept["hypotheses"][0]["status"] == sequential.FUTILITY
    # A rerun that would decide otherwise (other runs, say) writes the recorded decision back.
    other = looks.decide(s, results, 1, [1e-9, 1e-9], [(2, 2)] * 2, first)
    assert other["hypotheses"][0]["status"] == sequential.REJECTED
    out.unlink()
    again = looks.write(results, 1, other, out)
    assert again == kept and json.loads(out.read_text()) == kept
    # Without the ledger the decision is made anew, from what it is given.
    store.ResultsDir(results).look_ledger(1).unlink()
    assert looks.write(results, 1, other, out)["hypotheses"][0]["status"] == sequential.REJECTED


def test_a_record_decided_under_another_design_is_refused(tmp_path):
    s = toy(tmp_path)
    results = s.results
    first = looks.runs_through(s, [], 1)
    looks.write(results, 1, looks.decide(s, results, 1, [0.3, 0.2], [(2, 2)] * 2, first),
                store.ResultsDir(results).look(1))  # fmt: skip
    changed = toy(tmp_path, futility=(1.0,))
    with pytest.raises(ConfigError, match="decided under another design .*futility"):
        looks.decide(changed, results, 2, [0.3, 0.2], [(4, 4)] * 2, first)


def test_the_summary_leaves_out_the_runs_a_stop_left_untrained(tmp_path):
    s = toy(tmp_path)
    results = store.ResultsDir(s.results)
    results.root.mkdir(parents=True)
    rows = ["dataset,arch,loss,bn_g,bn_d,seed,run_dir"]
    rows += [",".join(map(str, run.design_row().values())) for run in s.runs]
    results.design.write_text("\n".join(rows) + "\n")
    assert len(summary.collect(results.root)) == 16
    record = looks.decide(s, s.results, 1, [1e-9, 0.2], [(2, 2)] * 2, looks.runs_through(s, [], 1))
    looks.write(s.results, 1, record, results.look(1))
    collected = summary.collect(results.root)
    assert len(collected) == 12
    assert not collected["run_dir"].str.contains("ring8.*seed[23]", regex=True).any()


def test_study_cost_prints_the_maximum_and_the_expected_cost_of_each_scenario(tmp_path, capsys):
    import yaml

    from ganstudy.cli import main as cli_main

    s = toy(tmp_path)
    config = s.config | {"analysis": {**s.config["analysis"], "primary": [
        {**h, "published_effect": 0.9, "published_source": "a paper"} if i else h
        for i, h in enumerate(s.config["analysis"]["primary"])]}}  # fmt: skip
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["study", "cost", str(path), "--gpus", "4", "--simulations", "50"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Sequential design (analysis.sequential)") :]
    header = table.splitlines()[1]
    for scenario in ("max runs", "no effect: runs", "min_effect: runs", "2 x min_effect: runs",
                     "published: runs"):  # fmt: skip
        assert scenario in header
    rows = {line.split()[0]: line.split() for line in table.splitlines()[3:6]}
    assert rows["ring"][1] == "8" and rows["total"][1] == "16"  # every wave: 2 arms x 4 seeds
    assert 8 <= float(rows["total"][4]) <= 16  # expected runs under no effect: 1 or 2 waves
    assert "Expected wall-clock of training on 4 GPU(s)" in table
    assert (
        "Published effects: lsgan vs gan: modes covered on grid25: P(better) 0.9 (a paper)" in out
    )


def test_the_look_command_refuses_a_fixed_design_and_a_look_out_of_range(tmp_path, capsys):
    import yaml

    from ganstudy.cli import main as cli_main

    fixed = toy(tmp_path, futility=(), waves=1)
    path = tmp_path / "fixed.yaml"
    path.write_text(yaml.safe_dump(fixed.config))
    out = str(tmp_path / "look.json")
    args = ["study", "look", "--config", str(path), "--results", fixed.results, "--out", out]
    assert cli_main([*args, "--look", "1"]) == 2
    assert "analysis.sequential has one look (a fixed design)" in capsys.readouterr().err
    sequential_study = toy(tmp_path)
    path.write_text(yaml.safe_dump(sequential_study.config))
    assert cli_main([*args, "--look", "3"]) == 2
    assert "--look 3 is not allowed; allowed: 1 to 2" in capsys.readouterr().err
    # Look 2 needs look 1's record.
    assert cli_main([*args, "--look", "2"]) == 2
    assert "look-1.json does not exist; look 2 needs the looks before it" in capsys.readouterr().err
