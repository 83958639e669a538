"""The UtilityStore's side of a bandit round, shared by the training loop and bench/scale/run.py.

Which arms can still give a round, and which samples the drawn arm gives: its stratified top-ρ by
rank key (ALGORITHM.md §7), cut to the unique budget left with already-used samples kept first.
"""

from __future__ import annotations

import numpy as np

from lead_ray.config import SelectionConfig
from lead_ray.core.select import quotas_for, trim_to_budget


def allowed_arms(store, n_arms: int, selection: SelectionConfig) -> np.ndarray:
    """Per arm: does it still hold a sample below the use cap in some task group's quota."""
    counts = store.eligible_counts_all(n_arms, selection.use_cap)
    return np.array([bool(quotas_for(c, selection.rho, selection.min_per_group)) for c in counts])


def pick_samples(store, arm: int, selection: SelectionConfig, budget_left: int) -> np.ndarray:
    """The drawn arm's samples for this round (the budget is a hard cap on unique samples)."""
    index = store.select(arm, selection.rho, selection.use_cap, selection.min_per_group, selection.trim_top)
    keys, used = store.ranking(index)  # U, or U − floor (selection.utility: reducible); × tokens (rank_by: total)
    return trim_to_budget(index, keys, used == 0, budget_left)
