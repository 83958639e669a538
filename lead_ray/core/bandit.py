"""EXP3 over the difficulty clusters (ALGORITHM.md §6). Pure numpy; no Ray.

    p_k = (1 − γ) · w_k / Σ_j w_j + γ / K          (γ = exp3_gamma, 0.1; the code's `--beta`, ALGORITHM.md §10 D15)
    w_k ← w_k · exp( (γ/K) · r̂ / p_k )             for the pulled arm only

Weights live in log space, so long runs never overflow. Rewards are normalised before the update:

* `minmax` (the paper): min–max over the history of raw rewards (including the new one) to [−1, 1]; the first
  reward is used raw, and an all-equal history maps to 0 instead of dividing by zero (ALGORITHM.md §10 D2).
  A rising sequence of rewards (usual early in training) maps every new maximum to +1, whichever arm earned it.
* `window` (lead-ray's remedy, ALGORITHM.md §12): z = (r − μ) / σ with μ and σ over the previous W raw
  rewards, r̂ = z / (1 + |z|) (0 until two are known). Strictly increasing in r for a given history, and the
  squashing approaches ±1 only slowly (z = 9 gives 0.9), so it never saturates: two arms that both beat the
  past still get different rewards.
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


def normalise_reward_window(history: list[float], raw: float, window: int) -> float:
    """z / (1 + |z|), z = (raw − μ) / σ over the previous `window` raw rewards; 0 with fewer than two or no spread."""
    previous = np.asarray(history[-window:], np.float64)
    if len(previous) < 2:
        return 0.0
    spread = float(previous.std())
    if spread <= 1e-12:
        return 0.0
    z = (raw - previous.mean()) / spread
    return float(z / (1.0 + abs(z)))


NORMALISERS = ("minmax", "window")


class Exp3Bandit:
    """EXP3 with log-space weights, one arm pulled per round."""

    def __init__(self, n_arms: int, gamma: float = 0.1, reward_norm: str = "minmax", window: int = 10):
        if n_arms < 1:
            raise ValueError("n_arms must be ≥ 1")
        if not 0.0 < gamma <= 1.0:
            raise ValueError("gamma must be in (0, 1]")
        if reward_norm not in NORMALISERS:
            raise ValueError(f"reward_norm must be one of {NORMALISERS}, got {reward_norm!r}")
        self.n_arms, self.gamma = n_arms, gamma
        self.reward_norm, self.window = reward_norm, window
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
        if self.reward_norm == "window":
            r = normalise_reward_window(self.rewards, raw_reward, self.window)
        else:
            r = normalise_reward(self.rewards, raw_reward)
        self.rewards.append(float(raw_reward))
        self.log_w[arm] += (self.gamma / self.n_arms) * r / p_arm
        return r

    def state_dict(self) -> dict:
        return {
            "n_arms": self.n_arms,
            "gamma": self.gamma,
            "reward_norm": self.reward_norm,
            "window": self.window,
            "log_w": self.log_w.tolist(),
            "rewards": list(self.rewards),
        }

    @classmethod
    def from_state(cls, state: dict) -> Exp3Bandit:
        b = cls(state["n_arms"], state["gamma"], state.get("reward_norm", "minmax"), state.get("window", 10))
        b.log_w = np.asarray(state["log_w"], dtype=np.float64)
        b.rewards = [float(x) for x in state["rewards"]]
        return b
