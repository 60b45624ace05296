# Evaluation, one job per training job: every member's FID against the cached reference
# statistics, mode coverage with the dataset's classifier and stability statistics, in one
# process that loads the Inception network, the classifier and the reference statistics once.
# A diverged run is evaluated like any other. The time asked of a cluster grows with the
# members (EVALUATE_MINUTES); a profile's set-resources entry for the job's rule name wins.


for job in STUDY.jobs:

    rule:
        name:
            job.evaluation_name
        input:
            **evaluate_inputs(job),
        output:
            eval=member_files(job, store.EVAL),
        log:
            job=f"{LOGS}/evaluate/{store.job_label(job.variant.key, job.seeds_arg)}.log",
            # written where the final generator gives finite samples (see eval.json's "files")
            samples=sample_files(job),
        params:
            runs=shell_words(member_files(job, "")),
            fid=STUDY.fid_args() if STUDY.fid_protocol(job.variant.dataset) else "",
            modes=STUDY.mode_args(job.variant),
        threads: THREADS["evaluate"]
        priority: wave_priority(job)
        resources:
            gpu_slot=GPU_RESOURCE,
            runtime=evaluate_minutes(job),
        conda:
            CONDA_ENV
        shell:
            on_gpu_slot(
                "ganstudy evaluate --run {params.runs} {params.fid}"
                " {params.modes} > {log.job} 2>&1"
            )
