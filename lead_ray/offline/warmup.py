"""`lead-ray warmup`: fine-tune the base model on a random ~1% of the pool (ALGORITHM.md §4.1).

The warm-up model is used only to score IFD; online training starts again from the base model.

* Sample: a sample is in when a hash of (seed, id) falls below warmup.fraction, capped at
  warmup.max_samples, so the choice is the same however the pool is split into files and blocks.
* Training: one Ray Train `TorchTrainer` (CPU or GPU workers, DDP), AdamW with weight decay 0, the
  LEAD schedule lr · decay^⌊step/every⌋, gradient accumulation up to warmup.batch_size samples per
  optimizer step, loss = mean of the per-sample IU (the shared loss function). LoRA when enabled;
  then the adapter alone is saved, unmerged, and `score` applies it to the base model it already holds.
* Output: work_dir/models/warmup (a full model or a LoRA adapter, safetensors + tokenizer) and warmup_stats.json.
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

EPOCH_STATE = "epoch_state.pt"  # an epoch's checkpoint: trainable weights, optimizer, schedule, early-stop state


def in_sample(ids, seed: int, fraction: float, holdout: float = 0.0) -> np.ndarray:
    """Deterministic Bernoulli(fraction) membership per id; held-out ids are never in it."""
    return hash_fraction(ids, seed, fraction) & ~is_holdout(ids, holdout)


def warmup_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker: the warm-up model (a fixed number of epochs), or, with a "val" dataset
    shard, the anchor's reference model (`lead-ray anchor`: stopped once the held-out NLL has not fallen for
    `patience` epochs, the best epoch's weights kept). Every epoch but the last checkpoints its training state, so
    workers restarted after a failure go on from the last finished epoch."""
    import ray.train
    import ray.train.torch
    import torch

    from lead_ray.models.load import load_for_training, train_worker_device

    quiet_train_worker()
    torch.set_num_threads(loop_config["threads"])
    torch.manual_seed(loop_config["seed"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    settings, model_cfg, patience = loop_config["settings"], loop_config["model"], loop_config.get("patience")
    device = train_worker_device()
    model, tok, autocast_dtype = load_for_training(loop_config["base_dir"], model_cfg, settings.lora, device)
    model = ray.train.torch.prepare_model(model)
    run = _Epochs(model, tok, model_cfg, settings, world, device, autocast_dtype)
    track = _resume(run, loop_config["epochs"])
    start = track["epoch"]
    for epoch in range(start, loop_config["epochs"]):
        metrics = {"epoch": epoch + 1, "resumed_from_epoch": start}
        metrics |= run.train(ray.train.get_dataset_shard("train"), loop_config["seed"] + epoch)
        track["epoch"] = epoch + 1
        stop = epoch == loop_config["epochs"] - 1
        if patience is not None:
            held_out = run.held_out_nll(ray.train.get_dataset_shard("val"))
            track["history"].append(held_out)
            if held_out < track["best"]:
                track["best"], track["stale"] = held_out, 0
                track["best_state"] = {n: w.detach().cpu().clone() for n, w in run.trainable()}
            else:
                track["stale"] += 1
            stop = stop or track["stale"] > patience  # the same on every worker: the held-out NLL is all-reduced
            if stop:
                _restore(run.plain(), track["best_state"])
                history = track["history"]
                metrics |= {
                    "val_history": history,
                    "best_epoch": int(np.argmin(history)) + 1,
                    "val_loss": track["best"],
                }
        staging = Path(loop_config["staging"])
        if stop:
            _report(run, metrics, save=rank == 0, staging=staging)
            break
        _report_epoch(run, track, metrics, save=rank == 0, staging=staging)


def _resume(run: _Epochs, epochs: int) -> dict:
    """Where this worker starts: epoch 0, or, when Ray Train restarted the workers, the last checkpointed epoch's
    weights, optimizer, schedule, random state and early-stop bookkeeping."""
    import ray.train
    import torch

    track = {"epoch": 0, "history": [], "best": float("inf"), "best_state": None, "stale": 0}
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return track
    with ckpt.as_directory() as folder:
        if not (Path(folder) / EPOCH_STATE).exists():  # the final checkpoint: the model is written, nothing to do
            return track | {"epoch": epochs}
        state = torch.load(Path(folder) / EPOCH_STATE, map_location="cpu", weights_only=True)
    run.plain().load_state_dict(state["trainable"], strict=False)
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.steps = state["steps"]
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    return state["track"]


def _report_epoch(run: _Epochs, track: dict, metrics: dict, save: bool, staging: Path) -> None:
    """Report an epoch that is not the last; rank 0 with its training state as the checkpoint a restart reads."""
    import ray.train
    import torch

    if not save:
        ray.train.report(metrics)
        return
    state = {
        "trainable": {n: w.detach().cpu() for n, w in run.trainable()},
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "steps": run.steps,
        "rng": torch.get_rng_state(),
        "track": track,
    }
    if torch.cuda.is_available():  # dropout on a GPU draws from its own generator
        state["cuda_rng"] = torch.cuda.get_rng_state()
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        torch.save(state, Path(tmp) / EPOCH_STATE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _restore(model, trained: dict) -> None:
    """Put the best epoch's trainable weights (kept on the CPU: a LoRA's are small) back into the model."""
    import torch

    with torch.no_grad():
        for name, w in model.named_parameters():
            if name in trained:
                w.copy_(trained[name].to(w.device))


class _Epochs:
    """One worker's training passes and held-out NLL (warm-up and anchor share them)."""

    def __init__(self, model, tok, model_cfg, settings, world: int, device, autocast_dtype):
        from lead_ray.models.optim import build_optimizer

        self.model, self.tok, self.model_cfg, self.settings = model, tok, model_cfg, settings
        self.device, self.autocast_dtype = device, autocast_dtype
        self.opt, self.sched, self.accum = build_optimizer(model, settings, world)
        self.steps, self.t0 = 0, time.perf_counter()

    def plain(self):
        """The model without its DDP wrapper: parameter names as a checkpoint stores them."""
        return self.model.module if hasattr(self.model, "module") else self.model

    def trainable(self):
        """(name, parameter) of every trainable weight: the LoRA adapter's, or the whole model's."""
        return [(n, w) for n, w in self.plain().named_parameters() if w.requires_grad]

    def _encode(self, batch) -> list:
        from lead_ray.models.template import encode_conversation

        return [encode_conversation(self.tok, m, self.model_cfg.max_length) for m in batch["messages"].to_pylist()]

    def train(self, shard, shuffle_seed: int) -> dict:
        import torch

        from lead_ray.models.load import training_autocast
        from lead_ray.models.loss import collate, masked_mean, sample_losses

        self.model.train()
        total, count, pending = 0.0, 0, 0
        batches = shard.iter_batches(
            batch_size=self.settings.micro_batch_size,
            batch_format="pyarrow",
            local_shuffle_buffer_size=256,
            local_shuffle_seed=shuffle_seed,
        )
        for batch in batches:
            with training_autocast(self.device, self.autocast_dtype):
                losses = sample_losses(self.model, collate(self._encode(batch), self.tok.pad_token_id)).loss
            (masked_mean(losses) / self.accum).backward()
            valid = ~torch.isnan(losses)
            total += float(losses[valid].detach().sum())
            count += int(valid.sum())
            pending += 1
            if pending == self.accum:
                self._step()
                pending = 0
        if pending:
            self._step()
        return {
            "train_loss": total / max(count, 1),
            "steps": self.steps,
            "lr": self.sched.get_last_lr()[0],
            "seconds": time.perf_counter() - self.t0,
        }

    def _step(self) -> None:
        self.opt.step(), self.sched.step(), self.opt.zero_grad(set_to_none=True)
        self.steps += 1

    def held_out_nll(self, shard) -> float:
        """Mean per-sample response NLL over every worker's share of the held-out pairs."""
        import torch

        from lead_ray.models.load import training_autocast
        from lead_ray.models.loss import collate, sample_losses

        self.model.eval()
        sums = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad():
            for batch in shard.iter_batches(batch_size=self.settings.micro_batch_size, batch_format="pyarrow"):
                with training_autocast(self.device, self.autocast_dtype):
                    losses = sample_losses(self.model, collate(self._encode(batch), self.tok.pad_token_id)).loss
                valid = ~torch.isnan(losses)
                sums += torch.tensor([float(losses[valid].sum()), float(valid.sum())], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            sums = sums.to(self.device)
            torch.distributed.all_reduce(sums)
        return float(sums[0] / max(float(sums[1]), 1.0))


def _report(run: _Epochs, metrics: dict, save: bool, staging: Path) -> None:
    """Report the last epoch; with `save`, the model as the run's checkpoint: a full model, or a LoRA adapter alone
    (float32, unmerged: scoring keeps it a separate branch on the base model, where a merge into bf16 weights
    would round small updates away), written under `staging` (beside the models, not the node's /tmp). Every
    worker reports equally often: report is a barrier."""
    import ray.train

    if not save:
        ray.train.report(metrics)
        return
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        run.plain().save_pretrained(tmp, safe_serialization=True)  # a PeftModel saves its adapter alone
        run.tok.save_pretrained(tmp)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


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
    t0 = time.perf_counter()
    warmup_cfg = cfg.warmup
    check_batch_sizes(warmup_cfg, warmup_cfg.num_workers, "warmup")
    pool = require(cfg.stage_dir("prepared") / "pool", "*.parquet", "pool", "prepare")
    ds = _warmup_sample(cfg, pool)
    n = ds.count()
    if n == 0:
        raise ValueError(
            f"warm-up sample is empty: {warmup_cfg.fraction=} of the pool selects no row; raise warmup.fraction"
        )
    result, use_gpu = fit_model(cfg, warmup_cfg, {"train": ds}, warmup_cfg.epochs, None, "warmup")
    stats = {
        "samples": n,
        "epochs": warmup_cfg.epochs,
        "workers": warmup_cfg.num_workers,
        "use_gpu": use_gpu,
        "final_train_loss": result.metrics.get("train_loss"),
        "optimizer_steps": result.metrics.get("steps"),
        "train_seconds": round(result.metrics.get("seconds", 0.0), 2),
        "resumed_from_epoch": result.metrics.get("resumed_from_epoch", 0),  # > 0: workers restarted after a failure
        "seconds": round(time.perf_counter() - t0, 2),
        "model": str(cfg.stage_dir("models") / "warmup"),
    }
    (cfg.stage_dir("models") / "warmup_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def fit_model(cfg: Config, settings, datasets: dict, epochs: int, patience: int | None, name: str):
    """One TorchTrainer over `warmup_loop` from the base model; its checkpoint becomes work_dir/models/<name>.
    Returns (the Ray Train result, whether it used GPUs)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lead_ray.models.load import DONE, materialize_model
    from lead_ray.runtime import train_scaling, wait_for_workers

    base = materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)
    scaling = train_scaling(settings, ray.cluster_resources())
    wait_for_workers(scaling, settings.placement_timeout_s, name)
    trainer = TorchTrainer(
        warmup_loop,
        train_loop_config={
            "settings": settings,
            "epochs": epochs,
            "patience": patience,
            "model": cfg.model,
            "base_dir": str(base),
            "seed": cfg.seed,
            "threads": max(1, round(scaling["resources_per_worker"]["CPU"])),
            "staging": str(cfg.stage_dir("models") / f".{name}-staging"),
        },
        scaling_config=ScalingConfig(**scaling),
        # A fresh run name every time: reusing one would silently resume an old run.
        run_config=RunConfig(
            **train_logging(),
            name=f"{name}-{uuid.uuid4().hex[:8]}",
            storage_path=str(Path(cfg.work_dir, "ray_train").resolve()),
            # workers lost mid-run restart from the last epoch's checkpoint, as often as the run's train.max_failures
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
        datasets=datasets,
    )
    result = trainer.fit()
    shutil.rmtree(cfg.stage_dir("models") / f".{name}-staging", ignore_errors=True)
    with result.checkpoint.as_directory() as ckpt, atomic_path(cfg.stage_dir("models") / name) as tmp:
        shutil.copytree(ckpt, tmp)
        (tmp / DONE).write_text("ok\n")
    return result, scaling["use_gpu"]
