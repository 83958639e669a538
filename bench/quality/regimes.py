"""bench/quality/run.py's settings: the regimes, the methods and variants it runs, and each run's overrides.

Fixed before any result is seen; nothing here is tuned on the eval sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"

BASELINE_VARIANTS = {
    "random-x2": ("random", ["selection.static_passes=2"]),
    # a filter's controls (issue 33): random and random-x2 on the pool the relative end-token gate leaves, so
    # that what dropping broken pairs gains is not credited to in-loop selection. Added 2026-12-07 before any run
    "random+end-z": ("random", ["cluster.end_z_above=3.5"]),
    "random-x2+end-z": ("random", ["selection.static_passes=2", "cluster.end_z_above=3.5"]),
    # token-matched controls (issue 33; declared 2026-12-07 20:24 UTC, before any run of them): random trained for
    # the tokens the design it controls trains, the mean ratio over its seeds so far, fixed before any run:
    # lead+quantile+anchor 1.32x random's, lead+quantile+end-z+trim 1.59x random+end-z's (0.80x random-x2+end-z's)
    "random-x1.3": ("random", ["selection.static_passes=1.3"]),
    "random-x1.6+end-z": ("random", ["selection.static_passes=1.6", "cluster.end_z_above=3.5"]),
}
# Robust LEAD (ALGORITHM.md §12): the paper with one switch on (each switch's own effect), and with all of them.
# Every method starts from selection.preset=paper (Regime.overrides), so `lead` is the paper's LEAD.
VARIANTS = {
    # every remedy on: the `robust` preset until 2026-11-24, whose runs were named lead-robust
    "lead+all-switches": [
        "cluster.difficulty_bins=quantile",
        "cluster.ifd_above_one=drop",
        "selection.reward_norm=window",
        "selection.delta=sample",
        "selection.utility=reducible",
    ],
    "lead+quantile": ["cluster.difficulty_bins=quantile"],
    "lead+drop": ["cluster.ifd_above_one=drop"],
    "lead+window": ["selection.reward_norm=window"],
    "lead+sample": ["selection.delta=sample"],
    "lead+reducible": ["selection.utility=reducible"],
    "lead+total": ["selection.rank_by=total"],
    "lead+update": ["selection.delta=update"],  # added 2026-11-24, before any run of it
    # the robust preset with rank_by total: added 2026-11-24 (20:55 UTC), before any run of it
    "lead+quantile+total": ["cluster.difficulty_bins=quantile", "selection.rank_by=total"],
    # the default with a rank weight that saturates in answer length: added 2026-11-24 (21:40 UTC), before any run
    "lead+quantile+saturating": ["cluster.difficulty_bins=quantile", "selection.rank_by=saturating"],
    # and with IFD > 1 dropped (swapped and cross-source answers; a static look at the seed-0 pool, no run, put 148
    # of its 149 such rows among the planted): added 2026-12-04 (19:00 UTC), before any run of it
    "lead+quantile+drop+saturating": [
        "cluster.difficulty_bins=quantile",
        "cluster.ifd_above_one=drop",
        "selection.rank_by=saturating",
    ],
    # the default with U leaving out the end-of-turn token (a cut-off answer's surprise sits there; the default's
    # planted picks on both noisy pools are mostly truncations): added 2026-12-04 (21:50 UTC), before any run of it
    "lead+quantile+skip-end": ["cluster.difficulty_bins=quantile", "selection.end_token=skip"],
    # and with IFD > 1 dropped, against the swapped and cross-source pairs U without the end token does not touch:
    # added 2026-12-04 (22:10 UTC), before any run of it (queued behind skip-end's screening, its result unseen)
    "lead+quantile+drop+skip-end": [
        "cluster.difficulty_bins=quantile",
        "cluster.ifd_above_one=drop",
        "selection.end_token=skip",
    ],
    # the default with answers whose end-of-turn token costs the base model over 13.8 nats (a chance of one in a
    # million that the answer ends there) dropped before clustering: a static look at the seed-0 pool put 87 of
    # its 96 truncations above 14 nats. Added 2026-12-05 (01:20 UTC), the threshold fixed before any run of it
    "lead+quantile+end-gate": ["cluster.difficulty_bins=quantile", "cluster.end_nll_above=13.8"],
    # issue 33, added 2026-12-07 (04:50 UTC) before any run of either; τ and z fixed in advance (docs/BENCHMARK_LOG.md):
    # the default skipping the top 15% of each task group's ranking (τ = the planted share, co-teaching's rule)
    "lead+quantile+trim": ["cluster.difficulty_bins=quantile", "selection.trim_top=0.15"],
    # the default with the end-token gate relative to each source group (robust z > 3.5, Iglewicz-Hoaglin)
    "lead+quantile+end-z": ["cluster.difficulty_bins=quantile", "cluster.end_z_above=3.5"],
    # both screened designs at once: added 2026-12-07 (05:52 UTC) before any run of it, because neither alone is
    # likely to meet the goal of at most half random's planted share (screen: 12.8% and 24.4% against 15.1%)
    "lead+quantile+end-z+trim": [
        "cluster.difficulty_bins=quantile",
        "cluster.end_z_above=3.5",
        "selection.trim_top=0.15",
    ],
    # the default ranking by U minus a reference model trained on trusted pairs (bench/quality/anchor.py)
    "lead+quantile+anchor": ["cluster.difficulty_bins=quantile", "selection.utility=learnability"],
    # issue 33 design (d), added 2026-12-07 (10:48 UTC) before any run of it: the default with each sample's
    # alignment with the anchor's gradient added to U (selection.delta=anchor, anchor_batch 8, anchor_weight 1:
    # the settings' defaults, fixed in advance). The anchor is never trained on, so random and random-x2 are its
    # controls as they are
    "lead+quantile+anchor-grad": ["cluster.difficulty_bins=quantile", "selection.delta=anchor"],
}
# A preset is run as the variant whose switches it resolves to; tests/test_quality_bench.py fails if they drift apart.
ROBUST_METHOD = "lead+quantile"  # selection.preset=robust: the paper with quantile bins
DEFAULT_METHOD = ROBUST_METHOD  # selection.preset's default
# result rows under a preset's name, computed from its variant's runs (the JSON keeps the names issue 14 gave them)
METHOD_ALIASES = {"lead-robust": ROBUST_METHOD}
FRESH_METHODS = (DEFAULT_METHOD, "random")  # --fresh-eval: the comparison a user acts on, on unseen items


@dataclass
class Regime:
    config: str
    rows: int  # rows of the stratified slice (before the held-out split and untrainable samples)
    budget: float
    seeds: tuple[int, ...]
    every_seed: tuple[str, ...]
    first_seed_only: tuple[str, ...]
    ablations: tuple[str, ...]  # VARIANTS run on every seed, after the methods above
    eval_sizes: dict[str, int]  # 0 = the whole set
    generate: int  # GSM8K items answered by generation for exact match (0 = none)
    overrides: list[str] = field(default_factory=list)


REGIMES = {
    "cpu": Regime(
        "configs/smollm2.yaml",
        2000,
        0.10,
        (42, 43, 44),
        ("lead", "random", "random-x2", "length", DEFAULT_METHOD),
        ("ifd", "ppl", "full"),
        (
            "lead+all-switches",
            "lead+drop",
            "lead+window",
            "lead+sample",
            "lead+reducible",
            "lead+total",
            "lead+update",
            "lead+quantile+total",
            "lead+quantile+saturating",
            "lead+quantile+drop+saturating",
            "lead+quantile+skip-end",
            "lead+quantile+drop+skip-end",
            "lead+quantile+end-gate",
            "lead+quantile+trim",
            "lead+quantile+end-z",
            "random+end-z",
            "random-x2+end-z",
            "lead+quantile+end-z+trim",
            "lead+quantile+anchor",
            "lead+quantile+anchor-grad",
            "random-x1.3",
            "random-x1.6+end-z",
        ),
        {"holdout": 0, "gsm8k": 200, "mmlu": 285, "self_instruct": 0},
        100,
        [
            "model.max_length=256",
            "warmup.fraction=0.1",
            "warmup.epochs=1",
            "eval.holdout_fraction=0.085",
            "eval.holdout_max=200",
            "selection.rho=0.1",
            "cluster.task_k=4",
            "eval.max_new_tokens=128",
            # bf16 weights score 2.0x faster than float32 on this CPU, mean NLL within 0.1% (bench/results/scorer.json)
            "model.dtype=bfloat16",
            "score.unit_rows=250",  # a scoring actor lost mid-unit (it happened: OOM) redoes 250 rows, not 2,000
            # no held-out NLL after every round: it took about half of each round's time here, and the
            # benchmark's figures come from the evaluation after the run
            "eval.inloop_every=0",
        ],
    ),
    "gpu": Regime(
        "configs/smollm2.yaml",
        24000,
        0.025,
        (42, 43, 44, 45, 46),
        ("lead", "random", "random-x2", "length", DEFAULT_METHOD),
        ("ifd", "ppl", "full"),
        (
            "lead+all-switches",
            "lead+drop",
            "lead+window",
            "lead+sample",
            "lead+reducible",
            "lead+total",
            "lead+update",
            "lead+quantile+total",
            "lead+quantile+saturating",
            "lead+quantile+drop+saturating",
            "lead+quantile+skip-end",
            "lead+quantile+drop+skip-end",
            "lead+quantile+end-gate",
        ),
        {"holdout": 0, "gsm8k": 0, "mmlu": 0, "self_instruct": 0},
        0,
        [
            "model.max_length=512",
            "eval.holdout_fraction=0.02",
            "eval.holdout_max=500",
            "selection.rho=0.05",
            "train.use_gpu=true",
            "score.use_gpu=true",
            "warmup.use_gpu=true",
            "eval.use_gpu=true",
            "model.dtype=auto",
        ],
    ),
    "smoke": Regime(
        "configs/demo.yaml",
        500,
        0.10,
        (42,),
        ("lead", "random", "random-x2", "length", DEFAULT_METHOD),
        ("ifd",),
        (),
        {"holdout": 0, "gsm8k": 20, "mmlu": 57, "self_instruct": 20},
        0,
        [
            "model.max_length=256",
            "eval.holdout_fraction=0.1",
            "selection.rho=0.2",
            "cluster.task_k=2",
            "cluster.difficulty_k=3",
            "warmup.epochs=1",
            "eval.generate=false",
        ],
    ),
}


def overrides(regime: Regime, work: Path, extra: list[str]) -> list[str]:
    sizes = json.dumps(regime.eval_sizes)
    return [
        f"work_dir={work}",
        f"eval.data_dir={SHARED / 'data' / 'eval'}",
        f"eval.sets={json.dumps(list(regime.eval_sizes))}",
        f"eval.set_sizes={sizes}",
        f"eval.generate_samples={regime.generate}",
        "eval.max_samples=0",
        f"selection.budget_fraction={regime.budget}",
        "train.checkpoint_every=100",
        # every method starts from the paper's LEAD (VARIANTS adds switches), and so does the setup's clustering
        "selection.preset=paper",
        *regime.overrides,
        *extra,
    ]


def method_settings(method: str) -> tuple[str, list[str]]:
    """(selection.method, extra overrides) of a benchmark method: a baseline, `lead`, or a Robust LEAD variant."""
    if method in BASELINE_VARIANTS:
        return BASELINE_VARIANTS[method]
    return ("lead", VARIANTS[method]) if method in VARIANTS else (method, [])


def run_order(regime: Regime) -> list[tuple[str, int]]:
    """The every-seed methods over all seeds first (the comparisons that matter), then the one-seed methods."""
    order = [(method, seed) for seed in regime.seeds for method in regime.every_seed]
    order += [(method, regime.seeds[0]) for method in regime.first_seed_only]
    return order + [(method, seed) for method in regime.ablations for seed in regime.seeds]


def fresh_eval_overrides(regime: Regime) -> list[str]:
    """--fresh-eval: the GSM8K and MMLU items that follow the ones every reported comparison used (as many)."""
    sizes = {name: regime.eval_sizes[name] for name in ("gsm8k", "mmlu")}
    if not all(sizes.values()):
        raise SystemExit(f"--fresh-eval: the {regime.config} regime scores every item of {sizes}; none is fresh")
    return [
        f"eval.sets={json.dumps(list(sizes))}",
        f"eval.set_sizes={json.dumps(sizes)}",
        f"eval.set_offsets={json.dumps(sizes)}",
        "eval.generate=false",
    ]
