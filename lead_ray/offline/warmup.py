"""`lead-ray warmup`: fine-tune the base model on a random ~1% of the pool (ALGORITHM.md §4.1).

The warm-up model is used only to score IFD; online training starts again from the base model.

* Sample: a sample is in when a hash of (seed, id) falls below warmup.fraction, capped at
  warmup.max_samples, so the choice is the same however the pool is split into files and blocks.
* Training: one Ray Train `TorchTrainer` (CPU or GPU workers, DDP), AdamW with weight decay 0, the
  LEAD schedule lr · decay^⌊step/every⌋, gradient accumulation up to warmup.batch_size samples per
  optimizer step, loss = mean of the per-sample IU (the shared loss function). LoRA when enabled;
  its adapters are merged before saving, so `score` loads a plain HF folder.
* Output: work_dir/models/warmup (safetensors + tokenizer) and warmup_stats.json.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from lead_ray.config import Config, check_batch_sizes
from lead_ray.console import quiet_train_worker, train_logging
from lead_ray.data.split import hash_fraction, is_holdout
from lead_ray.files import atomic_path, require


def in_sample(ids, seed: int, fraction: float, holdout: float = 0.0) -> np.ndarray:
    """Deterministic Bernoulli(fraction) membership per id; held-out ids are never in it."""
    return hash_fraction(ids, seed, fraction) & ~is_holdout(ids, holdout)


def warmup_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch
    import torch

    from lead_ray.models.load import load_for_training, train_worker_device, training_autocast
    from lead_ray.models.loss import collate, masked_mean, sample_losses
    from lead_ray.models.optim import build_optimizer
    from lead_ray.models.template import encode_conversation

    quiet_train_worker()
    torch.set_num_threads(loop_config["threads"])
    torch.manual_seed(loop_config["seed"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    warmup_cfg, model_cfg = loop_config["warmup"], loop_config["model"]
    device = train_worker_device()
    model, tok, autocast_dtype = load_for_training(loop_config["base_dir"], model_cfg, warmup_cfg.lora, device)
    model = ray.train.torch.prepare_model(model)
    opt, sched, accum = build_optimizer(model, warmup_cfg, world)
    shard = ray.train.get_dataset_shard("train")
    step, t0 = 0, time.perf_counter()
    for epoch in range(warmup_cfg.epochs):
        model.train()
        total, count, pending = 0.0, 0, 0
        batches = shard.iter_batches(
            batch_size=warmup_cfg.micro_batch_size,
            batch_format="pyarrow",
            local_shuffle_buffer_size=256,
            local_shuffle_seed=loop_config["seed"] + epoch,
        )
        for batch in batches:
            enc = [encode_conversation(tok, m, model_cfg.max_length) for m in batch["messages"].to_pylist()]
            with training_autocast(device, autocast_dtype):
                losses = sample_losses(model, collate(enc, tok.pad_token_id)).loss
            (masked_mean(losses) / accum).backward()
            valid = ~torch.isnan(losses)
            total += float(losses[valid].detach().sum())
            count += int(valid.sum())
            pending += 1
            if pending == accum:
                opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
                step, pending = step + 1, 0
        if pending:
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            step += 1
        metrics = {
            "epoch": epoch + 1,
            "train_loss": total / max(count, 1),
            "steps": step,
            "lr": sched.get_last_lr()[0],
            "seconds": time.perf_counter() - t0,
        }
        last = epoch == warmup_cfg.epochs - 1
        if last and rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                plain = model.module if hasattr(model, "module") else model
                if hasattr(plain, "merge_and_unload"):  # merged in float32: a bf16 merge rounds small LoRA updates away
                    plain = plain.float().merge_and_unload()
                plain.save_pretrained(tmp, safe_serialization=True)
                tok.save_pretrained(tmp)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:  # every worker reports equally often: report is a barrier
            ray.train.report(metrics)


def _warmup_sample(cfg: Config, pool: Path):
    """The warm-up rows (a seeded share of the pool, never a held-out one), materialised before training: a
    few thousand rows, and no read task then competes with the workers for CPUs."""
    import ray

    def keep(batch):
        return batch.filter(
            in_sample(batch["id"].to_pylist(), cfg.seed, cfg.warmup.fraction, cfg.eval.holdout_fraction)
        )

    return (
        ray.data.read_parquet(str(pool))
        .select_columns(["id", "messages"])
        .map_batches(keep, batch_format="pyarrow")
        .limit(cfg.warmup.max_samples)
        .materialize()
    )


def warmup(cfg: Config) -> dict:
    """Train the warm-up model; write work_dir/models/warmup and warmup_stats.json."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lead_ray.models.load import DONE, materialize_model
    from lead_ray.runtime import train_scaling

    t0 = time.perf_counter()
    warmup_cfg = cfg.warmup
    check_batch_sizes(warmup_cfg, warmup_cfg.num_workers, "warmup")
    pool = require(cfg.stage_dir("prepared") / "pool", "*.parquet", "pool", "prepare")
    base = materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)

    ds = _warmup_sample(cfg, pool)
    n = ds.count()
    if n == 0:
        raise ValueError(
            f"warm-up sample is empty: {warmup_cfg.fraction=} of the pool selects no row; raise warmup.fraction"
        )
    scaling = train_scaling(warmup_cfg, ray.cluster_resources())
    use_gpu = scaling["use_gpu"]
    trainer = TorchTrainer(
        warmup_loop,
        train_loop_config={
            "warmup": warmup_cfg,
            "model": cfg.model,
            "base_dir": str(base),
            "seed": cfg.seed,
            "threads": max(1, round(scaling["resources_per_worker"]["CPU"])),
        },
        scaling_config=ScalingConfig(**scaling),
        # A fresh run name every time: reusing one would silently resume an old run.
        run_config=RunConfig(
            **train_logging(),
            name=f"warmup-{uuid.uuid4().hex[:8]}",
            storage_path=str(Path(cfg.work_dir, "ray_train").resolve()),
        ),
        datasets={"train": ds},
    )
    result = trainer.fit()
    dest = cfg.stage_dir("models") / "warmup"
    with result.checkpoint.as_directory() as ckpt, atomic_path(dest) as tmp:
        shutil.copytree(ckpt, tmp)
        (tmp / DONE).write_text("ok\n")
    stats = {
        "samples": n,
        "epochs": warmup_cfg.epochs,
        "workers": warmup_cfg.num_workers,
        "use_gpu": use_gpu,
        "final_train_loss": result.metrics.get("train_loss"),
        "optimizer_steps": result.metrics.get("steps"),
        "train_seconds": round(result.metrics.get("seconds", 0.0), 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "model": str(dest),
    }
    (dest.parent / "warmup_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats
