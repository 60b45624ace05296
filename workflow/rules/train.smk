# Training: one job per chunk of a variant's seeds (`seeds_per_job`), trained as one batched
# ensemble. A job's outputs are files inside the run dirs (every member's metrics.json, final.pt,
# log.csv and, where the runs take a FID curve, fid_curve.csv), never the run dirs themselves.
# Snakemake removes the declared outputs of a failed or interrupted job; the checkpoints/ it
# leaves behind let the rerun resume from the last checkpoint, and each checkpoint carries the
# log.csv and fid_curve.csv rows up to its step, which the resumed run writes back. A finished
# run keeps its last checkpoint as final.pt under a second name (a hard link: no space of its
# own), so a job run again after its outputs were removed (a failure after training ended, a
# changed rule) resumes at the last step and trains nothing.


from ganstudy.config import without_storage_keys


# One rule per training job: a job writes the run dirs of several seeds, so its outputs cannot
# be one wildcard pattern.
for job in STUDY.jobs:

    rule:
        name:
            job.name
        input:
            # Written with every other run config by the design job; a job reruns when its own
            # run config changes (the params below), not when the file is rewritten.
            config=ancient(STUDY.config_path(job.variant)),
            data=prepared(job.variant.dataset),
        output:
            metrics=member_files(job, store.METRICS),
            final=member_files(job, store.FINAL),
            logs=member_files(job, store.LOG),
            fid_curves=fid_curves(job),
        log:
            f"{LOGS}/train/{store.job_label(job.variant.key, job.seeds_arg)}.log",
        params:
            # Without the keys that only decide what a run keeps on disk: changing one retrains
            # nothing (config.STORAGE_KEYS).
            config=json.dumps(without_storage_keys(job.variant.run_config), sort_keys=True),
            seeds=job.seeds_arg,
            # A function, so that {seed} reaches the command as is: ganstudy train fills in the
            # seed of each member.
            out=verbatim(f"{RESULTS}/{job.variant.run_dir_pattern}"),
        threads: THREADS["train"]
        priority: wave_priority(job)
        resources:
            gpu_slot=GPU_RESOURCE,
        conda:
            CONDA_ENV
        shell:
            on_gpu_slot(
                "ganstudy train --config {input.config} --seeds {params.seeds}"
                " --out {params.out:q} > {log} 2>&1"
            )
