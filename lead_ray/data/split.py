"""Deterministic id-hash splits: membership depends only on (salt, id), never on order or worker.

The held-out split uses a fixed salt, so every seed and every method is evaluated on the same
samples, and no stage (warm-up, selection) ever trains on them.
"""

from __future__ import annotations

import hashlib

import numpy as np

HOLDOUT_SALT = "lead-ray-holdout"


def hash_fraction(ids, salt, fraction: float) -> np.ndarray:
    """Bernoulli(fraction) membership per id, from BLAKE2b of 'salt:id'."""
    u = [int.from_bytes(hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=8).digest(), "big") / 2**64 for i in ids]
    return np.array(u, dtype=np.float64) < fraction


def is_holdout(ids, fraction: float) -> np.ndarray:
    return hash_fraction(ids, HOLDOUT_SALT, fraction)
