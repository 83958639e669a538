"""`train.strategy: fsdp`: the online loop's model sharded over the Train workers with PyTorch FSDP2, for full
fine-tuning of a model whose weights, gradients and AdamW state one GPU cannot hold.

* `shard`: every decoder layer its own FSDP unit, then the whole model (the embeddings and head), on a 1-D mesh
  over the workers; the optimizer is built afterwards, over the sharded parameters.
* Checkpoints: each worker writes its shards of the trainable weights and of the optimizer state with
  torch.distributed.checkpoint into the checkpoint's `trainer_dcp/`, so no process gathers the whole optimizer;
  the final checkpoint's `model/` (what eval loads) is gathered once, onto rank 0's CPU.
* Gradient accumulation: gradients are reduce-scattered only on the micro-batch that ends an optimizer step.
"""

from __future__ import annotations

from pathlib import Path

SHARDED = "trainer_dcp"  # the checkpoint's folder of sharded weights and optimizer state


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def decoder_layers(model) -> list:
    """The transformer blocks (LlamaDecoderLayer, Qwen2DecoderLayer, ...): FSDP's units."""
    return [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]


def shard(model, device):
    """The model, sharded in place over every Train worker (FSDP2's fully_shard)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    layers = decoder_layers(model)
    if not layers:
        raise ValueError(f"train.strategy=fsdp: no decoder layers found in {type(model).__name__} to shard")
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _trainable_state(model, optimizer) -> dict:
    """This worker's shards: the trainable weights (the frozen base of a LoRA is the base model's, not saved)
    and the optimizer state, keyed as torch.distributed.checkpoint expects."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    weights, optim = get_state_dict(model, optimizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {"model": {k: v for k, v in weights.items() if k in trainable}, "optim": optim}


def save_sharded(folder: Path, model, optimizer) -> None:
    """Every worker: its shards into folder/trainer_dcp (a collective; the folder is on storage all can write)."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_trainable_state(model, optimizer), checkpoint_id=str(Path(folder) / SHARDED))


def load_sharded(folder: Path, model, optimizer) -> None:
    """Every worker: its shards back from folder/trainer_dcp into the sharded model and its optimizer."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    state = _trainable_state(model, optimizer)
    dcp.load(state, checkpoint_id=str(Path(folder) / SHARDED))
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optim"],
        options=StateDictOptions(strict=False),
    )


def full_weights(model) -> dict:
    """The whole model's weights on rank 0's CPU (empty elsewhere): a collective every worker calls."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def whole(tensor):
    """A parameter's or gradient's full value: a sharded one is gathered (a collective every worker calls)."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
