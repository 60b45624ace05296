# Evaluation, one job per run: FID against the cached reference statistics, mode coverage with
# the dataset's classifier, stability statistics. A diverged run is evaluated like any other.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        eval=f"{RESULTS}/runs/{{dataset}}/{{arch}}/{{loss}}/bn-g{{g}}-d{{d}}/seed{{seed}}/eval.json",
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{arch}}/{{loss}}/bn-g{{g}}-d{{d}}/seed{{seed}}.log",
    params:
        run=run_dir,
        fid=lambda wildcards: STUDY.fid_args() if STUDY.fid_protocol(wildcards.dataset) else "",
        modes=(
            ""
            if STUDY.config["modes"]["samples"] is None
            else f"--mode-samples {STUDY.config['modes']['samples']}"
        ),
    threads: THREADS["evaluate"]
    resources:
        gpu_slot=GPU_RESOURCE,
    conda:
        CONDA_ENV
    shell:
        "python -m ganstudy.gpu_slots -- ganstudy evaluate --run {params.run} {params.fid}"
        " {params.modes} > {log} 2>&1"
