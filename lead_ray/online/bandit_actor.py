"""The BanditActor: EXP3 over the difficulty clusters (core.bandit), the stored update directions
(core.idu.DirectionMemory) and the round RNG, a thin actor around the pure core; its state goes in and out as
bytes, and the caller writes the files on its own node (`save_bandit`, `restore_bandit`). See online/actors.py for
how both actors restart."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import ray

from lead_ray.core.bandit import Exp3Bandit
from lead_ray.core.idu import DirectionMemory
from lead_ray.files import write_bytes_atomic, write_text_atomic
from lead_ray.online.actors import needs_state


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class BanditActor:
    """EXP3 over the difficulty clusters, the stored update directions and the round RNG.

    `arm_choice="uniform"` (the no-bandit ablation) draws arms uniformly from the allowed ones and
    leaves the EXP3 weights untouched; everything else is the same."""

    def __init__(
        self,
        n_arms: int,
        gamma: float,
        visit: str,
        seed: int,
        arm_choice: str = "exp3",
        reward_norm: str = "minmax",
        reward_window: int = 10,
    ):
        self.state_lost = ray.get_runtime_context().was_current_actor_reconstructed
        self.arm_choice = arm_choice
        self.bandit = Exp3Bandit(n_arms, gamma, reward_norm, reward_window)
        self.directions = DirectionMemory(visit)
        self.rng = np.random.default_rng(seed)

    @needs_state
    def draw(self, allowed: np.ndarray | None = None) -> tuple[int, list[float]]:
        if self.arm_choice == "uniform":
            mask = np.ones(self.bandit.n_arms, bool) if allowed is None else np.asarray(allowed, bool)
            p = mask / mask.sum()
            return int(self.rng.choice(len(p), p=p)), p.tolist()
        arm, p = self.bandit.draw(self.rng, allowed)
        return arm, p.tolist()

    @needs_state
    def draw_and_estimate(self, allowed: np.ndarray | None, eta: float):
        """draw, then estimate for the arm drawn: a round's plan in one call."""
        arm, p = self.draw(allowed)
        return arm, p, self.estimate(arm, eta)

    @needs_state
    def permutation(self, n: int) -> np.ndarray:
        return self.rng.permutation(n)

    @needs_state
    def estimate(self, arm: int, eta: float):
        return self.directions.estimate(arm, eta)

    @needs_state
    def direction(self, arm: int, beta: float) -> np.ndarray | None:
        """ĝ = β g_arm + (1 − β) g_previous, for per-sample ΔL̂′ (None before the first round's direction)."""
        return self.directions.direction(arm, beta)

    @needs_state
    def finish_round(self, arm: int, p_arm: float, raw_reward: float, direction: np.ndarray | None) -> float:
        """Update EXP3 with the round's reward and store its direction; returns the normalised reward."""
        normalised = 0.0 if self.arm_choice == "uniform" else self.bandit.update(arm, raw_reward, p_arm)
        if direction is not None:
            self.directions.record(arm, direction)
        return normalised

    @needs_state
    def state(self) -> dict:
        """JSON for EXP3 and the RNG; .npz bytes for the direction vectors. No pickle: a checkpoint is
        data only. Returned, never written: the caller (rank 0) puts it into the checkpoint."""
        d = self.directions.state_dict()
        vectors = {f"cluster_{k}": v for k, v in d["by_cluster"].items()}
        if d["previous"] is not None:
            vectors["previous"] = d["previous"]
        buf = io.BytesIO()
        np.savez(buf, **vectors)
        state = {
            "bandit": self.bandit.state_dict(),
            "arm_choice": self.arm_choice,
            "visit": d["visit"],
            "rng": self.rng.bit_generator.state,
        }
        return {"json": json.dumps(state), "directions": buf.getvalue()}

    def load_state(self, saved: dict) -> None:
        self.state_lost = False
        state = json.loads(saved["json"])
        z = np.load(io.BytesIO(saved["directions"]), allow_pickle=False)
        self.bandit = Exp3Bandit.from_state(state["bandit"])
        self.arm_choice = state["arm_choice"]
        self.directions = DirectionMemory.from_state(
            {
                "visit": state["visit"],
                "previous": z["previous"] if "previous" in z else None,
                "by_cluster": {int(k.split("_")[1]): z[k] for k in z.files if k.startswith("cluster_")},
            }
        )
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]


BANDIT_FILE = "bandit.json"


def save_bandit(bandit, folder: Path) -> None:
    """The bandit actor's state into `folder` (bandit.json + bandit.json.directions.npz), written here."""
    state = ray.get(bandit.state.remote())
    write_bytes_atomic(Path(folder) / (BANDIT_FILE + ".directions.npz"), state["directions"])
    write_text_atomic(Path(folder) / BANDIT_FILE, state["json"])


def restore_bandit(bandit, folder: Path) -> None:
    folder = Path(folder)
    ray.get(
        bandit.load_state.remote(
            {
                "json": (folder / BANDIT_FILE).read_text(),
                "directions": (folder / (BANDIT_FILE + ".directions.npz")).read_bytes(),
            }
        )
    )
