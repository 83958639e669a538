"""A Train worker's (index, loss) pushes to the UtilityStore during a round."""

from __future__ import annotations

import time

import numpy as np

PUSH_EVERY = 1024  # samples per UtilityStore push from one worker


class RoundPushes:
    """A worker's (index, loss) pushes to the UtilityStore: batched, asynchronous, awaited at the round's end.
    U only matters for the next round's selection, so one actor call per PUSH_EVERY samples (not per
    micro-batch) changes nothing but the overhead."""

    def __init__(self, store, delta: float, smooth_b: float, round_: int, transform=None):
        """`transform(values, losses)`: turns the per-sample values of one push into ΔL̂′ (`selection.delta:
        anchor` standardises them over the push); None: they are ΔL̂′ already."""
        self.store, self.delta, self.smooth_b, self.round, self.transform = store, delta, smooth_b, round_, transform
        self.index, self.losses, self.deltas, self.refs, self.seconds = [], [], [], [], 0.0
        self.all_deltas: list[np.ndarray] = []  # per-sample mode: every delta pushed, for the round log

    def add(self, index: np.ndarray, losses: np.ndarray, last: bool, deltas: np.ndarray | None = None) -> None:
        """`deltas`: per-sample ΔL̂′ of these samples (None: the round's value)."""
        self.index.append(index)
        self.losses.append(losses)
        if deltas is not None:
            self.deltas.append(deltas)
        if last or sum(len(i) for i in self.index) >= PUSH_EVERY:
            self._push()

    def _push(self) -> None:
        t0 = time.perf_counter()
        if self.index:
            losses, delta = np.concatenate(self.losses), self.delta
            if self.deltas:
                delta = np.concatenate(self.deltas)
                delta = self.transform(delta, losses) if self.transform is not None else delta
                self.all_deltas.append(delta)
            self.refs += self.store.apply_async(np.concatenate(self.index), losses, delta, self.smooth_b, self.round)
            self.index, self.losses, self.deltas = [], [], []
        self.seconds += time.perf_counter() - t0

    def finish(self) -> None:
        """Flush what is left (this rank's last micro-batch may have been padding) and wait for every push."""
        import ray

        self._push()
        t0 = time.perf_counter()
        ray.get(self.refs)
        self.seconds += time.perf_counter() - t0
