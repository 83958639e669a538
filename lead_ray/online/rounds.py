"""What one round of the worker loop decides and measures, and the record rank 0 keeps of it.

`RoundPlan` is rank 0's decision, broadcast to every worker; `TrainedRound` what a worker's training pass
produced; `round_record` the round's row of rounds.parquet (ALGORITHM.md §11); `progress_line` the line
printed after it, with `eta_seconds` the time left at the pace so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class RoundPlan:
    """Rank 0's decision for one round, broadcast to every worker."""

    index: np.ndarray  # the round's samples
    arm: int  # -1: a static baseline's slice, no arm pulled
    p: list[float]
    eta: float  # learning rate at the start of the round
    delta: float  # ΔL̂′ added to every trained sample's loss (per-sample mode: the round's value, logged only)
    estimate: Any  # core.idu.DeltaEstimate, or None
    selection_s: float
    direction: np.ndarray | None = None  # ĝ, for per-sample ΔL̂′ (None: the round's value applies)


@dataclass
class TrainedRound:
    """What one worker's training pass over its slice produced."""

    forwarded: int
    padding: int
    optimizer_steps: int
    direction: np.ndarray | None  # rank 0: mean gradient of the direction parameters
    train_s: float
    read_s: float
    push_s: float
    sample_deltas: np.ndarray | None = None  # this worker's per-sample ΔL̂′ (per-sample mode)
    ghost_s: float = 0.0  # seconds in the per-sample inner products (measured on the CPU only)
    anchor_s: float = 0.0  # seconds measuring g_anchor (`selection.delta: anchor`)
    anchor_forwards: int = 0  # anchor pairs forwarded for g_anchor (each worker forwards the same ones)


@dataclass
class RoundTotals:
    """The round's counts over all workers and the store's view after it."""

    forwarded: int  # training forward passes, padding included
    padding: int  # zero-weight samples that kept DDP in step
    pool_forwards: int  # forward passes over the pool (`rescore` only)
    trained: int  # samples whose loss reached the store
    loss_sum: float
    unique: int  # samples selected at least once so far
    u_by_cluster: Any


def round_record(
    t: int,
    method: str,
    delta_mode: str,
    plan: RoundPlan,
    trained: TrainedRound,
    totals: RoundTotals,
    heldout: float | None,
    heldout_samples: int,
    elapsed_s: float,
) -> dict:
    """One row of rounds.parquet (ALGORITHM.md §11)."""
    est, deltas = plan.estimate, trained.sample_deltas
    return {
        "round": t,
        "method": method,
        "arm": plan.arm,
        "p": plan.p,
        "size": int(len(plan.index)),
        "trained": int(totals.trained),
        "mean_loss": totals.loss_sum / max(totals.trained, 1),
        "delta": plan.delta,
        "delta_mode": delta_mode if deltas is not None else "round",
        "delta_sample_mean": float(deltas.mean()) if deltas is not None else None,
        "delta_sample_sd": float(deltas.std()) if deltas is not None else None,
        "ghost_s": trained.ghost_s,
        "anchor_s": trained.anchor_s,
        "anchor_forward_samples": trained.anchor_forwards,
        "beta": est.beta if est else None,
        "cos_phi": est.cos_phi if est else None,
        "d_k": est.d_k if est else None,
        "d_p": est.d_p if est else None,
        "eta": plan.eta,
        "forward_samples": int(totals.forwarded),
        "padding_samples": int(totals.padding),
        "pool_forward_samples": int(totals.pool_forwards),
        "heldout_forward_samples": heldout_samples if heldout is not None else 0,
        "heldout_nll": heldout,
        "optimizer_steps": trained.optimizer_steps,
        "unique": totals.unique,
        "u_by_cluster": totals.u_by_cluster,
        "selection_s": plan.selection_s,
        "train_s": trained.train_s,
        "read_s": trained.read_s,
        "push_s": trained.push_s,
        "elapsed_s": elapsed_s,
    }


def eta_seconds(record: dict, start_round: int, rounds: int, budget: int, paced_by_budget: bool) -> float:
    """Seconds left: the mean round time so far × the rounds left, by the round limit or, where the budget
    ends the run (`paced_by_budget`), by the pace at which rounds have added never-selected samples."""
    done = record["round"] + 1 - start_round
    left = rounds - record["round"] - 1
    new_per_round = record["unique"] / (record["round"] + 1)
    if paced_by_budget and new_per_round > 0:
        left = min(left, math.ceil((budget - record["unique"]) / new_per_round))
    return record["elapsed_s"] / max(done, 1) * max(left, 0)


def progress_line(record: dict, plan: RoundPlan, max_rounds: int, budget: int, eta_s: float) -> str:
    p_arm = plan.p[plan.arm] if plan.arm >= 0 else 1.0
    held = f"held-out NLL {record['heldout_nll']:.4f}, " if record["heldout_nll"] is not None else ""
    return (
        f"[lead-ray] {record['method']} round {record['round'] + 1}/{max_rounds}: arm {plan.arm} (p={p_arm:.3f}), "
        f"{record['size']} samples, mean loss {record['mean_loss']:.4f}, ΔL̂′ {plan.delta:.2e}, {held}"
        f"reward {record['reward_raw']:+.4f} (norm {record['reward_norm']:+.3f}), "
        f"unique {record['unique']}/{budget}, select {record['selection_s']:.2f} s, train {record['train_s']:.1f} s, "
        f"ETA {eta_s:.0f} s"
    )
