"""The fine stage: which samples of the chosen cluster train next (ALGORITHM.md §7). Pure numpy; no Ray.

For every task group T of the chosen difficulty cluster, independently: take the eligible samples
(use count below the cap), sort by U descending, ties by position (positions are dense indices in
id order, so this is "ties by id"), keep the top ⌊ρ · n_T⌋. The round is the union over groups,
then shuffled with a seeded RNG (ALGORITHM.md §10 D9; no RNG keeps the official code's order: task by task, U
descending).

With `selection.trim_top` τ > 0, each group first skips its ⌊τ · n_T⌋ highest-ranked eligible samples and
takes the quota from below them (the small-loss trick of co-teaching; Data Diet prunes the highest-scoring
examples first): broken pairs gather at the very top of any loss-type score. τ = 0 is the paper's rule.

The same three steps serve one table and a table split into shards: per-group quotas (and skips) from the
global eligible counts, each shard's own top quota + skip per group, and a merge.
"""

from __future__ import annotations

import numpy as np


def quotas_for(counts: dict[int, int], rho: float, min_per_group: int = 0) -> dict[int, int]:
    """⌊ρ · n_T⌋ per task group (lifted to min_per_group, at most n_T); groups with 0 left out."""
    out = {}
    for group, n in counts.items():
        k = min(n, max(int(np.floor(rho * n)), min_per_group))
        if k > 0:
            out[int(group)] = k
    return out


def skips_for(counts: dict[int, int], quotas: dict[int, int], trim_top: float) -> dict[int, int]:
    """⌊τ · n_T⌋ per group with a quota, at most n_T − quota: the highest-ranked eligible samples passed over."""
    return {g: min(int(np.floor(trim_top * counts[g])), counts[g] - k) for g, k in quotas.items()}


def top_k_by_u(u: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """The k positions with the largest U, best first, ties by smaller position; O(n) via argpartition."""
    if k <= 0 or len(positions) == 0:
        return positions[:0]
    vals = u[positions]
    if k < len(positions):
        kth = np.partition(vals, len(vals) - k)[len(vals) - k]  # the k-th largest value
        above = positions[vals > kth]
        tied = np.sort(positions[vals == kth])[: k - len(above)]  # boundary ties: smallest position first
        positions = np.concatenate([above, tied])
    return positions[np.lexsort((positions, -u[positions]))]


def merge_top_k(
    parts: list[dict[int, tuple[np.ndarray, np.ndarray]]], quotas: dict[int, int], skips: dict[int, int] | None = None
) -> np.ndarray:
    """Global per-group top-k from per-shard answers {group: (positions, U)}; task by task, U descending.
    With `skips`, each group's first skip (in that order) are passed over: shards answered skip + quota."""
    picked = []
    for group in sorted(quotas):
        pos = np.concatenate([p[group][0] for p in parts if group in p] or [np.zeros(0, np.int64)])
        u = np.concatenate([p[group][1] for p in parts if group in p] or [np.zeros(0, np.float32)])
        skip = (skips or {}).get(group, 0)
        picked.append(pos[np.lexsort((pos, -u))][skip : skip + quotas[group]])
    return np.concatenate(picked) if picked else np.zeros(0, np.int64)


def select_round(
    u: np.ndarray,
    use_count: np.ndarray,
    task: np.ndarray,
    rho: float,
    cap: int,
    rng: np.random.Generator | None = None,
    min_per_group: int = 0,
    trim_top: float = 0.0,
) -> np.ndarray:
    """Positions selected for this round among one cluster's samples (arrays indexed by position).

    The whole-table reference of one round's selection, kept for the tests: the sharded path
    (`UtilityTable.top_k` per shard, `merge_top_k`) and `first_round_sizes` are checked against it."""
    eligible = np.flatnonzero(use_count < cap)
    groups, counts = np.unique(task[eligible], return_counts=True)
    n = dict(zip(groups.tolist(), counts.tolist()))
    quotas = quotas_for(n, rho, min_per_group)
    skips = skips_for(n, quotas, trim_top)
    ranked = {g: top_k_by_u(u, eligible[task[eligible] == g], skips[g] + k) for g, k in quotas.items()}
    picked = np.concatenate([ranked[g][skips[g] :] for g in sorted(quotas)] or [np.zeros(0, np.int64)])
    if rng is not None:
        picked = picked[rng.permutation(len(picked))]
    return picked


def first_round_sizes(cluster: np.ndarray, task: np.ndarray, rho: float, min_per_group: int = 0) -> dict[int, int]:
    """Samples a first pull of each difficulty cluster trains (every sample eligible): Σ_T quota(n_T).

    A planning figure: with small or uneven clusters, ⌊ρ · n_T⌋ leaves some arms with rounds of a few
    samples (less than one optimizer batch), which is worth knowing before the run, not after.
    """
    out = {}
    for arm in np.unique(cluster).tolist():
        groups, counts = np.unique(task[cluster == arm], return_counts=True)
        out[int(arm)] = int(sum(quotas_for(dict(zip(groups.tolist(), counts.tolist())), rho, min_per_group).values()))
    return out


def trim_to_budget(index: np.ndarray, u: np.ndarray, is_new: np.ndarray, remaining: int) -> np.ndarray:
    """The round's selection cut so that at most `remaining` never-selected samples are in it.

    The unique budget is a hard cap: the round that reaches it keeps its samples in U order (highest
    first, ties by position) down to the `remaining`-th new one; samples below that cut are dropped,
    whether new or re-used. Order inside the kept part is the original order. Nothing to cut when the
    round fits.
    """
    if int(is_new.sum()) <= remaining:
        return index
    if remaining <= 0:
        return index[:0]
    order = np.lexsort((index, -u))
    cut = int(np.flatnonzero(np.cumsum(is_new[order]) == remaining)[0])
    return index[np.sort(order[: cut + 1])]
