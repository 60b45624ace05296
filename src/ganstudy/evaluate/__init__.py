"""Evaluation: every metric of finished runs into each run's ``eval.json`` (``evaluation``), with
the registry of mode metrics (``mode_metrics.MODE_METRICS``)."""
