"""Addresses of the MLflow UI: an experiment's runs table or a run's page, and how to open it."""

from __future__ import annotations

# MLflow 3's UI keeps one global switch between its GenAI views and its model-training views (the
# runs table), read from the page address or else remembered by the browser, GenAI by default;
# from 3.1x on it ignores the experiment kind tag. Links carry the switch.
UI_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"


def ui_url(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The address of an experiment's runs table (or one run's page) in the MLflow UI: the
    server itself for an HTTP store, else where ``mlflow ui`` serves by default."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    page = f"#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{base}/{page}?{UI_VIEW}"


def ui_hint(uri: str, experiment_id: str) -> str:
    """How to look at an experiment: its runs table's address, and for a store that is not a
    server the command that serves the UI there."""
    link = ui_url(uri, experiment_id)
    if uri.startswith(("http://", "https://")):
        return f"MLflow UI: {link}"
    return f"MLflow UI: run `mlflow ui --backend-store-uri {uri} --port 5000`, then open {link}"
