"""Deterministic id-hash splits: membership depends only on (salt, id), never on order or worker.

The held-out split uses a fixed salt, so every seed and every method is evaluated on the same
samples, and no stage (warm-up, selection) ever trains on them.
"""

from __future__ import annotations

import hashlib

import numpy as np

HOLDOUT_SALT = "lead-ray-holdout"


def hash_uniform(ids, salt) -> np.ndarray:
    """A uniform in [0, 1) per id, from BLAKE2b of 'salt:id'."""
    u = [int.from_bytes(hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=8).digest(), "big") / 2**64 for i in ids]
    return np.array(u, dtype=np.float64)


def hash_fraction(ids, salt, fraction: float) -> np.ndarray:
    """Bernoulli(fraction) membership per id."""
    return hash_uniform(ids, salt) < fraction


def holdout_uniform(ids) -> np.ndarray:
    """The held-out split's uniform per id: an id is held out at fraction f when it is below f."""
    return hash_uniform(ids, HOLDOUT_SALT)


def holdout_uniform_column(ids, chunk: int = 200_000) -> np.ndarray:
    """holdout_uniform over an Arrow string column, `chunk` Python strings at a time."""
    u = np.empty(len(ids), dtype=np.float64)
    for start in range(0, len(ids), chunk):
        u[start : start + chunk] = holdout_uniform(ids.slice(start, chunk).to_pylist())
    return u


def is_holdout(ids, fraction: float) -> np.ndarray:
    return holdout_uniform(ids) < fraction
