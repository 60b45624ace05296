"""The stratified exact conditional test of rates: a common odds ratio of 1 over strata.

**Test.** Given the margins of each stratum's 2 x 2 table (N_s runs, n_xs of them x's, e_s
events in all), the events K_s of x follow the hypergeometric law

    P(K_s = k) = C(e_s, k) C(N_s - e_s, n_xs - k) / C(N_s, n_xs),

independently over strata, and the stratified exact conditional test (the exact
Cochran-Mantel-Haenszel test, a stratified Fisher test) convolves them: the law of the total
events of x, sum_s K_s. Two-sided p: the probability of the totals no more probable than the
observed one (relative tolerance 1e-7), as scipy.stats.fisher_exact and R's
``mantelhaen.test(exact = TRUE)``. A stratum with no run on a side carries no information and is
skipped. The simulations (:mod:`ganstudy.analysis.planning`, :mod:`ganstudy.analysis.simulate`)
run it on a batch of tables at once.

**Precision** (as :mod:`ganstudy.analysis.exact`'s laws). Every probability is a sum of positive
terms, so the direct convolution keeps machine precision relative to each, however small. Above
``FFT_MIN_WIDTH`` possible totals a batch's laws go through the FFT instead, whose rounding is
absolute: about eps = 2.2e-16 times the largest probability in every entry (bounded by
``exact.FFT_ROUNDING``, 64 eps max p). A p of up to L such entries is trusted where 64 eps max p L
is below ``exact.TRUSTED`` (1e-6) of it; below that floor its table's law is recomputed by the
direct convolution (over each stratum's support). A p below ``exact.SMALLEST_P`` (1e-290) may have
lost terms to underflow, and is stated as "< 1e-290" (:func:`ganstudy.analysis.stats.format_p`).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ganstudy.analysis import exact

FFT_MIN_WIDTH = 256
_RELATIVE_TOLERANCE = 1 + 1e-7

EXACT_CONDITIONAL = "exact conditional (stratified Fisher)"


def _hypergeom_pmf(total: np.ndarray, events: np.ndarray, n_x: np.ndarray, k: np.ndarray):
    """P(k events among the n_x runs of x | total runs, events in all), vectorised."""
    log = (
        special.gammaln(events + 1)
        - special.gammaln(k + 1)
        - special.gammaln(events - k + 1)
        + special.gammaln(total - events + 1)
        - special.gammaln(n_x - k + 1)
        - special.gammaln(total - events - n_x + k + 1)
        - special.gammaln(total + 1)
        + special.gammaln(n_x + 1)
        + special.gammaln(total - n_x + 1)
    )
    valid = (k >= np.maximum(0, events - (total - n_x))) & (k <= np.minimum(n_x, events))
    return np.where(valid, np.exp(np.where(valid, log, 0.0)), 0.0)


def stratified_fisher_p(events_x, n_x, events_y, n_y) -> np.ndarray:
    """Two-sided p of the exact conditional test of a common odds ratio of 1, batched.

    Arrays of shape (..., S): events and runs of x and y per stratum, over any leading batch
    dimensions (the planning simulations); a stratum with no run on a side is skipped.
    Returns p with the batch shape.
    """
    ex, nx, ey, ny = (np.asarray(a, dtype=np.int64) for a in (events_x, n_x, events_y, n_y))
    ex, nx, ey, ny = np.broadcast_arrays(ex, nx, ey, ny)
    batch = ex.shape[:-1]
    ex, nx, ey, ny = (a.reshape(-1, a.shape[-1]) for a in (ex, nx, ey, ny))
    reps, strata = ex.shape
    width = int(nx.max(axis=0).sum()) + 1 if strata else 1
    pmfs = []
    for s in range(strata):
        top = int(nx[:, s].max())
        if top == 0 or int(ny[:, s].max()) == 0:
            continue
        k = np.arange(top + 1)
        pmf = _hypergeom_pmf(
            (nx[:, s] + ny[:, s])[:, None],
            (ex[:, s] + ey[:, s])[:, None],
            nx[:, s][:, None],
            k[None, :],
        )
        pmf[(nx[:, s] == 0) | (ny[:, s] == 0)] = np.eye(top + 1)[0]
        pmfs.append(pmf)
    used = (nx > 0) & (ny > 0)
    observed = np.where(used, ex, 0).sum(axis=1)
    if width <= FFT_MIN_WIDTH:
        return _two_sided(_law_direct(pmfs, reps, width), observed).reshape(batch)
    dist = _law_fft(pmfs, reps, width)
    p = _two_sided(dist, observed)
    # A p of up to ``width`` entries, each rounded by about eps times the largest: trusted
    # where that is below exact.TRUSTED of it, else the table's law is convolved directly.
    redo = np.flatnonzero(p < exact.FFT_ROUNDING * dist.max(axis=1) * width / exact.TRUSTED)
    if len(redo):
        p[redo] = _two_sided(_law_rows(pmfs, redo, width), observed[redo])
    return p.reshape(batch)


def _law_direct(pmfs: list[np.ndarray], reps: int, width: int) -> np.ndarray:
    """The law of the total events of x (reps x width), the strata convolved directly."""
    dist = np.zeros((reps, width))
    dist[:, 0] = 1.0
    filled = 1
    for pmf in pmfs:
        new = np.zeros_like(dist)
        for j in np.flatnonzero(pmf.any(axis=0)):
            new[:, j : j + filled] += dist[:, :filled] * pmf[:, j : j + 1]
        dist = new
        filled += pmf.shape[1] - 1
    return dist


def _law_rows(pmfs: list[np.ndarray], rows: np.ndarray, width: int) -> np.ndarray:
    """The same law of the given rows only, one row at a time: a direct convolution over each
    stratum's support costs less there than the vectorised one over every row's widest."""
    out = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        dist, start = np.ones(1), 0
        for pmf in pmfs:
            support = np.flatnonzero(pmf[row])
            dist = np.convolve(dist, pmf[row, support[0] : support[-1] + 1])
            start += support[0]
        out[i, start : start + len(dist)] = dist
    return out


def _law_fft(pmfs: list[np.ndarray], reps: int, width: int) -> np.ndarray:
    """The same law through the product of the strata's transforms (absolute rounding)."""
    size = 1 << (width - 1).bit_length()
    spectrum = np.ones((reps, size // 2 + 1), dtype=complex)
    for pmf in pmfs:
        spectrum *= np.fft.rfft(pmf, n=size, axis=1)
    return np.clip(np.fft.irfft(spectrum, n=size, axis=1)[:, :width], 0.0, None)


def _two_sided(dist: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The probability of the totals no more probable than the observed one, per row."""
    p_obs = dist[np.arange(len(dist)), observed] * _RELATIVE_TOLERANCE
    return np.minimum(1.0, np.where(dist <= p_obs[:, None], dist, 0.0).sum(axis=1))
