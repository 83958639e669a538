"""One loader for causal LMs: a tiny preset built from a config, a GGUF file, or a local HF folder.

Every model is first *materialised* as a Hugging Face folder with safetensors weights
(`materialize_model`): the tiny preset is built with a fixed seed and saved, a GGUF file is
de-quantised once and saved. Every later load, in any Ray worker, reads that folder, so all workers
see identical weights, GGUF's slow de-quantisation happens once, and weights are never unpickled
(`use_safetensors=True`). No `trust_remote_code` unless the config sets `model.trust_remote_code`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import torch

from lead_ray.config import LoraSettings, ModelConfig
from lead_ray.files import atomic_path

DONE = ".lead-ray-complete"


def byte_tokenizer():
    """A byte-level tokenizer needing no files: 256 byte tokens plus pad/bos/eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: one token per byte
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|pad|>", "<|bos|>", "<|eos|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|eos|>")


def _split_gguf(path: str) -> tuple[str, str]:
    p = Path(path)
    return str(p.parent), p.name


def load_tokenizer(source: str, trust_remote_code: bool = False):
    """A tokenizer from 'bytes', a .gguf file, or an HF folder; given a pad token if it lacks one."""
    from transformers import AutoTokenizer

    if source == "bytes":
        tok = byte_tokenizer()
    elif source.endswith(".gguf"):
        folder, name = _split_gguf(source)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    else:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def materialize_model(model_cfg: ModelConfig, dest: str | Path, seed: int) -> Path:
    """Make `dest` an HF folder (safetensors + tokenizer) holding the configured base model; idempotent."""
    dest = Path(dest)
    if model_cfg.base not in ("tiny",) and not model_cfg.base.endswith(".gguf"):
        if not Path(model_cfg.base, "config.json").exists():
            raise FileNotFoundError(
                f"model.base: {model_cfg.base} is neither 'tiny', a .gguf file, nor an HF folder with config.json"
            )
        return Path(model_cfg.base)  # already an HF folder: load it in place
    source = _source_key(model_cfg, seed)
    if (dest / DONE).exists() and (dest / DONE).read_text() == source:
        return dest  # built from the same model.base (and tiny settings): reuse; anything else is rebuilt
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if model_cfg.base == "tiny":
        tok = load_tokenizer(model_cfg.tokenizer, model_cfg.trust_remote_code)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(tiny_config(model_cfg, tok))
    else:
        if not Path(model_cfg.base).is_file():
            raise FileNotFoundError(f"model.base: no such GGUF file: {model_cfg.base}")
        folder, name = _split_gguf(model_cfg.base)
        tok = load_tokenizer(model_cfg.base)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, use_kernels=False)
        # The weights are de-quantised float32 now, but transformers still flags the model as GGUF-quantised
        # and refuses to save it: copy them into a plain model of the same architecture.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        del loaded
    with atomic_path(dest) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / DONE).write_text(source)
    return dest


def _source_key(model_cfg: ModelConfig, seed: int) -> str:
    """What a materialised base model was built from, recorded in its DONE marker."""
    key = {"base": model_cfg.base, "tokenizer": model_cfg.tokenizer}
    if model_cfg.base == "tiny":
        key |= {"tiny": dataclasses.asdict(model_cfg.tiny), "max_length": model_cfg.max_length, "seed": seed}
    return json.dumps(key, sort_keys=True) + "\n"


def compute_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The dtype a model computes in on `device`: the config's, or (auto) bf16 on a GPU that supports it
    and float32 everywhere else. Follows the device the caller was given, not what the host has."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float32  # CPU, and GPUs without bf16 (T4, V100): float16 training would need loss scaling


def assigned_device(gpu_ids: list) -> torch.device:
    """The device of a process Ray gave `gpu_ids`; refuses a GPU this torch build cannot use, which
    would otherwise compute on the CPU while holding the GPU."""
    if not gpu_ids:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"Ray assigned GPU(s) {gpu_ids} to this process, but torch {torch.__version__} "
            f"cannot use them (torch.version.cuda = {torch.version.cuda}): install a CUDA build of "
            f"torch on the GPU nodes (k8s/Dockerfile pins one)"
        )
    return torch.device("cuda", 0)  # Ray sets CUDA_VISIBLE_DEVICES to the assigned ids


def ray_device() -> torch.device:
    """This process's device: a GPU when Ray assigned one to it (a task or actor with num_gpus, a Train
    worker with use_gpu), else the CPU; the driver and in-process callers get the CPU."""
    import ray

    return assigned_device(
        ray.get_runtime_context().get_accelerator_ids().get("GPU", []) if ray.is_initialized() else []
    )


def train_worker_device() -> torch.device:
    """A Ray Train worker's device (Ray Train maps its GPU among those the node's workers share),
    after the same check that torch can use a GPU Ray assigned."""
    import ray.train.torch

    ray_device()
    return ray.train.torch.get_device()


def tiny_config(model_cfg: ModelConfig, tok):
    """The tiny preset's LlamaConfig (a 2-layer model built from settings, the byte tokenizer's vocabulary)."""
    from transformers import LlamaConfig

    t = model_cfg.tiny
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_heads,
        max_position_embeddings=model_cfg.max_length,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )


def load_model(
    folder: str | Path, model_cfg: ModelConfig, device: torch.device | str = "cpu", master_float32: bool = False
):
    """(model, tokenizer) from a materialised HF folder, loaded straight onto `device`.

    master_float32: load the weights in float32 whatever the compute dtype, for full fine-tuning (a
    step of lr ~2e-5 is below bf16's resolution for most weights: the update would round to zero);
    the forward pass then runs under autocast (`training_autocast`)."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device)
    dtype = torch.float32 if master_float32 else compute_dtype(model_cfg.dtype, device)
    model = AutoModelForCausalLM.from_pretrained(
        str(folder),
        dtype=dtype,
        use_safetensors=True,
        trust_remote_code=model_cfg.trust_remote_code,
        device_map=str(device) if device.type == "cuda" else None,
        # transformers >= 5.2x swaps layers for Hugging Face Hub kernels by default on CUDA: code fetched at load
        # time (fails offline, and the 'kernels' package is optional) that changes the numerics per host. Off:
        # every worker runs the same PyTorch layers, on a cluster with no internet too.
        use_kernels=False,
    )
    model.to(device)
    return model, load_tokenizer(str(folder), model_cfg.trust_remote_code)


def load_for_training(
    folder: str | Path, model_cfg: ModelConfig, lora: LoraSettings, device: torch.device, checkpointing: bool = False
):
    """(model, tokenizer, autocast dtype or None) for warm-up and online training.

    Trainable weights are float32 (master weights); frozen ones (the LoRA base) stay in the compute
    dtype. When that is not float32, the forward pass runs under autocast to it. `checkpointing`: activations
    recomputed in the backward pass (non-reentrant, so a LoRA's frozen inputs need no gradient)."""
    dtype = compute_dtype(model_cfg.dtype, device)
    model, tok = load_model(folder, model_cfg, device, master_float32=not lora.enabled)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = apply_lora(model, lora)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model, tok, (dtype if dtype != torch.float32 else None)


def training_autocast(device: torch.device, dtype: torch.dtype | None):
    """The context a training forward pass runs in: autocast to `dtype`, or nothing (float32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def apply_lora(model, lora: LoraSettings):
    """Wrap the model with LoRA adapters (peft) when enabled; otherwise return it unchanged."""
    if not lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in lora.target_modules if m in present]
    if not targets:
        raise ValueError(f"none of the LoRA target modules {lora.target_modules} exist in this model")
    return get_peft_model(
        model,
        LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
        ),
    )


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / "adapter_config.json").exists()


def is_saved_model(folder: str | Path) -> bool:
    """A stage's finished model folder: a full model (config.json) or a LoRA adapter."""
    return (Path(folder) / "config.json").exists() or is_adapter(folder)


def load_model_or_adapter(folder: str | Path, base_dir: str | Path | None, model_cfg: ModelConfig, device):
    """(model, tokenizer) from a full-model folder, or a LoRA adapter folder on top of base_dir. The adapter is
    merged only into float32 weights: merged into bf16 ones, updates smaller than bf16's resolution would round
    away, so there it stays a separate (exact) branch."""
    if not is_adapter(folder):
        return load_model(folder, model_cfg, device)
    from peft import PeftModel

    if base_dir is None:
        raise FileNotFoundError(f"{folder} is a LoRA adapter; its base model folder is needed")
    base, tok = load_model(base_dir, model_cfg, device)
    model = PeftModel.from_pretrained(base, str(folder))
    if base.dtype == torch.float32:
        model = model.merge_and_unload()
    return model, tok


class ScoringModels:
    """The base model and the other models scoring reads (the warm-up model, the anchor), each loaded once. A LoRA
    adapter folder becomes a named adapter on the one base model, never merged (merged into bf16 weights a small
    update rounds away: about half of a 1e-3 relative one), so two adapters cost one model's memory; a full-model
    folder (full fine-tuning) is a model of its own. `use(name)` gives the model to score with: None the base."""

    def __init__(self, base_dir: str | Path, model_cfg: ModelConfig, device, **others: str | Path | None):
        self.base, self.tok = load_model(base_dir, model_cfg, device)
        self.peft, self.full, self.names = None, {}, []
        for name, folder in others.items():
            if folder is None:
                continue
            self.names.append(name)
            if not is_adapter(folder):
                self.full[name] = load_model(folder, model_cfg, device)[0].eval()
            elif self.peft is None:
                from peft import PeftModel

                self.peft = PeftModel.from_pretrained(self.base, str(folder), adapter_name=name)
            else:
                self.peft.load_adapter(str(folder), adapter_name=name)
        (self.peft or self.base).eval()

    def has(self, name: str) -> bool:
        return name in self.names

    @contextlib.contextmanager
    def use(self, name: str | None = None):
        if name in self.full:
            yield self.full[name]
        elif name is None and self.peft is not None:
            with self.peft.disable_adapter():
                yield self.peft
        elif name is None:
            yield self.base
        else:
            self.peft.set_adapter(name)
            yield self.peft
