"""wandb logging of the online loop, from rank 0 only. Offline by default: no account, no network.

The wandb run id is the Ray Train run name, so a worker restart or `--resume` continues the same
wandb run instead of starting a new one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SCALARS = (
    "mean_loss",
    "delta",
    "beta",
    "cos_phi",
    "d_k",
    "d_p",
    "eta",
    "reward_raw",
    "reward_norm",
    "unique",
    "size",
    "selection_s",
    "train_s",
    "heldout_nll",
    "pool_forward_samples",
    "arm",
)


class RoundLogger:
    def __init__(self, cfg, run_dir: Path, run_name: str):
        self.run = None
        if not cfg.tracking.wandb:
            return
        import wandb

        from lead_ray.config import to_dict

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=cfg.tracking.project,
            dir=str(run_dir),
            id=run_name,
            name=run_name,
            mode=cfg.tracking.mode,
            resume="allow",
            config=to_dict(cfg),
            settings=wandb.Settings(console="off"),
        )

    def log(self, record: dict, u_round: np.ndarray | None) -> None:
        if self.run is None:
            return
        import wandb

        row = {k: record[k] for k in SCALARS if isinstance(record.get(k), (int, float)) and record.get(k) is not None}
        row.update({f"p/cluster_{k}": v for k, v in enumerate(record.get("p") or [])})
        row.update({f"u_mean/cluster_{k}": v for k, v in enumerate(record.get("u_by_cluster") or []) if np.isfinite(v)})
        if u_round is not None and len(u_round):
            row["u_round"] = wandb.Histogram(np.asarray(u_round, np.float64)[np.isfinite(u_round)])
        self.run.log(row, step=record["round"])

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
