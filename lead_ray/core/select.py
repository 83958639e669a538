"""The fine stage: which samples of the chosen cluster train next (LEAD spec §7). Pure numpy; no Ray.

For every task group T of the chosen difficulty cluster, independently: take the eligible samples
(use count below the cap), sort by U descending (ties by id ascending, so the choice never depends
on storage order), keep the top ⌊ρ · n_T⌋. The round is the union over groups, then shuffled with
a seeded RNG (D9; `shuffle=False` keeps the official code's order: task by task, U descending).
"""
from __future__ import annotations

import numpy as np


def select_round(u: np.ndarray, use_count: np.ndarray, task: np.ndarray, tie_key: np.ndarray,
                 rho: float, cap: int, rng: np.random.Generator | None = None, min_per_group: int = 0) -> np.ndarray:
    """Positions (into the given arrays, which hold one cluster's samples) selected for this round.

    `min_per_group` lifts ⌊ρ·n_T⌋ for small groups (0 = the spec's rule exactly).
    """
    eligible = use_count < cap
    chosen = []
    for group in np.unique(task[eligible]):
        members = np.flatnonzero(eligible & (task == group))
        k = max(int(np.floor(rho * len(members))), min(min_per_group, len(members)))
        if k == 0:
            continue
        order = np.lexsort((tie_key[members], -u[members]))  # last key is primary: U descending, then id
        chosen.append(members[order[:k]])
    picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    if rng is not None:
        picked = picked[rng.permutation(len(picked))]
    return picked
