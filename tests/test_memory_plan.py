"""`lead-ray plan` (models/memory.py): parameter counts and per-GPU memory against sums done by hand."""

import pytest
from transformers import LlamaConfig

from lead_ray.cli import main
from lead_ray.models.memory import GIB, count_parameters, memory_plan, model_shape

SMALL = dict(
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=1000,
    tie_word_embeddings=False,
)


def test_parameters_and_memory_of_a_small_llama_are_the_hand_computed_ones():
    h, i, n, v, kv = 256, 688, 4, 1000, 2 * 32  # kv hidden: 2 heads of 256 / 8
    config = LlamaConfig(**SMALL)
    per_layer = h * h + 2 * h * kv + h * h + 3 * h * i + 2 * h  # q, k, v, o, gate/up/down, two RMSNorms
    by_hand = v * h + n * per_layer + h + v * h  # embeddings, layers, final norm, untied head
    lora_by_hand = n * 8 * ((h + h) + (h + kv) + (h + kv) + (h + h))  # r·(in + out) on q, k, v, o
    total, lora = count_parameters(config, ["q_proj", "k_proj", "v_proj", "o_proj"], 8)
    assert (total, lora) == (by_hand, lora_by_hand)
    shape = model_shape(config)
    assert (shape.hidden, shape.layers, shape.kv_hidden, shape.intermediate, shape.vocab) == (h, n, kv, i, v)

    tokens = 2 * 128
    elements = 8 * h + 3 * kv + 4 * i
    full = memory_plan(
        total, 0, shape, lora_enabled=False, micro_batch=2, max_length=128, compute_bytes=2, checkpointing=False
    )
    assert full["weights"] == 4 * total and full["gradients"] == 4 * total and full["adamw_state"] == 8 * total
    assert full["ddp_buckets"] == 4 * total and full["activations"] == tokens * elements * n * 2
    assert full["logits"] == tokens * v * 6 and full["total"] == sum(v for k, v in full.items() if k != "total")
    lora_plan = memory_plan(
        total, lora, shape, lora_enabled=True, micro_batch=2, max_length=128, compute_bytes=2, checkpointing=True
    )
    assert lora_plan["weights"] == 2 * total + 4 * lora and lora_plan["adamw_state"] == 8 * lora
    assert lora_plan["activations"] == tokens * (h * n + elements) * 2  # layer inputs + one layer recomputed


def test_the_8b_plan_counts_llama_3_1_8b_and_refuses_full_fine_tuning_on_80_gb(capsys):
    model = ["--set", "model.base=configs/models/llama-3.1-8b", "--set", "model.max_length=3080"]
    small = [x for stage in ("warmup", "anchor", "train") for x in ("--set", f"{stage}.micro_batch_size=1")]
    assert main(["plan", *model, *small]) == 0  # LoRA fits
    out = capsys.readouterr().out
    assert "8.03 B parameters" in out and out.count(" fits ") == 3
    assert main(["plan", *model, *small, "--set", "train.lora.enabled=false"]) == 2
    captured = capsys.readouterr()
    assert "DOES NOT FIT (full fine-tuning" in captured.out and "change: train.lora.enabled=true" in captured.out
    assert "change: train.strategy=fsdp" in captured.out and "will not fit" in captured.err
    fsdp = [
        "--set",
        "train.strategy=fsdp",
        "--set",
        "train.num_workers=8",
        "--set",
        "train.gradient_checkpointing=true",
    ]
    assert main(["plan", *model, *small, "--set", "train.lora.enabled=false", *fsdp]) == 0  # sharded over 8 GPUs
    assert "fits (full fine-tuning, FSDP over 8 GPUs" in capsys.readouterr().out
    assert main(["plan", *model, *small, "--gpu-memory-gb", "16"]) == 2  # even LoRA's bf16 base is 15.6 GiB


@pytest.mark.parametrize("checkpointing", [False, True])
def test_checkpointing_is_what_brings_long_sequences_under_a_small_gpu(checkpointing):
    total, lora = count_parameters(LlamaConfig(**SMALL), ["q_proj"], 8)
    plan = memory_plan(
        total,
        lora,
        model_shape(LlamaConfig(**SMALL)),
        lora_enabled=True,
        micro_batch=8,
        max_length=8192,
        compute_bytes=2,
        checkpointing=checkpointing,
    )
    assert (plan["activations"] < 1 * GIB) == checkpointing


def test_fsdp_divides_the_states_by_the_shards_and_adds_two_gathered_units():
    config = LlamaConfig(**SMALL)
    total, _ = count_parameters(config, None, 8)
    shape = model_shape(config)
    common = dict(lora_enabled=False, micro_batch=1, max_length=128, compute_bytes=2, checkpointing=False)
    ddp, fsdp = memory_plan(total, 0, shape, **common), memory_plan(total, 0, shape, **common, shards=4)
    assert (fsdp["weights"], fsdp["gradients"], fsdp["adamw_state"]) == (total, total, 2 * total)  # 4, 4, 8 B / 4
    assert fsdp["ddp_buckets"] == 0 < ddp["ddp_buckets"] and ddp["fsdp_gathered"] == 0
    h, i = config.hidden_size, config.intermediate_size
    assert fsdp["fsdp_gathered"] == 2 * max(4 * h * h + 3 * h * i, config.vocab_size * h) * 4
    assert fsdp["activations"] == ddp["activations"] and fsdp["total"] < ddp["total"]
