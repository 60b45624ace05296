# Evaluation, one job per run: FID against the cached reference statistics, mode coverage with
# the dataset's classifier, stability statistics. A diverged run is evaluated like any other.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        eval=f"{RESULTS}/{layout.WILDCARD_RUN_DIR}/{layout.EVAL}",
    log:
        f"{LOGS}/evaluate/{layout.WILDCARD_RUN_DIR}.log",
    params:
        run=run_dir,
        fid=lambda wildcards: STUDY.fid_args() if STUDY.fid_protocol(wildcards.dataset) else "",
        modes=lambda wildcards: STUDY.mode_args(variant_of(wildcards)),
    threads: THREADS["evaluate"]
    resources:
        gpu_slot=GPU_RESOURCE,
    conda:
        CONDA_ENV
    shell:
        on_gpu_slot(
            "ganstudy evaluate --run {params.run} {params.fid}"
            " {params.modes} > {log} 2>&1"
        )
