# Datasets: raw files fetched (from the mirror first), prepared tensors, evaluation classifiers
# and FID reference statistics, each computed once for the whole study. They come first (priority)
# because every evaluation waits for them.


rule fetch:
    output:
        record=data_path("fetch_record", "{source}"),
    log:
        f"{LOGS}/data/fetch-{{source}}.log",
    params:
        dataset=lambda wildcards: SOURCES[wildcards.source],
        root=lambda wildcards: DATA,
    wildcard_constraints:
        source="|".join(re.escape(s) for s in SOURCES) or "(?!)",
    threads: THREADS["prepare"]
    priority: 10
    conda:
        CONDA_ENV
    shell:
        "ganstudy data fetch {params.dataset} --data-root {params.root:q} > {log} 2>&1"


rule prepare:
    input:
        record=lambda wildcards: data_path("fetch_record", STUDY.source(wildcards.dataset)),
    output:
        manifest=data_path("manifest", "{dataset}"),
    log:
        f"{LOGS}/data/prepare-{{dataset}}.log",
    params:
        root=lambda wildcards: DATA,
        args=lambda wildcards: " ".join(
            f"--param {k}={v}" for k, v in STUDY.prepare_params(wildcards.dataset).items()
        ),
    threads: THREADS["prepare"]
    priority: 10
    conda:
        CONDA_ENV
    shell:
        "ganstudy data prepare {wildcards.dataset} --data-root {params.root:q} {params.args}"
        " > {log} 2>&1"


rule classifier:
    input:
        prepared=lambda wildcards: prepared(wildcards.dataset),
    output:
        model=data_path("classifier", "{dataset}"),
    log:
        f"{LOGS}/data/classifier-{{dataset}}.log",
    params:
        root=lambda wildcards: DATA,
        budget=lambda wildcards: STUDY.classifier_args(wildcards.dataset),
    threads: THREADS["classifier"]
    priority: 10
    resources:
        gpu_slot=GPU_RESOURCE,
    conda:
        CONDA_ENV
    shell:
        on_gpu_slot(
            "ganstudy classifier train --dataset {wildcards.dataset}"
            " --data-root {params.root:q} {params.budget} > {log} 2>&1"
        )


rule fid_reference:
    input:
        prepared=lambda wildcards: prepared(wildcards.dataset),
    output:
        receipt=data_path("fid_receipt", "{dataset}", "{protocol}"),
    log:
        f"{LOGS}/data/fid-reference-{{dataset}}-{{protocol}}.log",
    params:
        root=lambda wildcards: DATA,
        fid=STUDY.fid_args(),
    wildcard_constraints:
        protocol="[A-Za-z0-9_.-]+",
    threads: THREADS["evaluate"]
    priority: 10
    resources:
        gpu_slot=GPU_RESOURCE,
    conda:
        CONDA_ENV
    shell:
        on_gpu_slot(
            "ganstudy fid-reference --dataset {wildcards.dataset}"
            " --data-root {params.root:q} {params.fid} --out {output.receipt} > {log} 2>&1"
        )
