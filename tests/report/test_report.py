"""The HTML report of a small synthetic study (see synthetic_results.py), read as text."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from synthetic_results import DIVERGED, MISSING, NOT_EVALUATED, make_results, mlflow_id, run_rel

from ganstudy import cli
from ganstudy.aggregate import summary as aggregate
from ganstudy.analysis.comparisons import Pair, pairs_csv
from ganstudy.errors import ConfigError
from ganstudy.report import build as report
from ganstudy.report import compare as report_compare
from ganstudy.report import inputs as report_study
from ganstudy.report.html import fmt

# One pytest-xdist worker runs the whole module, so its rendered report is built once, not once
# per worker.
pytestmark = pytest.mark.xdist_group("test_report")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = make_results(root)
    config = root / "study.yaml"
    config.write_text("study: synthetic\nseeds: [0, 1, 2]\n")
    out = report.build_report(results, root / "reports" / "report.html", config)
    return results, out.read_text()


def test_page_is_self_contained(rendered):
    _, page = rendered
    assert page.startswith("<!DOCTYPE html>")
    for forbidden in ("<script", "<link", "@import", "url(", "<iframe"):
        assert forbidden not in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) >= 10
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.verify()


def test_sections_present(rendered):
    _, page = rendered
    for key in report.SECTIONS:
        assert f'<h2 id="{key.key}">{key.title}</h2>' in page
    assert "Does the least-squares GAN (LSGAN) train more stably" in page
    for dataset in ("fashion_mnist", "stacked_mnist", "ring8"):
        assert f'id="dataset-{dataset}"' in page


def test_incomplete_runs_are_listed_not_dropped(rendered):
    _, page = rendered
    listing = page.split("Runs that did not complete (3)")[1].split("</table>")[0]
    for key, state in (
        (MISSING, "missing"),
        (DIVERGED, "diverged"),
        (NOT_EVALUATED, "not evaluated"),
    ):
        dataset, loss, bn, seed = key
        arch = "mlp2d" if dataset == "ring8" else "dcgan28"
        assert run_rel(dataset, arch, loss, bn, seed) in listing
        assert f"<td>{state}</td>" in listing
    # the design table counts them per dataset: 16 runs, 14 completed, 1 diverged, 0, 1 missing
    assert "<td>16</td><td>14</td><td>1</td><td>0</td><td>1</td>" in page


def test_metric_table_values(rendered):
    _, page = rendered
    # fashion_mnist lsgan bn-g1-d1: FID 20..24 -> mean 22, SD sqrt(2.5) = 1.58
    assert "22 ± 1.58 [" in page
    assert "(n=5)" in page


def test_representative_seed_is_the_median(rendered):
    _, page = rendered
    # lsgan bn-g1-d1 FIDs 20, 21, 22, 23, 24 over seeds 0-4: the median is seed 2
    assert "seed 2, fid 22" in page
    # lsgan bn-g0-d0 has two FIDs (25, 26; seed 2 diverged): the lower middle, seed 0
    assert "seed 0, fid 25" in page


def test_statistics_verdicts(rendered):
    _, page = rendered
    assert "lsgan has a significantly lower FID than gan, so lsgan is better on it" in page
    assert "no significant difference on modes covered between lsgan and gan" in page
    assert "too few seeds for a test at the 0.05 level (n = 3 vs 2" in page
    # The diverged lsgan run of bn-g0-d0 is ranked worst, not left out (2 vs 3 runs), and the
    # completed runs' test is beside: 2 vs 2 separated, 2 / C(4, 2).
    stats = page[page.index('id="statistics"') : page.index('id="published"')]
    assert "<td>2 / 3 (diverged: 0 / 1)</td>" in stats
    assert "<td>p = 0.333 (2 / 2 runs)</td>" in stats
    assert "lsgan: 1 diverged" not in stats


def test_comparisons_holm_over_testable(rendered):
    results, _ = rendered
    runs = report_study.plain(aggregate.read_summary(results / "summary.csv"))
    cmp = report_compare.compare_losses(runs)
    fashion = cmp[(cmp["dataset"] == "fashion_mnist") & (cmp["bn"] == "bn-g1-d1")].iloc[0]
    assert fashion["cmp"].p == pytest.approx(2 / 252)
    # Four testable comparisons: FID and the rate of diverged runs (Fisher, 5 vs 5 runs reach
    # 2/252 too) in each of the two Fashion-MNIST groups with 5 seeds per arm.
    assert fashion["p_holm"] == pytest.approx(4 * 2 / 252)
    assert fashion["cmp"].difference == pytest.approx(-10.0)
    assert fashion["cmp"].effect == -1.0 and fashion["cmp"].kind == "continuous"
    testable = [c.testable for c in cmp["cmp"]]
    diverged = cmp[cmp["metric"] == "diverged rate"]
    assert sum(testable) == 4 and len(testable) == 5 + len(diverged)
    assert all(c.kind == "rate" for c in diverged["cmp"])


def test_published_numbers_and_protocol_differences(rendered):
    _, page = rendered
    assert "26.5 ± 1.6" in page and "30.7 ± 2.2" in page
    assert "773 ± 86.5" in page and "739 ± 94.4" in page
    assert "<td>32.5</td>" in page and "6.3 ± 0.5 (SE)" in page and "98.2 ± 0.2 (SE)" in page
    published = page[
        page.index("Published numbers and their protocols") : page.index("Ours beside them")
    ]
    # Each published number shows every field of its protocol, the silent ones as such.
    assert published.count("<summary>every field</summary>") == 8
    assert "<li>steps: 156400</li>" in published and "<li>beta2: not stated</li>" in published
    ours = page[page.index("Ours beside them") : page.index("References</h3>")]
    # Every compared field that differs is listed, with both values.
    for line in (
        "arch: published mlp2d_lrelu, ours mlp2d",
        "train_size: published 50000, ours unbounded: fresh samples every step",
        "steps: published 156400, ours 1000",
        "batch_size: published 128, ours 64",
        "n_samples: published 25000, ours 2500",
        "noise: published one fixed set of 50,000 draws, reshuffled every epoch; the G step reuses",
        "batch, ours fresh draws every step, separate batches for the D and the G step",
        "selection: published best setting of a hyperparameter search",
        "dataset: published stacked_mnist_100k, ours stacked_mnist",
    ):
        assert line in ours, line
    # A field neither side can compare is named, never dropped.
    assert "not compared (not published, or not recorded by our runs):" in ours
    assert "Are GANs Created Equal? A Large-Scale Study" in page
    assert "Lucic et al. 2018: Table 2" in page


def test_provenance_lists_runs_config_and_versions(rendered):
    _, page = rendered
    assert "study: synthetic" in page
    assert "abc123" in page  # git revision recorded by the runs
    for key in ("torch", "seaborn", "cpu_count"):
        assert f"<td>{key}</td>" in page
    assert mlflow_id("fashion_mnist", "lsgan", (1, 1), 4) in page
    # the FID figure lists the runs it draws on: 15 with an FID (16 minus missing and diverged)
    fid_fig = page.split("<figcaption>FID by loss: boxes over seeds")[1].split("</details>")[0]
    assert "Runs drawn on (14)" in fid_fig
    assert mlflow_id(*DIVERGED) not in fid_fig


def test_report_builds_missing_summary_and_rebuilds_stale_one(tmp_path):
    results = make_results(tmp_path)
    out = tmp_path / "report.html"
    report.build_report(results, out)
    summary = results / "summary.csv"
    assert summary.exists()
    run = results / run_rel("ring8", "mlp2d", "gan", (0, 0), 0)
    doc = json.loads((run / "eval.json").read_text())
    doc["modes"]["modes_covered"] = 1
    (run / "eval.json").write_text(json.dumps(doc))
    past = (run / "eval.json").stat().st_mtime - 10
    os.utime(summary, (past, past))
    report.build_report(results, out)
    assert aggregate.read_summary(summary)["modes_covered"].min() == 1


def test_partial_study_renders(tmp_path):
    """Only the design exists, plus one substitute-dataset run: everything else is missing."""
    results = make_results(tmp_path)
    src = results / run_rel("fashion_mnist", "dcgan28", "gan", (1, 1), 0)
    dst_rel = run_rel("cat_faces64", "dcgan64", "gan", (1, 1), 0)
    shutil.copytree(src, results / dst_rel)
    for path in (results / "runs").glob("*"):
        if path.name != "cat_faces64":
            shutil.rmtree(path)
    with (results / "design.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow(["cat_faces64", "dcgan64", "gan", 1, 1, 0, dst_rel])
    page = report.build_report(results, tmp_path / "r.html").read_text()
    assert "Runs that did not complete (30)" in page
    assert "SUBSTITUTE for cat64" in page
    assert "NOT the CAT dataset" in page
    assert "cat_faces64 is a substitute for cat64, a different dataset" in page
    assert "No group has both gan and lsgan runs." not in page  # groups exist, all too small
    assert "too few seeds for a test (n = 0 vs 0" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"results": "nope"}, "results directory nope does not exist"),
        ({"config": "absent.yaml"}, "study config absent.yaml does not exist"),
        ({"config": "bad.yaml"}, "bad.yaml line 2, column 1: not valid YAML"),
        ({"out": "."}, "is a directory"),
    ],
)
def test_bad_input_is_named_before_work(tmp_path, args, message):
    results = make_results(tmp_path)
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    kwargs = {"results": results, "out": tmp_path / "r.html", "config": None, **args}
    with pytest.raises(ConfigError, match=re.escape(message)):
        report.build_report(**kwargs)
    assert not (results / "summary.csv").exists()  # no work started


def test_failed_render_keeps_previous_report(tmp_path, monkeypatch):
    results = make_results(tmp_path)
    out = tmp_path / "report.html"
    out.write_text("previous report")

    def broken(study, files=None):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        report.build_report(results, out)
    assert out.read_text() == "previous report"


def test_cli(tmp_path, capsys):
    results = make_results(tmp_path)
    out = tmp_path / "reports" / "report.html"
    assert cli.main(["report", "--results", str(results), "--out", str(out)]) == 0
    assert out.read_text().endswith("</html>\n")
    assert cli.main(["report", "--results", str(tmp_path / "x"), "--out", str(out)]) == 2
    assert "results directory" in capsys.readouterr().err


def test_fids_with_different_settings_are_not_compared(tmp_path):
    results = make_results(tmp_path)
    path = results / run_rel("fashion_mnist", "dcgan28", "lsgan", (1, 1), 4) / "eval.json"
    doc = json.loads(path.read_text())
    doc["fid"]["settings"]["n_generated"] = 5000
    path.write_text(json.dumps(doc))
    page = report.build_report(results, tmp_path / "r.html").read_text()
    assert "Warning: the FIDs of this dataset were computed with different settings" in page
    assert "n_generated=5000" in page and "(1 runs)" in page
    assert "not compared: the FIDs were computed with different settings." in page
    assert "significantly lower FID" not in page


def test_bad_run_csv_is_named(tmp_path, monkeypatch):
    results = make_results(tmp_path)
    log = results / run_rel("ring8", "mlp2d", "gan", (0, 0), 0) / "log.csv"
    log.write_text("step,loss_d\n1,2\n")
    calls = []
    monkeypatch.setattr(report, "render", lambda study: calls.append(study) or "")
    with pytest.raises(ConfigError, match=r"log.csv lacks column\(s\) grad_norm_g"):
        report.build_report(results, tmp_path / "r.html")
    assert calls == []  # refused before any figure was drawn


def test_every_comparison_states_n_reachable_p_effect_size_and_detectable_effect(rendered):
    _, page = rendered
    for header in (
        "<th>n</th>",
        "<th>smallest reachable p</th>",
        "<th>effect size [95% CI]</th>",
        "<th>detectable with 80% power</th>",
    ):
        assert header in page
    assert "Cliff&#x27;s delta" in page or "Cliff's delta" in page
    assert "rate difference" in page and "Fisher" in page
    # a verdict of no significant difference says what the design could have detected
    assert "With these seeds the test detects" in page


def _add_scheduled_arms(results):
    """Copies of the ring8 gan and lsgan runs as the arms gan_gap_aware and lsgan_gap_aware (the
    losses with the gap-aware schedule), their D learning rate in log.csv, added to design.csv."""
    design = list(csv.DictReader((results / "design.csv").open()))
    added = []
    for row in [r for r in design if r["dataset"] == "ring8"]:
        arm = f"{row['loss']}_gap_aware"
        new = {
            **row,
            "loss": arm,
            "run_dir": row["run_dir"].replace(f"/{row['loss']}/", f"/{arm}/"),
        }
        src, dst = results / row["run_dir"], results / new["run_dir"]
        shutil.copytree(src, dst)
        config = yaml.safe_load((dst / "config.yaml").read_text())
        config["arm"] = arm
        config["train"].update(d_lr_schedule="gap_aware", gap_ema=0.95)
        (dst / "config.yaml").write_text(yaml.safe_dump(config))
        log = list(csv.DictReader((dst / "log.csv").open()))
        for i, line in enumerate(log):
            line["lr_d"] = 2e-4 * (0.5 + 0.01 * i)
        with (dst / "log.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, list(log[0]))
            writer.writeheader()
            writer.writerows(log)
        added.append(new)
    with (results / "design.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(design[0]))
        writer.writeheader()
        writer.writerows(design + added)


def test_each_candidate_is_compared_with_the_baseline_the_study_planned(tmp_path):
    results = make_results(tmp_path)
    _add_scheduled_arms(results)
    pairs = [
        Pair("mixtures", "ring8", "mlp2d", False, False, "gan", "lsgan"),
        Pair("stabilisers", "ring8", "mlp2d", False, False, "gan", "gan_gap_aware"),
        Pair("stabilisers", "ring8", "mlp2d", False, False, "lsgan", "lsgan_gap_aware"),
    ]
    (results / "comparisons.csv").write_text(pairs_csv(pairs))
    page = report.build_report(results, tmp_path / "r.html").read_text()
    stats = page[page.index('id="statistics"') : page.index('id="published"')]
    for shown in ("gan vs lsgan", "gan vs gan_gap_aware", "lsgan vs lsgan_gap_aware"):
        assert f"<td>{shown}</td>" in stats
    # not by name: lsgan_gap_aware is not compared with gan, nor the planned-out pairs made
    assert "<td>gan vs lsgan_gap_aware</td>" not in stats
    assert "fashion_mnist" not in stats  # comparisons.csv plans none there
    assert "ring8: learning rate of D under its schedule" in page
    summary = aggregate.read_summary(results / "summary.csv")
    arm = summary[summary["arm"] == "lsgan_gap_aware"]
    assert set(arm["loss"]) == {"lsgan"} and set(arm["loss_label"]) == {"lsgan_gap_aware"}
    assert set(arm["d_lr_schedule"]) == {"gap_aware"}
    assert set(summary.loc[summary["arm"] == "lsgan", "d_lr_schedule"]) == {"none"}


def test_without_a_study_plan_arms_are_not_paired_by_their_loss(tmp_path):
    results = make_results(tmp_path)
    _add_scheduled_arms(results)
    page = report.build_report(results, tmp_path / "r.html").read_text()
    stats = page[page.index('id="statistics"') : page.index('id="published"')]
    assert "<td>gan vs lsgan</td>" in stats
    assert "gap_aware</td>" not in stats  # an arm's settings differ: no comparison by roles


def test_the_answer_opens_the_report_with_the_primary_family(rendered):
    from ganstudy.analysis import exact

    _, page = rendered
    first = re.search(r"<h2 id=\"([a-z]+)\">", page).group(1)
    assert first == "answer"
    section = html.unescape(page[page.index('<h2 id="answer">') : page.index('<h2 id="question">')])
    # The derived family (no analysis.primary in this config): per dataset, its outcomes.
    assert "Holm's correction over these 6 primary hypotheses only" in section
    assert section.count("<li>") >= 6 and "Forest plots" in section
    # FID on Fashion-MNIST: bn-g1-d1 lsgan better on all 5 vs 5 (P = 1); bn-g0-d0 lsgan seeds
    # 0, 1 beat gan's two, its diverged seed 2 ranks worst (4 of 6 pairs): mean 0.833.
    assert "probability of improvement 0.833" in section
    assert "(8 vs 7 runs, of which 1 and 0 diverged and rank worst)" in section
    strata = [
        (-np.array([20.0, 21, 22, 23, 24]), -np.array([30.0, 31, 32, 33, 34])),
        (np.array([-25.0, -26.0, -np.inf]), np.array([-35.0, -36.0])),
    ]
    p = exact.stratified_rank_test(strata).p
    assert f"exact permutation p = {fmt(p)}" in section
    # Among completed runs only (the diverged run left out): 2 vs 2 separated in cell 2.
    completed = exact.stratified_rank_test([strata[0], (strata[1][0][:2], strata[1][1])]).p
    assert f"p = {fmt(completed)} (7 vs 7 runs)" in section
    # The missing gan run is named, not dropped; the diverged rate counts every finished run.
    assert "fashion_mnist dcgan28 bn-g0-d0 gan: 1 missing" in section
    assert "diverged rate of lsgan and gan on fashion_mnist (1 of 8 vs 0 of 7 runs" in section
    assert "MLflow run ids" in section


def test_a_bad_primary_family_in_the_config_is_named(tmp_path):
    results = make_results(tmp_path)
    config = tmp_path / "study.yaml"
    config.write_text(
        "analysis:\n  primary:\n    - {candidate: lsgan, baseline: gan, outcome: fid, "
        "scope: [ring8]}\n"
    )
    with pytest.raises(ConfigError, match=r"analysis.primary\[0\].outcome': 'fid' is not measured"):
        report.build_report(results, tmp_path / "r.html", config)
    assert not (tmp_path / "r.html").exists()


def test_sample_cells_say_why_there_is_no_grid(tmp_path):
    """A loss a variant does not train is 'not in the design'; a run without samples yet says
    its state, not that a file is missing."""
    results = make_results(tmp_path)
    extra = run_rel("fashion_mnist", "dcgan28", "lsgan_chi2", (1, 1), 0)
    with (results / "design.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow(["fashion_mnist", "dcgan28", "lsgan_chi2", 1, 1, 0, extra])
    page = report.build_report(results, tmp_path / "r.html").read_text()
    section = page[page.index('id="dataset-fashion_mnist"') :]
    section = section[: section.index("</table>", section.index("samples"))]
    assert "not in the design" in section  # bn-g0-d0 has no lsgan_chi2 variant
    assert "no samples.png yet (1 missing)" in section  # the planned lsgan_chi2 run
    assert ">no samples.png<" not in page
