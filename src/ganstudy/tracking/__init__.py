"""MLflow tracking: one MLflow run per training run, mirroring the files of its run directory.

The store is ``tracking.uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else an SQLite
file ``mlflow.db`` in the working directory (MLflow's own default). A fresh SQLite store is
created under an exclusive file lock, so that many training processes started at once do not
race in MLflow's schema migration; writes that meet a locked database are retried
(:mod:`ganstudy.tracking.backend`).

Every MLflow call of a training job is made by one background thread
(:class:`ganstudy.tracking.runs.Worker`), in order: the loop only queues them, so opening the
store, starting the runs and sending metrics overlap with training. Metrics are buffered and
sent with ``log_batch`` at most every ``flush_seconds``; the end of a run waits (bounded) for
what is still queued.

Tracking is best effort: the run directory is the record and MLflow mirrors it. A store that
cannot be reached (at the start or later) never stops or stalls training: the
:class:`~ganstudy.tracking.runs.TrackingJob` prints one warning, records why, and ignores MLflow
for the rest of the job; HTTP requests to a server give up after a bounded wait
(:data:`~ganstudy.tracking.backend.HTTP_LIMITS`, unless the user set MLflow's variables).
``ganstudy track sync`` (:mod:`ganstudy.tracking.sync`) copies the run directories into a store
afterwards.

Modules: ``backend`` (the store: URI, lock, retries, experiment), ``records`` (what a run is
recorded with: params, tags, its dataset input, eval.json's numbers), ``runs`` (the live MLflow
runs of a training job), ``ui`` (addresses of the MLflow UI), ``sync`` (``ganstudy track sync``).
Nothing here imports MLflow at module level: each function imports it where it calls it.
"""
