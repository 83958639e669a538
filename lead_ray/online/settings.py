"""What the `lead-ray run` driver hands every Ray Train worker of the round loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lead_ray.config import Config


@dataclass
class LoopSettings:
    """What the driver hands every Train worker."""

    cfg: Config
    run_dir: str
    base_dir: str
    run_name: str
    n_arms: int
    budget: int  # unique samples
    pool_size: int
    threads: int
    store_handles: list
    store_bounds: list[int]
    bandit: Any
    initial_store: list  # object refs: each store shard's state before round 0
    initial_bandit: Any  # object ref: the bandit's state before round 0
    static_order: np.ndarray | None  # a static baseline's fixed subset, trained in order
    holdout: list  # held-out conversations for the in-loop NLL
    anchor: list | None = None  # `selection.delta: anchor`: the anchor's conversations (small by design)
