"""Per-GPU memory a training stage needs (`lead-ray plan`): an estimate to size a cluster with, not a measurement.

From the model's config, built on the meta device (no weights are read): its parameters, and LoRA's on the
configured target modules. Per GPU, under DDP (every GPU holds a whole replica):

  weights        full fine-tuning: float32 master weights (4 B/param; models/load.py keeps them so a small step
                 is not rounded away); LoRA: the frozen base in the compute dtype, the adapters in float32
  gradients      4 B per trainable parameter
  AdamW state    8 B per trainable parameter (two float32 moments)
  DDP buckets    4 B per trainable parameter (DDP's flat all-reduce buffers beside .grad)
  activations    per token and layer, what a Llama-style block keeps for its backward in the compute dtype:
                 8·h + 3·h_kv + 4·i elements (norm inputs and outputs, q/k/v and their rotated copies, attention
                 output, MLP gate, up, activation and product; SDPA keeps no s×s score matrix); with gradient
                 checkpointing, each layer's input (h) plus one layer's full set while it is recomputed
  logits         per token: the vocabulary in the compute dtype and again in float32 for the loss

Under FSDP (`train.strategy: fsdp`, over `shards` GPUs) weights, gradients and AdamW state are divided by the
shards, there are no DDP buckets, and each GPU also holds the unit it has gathered and the next one prefetched:
2 × the largest unit (a decoder layer, or the embeddings) in float32.

h = hidden size, h_kv = key/value heads × head size, i = MLP size; tokens = micro_batch_size × max_length.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    kv_hidden: int
    intermediate: int
    vocab: int


def model_shape(config) -> ModelShape:
    """The sizes the activation estimate reads, from an HF (Llama-style) config."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return ModelShape(
        config.hidden_size, config.num_hidden_layers, kv_heads * head_dim, config.intermediate_size, config.vocab_size
    )


def count_parameters(config, lora_targets: list[str] | None, lora_r: int) -> tuple[int, int]:
    """(all parameters, LoRA parameters on `lora_targets`: r·(in + out) per targeted linear layer), counted on the
    meta device. lora_targets None: full fine-tuning (no adapters)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    lora = 0
    for name, module in model.named_modules():
        if lora_targets and isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in lora_targets:
            lora += lora_r * (module.in_features + module.out_features)
    return total, lora


def memory_plan(
    total: int,
    lora: int,
    shape: ModelShape,
    *,
    lora_enabled: bool,
    micro_batch: int,
    max_length: int,
    compute_bytes: int,
    checkpointing: bool,
    shards: int = 1,
) -> dict[str, int]:
    """Bytes per GPU by part (see the module docstring), and their total. `shards` > 1: FSDP over that many GPUs."""
    trainable = lora if lora_enabled else total
    weights = total * compute_bytes + lora * 4 if lora_enabled else total * 4
    tokens = micro_batch * max_length
    per_layer = 8 * shape.hidden + 3 * shape.kv_hidden + 4 * shape.intermediate  # elements per token
    kept = shape.hidden * shape.layers + per_layer if checkpointing else per_layer * shape.layers
    layer = 4 * shape.hidden * shape.hidden + 3 * shape.hidden * shape.intermediate  # a Llama block's weights, about
    parts = {
        "weights": weights // shards,
        "gradients": trainable * 4 // shards,
        "adamw_state": trainable * 8 // shards,
        "ddp_buckets": trainable * 4 if shards == 1 else 0,
        "fsdp_gathered": 2 * max(layer, shape.vocab * shape.hidden) * 4 if shards > 1 else 0,
        "activations": tokens * kept * compute_bytes,
        "logits": tokens * shape.vocab * (compute_bytes + 4),
    }
    return {**parts, "total": sum(parts.values())}


def advice(plan: dict[str, int], budget: int, ts, section: str) -> list[str]:
    """The settings of `section` (its settings `ts`) that would bring a plan under `budget` bytes, biggest saving
    first. Only the online run (`train`) has train.strategy: FSDP is offered there."""
    over = plan["total"] - budget
    if over <= 0:
        return []
    tips = []
    lora_enabled, checkpointing, micro_batch = ts.lora.enabled, ts.gradient_checkpointing, ts.micro_batch_size
    states = plan["weights"] + plan["gradients"] + plan["adamw_state"] + plan["ddp_buckets"]
    if not lora_enabled and states > budget / 2 and getattr(ts, "strategy", "fsdp") == "ddp":
        tips.append(
            "train.strategy=fsdp with train.num_workers GPUs (shards the float32 weights, gradients and AdamW state "
            "that DDP keeps whole on every GPU)"
        )
    if not lora_enabled and states > budget:
        tips.append(
            f"{section}.lora.enabled=true (adapters on a frozen base in the compute dtype: no full AdamW state)"
        )
    if not checkpointing and plan["activations"] > over / 2:
        tips.append(f"{section}.gradient_checkpointing=true (keeps one layer's activations instead of every layer's)")
    if micro_batch > 1 and plan["activations"] + plan["logits"] > over:
        tips.append(f"a smaller {section}.micro_batch_size than {micro_batch} (activations and logits scale with it)")
    return tips or ["a GPU with more memory, or a shorter model.max_length"]


def hf_config(model_cfg):
    """The HF config of `model.base`: an HF folder's, a GGUF file's (read from its header), or the tiny preset's."""
    from pathlib import Path

    from transformers import AutoConfig

    from lead_ray.models.load import load_tokenizer, tiny_config

    base = model_cfg.base
    if base == "tiny":
        return tiny_config(model_cfg, load_tokenizer(model_cfg.tokenizer, model_cfg.trust_remote_code))
    if base.endswith(".gguf"):
        return AutoConfig.from_pretrained(str(Path(base).parent), gguf_file=Path(base).name)
    return AutoConfig.from_pretrained(base, trust_remote_code=model_cfg.trust_remote_code)


STAGES = ("warmup", "anchor", "train")  # the config sections that train a model


def plan_stages(cfg, gpu_memory_gb: float) -> tuple[str, bool]:
    """`lead-ray plan`: each training stage's per-GPU memory as a table, and whether every stage fits."""
    config = hf_config(cfg.model)
    shape = model_shape(config)
    compute_bytes = 4 if cfg.model.dtype == "float32" else 2  # 'auto' is bf16 on the GPUs a plan is for
    budget = int(gpu_memory_gb * GIB)
    lines = [f"per-GPU memory (GiB) on {gpu_memory_gb:g} GiB GPUs, model.max_length {cfg.model.max_length}:"]
    fits = True
    for stage in STAGES:
        ts = getattr(cfg, stage)
        targets = ts.lora.target_modules if ts.lora.enabled else None
        total, lora = count_parameters(config, targets, ts.lora.r)
        fsdp = getattr(ts, "strategy", "ddp") == "fsdp"  # the online run has a strategy; warm-up and anchor use DDP
        plan = memory_plan(
            total,
            lora,
            shape,
            lora_enabled=ts.lora.enabled,
            micro_batch=ts.micro_batch_size,
            max_length=cfg.model.max_length,
            compute_bytes=compute_bytes,
            checkpointing=ts.gradient_checkpointing,
            shards=ts.num_workers if fsdp else 1,
        )
        how = f"LoRA r={ts.lora.r}" if ts.lora.enabled else "full fine-tuning"
        how += f", FSDP over {ts.num_workers} GPUs" if fsdp else ""
        how += f", micro-batch {ts.micro_batch_size}" + (", checkpointing" if ts.gradient_checkpointing else "")
        parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in plan.items() if k != "total")
        ok = plan["total"] <= budget
        fits &= ok
        lines.append(f"  {stage:7s} {plan['total'] / GIB:7.1f} {'fits' if ok else 'DOES NOT FIT'} ({how}): {parts}")
        lines += [f"          change: {tip}" for tip in advice(plan, budget, ts, stage)]
    lines.append(f"  model: {total / 1e9:.2f} B parameters; an estimate (lead_ray/models/memory.py), not a measurement")
    return "\n".join(lines), fits
