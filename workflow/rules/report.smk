# The study's record: the expected runs (design.csv), the planned comparisons
# (comparisons.csv), the resolved study config and every variant's run config, the tidy summary
# of every run, and the HTML report with its figures and every run's samples as files beside it.
# The outputs marked report(...) make up the archive of `snakemake --report report.zip`, each
# with its caption in ../report/ (paths of captions are relative to this file).

# Beside the HTML report, e.g. reports/report.html: reports/report-figures/ (forest.png) and
# reports/report-samples/<dataset>/<arch>/<loss>/<bn>/seed<S>.png (a run without samples has none)
REPORT_STEM = os.path.splitext(STUDY.config["report"])[0]
REPORT_FIGURES = f"{REPORT_STEM}-figures"
REPORT_SAMPLES = f"{REPORT_STEM}-samples"
# the parts of a sample file's name, one folder each (glob_wildcards of the report archive)
SAMPLE_PATTERN = "{dataset,[^/]+}/{arch,[^/]+}/{loss,[^/]+}/{bn,[^/]+}/{seed,[^/]+}.png"


rule design:
    output:
        design=f"{RESULTS}/{store.DESIGN}",
        config=f"{RESULTS}/{store.STUDY_CONFIG}",
        comparisons=f"{RESULTS}/{store.COMPARISONS}",
        run_configs=[STUDY.config_path(v) for v in STUDY.variants],
    log:
        f"{LOGS}/design.log",
    params:
        config=json.dumps(STUDY.config, sort_keys=True),
        schema=SCHEMA,
        configs=lambda wildcards: str(store.ResultsDir(RESULTS).run_configs),
    conda:
        CONDA_ENV
    shell:
        "ganstudy study design --json {params.config:q} --schema {params.schema:q}"
        " --design {output.design} --resolved {output.config} --run-configs {params.configs}"
        " --comparisons {output.comparisons}"
        " > {log} 2>&1"


rule aggregate:
    input:
        design=f"{RESULTS}/{store.DESIGN}",
        # every run trained (a sequential study: the waves its looks let run) and its looks
        evals=lambda wildcards: [
            STUDY.run_path(run, store.EVAL) for run in trained_runs(later=False)
        ],
        later_evals=lambda wildcards: [
            STUDY.run_path(run, store.EVAL) for run in trained_runs(first=False)
        ],
        looks=lambda wildcards: look_records(),
    output:
        summary=report(
            f"{RESULTS}/{store.SUMMARY}",
            caption="../report/summary.rst",
            category="Results",
            subcategory="Every run",
        ),
    log:
        f"{LOGS}/aggregate.log",
    params:
        results=lambda wildcards: RESULTS,
    conda:
        CONDA_ENV
    shell:
        "ganstudy aggregate --results {params.results:q} --out {output.summary} > {log} 2>&1"


rule report:
    input:
        summary=f"{RESULTS}/{store.SUMMARY}",
        config=f"{RESULTS}/{store.STUDY_CONFIG}",
        comparisons=f"{RESULTS}/{store.COMPARISONS}",
        # the runs' training curves (the sample files are listed in each eval.json)
        logs=lambda wildcards: [
            STUDY.run_path(run, store.LOG) for run in trained_runs(later=False)
        ],
        later_logs=lambda wildcards: [
            STUDY.run_path(run, store.LOG) for run in trained_runs(first=False)
        ],
        fid_curves=lambda wildcards: [
            path for job in trained_jobs(later=False) for path in fid_curves(job)
        ],
        later_fid_curves=lambda wildcards: [
            path for job in trained_jobs(first=False) for path in fid_curves(job)
        ],
        looks=lambda wildcards: look_records(),
    output:
        report=report(
            STUDY.config["report"],
            caption="../report/report.rst",
            category="Report",
            subcategory="The study",
        ),
        figures=report(
            directory(REPORT_FIGURES),
            patterns=["{figure}.png"],
            caption="../report/forest.rst",
            category="Answer",
            subcategory="Primary hypotheses",
        ),
        samples=report(
            directory(REPORT_SAMPLES),
            patterns=[SAMPLE_PATTERN],
            caption="../report/samples.rst",
            category="Samples",
            subcategory="{dataset}",
            labels={
                "architecture": "{arch}",
                "loss": "{loss}",
                "batch norm": "{bn}",
                "seed": "{seed}",
            },
        ),
    log:
        f"{LOGS}/report.log",
    params:
        results=lambda wildcards: RESULTS,
    conda:
        CONDA_ENV
    shell:
        "ganstudy report --results {params.results:q} --out {output.report} --config {input.config}"
        " --figures {output.figures} --samples {output.samples} > {log} 2>&1"


localrules:
    all,
    design,
    aggregate,
    report,
