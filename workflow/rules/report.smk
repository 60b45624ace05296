# The study's record: the expected runs (design.csv), the planned comparisons
# (comparisons.csv), the resolved study config and every variant's run config, the tidy summary
# of every run, and the HTML report.


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
        summary=f"{RESULTS}/{store.SUMMARY}",
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
        report=STUDY.config["report"],
    log:
        f"{LOGS}/report.log",
    params:
        results=lambda wildcards: RESULTS,
    conda:
        CONDA_ENV
    shell:
        "ganstudy report --results {params.results:q} --out {output.report} --config {input.config}"
        " > {log} 2>&1"


localrules:
    all,
    design,
    aggregate,
    report,
