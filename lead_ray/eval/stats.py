"""Confidence intervals for comparing selection methods on per-item eval scores.

Every number a benchmark reports is a mean over eval items (per-item NLL, 0/1 accuracy or exact
match), for one or more training seeds. The intervals are percentile/BCa bootstraps:

  mean_ci(x)                the mean of one method's per-item scores, resampling items;
  paired_diff(a, b)         mean(a − b) over the same items for one seed (items resampled in pairs);
  pooled_paired_diff(A, B)  A, B: (seeds × items). The mean difference over seeds and items, resampling
                            seeds and items (a two-level bootstrap: seed-to-seed training noise and
                            item-to-item eval noise both widen the interval).

A difference whose interval contains 0 is "none": no difference at that confidence. `better` names
the side whose score is better given the metric's direction (lower NLL, higher accuracy). With two or more
seeds a pooled difference also carries `seed_t_interval`, a Student-t interval over the per-seed paired
means, and is "better" only when both intervals exclude 0 (a bootstrap over 3 seeds has 10 distinct seed
resamples: it understates seed-to-seed variance).

  variance_components(d)    d: (seeds × items) differences: the seed, item and seed×item standard deviations;
  mde(components, seeds, items)  the smallest true difference both intervals detect with 80% power;
  holm(p)                   Holm's step-down adjustment of a family of p-values.
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
    per_seed = d.mean(axis=1)
    t_ci = seed_t_interval(per_seed, confidence)
    both = verdict(ci, higher_is_better, names)
    return {
        "mean": float(d.mean()),
        "ci": ci,
        "seed_t_interval": t_ci,
        "seed_t_p": seed_t_p(per_seed),
        "seeds": seeds,
        "n": items,
        "per_seed": [float(x) for x in per_seed],
        "better": both if verdict(t_ci, higher_is_better, names) == both else "none",
    }


def seed_t_interval(per_seed, confidence: float = CONFIDENCE) -> list[float]:
    """Student-t interval of the mean of per-seed paired means (n − 1 degrees of freedom)."""
    from scipy.stats import t

    x = np.asarray(per_seed, np.float64)
    if len(x) < 2:
        return [float("nan")] * 2
    half = float(t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return [float(x.mean()) - half, float(x.mean()) + half]


def seed_t_p(per_seed) -> float:
    """Two-sided p-value of a one-sample t-test of the per-seed paired means against 0 (1.0 when they are all 0)."""
    from scipy.stats import t

    x = np.asarray(per_seed, np.float64)
    if len(x) < 2 or np.all(x == 0):
        return 1.0
    sd = x.std(ddof=1)
    if sd <= 1e-12 * np.abs(x).max():  # every seed the same difference
        return 0.0
    return float(2 * t.sf(abs(x.mean()) / (sd / np.sqrt(len(x))), len(x) - 1))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values of one family (family-wise error held at the level compared to)."""
    order = sorted(p_values, key=p_values.get)
    out, running = {}, 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[key]))
        out[key] = running
    return out


def variance_components(d) -> dict[str, float]:
    """Standard deviations of a (seeds × items) table of paired differences, by the two-way random-effects
    ANOVA without replication: `seed` (a seed's shift of every item), `item` (an item's shift in every seed)
    and `interaction` (the rest). Negative variance estimates are set to 0."""
    d = np.asarray(d, np.float64)
    seeds, items = d.shape
    seed_means, item_means, grand = d.mean(1), d.mean(0), d.mean()
    rest = d - seed_means[:, None] - item_means[None, :] + grand
    interaction = float((rest**2).sum() / max((seeds - 1) * (items - 1), 1))
    seed_var = float(seed_means.var(ddof=1)) - interaction / items if seeds > 1 else 0.0
    item_var = float(item_means.var(ddof=1)) - interaction / seeds if items > 1 else 0.0
    return {
        "seed": float(np.sqrt(max(seed_var, 0.0))),
        "item": float(np.sqrt(max(item_var, 0.0))),
        "interaction": float(np.sqrt(interaction)),
        "seeds": seeds,
        "items": items,
    }


def mde(components: dict, seeds: int, items: int, power: float = 0.8, confidence: float = CONFIDENCE) -> dict:
    """Minimum detectable difference (nats) with `seeds` seeds and `items` items, at `power`: the larger of
    what the seed t-interval needs, (t_{1−α/2} + t_power; seeds − 1 df) · √((σ_seed² + σ_int²/items) / seeds),
    and what the two-level bootstrap needs, (z_{1−α/2} + z_power) · √(σ_seed²/seeds + σ_item²/items +
    σ_int²/(seeds·items)). A verdict needs both intervals to exclude 0, so the larger one binds."""
    from scipy.stats import norm, t

    s, i, x = components["seed"], components["item"], components["interaction"]
    df = seeds - 1
    t_mde = (t.ppf(0.5 + confidence / 2, df) + t.ppf(power, df)) * np.sqrt((s**2 + x**2 / items) / seeds)
    z_mde = (norm.ppf(0.5 + confidence / 2) + norm.ppf(power)) * np.sqrt(
        s**2 / seeds + i**2 / items + x**2 / (seeds * items)
    )
    return {
        "nats": float(max(t_mde, z_mde)),
        "t": float(t_mde),
        "bootstrap": float(z_mde),
        "seeds": seeds,
        "items": items,
    }
