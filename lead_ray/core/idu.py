"""IDU: Instance-level Dynamic Uncertainty (ALGORITHM.md §5). Pure numpy; no Ray, no torch.

For a sample x trained in round t (ALGORITHM.md §5.2, smoothing applied as the paper says — §10 D3):

    U_t(x) = (1 − b) · [ L(θ_{t−1}, x) + ΔL̂′_t ] + b · U_prev(x)

Samples not trained in round t keep U unchanged (never-trained ones keep IU₀).

ΔL̂′_t predicts the loss change caused by the round's update (ALGORITHM.md §5.3; §10 D4, D7, D8). With g_k the
stored update direction of the chosen cluster k, g_p the previous round's direction, d = ‖g‖ and
φ the angle between them:

    ΔL̂′ = −η ‖β g_k + (1 − β) g_p‖² = −η [β² d_k² + (1−β)² d_p² + 2β(1−β) d_k d_p cos φ]
    β*  = clip( (d_p² − d_k d_p cos φ) / (d_k² + d_p² − 2 d_k d_p cos φ), 0, 1 ),  β* = 0 if the denominator is 0

Round 1 (no previous direction): ΔL̂′ = 0. First visit of cluster k: ΔL̂′ = −η d_p² (β = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-12
SKETCH_SEED, SKETCH_BLOCK = 0x5EED, 1 << 22  # the sketch's signs, and how many coordinates it reads at a time


def idu_update(u_prev: np.ndarray, loss: np.ndarray, delta: float, b: float) -> np.ndarray:
    """U ← (1 − b)(L + ΔL̂′) + b · U_prev, element-wise."""
    return (1.0 - b) * (loss + delta) + b * u_prev


def optimal_beta(d_k: float, d_p: float, cos_phi: float) -> float:
    """β* minimising ‖β g_k + (1−β) g_p‖², clipped to [0, 1] (the KKT solution)."""
    denom = d_k * d_k + d_p * d_p - 2.0 * d_k * d_p * cos_phi
    if denom <= EPS:
        return 0.0
    return float(np.clip((d_p * d_p - d_k * d_p * cos_phi) / denom, 0.0, 1.0))


def mixed_sq_norm(beta: float, d_k: float, d_p: float, cos_phi: float) -> float:
    """‖β g_k + (1−β) g_p‖² from the norms and the angle; never below 0 (at β* for opposite directions the
    exact value is 0, and the three rounded terms can sum to −1e-15, which would make ΔL̂′ positive)."""
    square = beta * beta * d_k * d_k + (1 - beta) ** 2 * d_p * d_p + 2 * beta * (1 - beta) * d_k * d_p * cos_phi
    return max(0.0, square)


@dataclass
class DeltaEstimate:
    """Everything ALGORITHM.md §11 logs about one round's prediction."""

    delta: float  # ΔL̂′ ≤ 0
    beta: float  # β*
    cos_phi: float
    d_k: float
    d_p: float


def predict_delta(eta: float, g_k: np.ndarray | None, g_p: np.ndarray | None) -> DeltaEstimate:
    """ΔL̂′ for a round that trains cluster k, from stored direction vectors (None = not yet seen)."""
    if g_p is None:  # round 1: nothing to extrapolate from
        return DeltaEstimate(0.0, 0.0, 0.0, 0.0, 0.0)
    d_p = float(np.linalg.norm(g_p))
    if g_k is None:  # first visit of this cluster: only the previous round's direction
        return DeltaEstimate(-eta * d_p * d_p, 0.0, 0.0, 0.0, d_p)
    d_k = float(np.linalg.norm(g_k))
    cos_phi = float(np.dot(g_k, g_p) / (d_k * d_p)) if d_k > EPS and d_p > EPS else 0.0
    cos_phi = float(np.clip(cos_phi, -1.0, 1.0))
    beta = optimal_beta(d_k, d_p, cos_phi)
    return DeltaEstimate(-eta * mixed_sq_norm(beta, d_k, d_p, cos_phi), beta, cos_phi, d_k, d_p)


def sketch(vector: np.ndarray, dims: int) -> np.ndarray:
    """A sketch of `vector` in `dims` numbers: coordinate i, times a pseudo-random sign s(i), is added to bucket
    i mod dims. The signs are fixed by (dims, i), so every round's direction is sketched alike and the sketch of a
    sum is the sum of the sketches; inner products and norms are kept in expectation (E⟨Sa, Sb⟩ = ⟨a, b⟩, a norm's
    relative spread about √(2/dims)). Read in blocks: the extra memory is a block's, not the vector's."""
    v = np.asarray(vector, np.float32).ravel()
    chunk = max(1, SKETCH_BLOCK // dims) * dims
    out = np.zeros(dims, np.float64)
    for c, start in enumerate(range(0, v.size, chunk)):
        part = v[start : start + chunk]
        signs = np.random.default_rng([SKETCH_SEED, dims, c]).integers(0, 2, part.size, dtype=np.int8)
        signed = np.where(signs == 1, part, -part)
        signed = np.concatenate([signed, np.zeros((-part.size) % dims, np.float32)])
        out += signed.reshape(-1, dims).sum(0, dtype=np.float64)
    return out.astype(np.float32)


def predicted_direction(g_k: np.ndarray | None, g_p: np.ndarray | None, beta: float) -> np.ndarray | None:
    """ĝ = β g_k + (1 − β) g_p, the round direction ΔL̂′ extrapolates (None in round 1; g_p on a first visit).

    Per-sample ΔL̂′ (`selection.delta: sample`, ALGORITHM.md §12) is −η⟨g(x), ĝ⟩ with g(x) the sample's own
    gradient; averaged over a round whose mean gradient is ĝ it is the round value −η‖ĝ‖²."""
    if g_p is None:
        return None
    if g_k is None:
        return np.asarray(g_p, np.float32)
    return (beta * np.asarray(g_k, np.float64) + (1.0 - beta) * np.asarray(g_p, np.float64)).astype(np.float32)


def sample_delta(eta: float, products: np.ndarray) -> np.ndarray:
    """Per-sample ΔL̂′(x) = −η⟨g(x), ĝ⟩ from the inner products ⟨g(x), ĝ⟩ (any sign: a sample whose gradient
    opposes the round's direction is predicted to get worse)."""
    return (-eta * np.asarray(products, np.float64)).astype(np.float32)


def update_delta(products: np.ndarray) -> np.ndarray:
    """Per-sample ΔL̂′(x) = ⟨g(x), Δθ̂⟩ from the inner products with the predicted parameter change Δθ̂ of the
    round (`selection.delta: update`): L(x; θ + Δθ) − L(x; θ) to first order, whatever produced Δθ. Under
    plain SGD Δθ = −η ĝ and this is sample_delta; under Adam, whose step is about η per coordinate whatever
    the gradient's scale, −η⟨g(x), ĝ⟩ is orders of magnitude smaller than the change it predicts."""
    return np.asarray(products, np.float64).astype(np.float32)


def anchor_delta(products: np.ndarray, losses: np.ndarray, weight: float) -> np.ndarray:
    """Per-sample ΔL̂′(x) for `selection.delta: anchor`, over the samples of one push (a worker's round, or its
    share of PUSH_EVERY samples): the alignment ⟨g(x), g_anchor⟩ standardised over them, scaled to their
    spread of losses:

        ΔL̂′(x) = w · sd(L) · (p(x) − mean p) / sd(p)

    A step on x changes the anchor's loss by about −η_eff⟨g(x), g_anchor⟩, so the better aligned a sample, the
    more it is worth training again: the sign is the opposite of `sample`'s. Raw products scale with the
    gradients' size, which drifts over training; standardised, w = 1 gives alignment the same spread as the
    loss, so either can reorder the other. Fewer than two samples, or no spread: zeros (nothing to compare)."""
    p = np.asarray(products, np.float64)
    sd_p = p.std() if len(p) > 1 else 0.0
    if sd_p == 0.0 or not np.isfinite(sd_p):
        return np.zeros(len(p), np.float32)
    loss = np.asarray(losses, np.float64)
    sd_loss = np.nanstd(loss) if np.isfinite(loss).sum() > 1 else 0.0
    return (weight * sd_loss * (p - p.mean()) / sd_p).astype(np.float32)


class DirectionMemory:
    """The stored update directions: one per cluster, plus the previous round's (ALGORITHM.md §5.3, §5.4).

    `visit="latest"` replaces a cluster's direction on every visit (recommended, ALGORITHM.md §10 D5); `"first"`
    keeps the first one, as the official code does.
    """

    def __init__(self, visit: str = "latest"):
        if visit not in ("latest", "first"):
            raise ValueError(f"visit must be 'latest' or 'first', got {visit!r}")
        self.visit = visit
        self.by_cluster: dict[int, np.ndarray] = {}
        self.previous: np.ndarray | None = None

    def estimate(self, cluster: int, eta: float) -> DeltaEstimate:
        return predict_delta(eta, self.by_cluster.get(cluster), self.previous)

    def direction(self, cluster: int, beta: float) -> np.ndarray | None:
        return predicted_direction(self.by_cluster.get(cluster), self.previous, beta)

    def record(self, cluster: int, direction: np.ndarray) -> None:
        direction = np.asarray(direction, dtype=np.float32).copy()
        if self.visit == "latest" or cluster not in self.by_cluster:
            self.by_cluster[cluster] = direction
        self.previous = direction

    def state_dict(self) -> dict:
        return {
            "visit": self.visit,
            "by_cluster": {int(k): v.copy() for k, v in self.by_cluster.items()},
            "previous": None if self.previous is None else self.previous.copy(),
        }

    @classmethod
    def from_state(cls, state: dict) -> DirectionMemory:
        m = cls(state["visit"])
        m.by_cluster = {int(k): np.asarray(v, np.float32) for k, v in state["by_cluster"].items()}
        m.previous = None if state["previous"] is None else np.asarray(state["previous"], np.float32)
        return m
