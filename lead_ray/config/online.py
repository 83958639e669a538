"""The run's config sections: selection, train, eval, tracking, tune (config/__init__.py has the root and how a
config is loaded)."""

from __future__ import annotations

from dataclasses import dataclass

from lead_ray.config.offline import GPU_CHOICES, TrainingSettings
from lead_ray.typed import setting

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
    trim_top: float = setting(
        0.0,
        "Share τ of each task group's eligible samples, the highest-ranked, that a round passes over before it takes "
        "its ⌊ρ·n_T⌋ (0 = the paper). Broken pairs (truncated, swapped, mismatched) keep a high loss and gather at "
        "the top of any loss-type ranking; ρ + τ must stay below 1.",
        ge=0,
        lt=1,
    )
    use_cap: int = setting(4, "Most times one sample may be selected (LEAD: 4; 1 = remove once used).", ge=1, le=255)
    budget_fraction: float = setting(
        0.025, "Stop once this share of the pool has been selected at least once (LEAD: 2.5%).", gt=0, le=1
    )
    budget_samples: int = setting(0, "Unique-sample budget as a count; overrides budget_fraction when > 0.", ge=0)
    max_rounds: int = setting(20, "Stop after this many rounds (LEAD: 20).", ge=1)
    static_passes: float = setting(
        1.0,
        "Passes a static baseline (random, ppl, ifd, length, full) makes over its fixed subset, reshuffled each pass "
        "(when selection.shuffle): 2 matches the training samples of a LEAD run that revisits its samples about twice "
        "(run_stats.json: samples_trained); a fraction trains that share of one more pass (1.6: the subset once, then "
        "60% of it again), to match a run's trained tokens instead.",
        ge=1,
    )
    preset: str = setting(
        "robust",
        "Sets every switch left at 'preset' (cluster.difficulty_bins, cluster.ifd_above_one, selection.reward_norm, "
        "selection.delta, selection.utility, selection.rank_by, selection.end_token): 'paper' = ALGORITHM.md as "
        "specified, 'robust' = the paper with equal-count difficulty arms (cluster.difficulty_bins=quantile), the "
        "one remedy measured better than the paper on noisy pools and no worse on a clean one (docs/BENCHMARKS.md).",
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
        "first-order change of the sample's loss under any optimizer; −η·ĝ is that change only under plain SGD), "
        "or 'anchor' (⟨g(x), g_anchor⟩ against the mean gradient of selection.anchor_batch pairs of anchor.data, "
        "taken afresh each round: how far a step on x moves the loss on pairs you trust; standardised over the "
        "round and scaled to its spread of losses, times selection.anchor_weight); 'preset' takes "
        "selection.preset's choice.",
        choices=("preset", "round", "sample", "update", "anchor"),
    )
    anchor_batch: int = setting(
        8,
        "selection.delta=anchor: anchor pairs whose mean gradient is the round's target (one forward pass over them "
        "per round, backward through the direction layer only).",
        ge=1,
    )
    anchor_weight: float = setting(
        1.0,
        "selection.delta=anchor: the alignment term's spread over a round as a multiple of the round's spread of "
        "losses (0: alignment is measured and logged but reorders nothing).",
        ge=0,
    )
    utility: str = setting(
        "preset",
        "What selection ranks: 'idu' (U, the paper), 'reducible' (U minus the warm-up model's loss on the answer, "
        "computed by scoring for IFD: learnable, not yet learnt, not noise) or 'learnability' (U minus the loss of "
        "a reference model trained on pairs you trust, `lead-ray anchor` with anchor.data; RHO-LOSS, JEST); "
        "'preset' takes selection.preset's choice.",
        choices=("preset", "idu", "reducible", "learnability"),
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
    end_token: str = setting(
        "preset",
        "Whether U counts the answer's end-of-turn token: 'count' (the paper: U is the mean NLL over every "
        "supervised token) or 'skip' (U over the answer's other tokens; training still learns when to stop). A "
        "cut-off answer ends where the model does not expect it to, and that one token's surprise can double a "
        "short answer's U. Needs a pool scored by this lead-ray (column iu0_content); 'preset' takes "
        "selection.preset's choice.",
        choices=("preset", "count", "skip"),
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
    direction_dims: int = setting(
        1_048_576,
        "A round's direction longer than this is stored as a count sketch of this many numbers (full fine-tuning of "
        "a large model: the last layer is hundreds of MB): ΔL̂′ needs only its norms and inner products, which the "
        "sketch keeps in expectation (a norm's relative spread ≈ √(2/dims)). 0 = always the full vector. Per-sample "
        "ΔL̂′ (delta: sample or update) needs the full vector and ignores this.",
        ge=0,
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
        "What `lead-ray eval` measures: holdout, gsm8k, self_instruct (response NLL), mmlu (answer-letter accuracy, "
        "NLL, and choice_nll: the NLL among the four letters).",
        choices=EVAL_SETS,
    )
    data_dir: str = setting(
        "../shared/data/eval",
        "Folder holding gsm8k/, self_instruct_user_oriented/ and mmlu/ (relative paths: from the current folder); "
        "`lead-ray eval-data --out DIR` fetches them from the Hugging Face Hub. The default is the development "
        "machine's copy.",
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
    actors: int = setting(
        0,
        "Eval actors; 0 = one per GPU the cluster has as the stage starts (at least one when use_gpu is true), "
        "else one per 2 CPUs. On an autoscaling cluster, set it: the request is what starts the GPU nodes.",
        ge=0,
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
    strategy: str = setting(
        "ddp",
        "How the Train workers share the model: 'ddp' (every worker holds all of it, gradients all-reduced) or "
        "'fsdp' (PyTorch FSDP2: weights, gradients and optimizer state sharded over the workers, for full "
        "fine-tuning of a model one GPU cannot hold; checkpoints written sharded, with torch.distributed.checkpoint). "
        "fsdp is not with selection.delta sample, update or anchor.",
        choices=("ddp", "fsdp"),
    )
    keep_checkpoints: int = setting(
        2,
        "Checkpoints kept under run/ray_train (the latest; older ones are deleted as new ones land). Only the final "
        "one holds model/ (what eval loads); every one holds trainer.pt, enough to resume.",
        ge=1,
    )
    checkpoint_every: int = setting(
        5, "Rounds between checkpoints (model + selection state); the last round always checkpoints.", ge=1
    )
    max_failures: int = setting(
        3,
        "Times Ray Train restarts the workers from the last checkpoint after a worker or selection-actor failure (-1 "
        "= always); the warm-up and anchor trainers restart from their last epoch as often.",
        ge=-1,
    )
    placement_resources: dict[str, float] = setting(
        {},
        "Custom Ray resources (as `ray start --resources` declares them) that each Train worker, UtilityStore shard "
        "and the BanditActor of a run request, to keep them on chosen nodes (e.g. {trainer: 0.01}); {} = anywhere.",
    )
