"""The GPU check's agreement steps (bench/gpu/check.py): numbers that must match another way of computing them.

precision  bf16 autocast against float32 on one fixed batch: each sample's IU
ghost      the per-sample ghost products ⟨g(x), ĝ⟩ (models/ghost.py) against torch.func per-sample gradients
ddp        two DDP workers (gloo) on one device against one process on the same whole batches: the losses
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def precision(model, tok, batch: list, device) -> dict:
    """Each sample's IU in float32 and under bf16 autocast, from the same float32 weights."""
    from lead_ray.models.load import training_autocast
    from lead_ray.models.loss import collate, sample_losses

    model.eval()
    with torch.no_grad():
        fp32 = sample_losses(model, collate(batch, tok.pad_token_id)).loss.double().cpu().numpy()
        with training_autocast(device, torch.bfloat16):
            bf16 = sample_losses(model, collate(batch, tok.pad_token_id)).loss.double().cpu().numpy()
    model.train()
    rel = np.abs(bf16 - fp32) / np.abs(fp32)
    return {
        "samples": len(batch),
        "fp32_mean": round(float(fp32.mean()), 5),
        "bf16_mean": round(float(bf16.mean()), 5),
        "max_rel_diff": round(float(rel.max()), 5),
        "mean_rel_diff": round(float(rel.mean()), 5),
    }


def _per_sample_grads(model, params: dict, batch: dict) -> tuple[torch.Tensor, str]:
    """Each sample's gradient on `params`, flat: torch.func's vmap over grad, or (where vmap cannot trace the
    model) torch.func.grad one sample at a time."""
    from torch.func import functional_call, grad, vmap

    from lead_ray.models.loss import per_sample_nll

    frozen = {k: v.detach() for k, v in params.items()}

    def loss_one(p, ids, mask, pos, labels):
        inputs = {"input_ids": ids[None], "attention_mask": mask[None], "position_ids": pos[None], "use_cache": False}
        return per_sample_nll(functional_call(model, p, (), inputs).logits, labels[None]).loss[0]

    args = [batch[k] for k in ("input_ids", "attention_mask", "position_ids", "labels")]
    try:
        grads, how = vmap(grad(loss_one), in_dims=(None, 0, 0, 0, 0))(frozen, *args), "vmap"
        flat = torch.cat([grads[k].reshape(len(args[0]), -1) for k in params], 1)
    except Exception as err:  # noqa: BLE001 - Hugging Face's mask code is not always vmappable: say so, then loop
        how = f"one sample at a time (vmap: {type(err).__name__}: {str(err)[:160]})"
        rows = [grad(loss_one)(frozen, *(a[i] for a in args)) for i in range(len(args[0]))]
        flat = torch.stack([torch.cat([r[k].reshape(-1) for k in params]) for r in rows])
    return flat, how


def ghost(model, tok, batch: list, device) -> dict:
    """⟨g(x), ĝ⟩ for every sample of the batch, from the ghost hooks of one ordinary backward pass and from
    torch.func per-sample gradients, in float32 with dropout off, on the last layer's LoRA weights."""
    from lead_ray.models.ghost import GhostProducts
    from lead_ray.models.loss import collate, masked_mean, sample_losses
    from lead_ray.online.direction import direction_params

    model.eval()  # dropout off: both sides must see the same function
    params = direction_params(model, "last_layer")
    hat = np.random.default_rng(0).normal(size=sum(p.numel() for p in params.values())).astype(np.float32)
    inputs = {k: v.to(device) for k, v in collate(batch, tok.pad_token_id).items()}
    t0 = time.perf_counter()
    reference, how = _per_sample_grads(model, params, inputs)
    hat_t = torch.as_tensor(hat, dtype=torch.float64, device=reference.device)
    reference = (reference.detach().double() @ hat_t).cpu().numpy()
    func_s = time.perf_counter() - t0
    products = GhostProducts(model, params)
    products.set_direction(hat, device)
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    masked_mean(sample_losses(model, inputs).loss).backward()
    got = products.collect(np.full(len(batch), 1.0 / len(batch)))
    ghost_s = time.perf_counter() - t0
    products.set_direction(None, device)
    model.zero_grad(set_to_none=True)
    model.train()
    rel = np.abs(got - reference) / np.maximum(np.abs(reference), 1e-12)
    return {
        "samples": len(batch),
        "direction_params": sum(p.numel() for p in params.values()),
        "torch_func": how,
        "max_rel_err": float(rel.max()),
        "goal": 1e-4,
        "backward_with_ghost_s": round(ghost_s, 3),
        "torch_func_s": round(func_s, 3),
    }


def _ddp_worker(rank: int, world: int, folder: str, base_dir: str, cfg, steps: int, device_type: str) -> None:
    """One DDP worker: `steps` optimizer steps, each on its half of the same whole batch; rank 0 writes losses."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bench.gpu.steps import encoded_batches
    from lead_ray.models.load import load_for_training, training_autocast
    from lead_ray.models.loss import collate, masked_mean, sample_losses

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("CHECK_DDP_PORT", "29533"))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    device = torch.device(device_type, 0) if device_type == "cuda" else torch.device("cpu")
    torch.manual_seed(0)
    model, tok, autocast_dtype = load_for_training(base_dir, cfg.model, cfg.train.lora, device)
    ddp = DistributedDataParallel(model, device_ids=None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, weight_decay=0)
    losses = []
    for batch in encoded_batches(tok, cfg.model.max_length, 2 * cfg.train.micro_batch_size, steps, seed=2):
        mine = batch[rank::world]
        with training_autocast(device, autocast_dtype):
            out = sample_losses(ddp, collate(mine, tok.pad_token_id))
        masked_mean(out.loss).backward()
        opt.step(), opt.zero_grad(set_to_none=True)
        loss = out.loss.detach().float()
        whole = torch.stack([loss.nansum(), (~loss.isnan()).sum().float()]).cpu()  # a prompt may fill max_length
        dist.all_reduce(whole)
        losses.append(float(whole[0] / whole[1]))
    if rank == 0:
        np.save(Path(folder) / f"world{world}.npy", np.array(losses))
    dist.destroy_process_group()


def ddp(base_dir: Path, cfg, device, steps: int = 4) -> dict:
    """Two gloo DDP workers sharing one device against one worker on the whole batches (same seed, same
    batches): the mean loss of each step over the samples with an answer token. With as many of those in each
    half, the mean of the halves' means is the whole mean and the steps match; otherwise they differ a little (each
    worker's loss is its own samples' mean, as in a run)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        for world in (1, 2):
            os.environ["CHECK_DDP_PORT"] = str(29533 + world)
            mp.spawn(_ddp_worker, args=(world, folder, str(base_dir), cfg, steps, device.type), nprocs=world)
        one, two = (np.load(Path(folder) / f"world{w}.npy") for w in (1, 2))
    return {
        "steps": steps,
        "losses_one_worker": [round(float(x), 5) for x in one],
        "losses_two_workers": [round(float(x), 5) for x in two],
        "max_abs_diff": round(float(np.abs(one - two).max()), 6),
        "seconds": round(time.perf_counter() - t0, 1),
    }
