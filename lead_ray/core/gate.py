"""The end-token gate relative to a sample's own kind (`cluster.end_z_above`). Pure numpy; no Ray.

A surprise in nats depends on the source: the base model is as surprised where a GSM8K answer stops after
`#### N` as where a truncated answer stops, so one absolute threshold (`cluster.end_nll_above`) drops clean
answers of one kind with the broken ones of another. Here each source group gets its own threshold from the
robust z-score of iu0_end within it:

    z = (x − median_g) / σ_g,   σ_g = 1.4826 · MAD_g   (the MAD scaled to a normal's σ)

and a pair is dropped when z > end_z_above and x > END_FLOOR. 3.5 is Iglewicz and Hoaglin's outlier rule.
Where MAD_g is 0 (most values equal), σ_g is the mean absolute deviation × 1.2533 instead (their fallback).
A group with fewer than MIN_GROUP scored pairs is judged against the whole pool's median and σ.
"""

from __future__ import annotations

import numpy as np

END_FLOOR = float(np.log(1000.0))  # nats: an end the base model gives 1 chance in 1000 or more is never an outlier
MIN_GROUP = 30  # scored pairs a group needs for a median and MAD of its own
MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533


def robust_sigma(x: np.ndarray) -> tuple[float, float]:
    """(median, σ) of finite values: σ from the MAD, or from the mean absolute deviation where the MAD is 0."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    median = float(np.median(x))
    mad = float(np.median(np.abs(x - median)))
    sigma = MAD_TO_SIGMA * mad if mad > 0 else MEAN_AD_TO_SIGMA * float(np.mean(np.abs(x - median)))
    return median, sigma


def group_thresholds(
    values: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    z: float,
    floor: float = END_FLOOR,
    min_group: int = MIN_GROUP,
) -> np.ndarray:
    """Per group code 0..n_groups−1: the iu0_end above which a pair of that group is dropped (inf: none is)."""
    values, groups = np.asarray(values, np.float64), np.asarray(groups, np.int64)
    pooled = robust_sigma(values)
    out = np.full(n_groups, np.inf)
    for g in range(n_groups):
        mine = values[groups == g]
        median, sigma = robust_sigma(mine) if np.isfinite(mine).sum() >= min_group else pooled
        if np.isfinite(median):
            out[g] = max(floor, median + z * sigma)
    return out


def keep_below(values: np.ndarray, groups: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Whether each pair stays: its value at or below its group's threshold, or NaN (no end token scored)."""
    values = np.asarray(values, np.float64)
    return ~(np.nan_to_num(values, nan=-np.inf) > thresholds[np.asarray(groups, np.int64)])
