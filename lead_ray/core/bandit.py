"""EXP3 over the difficulty clusters (ALGORITHM.md §6). Pure numpy; no Ray.

    p_k = (1 − γ) · w_k / Σ_j w_j + γ / K          (γ = exp3_gamma, 0.1; the code's `--beta`, ALGORITHM.md §10 D15)
    w_k ← w_k · exp( (γ/K) · r̂ / p_k )             for the pulled arm only

Weights live in log space, so long runs never overflow. Rewards are min–max normalised over the
history of raw rewards (including the new one) to [−1, 1]; the first reward is used raw, and an
all-equal history maps to 0 instead of dividing by zero (ALGORITHM.md §10 D2).
"""

from __future__ import annotations

import numpy as np


def normalise_reward(history: list[float], raw: float) -> float:
    """2(r − min)/(max − min) − 1 over history + [raw]; raw when it is the first; 0 when all are equal."""
    if not history:
        return float(raw)
    values = history + [raw]
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12:
        return 0.0
    return 2.0 * (raw - lo) / (hi - lo) - 1.0


class Exp3Bandit:
    """EXP3 with log-space weights, one arm pulled per round."""

    def __init__(self, n_arms: int, gamma: float = 0.1):
        if n_arms < 1:
            raise ValueError("n_arms must be ≥ 1")
        if not 0.0 < gamma <= 1.0:
            raise ValueError("gamma must be in (0, 1]")
        self.n_arms, self.gamma = n_arms, gamma
        self.log_w = np.zeros(n_arms)
        self.rewards: list[float] = []  # raw reward history, for normalisation

    def probabilities(self) -> np.ndarray:
        w = np.exp(self.log_w - self.log_w.max())  # shift: exact same ratios, no overflow
        return (1.0 - self.gamma) * w / w.sum() + self.gamma / self.n_arms

    def draw(self, rng: np.random.Generator, allowed: np.ndarray | None = None) -> tuple[int, np.ndarray]:
        """(arm, the probability vector it was drawn from). `allowed` masks exhausted arms out."""
        p = self.probabilities()
        if allowed is not None:
            if not allowed.any():
                raise ValueError("no arm is allowed")
            p = np.where(allowed, p, 0.0)
            p = p / p.sum()
        return int(rng.choice(self.n_arms, p=p)), p

    def update(self, arm: int, raw_reward: float, p_arm: float) -> float:
        """Importance-weighted update of the pulled arm; returns the normalised reward used."""
        r = normalise_reward(self.rewards, raw_reward)
        self.rewards.append(float(raw_reward))
        self.log_w[arm] += (self.gamma / self.n_arms) * r / p_arm
        return r

    def state_dict(self) -> dict:
        return {"n_arms": self.n_arms, "gamma": self.gamma, "log_w": self.log_w.tolist(), "rewards": list(self.rewards)}

    @classmethod
    def from_state(cls, state: dict) -> Exp3Bandit:
        b = cls(state["n_arms"], state["gamma"])
        b.log_w = np.asarray(state["log_w"], dtype=np.float64)
        b.rewards = [float(x) for x in state["rewards"]]
        return b
