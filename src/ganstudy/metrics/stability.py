"""Stability statistics of one run, from the files of its run directory.

- diverged: ``status == "diverged"`` in metrics.json, or a non-finite ``loss_d``/``loss_g`` in
  log.csv; the step is metrics.json's ``diverged_step``, else the first non-finite row's step.
- not converged: (2D mixtures) fewer than ``CONVERGED_QUALITY`` of the samples are high quality:
  the generator has not learned the data, whatever its mode count (null without that measure).
- collapsed: modes covered < ``COLLAPSE_FRACTION`` x modes total, for a run that has converged
  (many good samples on few modes); a run that has not converged is not called collapsed
  (null without a mode metric).
- FID curve (fid_curve.csv, one setting): best = min over finite values, its step, and the
  final (last) value.
- gradient norm of G (log.csv ``grad_norm_g``): mean, median and max over finite values, the
  last logged value (null when non-finite) and the number of non-finite values.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ganstudy import store
from ganstudy.metrics.registry import HIGH_QUALITY_FRACTION, MODES_COVERED, MODES_TOTAL

COLLAPSE_FRACTION = 0.5
CONVERGED_QUALITY = 0.5
COLLAPSE_RULE = (
    f"not converged when fewer than {CONVERGED_QUALITY:g} of the samples are high quality (2D "
    f"mixtures); collapsed when a converged run covers < {COLLAPSE_FRACTION:g} x modes total"
)


def _finite_or_none(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def read_csv(path: Path) -> pd.DataFrame | None:
    """A run's CSV, or None when it is absent or has no rows."""
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    return frame if len(frame) else None


def divergence(metrics: dict, log: pd.DataFrame | None) -> tuple[bool, int | None]:
    step = metrics.get("diverged_step")
    diverged = metrics.get("status") == store.Status.DIVERGED or step is not None
    if log is not None:
        losses = log[[c for c in ("loss_d", "loss_g") if c in log]].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(losses).all(axis=1)
        if bad.any():
            diverged = True
            if step is None:
                step = int(log["step"].to_numpy()[bad.argmax()])
    return diverged, (int(step) if step is not None else None)


def grad_norm_summary(log: pd.DataFrame | None) -> dict | None:
    if log is None or "grad_norm_g" not in log:
        return None
    norms = log["grad_norm_g"].to_numpy(dtype=np.float64)
    finite = norms[np.isfinite(norms)]
    if not len(finite):
        return {"mean": None, "median": None, "max": None, "final": None, "n_nonfinite": len(norms)}
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "max": float(finite.max()),
        "final": _finite_or_none(norms[-1]),
        "n_nonfinite": int(len(norms) - len(finite)),
    }


def fid_curve_summary(curve: pd.DataFrame | None) -> dict:
    """Best and final FID of the curve's last setting (rows with other n_samples/dims, e.g.
    from before a change of settings, are left out and counted)."""
    empty = {"best_fid": None, "best_fid_step": None, "final_fid": None, "fid_curve": None}
    if curve is None:
        return empty
    last = curve.iloc[-1]
    same = (curve["n_samples"] == last["n_samples"]) & (curve["dims"] == last["dims"])
    rows = curve[same]
    values = rows["fid"].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    info = {
        "n_samples": int(last["n_samples"]),
        "dims": int(last["dims"]),
        "points": int(len(rows)),
        "rows_with_other_settings": int((~same).sum()),
    }
    if not finite.any():
        return empty | {"fid_curve": info}
    best = int(np.where(finite, values, np.inf).argmin())
    return {
        "best_fid": float(values[best]),
        "best_fid_step": int(rows["step"].iloc[best]),
        "final_fid": _finite_or_none(values[-1]),
        "fid_curve": info,
    }


def not_converged(modes: dict | None) -> bool | None:
    """Few high-quality samples (2D mixtures); None where quality is not measured."""
    quality = (modes or {}).get(HIGH_QUALITY_FRACTION.key)
    return None if quality is None else quality < CONVERGED_QUALITY


def collapsed(modes: dict | None) -> bool | None:
    """Good samples on too few modes; False for a run that has not converged at all."""
    if not modes or not modes.get(MODES_TOTAL.key):
        return None
    if not_converged(modes):
        return False
    return modes[MODES_COVERED.key] < COLLAPSE_FRACTION * modes[MODES_TOTAL.key]


def stability(run_dir: str | Path, modes: dict | None = None) -> dict:
    """The stability block of eval.json for a run directory and its mode metrics (if any)."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / store.METRICS
    metrics = store.read_record(metrics_path, missing_ok=True) or {}
    log = read_csv(run_dir / store.LOG)
    diverged, step = divergence(metrics, log)
    return {
        "diverged": diverged,
        "diverged_step": step,
        "collapsed": collapsed(modes),
        "not_converged": not_converged(modes),
        "collapse_rule": COLLAPSE_RULE,
        **fid_curve_summary(read_csv(run_dir / store.FID_CURVE)),
        "grad_norm_g": grad_norm_summary(log),
    }
