"""The two collectives the round loop needs beyond DDP's own all-reduce (a no-op with one worker), and when DDP
skips that all-reduce: under gradient accumulation, on every micro-batch but the one that ends a step."""

from __future__ import annotations


def broadcast_from_rank0(obj, world: int):
    """Rank 0's `obj` on every rank (a picklable object: the round's plan, a yes/no)."""
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_workers(counts: list[int], world: int, device) -> list[int]:
    """Per-worker counts summed over all workers (an all-reduce; every rank gets the totals)."""
    if world == 1:
        return counts
    import torch
    import torch.distributed as dist

    total = torch.tensor(counts, dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def accumulating(model, steps_now: bool):
    """The context of one micro-batch's forward and backward under gradient accumulation: DDP's no_sync() unless
    this micro-batch ends an optimizer step, so gradients are all-reduced once per step, not once per
    micro-batch (the other micro-batches accumulate into the local .grad)."""
    import contextlib

    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter only when the step is taken
        model.set_requires_gradient_sync(steps_now)
        return contextlib.nullcontext()
    if steps_now or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()
