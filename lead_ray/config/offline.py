"""The offline stages' config sections: Ray, ingest, model, warm-up, score, cluster (config/__init__.py has the
root and how a config is loaded)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lead_ray.typed import setting

INPUT_FORMATS = ("auto", "alpaca", "prompt_completion", "question_answer", "sharegpt", "messages", "self_instruct")


GPU_CHOICES = ("auto", True, False)


@dataclass
class RayConfig:
    address: str | None = setting(
        None, "Ray cluster to join; None starts an embedded local Ray (RAY_ADDRESS is honoured)."
    )
    num_cpus: int | None = setting(None, "CPUs for an embedded local Ray; None uses all.", ge=1)
    object_store_memory_mb: int | None = setting(None, "Object store size for an embedded local Ray, MiB.", ge=64)


@dataclass
class IngestConfig:
    inputs: list[str] = setting(
        [], "Input files or folders (JSON, JSONL, Parquet, optionally .gz). CLI positionals replace this."
    )
    out: str | None = setting(
        None, "Output folder of prepare; None = work_dir/prepared. The CLI's --out replaces this."
    )
    format: str = setting(
        "auto", "Input format for every file, or 'auto' to detect it per file.", choices=INPUT_FORMATS
    )
    max_sample_chars: int = setting(
        24_000, "Samples longer than this (all turns together) are rejected as over-long.", ge=1
    )
    strict: bool = setting(False, "Stop at the first bad row with an error naming file, line and field.")
    chunk_mb: float = setting(16.0, "Target size of one parse task; large JSONL files are split at line breaks.", gt=0)
    rows_per_file: int = setting(200_000, "Most rows in one output Parquet file of the pool.", ge=1)
    dedup_buckets: int = setting(
        0,
        "Hash buckets for exact de-duplication (each one is de-duplicated in memory); 0 = one per 512 MB of input.",
        ge=0,
    )


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TinyModelConfig:
    hidden_size: int = setting(128, "Tiny preset: hidden size.", ge=8)
    intermediate_size: int = setting(512, "Tiny preset: MLP size.", ge=8)
    num_layers: int = setting(2, "Tiny preset: transformer layers.", ge=1)
    num_heads: int = setting(4, "Tiny preset: attention heads (must divide hidden_size).", ge=1)


@dataclass
class ModelConfig:
    base: str = setting(
        "tiny",
        "Base model: 'tiny' (a small Llama built from model.tiny), a .gguf file, or a local HF folder (safetensors).",
    )
    tokenizer: str = setting(
        "bytes",
        "Tokenizer of the tiny preset: 'bytes' (byte-level, no files) or a .gguf file / HF folder to read one from.",
    )
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    trust_remote_code: bool = setting(
        False, "Allow model code from the model folder (off: never run code shipped with weights)."
    )
    dtype: str = setting(
        "auto",
        "Compute dtype: auto = bfloat16 on a GPU with bf16, float32 on CPU and other GPUs. Training keeps trainable "
        "weights in float32 and autocasts the forward pass to this dtype.",
        choices=("auto", "float32", "bfloat16", "float16"),
    )
    max_length: int = setting(1024, "Most tokens per sample (LEAD uses 3080); longer samples are truncated.", ge=16)


@dataclass
class LoraSettings:
    enabled: bool = setting(True, "Train LoRA adapters instead of all weights.")
    r: int = setting(32, "LoRA rank (LEAD: 32 for warm-up, 64 online).", ge=1)
    alpha: int = setting(16, "LoRA alpha.", ge=1)
    dropout: float = setting(0.1, "LoRA dropout.", ge=0, lt=1)
    target_modules: list[str] = setting(
        LORA_TARGETS, "Module names that get adapters (those absent from the model are skipped)."
    )


@dataclass
class TrainingSettings:
    """What warm-up and online training share: optimizer, LEAD's LR schedule, batching, workers, LoRA."""

    lr: float = setting(2e-5, "Peak learning rate (AdamW, weight decay 0, no clipping).", gt=0)
    lr_decay: float = setting(
        0.995, "LR multiplier every lr_decay_every optimizer steps (LEAD: 0.995 online, 0.998 warm-up).", gt=0, le=1
    )
    lr_decay_every: int = setting(8, "Optimizer steps between LR decays.", ge=1)
    batch_size: int = setting(8, "Samples per optimizer step over all workers (LEAD: 8).", ge=1)
    micro_batch_size: int = setting(4, "Samples per forward pass on one worker.", ge=1)
    num_workers: int = setting(1, "Ray Train workers (DDP).", ge=1)
    use_gpu: bool | str = setting(
        "auto",
        "Train on GPUs: true requests one per worker (on an autoscaling cluster, that request starts GPU nodes), "
        "false never, auto = when the cluster has GPUs as the stage starts.",
        choices=GPU_CHOICES,
    )
    gradient_checkpointing: bool = setting(
        False,
        "Recompute each layer's activations in the backward pass instead of keeping them: activation memory falls "
        "from every layer's to about one layer's, for roughly a third more compute. Not with selection.delta "
        "sample, update or anchor (their per-sample products read the kept activations).",
    )
    placement_timeout_s: float = setting(
        600.0,
        "Seconds to wait for the cluster to hold every worker (an autoscaler is asked for them meanwhile) before the "
        "stage stops with an error naming what it asked for and what the cluster has; 0 = do not wait (Ray Train "
        "then retries placement on its own, silently).",
        ge=0,
    )
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(r=64))


@dataclass
class WarmupConfig(TrainingSettings):
    lr_decay: float = setting(
        0.998, "LR multiplier every lr_decay_every optimizer steps (LEAD warm-up: 0.998).", gt=0, le=1
    )
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(r=32))
    fraction: float = setting(0.01, "Share of the pool drawn at random for warm-up training.", gt=0, le=1)
    max_samples: int = setting(6000, "Cap on warm-up samples (LEAD: 6k).", ge=1)
    epochs: int = setting(4, "Passes over the warm-up sample.", ge=1)


@dataclass
class AnchorConfig(TrainingSettings):
    """`lead-ray anchor`: a reference model trained on pairs the user trusts, for `selection.utility: learnability`."""

    data: str | None = setting(
        None,
        "A prepared pool of pairs you trust (`lead-ray prepare FILES --out DIR`, then DIR/pool): a few hundred from "
        "the sources you care about, checked by hand. None: no anchor (`selection.utility: learnability` needs one).",
    )
    val_fraction: float = setting(
        0.2,
        "Share of the anchor (by id hash) kept out of training to stop it: its NLL is checked every epoch.",
        gt=0,
        lt=1,
    )
    max_epochs: int = setting(12, "Most passes over the anchor's training part.", ge=1)
    patience: int = setting(
        1, "Epochs without a lower held-out anchor NLL before training stops; the best epoch's model is kept.", ge=0
    )
    lr: float = setting(1e-4, "Peak learning rate (AdamW, weight decay 0).", gt=0)
    lr_decay: float = setting(1.0, "LR multiplier every lr_decay_every optimizer steps (1 = constant).", gt=0, le=1)
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(r=32))


@dataclass
class ScoreConfig:
    ifd: bool = setting(True, "Score IFD with the warm-up model (needs `lead-ray warmup`); off: ifd = 0.")
    batch_tokens: int = setting(
        16384, "Padded-token budget of one scoring batch (samples are bucketed by length).", ge=16
    )
    max_batch_size: int = setting(64, "Most samples in one scoring batch.", ge=1)
    unit_rows: int = setting(2048, "Rows per resumable scoring unit; a rerun skips finished units.", ge=1)
    actors: int = setting(
        0, "Scoring actors; 0 = one per GPU (at least one when use_gpu is true), else one per 2 CPUs.", ge=0
    )
    use_gpu: bool | str = setting(
        "auto",
        "Score on GPUs: true requests one GPU per scoring actor (on an autoscaling cluster, that request starts GPU "
        "nodes), false never, auto = when the cluster has GPUs as the stage starts.",
        choices=GPU_CHOICES,
    )
    embed_batch_size: int = setting(64, "Prompts per embedding batch.", ge=1)
    embed_max_tokens: int = setting(
        128, "Prompt tokens kept for the embedding (all-MiniLM-L6-v2 reads at most 256).", ge=8, le=512
    )


@dataclass
class ClusterConfig:
    difficulty_k: int = setting(
        7, "Difficulty clusters = bandit arms, cut from IFD by cluster.difficulty_bins (LEAD: 7).", ge=1
    )
    task_groups: str = setting(
        "embedding",
        "Task groups inside a difficulty cluster: 'embedding' (k-means on prompt embeddings), 'source' or 'task' "
        "label.",
        choices=("embedding", "source", "task"),
    )
    task_k: int = setting(8, "Embedding task clusters per difficulty cluster (fewer when the cluster is small).", ge=1)
    fit_sample: int = setting(20000, "Points per difficulty cluster used to fit the embedding k-means.", ge=10)
    near_dup_threshold: float = setting(
        0.97, "Cosine similarity at or above which two prompts are flagged near-duplicates.", gt=0, le=1
    )
    drop_near_dups: bool = setting(
        False, "Drop the later member of each near-duplicate pair (else only flag and count)."
    )
    near_dup_partition_rows: int = setting(
        20_000,
        "Most points one near-duplicate search holds: a larger pool is split into ⌈N / this⌉ partitions by k-means on "
        "the prompt embeddings and searched one partition per task (pairs across partitions are missed: "
        "docs/SCALING.md measures how many); a pool at or under this size gets one search over all points.",
        ge=2,
    )
    difficulty_bins: str = setting(
        "preset",
        "How IFD is cut into arms: 'kmeans' (1-D k-means, the paper; arms of very uneven size) or 'quantile' "
        "(equal-count bins, ties kept together); 'preset' takes selection.preset's choice.",
        choices=("preset", "kmeans", "quantile"),
    )
    ifd_above_one: str = setting(
        "preset",
        "Pairs whose IFD exceeds 1 (the instruction does not help predict the response: often a mismatched pair): "
        "'keep' them in the zero-IFD arm (the paper) or 'drop' them before clustering, counted in clusters.json; "
        "'preset' takes selection.preset's choice.",
        choices=("preset", "keep", "drop"),
    )
    end_nll_above: float | None = setting(
        None,
        "Drop pairs whose end-of-turn token costs the base model more than this many nats (iu0_end: the answer "
        "stops where the model is sure it goes on, as a cut-off answer does; 13.8 nats = a chance of one in a "
        "million) before clustering, counted in clusters.json; None keeps every pair (the paper). In neither "
        "preset: at 13.8 a declared confirmation found it worse than the default on two sets (docs/ALGORITHM.md §12).",
        gt=0,
    )
    end_z_above: float | None = setting(
        None,
        "Drop pairs whose iu0_end is an outlier among their own source group's before clustering: robust z-score "
        "(x − median) / (1.4826 · MAD) within the group above this, and iu0_end above ln 1000 ≈ 6.9 nats; a group "
        "under 30 scored pairs is judged against the whole pool (core/gate.py). 3.5 is Iglewicz and Hoaglin's "
        "outlier rule. Unlike end_nll_above it spares a source whose answers all end where the base model does "
        "not expect (GSM8K's '#### N'). Counted in clusters.json; None keeps every pair (the paper).",
        gt=0,
    )
    near_dup_search: str = setting(
        "auto",
        "How a near-duplicate partition is searched: 'exact' (every earlier point, blocked matrix products: cost "
        "grows with points², no pair missed), 'hnsw' (hnswlib k-NN over NEIGHBOURS = 5 neighbours: approximate) "
        "or 'auto' (exact up to 32,768 points in a partition, hnsw above).",
        choices=("auto", "exact", "hnsw"),
    )
    hnsw_m: int = setting(16, "hnswlib graph degree M.", ge=2)
    hnsw_ef: int = setting(100, "hnswlib ef for construction and search.", ge=10)
