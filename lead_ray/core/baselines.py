"""The static baselines: which samples, in which order, when the subset is chosen once. Pure numpy.

Each returns the dense pool indices of the subset, in training order. The online loop then trains
them in rounds of ⌈len / max_rounds⌉ (whole optimizer batches) through the same trainer, store and
accounting as LEAD, so a baseline differs from LEAD only in *which* samples it trains.

  random  a seeded uniform sample of `budget` indices;
  full    every index, shuffled (one epoch over the whole pool);
  ppl     the `budget` samples with the highest IU₀ (initial loss = log perplexity of the response);
  ifd     the `budget` samples with the highest IFD among those with 0 < IFD < 1 (Cherry LLM /
          Superfiltering: IFD ≥ 1 means the instruction does not help, so those are left out);
          IFD = 0 marks a sample that could not be scored and is taken last;
  length  the `budget` samples with the longest responses in tokens (within model.max_length): large
          studies of instruction-data selection find response length a strong, stable baseline.
The chosen subset is then shuffled (seeded), so a ranked baseline is not also a curriculum.
"""

from __future__ import annotations

import numpy as np

STATIC_METHODS = ("random", "full", "ppl", "ifd", "length")


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest finite scores, ties by smaller index; NaN counts as −inf."""
    s = np.where(np.isfinite(score), score, -np.inf)
    order = np.lexsort((np.arange(len(s)), -s))  # primary: score descending; then index ascending
    return order[:k]


def static_subset(
    method: str,
    budget: int,
    rng: np.random.Generator,
    iu0: np.ndarray | None = None,
    ifd: np.ndarray | None = None,
    shuffle: bool = True,
    response_tokens: np.ndarray | None = None,
) -> np.ndarray:
    """The subset a static baseline trains, in training order (int64 dense indices, no repeats)."""
    n = len(next(a for a in (iu0, ifd, response_tokens) if a is not None))
    k = min(budget, n)
    if method == "random":
        chosen = rng.permutation(n)[:k]
    elif method == "full":
        chosen = np.arange(n)
    elif method == "ppl":
        chosen = _top(np.asarray(iu0, np.float64), k)
    elif method == "ifd":
        ifd = np.asarray(ifd, np.float64)
        valid = (ifd > 0) & (ifd < 1)
        # valid samples by IFD first; then the rest (IFD ≥ 1 before unscored 0) only if the budget needs them
        rank = np.where(valid, ifd, np.where(ifd >= 1, -1.0 / np.maximum(ifd, 1.0), -2.0))
        chosen = _top(rank, k)
    elif method == "length":
        chosen = _top(np.asarray(response_tokens, np.float64), k)
    else:
        raise ValueError(f"not a static method: {method!r} (one of {', '.join(STATIC_METHODS)})")
    chosen = np.asarray(chosen, np.int64)
    return chosen[rng.permutation(len(chosen))] if shuffle else chosen


def repeat_passes(order: np.ndarray, passes: float, rng: np.random.Generator, shuffle: bool = True) -> np.ndarray:
    """The subset trained `passes` times: whole passes, each reshuffled (when `shuffle`), then the fraction left as
    the first round(fraction · n) samples of one more pass. 1.6 trains 1.6× the subset's samples, and on average its
    tokens: the token-matched control of a selection that trains 1.6× a single pass's tokens."""
    whole = int(passes)
    extra = round((passes - whole) * len(order))
    later = [rng.permutation(order) if shuffle else order for _ in range(whole - 1)]
    if extra:
        later.append((rng.permutation(order) if shuffle else order)[:extra])
    return np.concatenate([order, *later])


def round_slices(n: int, max_rounds: int, batch_size: int = 1) -> list[slice]:
    """Split a subset of n samples into at most max_rounds rounds of ⌈n / max_rounds⌉, rounded up to
    whole optimizer batches: a round ends with an optimizer step, so a round of 2 samples with
    batch_size 8 would be a full step on 2 samples, and a baseline would take more, smaller steps than LEAD."""
    size = max(1, -(-n // max_rounds))
    size = -(-size // batch_size) * batch_size
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]
