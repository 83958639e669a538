"""One typed configuration for every lead-ray entry point.

A config is a tree of dataclasses, declared here section by section. It is read from YAML, then
`--set section.key=value` overrides are applied, then every field is type-checked and range-checked
(typed.py). Errors name the offending key (and the file it came from) and say what was expected.

Range rules live next to each field as metadata (`ge`, `gt`, `le`, `lt`, `choices`) so the
reference in docs/CONFIG.md can be generated from this file alone.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lead_ray.typed import ConfigError, apply_override, build, setting
from lead_ray.typed import reference_markdown as typed_reference

__all__ = ["ConfigError", "Config", "load_config", "config_from_dict", "apply_override", "to_dict"]

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
    difficulty_k: int = setting(7, "Difficulty clusters = bandit arms (k-means on IFD; LEAD: 7).", ge=1)
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
    near_dup_search: str = setting(
        "auto",
        "How a near-duplicate partition is searched: 'exact' (every earlier point, blocked matrix products: cost "
        "grows with points², no pair missed), 'hnsw' (hnswlib k-NN over NEIGHBOURS = 5 neighbours: approximate) "
        "or 'auto' (exact up to 32,768 points in a partition, hnsw above).",
        choices=("auto", "exact", "hnsw"),
    )
    hnsw_m: int = setting(16, "hnswlib graph degree M.", ge=2)
    hnsw_ef: int = setting(100, "hnswlib ef for construction and search.", ge=10)


SELECTION_METHODS = ("lead", "random", "full", "ppl", "ifd", "length", "rescore")


@dataclass
class SelectionConfig:
    method: str = setting(
        "lead",
        "lead (bandit + IDU) or a baseline through the same trainer: random, full (whole pool), ppl (static top "
        "IU₀), ifd (static top IFD < 1), length (static longest responses), rescore (re-score the whole pool "
        "every round, top loss in the bandit's cluster).",
        choices=SELECTION_METHODS,
    )
    exp3_gamma: float = setting(
        0.1, "EXP3 exploration rate γ (the official code's --beta; ALGORITHM.md §10 D15).", gt=0, le=1
    )
    smoothing_b: float = setting(0.1, "IDU smoothing b: U ← (1−b)(L + ΔL̂′) + b·U_prev (0 = no smoothing).", ge=0, le=1)
    rho: float = setting(
        0.015, "Share ρ of each task group's eligible samples taken per round (LEAD: 0.015).", gt=0, le=1
    )
    min_per_group: int = setting(
        0, "Lift ⌊ρ·n_T⌋ to at least this many per task group (0 = ALGORITHM.md §7's rule).", ge=0
    )
    use_cap: int = setting(4, "Most times one sample may be selected (LEAD: 4; 1 = remove once used).", ge=1, le=255)
    budget_fraction: float = setting(
        0.025, "Stop once this share of the pool has been selected at least once (LEAD: 2.5%).", gt=0, le=1
    )
    budget_samples: int = setting(0, "Unique-sample budget as a count; overrides budget_fraction when > 0.", ge=0)
    max_rounds: int = setting(20, "Stop after this many rounds (LEAD: 20).", ge=1)
    static_passes: int = setting(
        1,
        "Passes a static baseline (random, ppl, ifd, length, full) makes over its fixed subset, reshuffled each pass "
        "(when selection.shuffle): 2 matches the training compute of a LEAD run that revisits its samples about twice "
        "(run_stats.json: samples_trained).",
        ge=1,
    )
    preset: str = setting(
        "robust",
        "Sets every switch left at 'preset' (cluster.difficulty_bins, cluster.ifd_above_one, selection.reward_norm, "
        "selection.delta, selection.utility): 'paper' = ALGORITHM.md as specified, 'robust' = the paper with "
        "equal-count difficulty arms (cluster.difficulty_bins=quantile), the one remedy measured better than the "
        "paper on noisy pools and no worse on a clean one (docs/BENCHMARKS.md).",
        choices=("paper", "robust"),
    )
    reward_norm: str = setting(
        "preset",
        "Bandit reward normalisation: 'minmax' over the whole history (the paper; every new maximum maps to +1) or "
        "'window' (z-score against the previous selection.reward_window rewards, squashed by z/(1+|z|): "
        "order-preserving, never saturates); 'preset' takes selection.preset's choice.",
        choices=("preset", "minmax", "window"),
    )
    reward_window: int = setting(10, "Rewards the 'window' normalisation compares a new reward with.", ge=2)
    delta: str = setting(
        "preset",
        "ΔL̂′ per 'round' (one scalar added to every sample, the paper) or per 'sample' (−η·⟨g(x), ĝ⟩ from the "
        "training backward pass: each sample's own gradient on the direction parameters against the predicted "
        "mean gradient), or 'update' (⟨g(x), Δθ̂⟩ against the predicted parameter change of the round: the "
        "first-order change of the sample's loss under any optimizer; −η·ĝ is that change only under plain SGD); "
        "'preset' takes selection.preset's choice.",
        choices=("preset", "round", "sample", "update"),
    )
    utility: str = setting(
        "preset",
        "What selection ranks: 'idu' (U, the paper) or 'reducible' (U minus the warm-up model's loss on the answer, "
        "computed by scoring for IFD: learnable, not yet learnt, not noise); 'preset' takes selection.preset's "
        "choice.",
        choices=("preset", "idu", "reducible"),
    )
    rank_by: str = setting(
        "preset",
        "How selection weighs a sample's utility: per answer token ('mean', the paper: U is a mean NLL, which "
        "favours short answers), in all ('total': the rank key times the sample's supervised answer tokens n, the "
        "nats left to learn from it), or 'saturating' (the key times n/(n+m), m the pool's median n: short answers "
        "weigh little, long ones at most twice the median's). U, its updates and the reward are per-token means "
        "either way; 'preset' takes selection.preset's choice.",
        choices=("preset", "mean", "total", "saturating"),
    )
    use_delta: bool = setting(True, "Add the gradient-based ΔL̂′ to the loss in IDU (false: the 'no ΔL̂′' ablation).")
    arm_choice: str = setting(
        "exp3",
        "How a round's difficulty cluster is chosen: EXP3, or uniformly at random (the 'no bandit' ablation).",
        choices=("exp3", "uniform"),
    )
    shuffle: bool = setting(
        True, "Shuffle each round with a seeded RNG (ALGORITHM.md §10 D9); false keeps task-then-U order."
    )
    direction_visit: str = setting(
        "latest",
        "Which visit of a cluster stores its update direction (ALGORITHM.md §10 D5).",
        choices=("latest", "first"),
    )
    direction_params: str = setting(
        "last_layer",
        "Parameters whose mean gradient over a round is its update direction: the last layer's trainable ones, or "
        "all trainable.",
        choices=("last_layer", "all"),
    )
    store_shards: int = setting(1, "UtilityStore actors, each holding one index range of the pool.", ge=1)


EVAL_SETS = ("holdout", "gsm8k", "self_instruct", "mmlu")


@dataclass
class EvalConfig:
    holdout_fraction: float = setting(
        0.02,
        "Share of the clustered pool held out (by id hash, the same for every seed and method): never warmed up on, "
        "never selectable.",
        ge=0,
        lt=0.5,
    )
    holdout_max: int = setting(500, "Most held-out samples evaluated (the first by id).", ge=1)
    inloop_every: int = setting(
        1, "Rounds between held-out NLL measurements inside the training run (0 = off); Tune's ASHA stops on it.", ge=0
    )
    inloop_samples: int = setting(128, "Held-out samples in the in-loop NLL.", ge=1)
    sets: list[str] = setting(
        list(EVAL_SETS),
        "What `lead-ray eval` measures: holdout, gsm8k, self_instruct (response NLL), mmlu (answer-letter accuracy + "
        "NLL).",
        choices=EVAL_SETS,
    )
    data_dir: str = setting(
        "../shared/data/eval",
        "Folder holding gsm8k/, self_instruct_user_oriented/ and mmlu/ (relative paths: from the current folder).",
    )
    max_samples: int = setting(500, "Most samples per eval set (the first in file order); 0 = all.", ge=0)
    set_sizes: dict[str, int] = setting(
        {}, "Samples per named eval set, overriding max_samples for it (e.g. {gsm8k: 200, mmlu: 285}; 0 = all)."
    )
    set_offsets: dict[str, int] = setting(
        {},
        "Items skipped at the start of a named eval set, in the order the sizes take them (file order; MMLU's "
        "subjects in turn): {gsm8k: 200} scores items 201 on, for a check on items an earlier comparison never saw.",
    )
    generate_samples: int = setting(
        0, "GSM8K items (the first ones) generated for exact match; 0 = every one scored.", ge=0
    )
    mmlu_split: str = setting("test", "MMLU split scored.", choices=("dev", "val", "test"))
    generate: bool | None = setting(
        None, "GSM8K exact match by greedy generation: true, false, or null = unless the model is the tiny preset."
    )
    max_new_tokens: int = setting(256, "Generation length for GSM8K exact match.", ge=1)
    generate_batch_size: int = setting(16, "Prompts per generation batch.", ge=1)
    ray_min_samples: int = setting(
        4000,
        "Eval sets with more samples in all run as a Ray Data job over an actor pool; smaller ones in-process (on "
        "the CPU), unless GPUs are used.",
        ge=1,
    )
    use_gpu: bool | str = setting(
        "auto",
        "Evaluate on GPUs: true requests one GPU per eval actor (always the actor pool, never the driver), false "
        "never, auto = when the cluster has GPUs as the stage starts.",
        choices=GPU_CHOICES,
    )


@dataclass
class TrackingConfig:
    wandb: bool = setting(
        False,
        "Log every round (arm probabilities, rewards, ΔL̂′, β*, cos φ, losses, timings, U histograms) and the config "
        "to Weights & Biases.",
    )
    project: str = setting("lead-ray", "wandb project.")
    mode: str = setting(
        "offline",
        "wandb mode: offline needs no account (upload later with `wandb sync RUN_DIR/wandb/offline-run-*`).",
        choices=("offline", "online", "disabled"),
    )


@dataclass
class TuneConfig:
    space: dict[str, dict] = setting(
        {"selection.smoothing_b": {"grid": [0.0, 0.1]}, "selection.exp3_gamma": {"grid": [0.1, 0.3]}},
        "Search space: config key → {grid: [..]} | {choice: [..]} | {uniform: [lo, hi]} | {loguniform: [lo, hi]} | "
        "{randint: [lo, hi]}. cluster.* keys re-cluster per trial.",
    )
    search: str = setting(
        "grid",
        "grid/random (Ray's variant generator: grid points × num_samples, random draws) or optuna (TPE via "
        "OptunaSearch).",
        choices=("grid", "random", "optuna"),
    )
    num_samples: int = setting(1, "Samples of the space (for grid: repeats of the whole grid).", ge=1)
    metric: str = setting(
        "heldout_nll",
        "Metric to minimise, reported every round (needs eval.inloop_every ≥ 1).",
        choices=("heldout_nll", "mean_loss"),
    )
    asha: bool = setting(True, "Stop poor trials early with ASHA on the per-round metric.")
    grace_rounds: int = setting(2, "Rounds every trial runs before ASHA may stop it.", ge=1)
    max_concurrent: int = setting(
        0, "Trials at once; 0 = as many as the cluster's CPUs (or GPUs) fit, one Train run each.", ge=0
    )


@dataclass
class TrainConfig(TrainingSettings):
    checkpoint_every: int = setting(
        5, "Rounds between checkpoints (model + selection state); the last round always checkpoints.", ge=1
    )
    max_failures: int = setting(
        3,
        "Times Ray Train restarts the workers from the last checkpoint after a worker or selection-actor failure (-1 "
        "= always).",
        ge=-1,
    )
    placement_resources: dict[str, float] = setting(
        {},
        "Custom Ray resources (as `ray start --resources` declares them) that each Train worker, UtilityStore shard "
        "and the BanditActor of a run request, to keep them on chosen nodes (e.g. {trainer: 0.01}); {} = anywhere.",
    )


@dataclass
class Config:
    seed: int = setting(42, "Seed for every random choice.", ge=0)
    work_dir: str = setting(
        "runs/default", "Folder of this pipeline's stages: prepared/, models/, scored/, clustered/."
    )
    ray: RayConfig = field(default_factory=RayConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def stage_dir(self, stage: str) -> Path:
        """Where a stage writes: work_dir/<stage> (ingest.out overrides 'prepared').

        Absolute, resolved on the driver: Ray workers (Train workers especially) run in other folders.
        """
        if stage == "prepared" and self.ingest.out:
            return Path(self.ingest.out).resolve()
        return (Path(self.work_dir) / stage).resolve()


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read YAML (if given), apply `key.sub=value` overrides, validate, return a Config."""
    raw: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return config_from_dict(raw, overrides, origin)


def config_from_dict(raw: dict, overrides: list[str] | None = None, origin: str = "config") -> Config:
    """A validated Config from a raw mapping (as YAML gives it, or `to_dict` of another Config) and
    `key.sub=value` overrides; `raw` is not changed."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        apply_override(raw, item)
    return build(Config, raw, prefix="", origin=origin, check=_check_training)


def _check_training(built, section: str, origin: str) -> None:
    if isinstance(built, TrainingSettings):
        check_batch_sizes(built, built.num_workers, section, origin)


def check_batch_sizes(ts: TrainingSettings, world: int, section: str, origin: str = "config") -> None:
    """One optimizer step sees exactly `batch_size` samples whatever the number of workers: each of the
    `world` workers accumulates batch_size / (micro_batch_size · world) micro-batches. Refuses sizes
    that do not divide, naming sizes that do."""
    b, m = ts.batch_size, ts.micro_batch_size
    if b % (m * world) == 0:
        return
    if b % world:
        fix = f"use a {section}.batch_size that is a multiple of {world} ({world * max(1, round(b / world))}, ...)"
    else:
        micro = [d for d in range(b // world, 0, -1) if (b // world) % d == 0]
        sizes = " or ".join(map(str, micro[:4]))
        fix = f"use {section}.micro_batch_size {sizes}, or {section}.batch_size {m * world} or {2 * m * world}"
    raise ConfigError(
        f"{origin}: '{section}.batch_size' = {b} is not a multiple of {section}.micro_batch_size × workers "
        f"= {m} × {world} = {m * world}, so an optimizer step would not see {b} samples; {fix}"
    )


def resolve_paths(cfg: Config, base: Path | None = None) -> Config:
    """A copy whose relative paths (work_dir, ingest inputs and output, model and tokenizer files, the eval
    data folder) are absolute, against `base` (default: the current folder). Commands do this before any
    Ray worker, actor or Tune trial sees the config: those run in folders of their own."""
    base = Path(base or Path.cwd())
    out = copy.deepcopy(cfg)

    def absolute(p: str) -> str:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    out.work_dir = absolute(out.work_dir)
    out.ingest.inputs = [absolute(p) for p in out.ingest.inputs]
    out.ingest.out = absolute(out.ingest.out) if out.ingest.out else None
    out.model.base = out.model.base if out.model.base == "tiny" else absolute(out.model.base)
    out.model.tokenizer = out.model.tokenizer if out.model.tokenizer == "bytes" else absolute(out.model.tokenizer)
    out.eval.data_dir = absolute(out.eval.data_dir)
    return out


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


# What a resumed run may change: when it stops and on what hardware. Every other key under these
# sections decides what is selected and how it is trained, so changing it mid-run gives a run that
# is neither the old config's nor the new one's.
RESUME_MAY_CHANGE = {
    "selection.max_rounds",
    "selection.budget_fraction",
    "selection.budget_samples",
    "train.num_workers",
    "train.use_gpu",
    "train.micro_batch_size",
    "train.checkpoint_every",
    "train.max_failures",
    "train.placement_resources",
}
RESUME_SECTIONS = ("seed", "work_dir", "model", "selection", "train")


def resume_conflicts(saved: dict, new: dict) -> list[str]:
    """`key: saved -> new` for every result-changing key that differs between a run's saved config and
    the one it is resumed with (both as `to_dict` gives them)."""

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a, b = dict(flat(saved)), dict(flat(new))
    keys = [k for k in dict.fromkeys([*a, *b]) if k.split(".")[0] in RESUME_SECTIONS and k not in RESUME_MAY_CHANGE]
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def reference_markdown() -> str:
    """The config reference table (README links to docs/CONFIG.md, generated from this)."""
    return typed_reference(Config)
