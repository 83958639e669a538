"""Confidence intervals for comparing selection methods on per-item eval scores.

Every number a benchmark reports is a mean over eval items (per-item NLL, 0/1 accuracy or exact
match), for one or more training seeds. The intervals are percentile/BCa bootstraps:

  mean_ci(x)                the mean of one method's per-item scores, resampling items;
  paired_diff(a, b)         mean(a − b) over the same items for one seed (items resampled in pairs);
  pooled_paired_diff(A, B)  A, B: (seeds × items). The mean difference over seeds and items, resampling
                            seeds and items (a two-level bootstrap: seed-to-seed training noise and
                            item-to-item eval noise both widen the interval).

A difference whose interval contains 0 is "none": no difference at that confidence. `better` names
the side whose score is better given the metric's direction (lower NLL, higher accuracy).
scipy.stats.bootstrap does the single-level resampling; the two-level one is a few lines of numpy.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 4000


def _clean(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x[np.isfinite(x)]


def mean_ci(values, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """{"mean", "ci": [lo, hi], "n"} of one set of per-item scores (non-finite items left out)."""
    from scipy.stats import bootstrap

    x = _clean(values)
    if len(x) < 2 or np.all(x == x[0]):
        m = float(x.mean()) if len(x) else float("nan")
        return {"mean": m, "ci": [m, m], "n": int(len(x))}
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES, method="BCa", random_state=seed)
    return {
        "mean": float(x.mean()),
        "ci": [float(res.confidence_interval.low), float(res.confidence_interval.high)],
        "n": int(len(x)),
    }


def verdict(ci: list[float], higher_is_better: bool, names: tuple[str, str]) -> str:
    """Which side of a − b is better: names[0] (a), names[1] (b), or "none" when the interval holds 0."""
    lo, hi = ci
    if lo <= 0 <= hi or not np.isfinite(lo) or not np.isfinite(hi):
        return "none"
    a_higher = lo > 0
    return names[0] if a_higher == higher_is_better else names[1]


def paired_diff(
    a, b, higher_is_better: bool, names: tuple[str, str] = ("a", "b"), confidence: float = CONFIDENCE, seed: int = 0
) -> dict:
    """mean(a − b) over items scored for both (same order), its interval, and which side is better."""
    from scipy.stats import bootstrap

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same items: {a.shape} vs {b.shape}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if len(d) < 2 or np.all(d == d[0]):
        m = float(d.mean()) if len(d) else float("nan")
        return {"mean": m, "ci": [m, m], "n": int(len(d)), "better": verdict([m, m], higher_is_better, names)}
    res = bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES, method="BCa", random_state=seed)
    ci = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return {"mean": float(d.mean()), "ci": ci, "n": int(len(d)), "better": verdict(ci, higher_is_better, names)}


def _two_level_ci(d: np.ndarray, confidence: float, seed: int) -> list[float]:
    """Percentile interval of the mean of `d` (seeds × items), resampling seeds and items."""
    rng = np.random.default_rng(seed)
    seeds, items = d.shape
    means = np.empty(RESAMPLES)
    for r in range(RESAMPLES):
        means[r] = d[np.ix_(rng.integers(0, seeds, seeds), rng.integers(0, items, items))].mean()
    alpha = (1 - confidence) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]


def pooled_mean_ci(scores, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """scores: (seeds × items) of one method. Its mean over seeds and items with a two-level interval
    (one seed: over the items alone, as mean_ci). Items not scored in every seed are left out."""
    x = np.atleast_2d(np.asarray(scores, np.float64))
    x = x[:, np.all(np.isfinite(x), axis=0)]
    if x.shape[0] == 1 or x.shape[1] == 0:
        return {**mean_ci(x[0] if len(x) else [], confidence, seed), "seeds": int(x.shape[0])}
    return {
        "mean": float(x.mean()),
        "ci": _two_level_ci(x, confidence, seed),
        "n": int(x.shape[1]),
        "seeds": int(x.shape[0]),
    }


def pooled_paired_diff(
    a, b, higher_is_better: bool, names: tuple[str, str] = ("a", "b"), confidence: float = CONFIDENCE, seed: int = 0
) -> dict:
    """a, b: (seeds × items) scores of two methods, seed s of each trained with the same seed and
    scored on the same items. Mean difference over all, with a two-level percentile bootstrap."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same seeds and items: {a.shape} vs {b.shape}")
    keep = np.all(np.isfinite(a) & np.isfinite(b), axis=0)  # items every run scored
    d = (a - b)[:, keep]
    seeds, items = d.shape
    if items == 0:
        return {"mean": float("nan"), "ci": [float("nan")] * 2, "seeds": seeds, "n": 0, "better": "none"}
    if seeds == 1:  # one seed: the paired item bootstrap
        one = paired_diff(a[0, keep], b[0, keep], higher_is_better, names, confidence, seed)
        return {**one, "seeds": 1, "per_seed": [one["mean"]]}
    ci = _two_level_ci(d, confidence, seed)
    return {
        "mean": float(d.mean()),
        "ci": ci,
        "seeds": seeds,
        "n": items,
        "per_seed": [float(x) for x in d.mean(axis=1)],
        "better": verdict(ci, higher_is_better, names),
    }
