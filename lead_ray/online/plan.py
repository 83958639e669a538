"""The UtilityStore's side of a bandit round, shared by the training loop and bench/scale/run.py.

Which arms can still give a round, and which samples the drawn arm gives: its stratified top-ρ by
rank key (ALGORITHM.md §7), cut to the unique budget left with already-used samples kept first.
"""

from __future__ import annotations

import numpy as np

from lead_ray.config import SelectionConfig
from lead_ray.core.select import quotas_for, trim_to_budget


def eligible_counts(store, n_arms: int, selection: SelectionConfig) -> list[dict[int, int]]:
    """Per arm, per task group: samples below the use cap (one call to each store shard)."""
    return store.eligible_counts_all(n_arms, selection.use_cap)


def allowed_arms(store, n_arms: int, selection: SelectionConfig, counts: list | None = None) -> np.ndarray:
    """Per arm: does it still hold a sample below the use cap in some task group's quota."""
    counts = counts if counts is not None else eligible_counts(store, n_arms, selection)
    return np.array([bool(quotas_for(c, selection.rho, selection.min_per_group)) for c in counts])


def pick_samples(
    store, arm: int, selection: SelectionConfig, budget_left: int, counts: dict[int, int] | None = None
) -> np.ndarray:
    """The drawn arm's samples for this round (the budget is a hard cap on unique samples); `counts`: the arm's
    eligible counts when the caller has them already."""
    sel = selection
    index = store.select(arm, sel.rho, sel.use_cap, sel.min_per_group, sel.trim_top, counts)
    keys, used = store.ranking(index)  # U, or U − floor (selection.utility: reducible); × tokens (rank_by: total)
    return trim_to_budget(index, keys, used == 0, budget_left)
