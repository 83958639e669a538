"""`lead-ray anchor`: a reference model trained on pairs the user trusts (`selection.utility: learnability`).

RHO-LOSS and JEST rank a sample by how much a learner can still gain on it: its loss minus the loss of a
reference model that has not learnt the pool's noise. `reducible` takes the warm-up model as that reference, but
the warm-up model was trained on a random share of the pool itself and learns its systematic corruptions (answers
that stop early score as learnable). Here the reference is trained on an *anchor*: a few hundred pairs the user
checked, from the sources they care about, never evaluation items.

* Split: a pair is held out when a hash of (seed, id) falls below anchor.val_fraction (stable across runs).
* Training: the warm-up's TorchTrainer loop (offline/warmup.py) from the base model, LoRA, up to
  anchor.max_epochs passes; after each the held-out pairs' mean response NLL is measured, and training stops once
  it has not fallen for anchor.patience epochs. The best epoch's weights are kept.
* Output: work_dir/models/anchor (an HF folder; `lead-ray score` then adds anchor_loss and anchor_content to every
  pool row) and models/anchor_stats.json (the held-out NLL per epoch, the best epoch).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lead_ray.config import Config, ConfigError, check_batch_sizes
from lead_ray.data.split import hash_fraction
from lead_ray.files import require
from lead_ray.offline.warmup import fit_model

MIN_PAIRS = 8  # on each side of the split: fewer cannot train a reference or tell when to stop


def anchor_split(ids: list[str], seed: int, val_fraction: float):
    """Whether each anchor pair is held out to stop training (a hash of seed and id: stable across runs)."""
    return hash_fraction(ids, seed + 1, val_fraction)  # another draw than the warm-up's (seed) on the same ids


def read_anchor(cfg: Config, use: str = "selection.utility=learnability ranks against a model trained on it"):
    """The anchor's (id, messages) rows: a prepared pool folder, read whole (it is small by design). `use`: what
    needs it, for the error when it is not set."""
    if cfg.anchor.data is None:
        raise ConfigError(
            "'anchor.data' is not set: give it a prepared pool of pairs you trust (`lead-ray prepare FILES --out "
            f"DIR`, then anchor.data=DIR/pool); {use}"
        )
    folder = require(Path(cfg.anchor.data), "*.parquet", "anchor pool (Parquet files)", "prepare")
    return pq.read_table(folder, columns=["id", "messages"])


def anchor(cfg: Config) -> dict:
    """Train the reference model on the anchor; write work_dir/models/anchor and anchor_stats.json."""
    import ray

    t0 = time.perf_counter()
    settings = cfg.anchor
    check_batch_sizes(settings, settings.num_workers, "anchor")
    table = read_anchor(cfg)
    held_out = anchor_split(table["id"].to_pylist(), cfg.seed, settings.val_fraction)
    n_val, n_train = int(held_out.sum()), int((~held_out).sum())
    if min(n_val, n_train) < MIN_PAIRS:
        raise ValueError(
            f"{cfg.anchor.data}: {table.num_rows} anchor pairs split into {n_train} to train and {n_val} held out "
            f"(anchor.val_fraction={settings.val_fraction}); each side needs at least {MIN_PAIRS}: add pairs"
        )
    datasets = {
        "train": ray.data.from_arrow(table.filter(pa.array(~held_out))).materialize(),
        "val": ray.data.from_arrow(table.filter(pa.array(held_out))).materialize(),
    }
    result, use_gpu = fit_model(cfg, settings, datasets, settings.max_epochs, settings.patience, "anchor")
    stats = {
        "pairs": table.num_rows,
        "trained_on": n_train,
        "held_out": n_val,
        "epochs_run": len(result.metrics["val_history"]),
        "best_epoch": result.metrics["best_epoch"],
        "val_history": result.metrics["val_history"],
        "best_val_loss": result.metrics["val_loss"],
        "resumed_from_epoch": result.metrics.get("resumed_from_epoch", 0),
        "use_gpu": use_gpu,
        "seconds": round(time.perf_counter() - t0, 2),
        "model": str(cfg.stage_dir("models") / "anchor"),
    }
    (cfg.stage_dir("models") / "anchor_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats
