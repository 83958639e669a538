"""The GPU check's measurements (bench/gpu/check.py): each a function of the model folder and device that returns a
JSON-able dict. Every one also runs on the CPU (the dry run), where its numbers check the script, nothing more."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# dense bf16 peak of one GPU (FLOP/s), for MFU; a GPU not listed gets no MFU
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def encoded_batches(tok, max_length: int, micro: int, n: int, seed: int = 0) -> list[list]:
    """n micro-batches of `micro` conversations from the repo's sample data, encoded as training encodes them."""
    from bench.micro.loop import sample_conversations
    from lead_ray.models.template import encode_conversation

    convs, rng = sample_conversations(), random.Random(seed)
    enc = [encode_conversation(tok, rng.choice(convs), max_length) for _ in range(micro * n)]
    return [enc[i * micro : (i + 1) * micro] for i in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def lead_ray_step(model, opt, pad_id: int, autocast_dtype, device):
    """One optimizer step as lead-ray's round loop takes it: per-sample IU from the forward pass, their mean."""
    from lead_ray.models.load import training_autocast
    from lead_ray.models.loss import collate, masked_mean, sample_losses

    def step(batch):
        with training_autocast(device, autocast_dtype):
            out = sample_losses(model, collate(batch, pad_id))
        masked_mean(out.loss).backward()
        opt.step(), opt.zero_grad(set_to_none=True)

    return step


def plain_step(model, opt, pad_id: int, autocast_dtype, device):
    """The same step as a plain PyTorch loop writes it: Hugging Face's own token-mean loss."""
    from lead_ray.models.loss import collate

    def step(batch):
        inputs = {k: v.to(device) for k, v in collate(batch, pad_id).items()}
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = model(**inputs, use_cache=False).loss
        loss.backward()
        opt.step(), opt.zero_grad(set_to_none=True)

    return step


def _phase(step, batches: list, device, warm: int, flops_per_token: float, peak: float | None) -> dict:
    """Warm-up steps, then every batch timed alone: tokens/s (real and padded), step median/p95, MFU, memory."""
    for batch in batches[:warm]:
        step(batch)
    _reset_peak(device)
    times = []
    for batch in batches:
        _sync(device)
        t0 = time.perf_counter()
        step(batch)
        _sync(device)
        times.append(time.perf_counter() - t0)
    real = sum(len(e.input_ids) for b in batches for e in b)
    padded = sum(len(b) * max(len(e.input_ids) for e in b) for b in batches)
    seconds = sum(times)
    return {
        "steps": len(times),
        "tokens_per_s": round(real / seconds, 1),
        "padded_tokens_per_s": round(padded / seconds, 1),
        "padding_fraction": round(1 - real / padded, 4),
        "step_s_median": round(float(np.median(times)), 4),
        "step_s_p95": round(float(np.percentile(times, 95)), 4),
        "mfu": round(flops_per_token * padded / seconds / peak, 4) if peak else None,
        "peak_memory_mib": _peak_mib(device),
    }


def train_ab(base_dir: Path, cfg, lora: bool, device, steps: int, warm: int = 3) -> dict:
    """lead-ray's step against a plain loop on identical batches, alternated A/B/A on one model; LoRA or full
    fine-tuning (float32 master weights, bf16 autocast on a GPU). MFU counts 6N FLOPs a token for full
    fine-tuning and 4N for LoRA (frozen weights get no weight gradient), attention left out."""
    from dataclasses import replace

    from lead_ray.models.load import load_for_training
    from lead_ray.models.optim import build_optimizer

    t0 = time.perf_counter()
    model, tok, autocast_dtype = load_for_training(base_dir, cfg.model, replace(cfg.train.lora, enabled=lora), device)
    load_s = time.perf_counter() - t0
    model.train()
    n_params = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
    flops = (4 if lora else 6) * n_params
    peak = (
        next((v for k, v in PEAK_BF16.items() if k in torch.cuda.get_device_name(0)), None)
        if device.type == "cuda"
        else None
    )
    batches = encoded_batches(tok, cfg.model.max_length, cfg.train.micro_batch_size, steps)
    opt_lead = build_optimizer(model, cfg.train, 1)[0]
    opt_plain = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, weight_decay=0)
    a = lead_ray_step(model, opt_lead, tok.pad_token_id, autocast_dtype, device)
    b = plain_step(model, opt_plain, tok.pad_token_id, autocast_dtype, device)
    phases = [_phase(step, batches, device, warm, flops, peak) for step in (a, b, a)]
    lead = (phases[0]["tokens_per_s"] + phases[2]["tokens_per_s"]) / 2
    drift = abs(phases[0]["tokens_per_s"] - phases[2]["tokens_per_s"]) / lead  # A1 against A2: the machine moved
    return {
        "load_s": round(load_s, 2),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params": n_params,
        "micro_batch": cfg.train.micro_batch_size,
        "max_length": cfg.model.max_length,
        "autocast": str(autocast_dtype),
        "lead_ray_a1": phases[0],
        "plain_b": phases[1],
        "lead_ray_a2": phases[2],
        "ratio": round(lead / phases[1]["tokens_per_s"], 3),
        "ratio_a2": round(phases[2]["tokens_per_s"] / phases[1]["tokens_per_s"], 3),
        "a_drift": round(drift, 3),
        "goal": 0.9,
        "_model": (model, tok),
    }


def scoring(base_dir: Path, cfg, device, samples: int) -> dict:
    """lead-ray's scorer (score_encoded: length buckets, the LM head from the first answer token) in the compute
    dtype: tokens/s and the padding its batches computed."""
    from lead_ray.models.load import load_model
    from lead_ray.models.loss import score_encoded

    t0 = time.perf_counter()
    model, tok = load_model(base_dir, cfg.model, device)
    load_s = time.perf_counter() - t0
    enc = [e for b in encoded_batches(tok, cfg.model.max_length, samples, 1, seed=1) for e in b]
    seen = {"tokens": 0, "padded": 0}

    def count(rows, tokens, padded):
        seen["tokens"], seen["padded"] = seen["tokens"] + tokens, seen["padded"] + padded

    _sync(device)
    t0 = time.perf_counter()
    score_encoded(model.eval(), enc, tok.pad_token_id, cfg.score.batch_tokens, cfg.score.max_batch_size, on_batch=count)
    _sync(device)
    seconds = time.perf_counter() - t0
    return {
        "load_s": round(load_s, 2),
        "samples": len(enc),
        "dtype": str(next(model.parameters()).dtype),
        "tokens_per_s": round(seen["tokens"] / seconds, 1),
        "padding_fraction": round(1 - seen["tokens"] / seen["padded"], 4),
        "seconds": round(seconds, 2),
    }


def checkpoint(model, tok, lr: float) -> dict:
    """A checkpoint's training part as a run writes it (online/checkpoint.py write_trainer_state and its
    manifest), its size, and load_checkpoint's restore into the same model and optimizer."""
    from lead_ray.online.checkpoint import TrainerState, load_checkpoint, write_manifest, write_trainer_state

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoint"
        folder.mkdir()
        t0 = time.perf_counter()
        write_trainer_state(folder, TrainerState(model, tok, opt, sched, next_round=1), True, None)
        write_manifest(folder)
        write_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        t0 = time.perf_counter()
        next_round = load_checkpoint(folder, model, opt, sched)
        return {
            "mib": round(size / 2**20, 1),
            "write_s": round(write_s, 2),
            "restore_s": round(time.perf_counter() - t0, 2),
            "restored_round": next_round,
        }
