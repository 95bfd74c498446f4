"""The drift tests, computed from a reference profile and the current column's values.

Each test reproduces the formula Evidently 0.7.23 runs on raw data
(`evidently/legacy/calculations/stattests/*.py`):

- `ks`: `scipy.stats.ks_2samp(reference, current)` p-value. When the reference values are all known
  (the profile's "exact" summary) and both sides have at most 10,000 values, scipy runs on them (its
  exact mode); otherwise the statistic is computed from the reference's counts at its knots and the
  sorted current data, and the p-value with scipy's asymptotic formula (`kstwo.sf(d, round(en))`),
  which is what `ks_2samp` itself does above 10,000 values.
- `wasserstein`: `scipy.stats.wasserstein_distance(reference, current) / max(std(reference), 0.001)`,
  as the integral of |F_ref - F_cur| over x: exact for an exact summary; with a sketch, exact per bin
  (both integrals are known) and approximate only where the CDF difference changes sign inside a bin.
- `chisquare`, `z`, `jensenshannon`, `psi` on value frequencies; `jensenshannon` and `psi` on a
  numeric column with more than 20 distinct reference values use Sturges bins over the combined
  range, as Evidently does (reference bin counts interpolated inside sketch bins).

scipy is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlops_dagster.monitoring.summaries import NumericSummary

KS_EXACT_MAX_N = 10000  # scipy's ks_2samp 'auto' mode is exact when both samples are this small
BINNED_MIN_DISTINCT = 20  # Evidently bins numbers for JS/PSI above this many distinct reference values
WASSERSTEIN_MIN_NORM = 0.001  # Evidently's floor on the reference std


class CurrentNumbers:
    """The finite values of one current column, sorted (a private float64 copy)."""

    def __init__(self, values: np.ndarray, is_int: bool):
        self.values = values
        self.n = int(values.size)
        self.is_int = is_int
        self._counts: dict[Any, int] | None = None

    def distinct(self) -> int:
        """Number of distinct values."""
        if self.n == 0:
            return 0
        return int(np.count_nonzero(self.values[1:] != self.values[:-1])) + 1

    def counts(self) -> dict[Any, int]:
        """value -> count."""
        if self._counts is None:
            v = self.values
            starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
            ends = np.append(starts[1:], self.n)
            self._counts = dict(zip(v[starts].tolist(), (ends - starts).tolist(), strict=True))
        return self._counts

    def centred_prefix(self, positions: np.ndarray, centre: float) -> np.ndarray:
        """P(k) = sum of the k smallest values - k * centre, at each k in `positions` (0 <= k <= n).

        One pass over the values (`np.add.reduceat` between the distinct positions), no copy of them.
        """
        inner = np.unique(positions[(positions > 0) & (positions < self.n)])
        starts = np.concatenate(([0], inner))
        bounds = np.append(starts, self.n)
        sums = np.add.reduceat(self.values, starts) - np.diff(bounds) * centre
        table = np.concatenate(([0.0], np.cumsum(sums)))
        return table[np.searchsorted(bounds, positions)]


def ks_pvalue(summary: NumericSummary, n_ref: int, current: CurrentNumbers) -> tuple[float, bool]:
    """Two-sided K-S p-value, and whether it is approximate (a sketched reference)."""
    knots, below, upto, _ = summary.arrays
    n_cur = current.n
    if summary.exact and max(n_ref, n_cur) <= KS_EXACT_MAX_N:
        from scipy.stats import ks_2samp

        return float(ks_2samp(np.repeat(knots, upto - below), current.values).pvalue), False
    upto_cur = np.searchsorted(current.values, knots, side="right")
    below_cur = np.searchsorted(current.values, knots, side="left")
    # The CDF difference at each reference knot, and just left of it (where the current CDF is
    # highest before the knot): the supremum over all sample points, as ks_2samp computes it.
    at = upto / n_ref - upto_cur / n_cur
    left = below / n_ref - below_cur / n_cur
    max_s = max(float(at.max()), float(left.max()))
    min_s = min(max(-float(at.min()), -float(left.min())), 1.0)
    min_s = max(min_s, 0.0)
    d = min_s if min_s > max_s else max_s
    from scipy.stats import distributions

    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    en = m * n / (m + n)
    p = float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    return p, not summary.exact


def wasserstein_norm(summary: NumericSummary, n_ref: int, current: CurrentNumbers) -> tuple[float, bool]:
    """W1(reference, current) / max(reference std, 0.001), and whether it is approximate."""
    knots, below, upto, gap = summary.arrays
    values, n_cur = current.values, current.n
    centre = summary.mean
    xc = knots - centre
    upto_cur = np.searchsorted(values, knots, side="right")
    below_cur = np.searchsorted(values, knots, side="left")
    # Where the reference is flat inside a bin (no reference value strictly inside), the current CDF
    # crosses the reference level at most once: both sides of the crossing are integrated exactly.
    level = upto[:-1]
    crossing = np.flatnonzero(
        (below[1:] == level)
        & (upto_cur[:-1] * n_ref < level * n_cur)
        & (level * n_cur < below_cur[1:] * n_ref)
    )
    k = -((-level[crossing] * n_cur) // n_ref)  # fewest current values with k / n_cur >= the level
    prefix = current.centred_prefix(np.concatenate((upto_cur, k, [n_cur])), centre)
    p_knots, p_cross, p_all = prefix[: knots.size], prefix[knots.size : -1], prefix[-1]
    # G(x) = integral of F_cur from -inf to x = sum over current v <= x of (x - v) / n_cur.
    g = (upto_cur * xc - p_knots) / n_cur
    left_tail = g[0]  # F_ref is 0 below the reference minimum
    last = int(upto_cur[-1])
    right_tail = ((p_all - p_knots[-1]) - (n_cur - last) * xc[-1]) / n_cur  # F_ref is 1 above
    ref_integral = upto[:-1] / n_ref * np.diff(knots) + gap / n_ref
    body = np.abs(ref_integral - np.diff(g))
    if crossing.size:
        j = crossing
        c = level[j] / n_ref
        t = values[k - 1] - centre
        g_t = (k * t - p_cross) / n_cur
        body[j] = (c * (t - xc[j]) - (g_t - g[j])) + ((g[j + 1] - g_t) - c * (xc[j + 1] - t))
    distance = float(left_tail + body.sum() + right_tail)
    return distance / max(summary.std, WASSERSTEIN_MIN_NORM), not summary.exact


def sturges_edges(lo: float, hi: float, size: int, integer: bool) -> np.ndarray:
    """`np.histogram_bin_edges(combined, bins="sturges")` from the combined data's min, max and size."""
    ptp = hi - lo
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    width = ptp / (np.log2(size) + 1.0)
    if width:
        if integer and width < 1:
            width = 1
        bins = int(np.ceil((last - first) / width))
    else:
        bins = 1
    return np.linspace(first, last, bins + 1, endpoint=True)


def binned_percents(
    summary: NumericSummary, n_ref: int, ref_is_int: bool, current: CurrentNumbers
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Evidently's Sturges-binned reference and current shares (numbers, > 20 distinct reference values).

    Returns the two share arrays and whether the reference's are approximate (a sketch).
    """
    knots, below, upto, _ = summary.arrays
    values, n_cur = current.values, current.n
    lo = min(float(knots[0]), float(values[0]))
    hi = max(float(knots[-1]), float(values[-1]))
    edges = sturges_edges(lo, hi, n_ref + n_cur, ref_is_int and current.is_int)
    ref_below = _reference_count_below(knots, below, upto, n_ref, edges)
    ref_below[-1] = n_ref  # the last bin is closed on the right
    cur_below = np.searchsorted(values, edges, side="left").astype(np.float64)
    cur_below[-1] = n_cur
    return np.diff(ref_below) / n_ref, np.diff(cur_below) / n_cur, not summary.exact


def _reference_count_below(
    knots: np.ndarray, below: np.ndarray, upto: np.ndarray, n_ref: int, points: np.ndarray
) -> np.ndarray:
    """Reference values strictly below each point: exact at knots, interpolated inside sketch bins."""
    j = np.searchsorted(knots, points, side="left")  # knots[:j] < point <= knots[j]
    out = np.empty(points.size, dtype=np.float64)
    out[j == 0] = 0.0
    out[j == knots.size] = n_ref
    inside = (j > 0) & (j < knots.size)
    ji = j[inside]
    p = points[inside]
    on_knot = knots[ji] == p
    lo, hi = knots[ji - 1], knots[ji]
    frac = (p - lo) / (hi - lo)
    between = upto[ji - 1] + (below[ji] - upto[ji - 1]) * frac
    out[inside] = np.where(on_knot, below[ji], between)
    return out


def sketch_counts(summary: NumericSummary, keys: list[Any]) -> np.ndarray:
    """Reference counts of each value in `keys`: exact where the value is a knot, 0 elsewhere."""
    knots, below, upto, _ = summary.arrays
    points = np.asarray(keys, dtype=np.float64)
    j = np.minimum(np.searchsorted(knots, points), knots.size - 1)
    return np.where(knots[j] == points, upto[j] - below[j], 0).astype(np.float64)


def aligned_counts(
    ref: Mapping[Any, int], cur: Mapping[Any, int]
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The union of both category sets, with each side's counts on it (0 where absent)."""
    keys = list(ref.keys() | cur.keys())
    r = np.fromiter((ref.get(k, 0) for k in keys), dtype=np.float64, count=len(keys))
    c = np.fromiter((cur.get(k, 0) for k in keys), dtype=np.float64, count=len(keys))
    return keys, r, c


def jensenshannon(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    """`scipy.spatial.distance.jensenshannon(p, q)` (natural log)."""
    p = ref_share / ref_share.sum()
    q = cur_share / cur_share.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        right = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(np.sqrt((left + right) / 2.0))


def psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    """Population stability index, zero shares replaced as Evidently does (`get_binned_data`)."""
    r, c = _fill_zeroes(ref_share.copy()), _fill_zeroes(cur_share.copy())
    return float(np.sum((r - c) * np.log(r / c)))


def _fill_zeroes(share: np.ndarray) -> np.ndarray:
    nonzero = share[share != 0]
    if nonzero.size == 0:
        return share
    smallest = float(nonzero.min())
    np.place(share, share == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return share


def chisquare_pvalue(ref: Mapping[Any, int], cur: Mapping[Any, int]) -> float:
    """`scipy.stats.chisquare(f_obs=current, f_exp=reference * n_cur / n_ref)` p-value."""
    from scipy.stats import chisquare

    _, r, c = aligned_counts(ref, cur)
    k_norm = c.sum() / r.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(chisquare(c, r * k_norm)[1])


def z_pvalue(ref: Mapping[Any, int], cur: Mapping[Any, int]) -> float:
    """Two-proportion Z-test: the smallest category against all others, two-sided, as Evidently."""
    from scipy.special import ndtr

    ref_keys = [k for k, n in ref.items() if n > 0]
    cur_keys = [k for k, n in cur.items() if n > 0]
    if len(ref_keys) == 1 and len(cur_keys) == 1 and ref_keys[0] == cur_keys[0]:
        return 1.0
    keys = list(ref.keys() | cur.keys())
    try:
        first = min(keys)
    except TypeError:  # mixed types: Evidently would fail; order by type name, then value
        first = min(keys, key=lambda k: (type(k).__name__, str(k)))
    n1, n2 = sum(ref.values()), sum(cur.values())
    p1 = float(n1 - ref.get(first, 0)) / n1
    p2 = float(n2 - cur.get(first, 0)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
        return float(2 * (1 - ndtr(np.abs(z))))


def is_finite(value: float) -> bool:
    """math.isfinite for any float-like."""
    return math.isfinite(float(value))
