"""The optimizer both training loops use: AdamW (weight decay 0) with LEAD's step-decay schedule.

η_s = lr · decay^⌊s / every⌋       (ALGORITHM.md §4.1 and §8; the official code's linear/warmup flags are dead)
"""

from __future__ import annotations

import torch

from lead_ray.config import AnchorConfig, TrainingSettings, WarmupConfig, check_batch_sizes


def build_optimizer(model, ts: TrainingSettings, world_size: int):
    """(optimizer, scheduler, micro-batches per optimizer step and worker) for the model's trainable
    parameters. An optimizer step sees batch_size samples over all `world_size` workers."""
    section = "warmup" if isinstance(ts, WarmupConfig) else "anchor" if isinstance(ts, AnchorConfig) else "train"
    check_batch_sizes(ts, world_size, section)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ts.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: ts.lr_decay ** (s // ts.lr_decay_every))
    accum = ts.batch_size // (ts.micro_batch_size * world_size)
    return opt, sched, accum
