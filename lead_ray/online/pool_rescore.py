"""The `rescore` baseline's extra pass (selection.method: rescore): before every round, each worker scores its
share of the whole pool with the current model and sets those samples' U to the loss. LEAD never does this
(ALGORITHM.md §11); the baseline exists to measure what the pass costs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class PoolRescore:
    """One worker's share of the pool (every world-th sample from its rank), encoded on first use."""

    def __init__(self, rows, tokenizer, max_length: int, pool_size: int, rank: int, world: int):
        self.index = np.arange(pool_size, dtype=np.int64)[rank::world]
        self.rows, self.tokenizer, self.max_length = rows, tokenizer, max_length
        self.encoded: list | None = None

    def __call__(self, score: Callable[[list], np.ndarray], store) -> int:
        """Scores the share with `score` (encoded conversations → per-sample losses), stores them as U, and
        returns how many samples it forwarded."""
        import ray

        from lead_ray.models.template import encode_conversation

        if self.encoded is None:
            messages = self.rows.messages(self.index)
            self.encoded = [encode_conversation(self.tokenizer, m, self.max_length) for m in messages]
        losses = score(self.encoded)
        ray.get(store.set_u_async(self.index, losses))
        return len(losses)
