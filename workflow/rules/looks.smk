# The looks of a sequential study (analysis.sequential): after wave k, one interim analysis of
# the primary family on every run trained so far. A checkpoint: the jobs of wave k + 1 exist only
# for the blocks its record lets continue (common.smk, trained_jobs). Look k reads the records of
# the looks before it and never decides them again (ganstudy.study.looks).


checkpoint look:
    input:
        config=f"{RESULTS}/{store.STUDY_CONFIG}",
        # the primary family's runs trained so far: a look does not wait for the secondary
        # blocks, whose jobs go on beside the next wave
        evals=lambda wildcards: [
            STUDY.run_path(run, store.EVAL) for run in primary_runs(int(wildcards.look))
        ],
        previous=lambda wildcards: [look_record(k) for k in range(1, int(wildcards.look))],
    output:
        record=look_record("{look}"),
    log:
        f"{LOGS}/look-{{look}}.log",
    params:
        results=lambda wildcards: RESULTS,
        schema=SCHEMA,
    wildcard_constraints:
        look="[1-9][0-9]*",
    conda:
        CONDA_ENV
    shell:
        "ganstudy study look --config {input.config} --schema {params.schema:q}"
        " --results {params.results:q} --look {wildcards.look} --out {output.record}"
        " > {log} 2>&1"


localrules:
    look,
