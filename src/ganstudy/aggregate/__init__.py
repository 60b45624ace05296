"""Aggregation: one row per run of the study design in ``summary.csv`` (``summary``), its columns
declared once with their types and sources (``columns``)."""
