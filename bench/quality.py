"""Selection quality: does training on LEAD's subset beat training on a random subset of the same size?

    python bench/quality.py                   # CPU regime, clean pool   → bench/results/quality.json
    python bench/quality.py --noisy           # the same with 15% planted broken pairs → quality_noisy.json
    python bench/quality.py --regime gpu      # one H100: bigger pool, 2.5% budget, full-size eval sets
    python bench/quality.py --regime smoke    # tiny model, small pool and eval sets: checks this script

1. Setup, once per regime and variant (cached; a changed setting is refused, not silently reused):
   `prepare` over ../shared/data/pool (without noncommercial/), a slice stratified by source so that
   GSM8K, code, role-play, tool use, self-instruct and T0 are all present, planted corruptions for
   --noisy (bench/corrupt.py), then warmup, score and cluster.
2. Every method and seed: `lead-ray run`, then `lead-ray eval` with per-item scores (eval_items.json).
   A finished run is reused only when its config.yaml equals the one it would run with now.
   The base model (before any online training) is evaluated once.
3. Statistics (lead_ray/eval/stats.py): every method's mean per eval metric with a 95% interval over
   seeds and items, and paired differences LEAD − random, LEAD − the best static baseline and
   LEAD − full, per seed and pooled. With --noisy: the share of each method's picks that are planted.

Settings are the regime's, fixed before any result is seen; nothing here is tuned on the eval sets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from bench.corrupt import plant_pool  # noqa: E402
from bench.quality_cache import CACHE, pack, unpack  # noqa: E402
from bench.quality_stats import (  # noqa: E402
    DOWNSTREAM,
    clean_holdout,
    corrupt_rates,
    paired,
    pick_profile,
    same_picks,
    source_mix,
    summarise_methods,
)
from lead_ray.config import load_config, to_dict  # noqa: E402

BASELINE_VARIANTS = {"random-x2": ("random", ["selection.static_passes=2"])}
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
}
# lead-ray's default (selection.preset's default, `robust`) is the variant whose switches it resolves to: the paper
# with quantile bins. tests/test_quality_bench.py fails if the default preset and this name drift apart.
DEFAULT_METHOD = "lead+quantile"
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
        ("lead+all-switches", "lead+drop", "lead+window", "lead+sample", "lead+reducible", "lead+total", "lead+update"),
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
        ("lead+all-switches", "lead+drop", "lead+window", "lead+sample", "lead+reducible", "lead+total", "lead+update"),
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


def log(msg: str) -> None:
    print(f"[quality] {msg}", file=sys.stderr, flush=True)


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


# ----------------------------------------------------------------------------- setup


def source_groups(sources: list[str]) -> np.ndarray:
    """Each row's source group: its file, or its folder when that holds many files (T0's 283 templates)."""
    from lead_ray.report import collapsed_folders, source_group

    collapsed = collapsed_folders(sources)
    return np.array([source_group(s, collapsed) for s in sources])


def stratified_slice(table: pa.Table, rows: int) -> pa.Table:
    """`rows` rows spread over the source groups (a folder of many files is one group, e.g. T0): an equal
    share each, a small group giving what it has and the rest going to the others. Within a group, the
    first rows in id order (ids are content hashes: a uniform, reproducible sample)."""
    table = table.sort_by("id")
    groups = source_groups(table["source"].to_pylist())
    names, sizes = np.unique(groups, return_counts=True)
    take = np.zeros(len(names), int)
    while take.sum() < min(rows, len(groups)):
        open_ = take < sizes
        share = max(1, (rows - take.sum()) // open_.sum())
        take = np.where(open_, np.minimum(sizes, take + share), take)
    keep = np.concatenate([np.flatnonzero(groups == g)[:k] for g, k in zip(names, take)])
    return table.take(pa.array(np.sort(keep)))


def setup(regime: Regime, variant: Path, full: Path, corrupt: float, extra: list[str], plant_seed: int = 0) -> dict:
    """prepare (shared), slice, plant, warmup, score, cluster; the slice's composition and planted counts."""
    from lead_ray.data.ingest import prepare
    from lead_ray.offline.cluster import cluster
    from lead_ray.offline.score import score
    from lead_ray.offline.warmup import warmup

    cfg = load_config(ROOT / regime.config, overrides(regime, variant, extra))
    d = _without_no_effect(to_dict(cfg))
    key = {
        "rows": regime.rows,
        "noisy": corrupt > 0,
        **({"corrupt": corrupt} if corrupt else {}),
        **({"plant_seed": plant_seed} if plant_seed else {}),  # 0: the key of pools planted before the option
        **{k: d[k] for k in ("seed", "model", "warmup", "score", "cluster")},
    }
    recorded = variant / "setup.json"
    if recorded.exists():
        old = json.loads(recorded.read_text())
        if old["key"] != key:
            raise SystemExit(f"{variant} was set up with other settings ({recorded}); pass another --work")
        return old["slice"]
    if not (full / "prepared" / "prepare_stats.json").exists():
        inputs = [
            str(p) for p in sorted((SHARED / "data" / "pool").iterdir()) if p.is_dir() and p.name != "noncommercial"
        ]
        prepare(
            load_config(ROOT / regime.config, overrides(regime, full, extra) + ["ingest.inputs=" + json.dumps(inputs)])
        )
    sliced = stratified_slice(pq.read_table(full / "prepared" / "pool"), regime.rows)
    shutil.rmtree(variant / "prepared", ignore_errors=True)
    (variant / "prepared" / "pool").mkdir(parents=True)
    pq.write_table(sliced, variant / "prepared" / "pool" / "part-0.parquet")
    names, counts = np.unique(source_groups(sliced["source"].to_pylist()), return_counts=True)
    info = {"rows": sliced.num_rows, "by_source": {str(k): int(v) for k, v in zip(names, counts)}}
    if corrupt:
        info["planted"] = plant_pool(variant / "prepared" / "pool", corrupt, seed=plant_seed)
    for stage in (warmup, score, cluster):  # score skips the units already written; cluster always reruns
        if stage is warmup and (variant / "models" / "warmup_stats.json").exists():  # written after the model
            log(f"setup {variant.name}: warmup already done")
            continue
        log(f"setup {variant.name}: {stage.__name__}")
        stage(cfg)
    recorded.write_text(json.dumps({"key": key, "slice": info}, indent=1, default=str) + "\n")
    return info


# ----------------------------------------------------------------------------- runs


def method_settings(method: str) -> tuple[str, list[str]]:
    """(selection.method, extra overrides) of a benchmark method: a baseline, `lead`, or a Robust LEAD variant."""
    if method in BASELINE_VARIANTS:
        return BASELINE_VARIANTS[method]
    return ("lead", VARIANTS[method]) if method in VARIANTS else (method, [])


def clustered_work(variant: Path, cfg) -> Path:
    """The work_dir whose clustered pool a run reads: the variant's own, or (cluster switches away from the
    paper) a sibling sharing prepared/, models/ and scored/ whose pool is clustered with those switches."""
    from lead_ray.offline.cluster import cluster
    from lead_ray.presets import PRESETS, switches

    chosen, paper = switches(cfg), PRESETS["paper"]
    if (chosen.difficulty_bins, chosen.ifd_above_one) == (paper.difficulty_bins, paper.ifd_above_one):
        return variant
    work = variant / "clusterings" / f"{chosen.difficulty_bins}-{chosen.ifd_above_one}"
    work.mkdir(parents=True, exist_ok=True)
    for shared in ("prepared", "models", "scored"):
        if not (work / shared).exists():
            (work / shared).symlink_to(variant / shared, target_is_directory=True)
    if not (work / "clustered" / "clusters.json").exists():
        log(f"clustering {work.name}")
        cluster(_rebased(cfg, work))
    return work


def paper_budget(variant: Path, cfg) -> int:
    """The unique-sample budget a run on the variant's own clustered pool gets (budget_fraction × selectable)."""
    import math

    from lead_ray.config import config_from_dict
    from lead_ray.online.pool import index_pool

    paper = ["selection.preset=paper", "cluster.difficulty_bins=preset", "cluster.ifd_above_one=preset"]
    selectable = index_pool(config_from_dict(to_dict(cfg), [f"work_dir={variant}", *paper])).size
    return max(1, math.ceil(cfg.selection.budget_fraction * selectable))


def _rebased(cfg, work: Path):
    from lead_ray.config import config_from_dict

    return config_from_dict(to_dict(cfg), [f"work_dir={work}"])


def one_run(regime: Regime, variant: Path, method: str, seed: int, extra: list[str], runs: str = "runs") -> Path:
    """A run and its evaluation, reused when its recorded config equals this one."""
    from lead_ray.eval.evaluate import evaluate
    from lead_ray.online.run import run

    run_dir = variant / runs / f"{method}-s{seed}"
    selection_method, switches = method_settings(method)
    settings = overrides(regime, variant, extra) + [f"seed={seed}", f"selection.method={selection_method}", *switches]
    cfg = load_config(ROOT / regime.config, settings)
    work = clustered_work(variant, cfg)
    if work != variant:  # the same number of unique samples as on the paper's pool, however many were dropped
        budget = paper_budget(variant, cfg)
        cfg = load_config(ROOT / regime.config, settings + [f"work_dir={work}", f"selection.budget_samples={budget}"])
    saved = run_dir / "config.yaml"
    if (run_dir / "eval_items.json").exists() and same_run(load_config(saved), cfg):
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    run(cfg, run_dir)
    t1 = time.perf_counter()
    evaluate(_rebased(cfg, variant), run_dir)  # the variant's held-out items, the same for every method
    seconds = {"run": round(t1 - t0, 1), "eval": round(time.perf_counter() - t1, 1)}
    (run_dir / "bench_seconds.json").write_text(json.dumps(seconds) + "\n")
    log(f"{variant.name}/{run_dir.name}: {seconds}")
    return run_dir


# keys that cannot change a run of this benchmark (and runs cached before a key existed must stay valid):
# the slices are far smaller than any near-duplicate partition (one search over all points), and while
# near-duplicates are kept, how they are searched changes only their flags, which selection never reads
NO_EFFECT = {"cluster": ("near_dup_partition_rows",)}
NO_EFFECT_WHILE_KEPT = {"cluster": ("near_dup_search",)}


def _without_no_effect(d: dict) -> dict:
    ignored = [NO_EFFECT] + ([NO_EFFECT_WHILE_KEPT] if not d["cluster"].get("drop_near_dups", False) else [])
    for section, keys in (pair for table in ignored for pair in table.items()):
        for key in keys:
            d[section].pop(key, None)
    return d


def same_run(saved, cfg) -> bool:
    return _without_no_effect(to_dict(saved)) == _without_no_effect(to_dict(cfg))


def base_eval(regime: Regime, variant: Path, extra: list[str], folder: str = "base") -> Path:
    """The model before online training, on the same eval items."""
    from lead_ray.eval.evaluate import evaluate
    from lead_ray.models.load import materialize_model

    cfg = load_config(ROOT / regime.config, overrides(regime, variant, extra))
    out = variant / folder / "eval.json"
    if not (variant / folder / "eval_items.json").exists():
        base = materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)
        evaluate(cfg, variant / folder, model_dir=base, out=out)
    return out.parent


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


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regime", choices=sorted(REGIMES), default="cpu")
    ap.add_argument("--noisy", action="store_true", help="plant broken pairs into the slice before scoring")
    ap.add_argument("--corrupt", type=float, default=0.15, metavar="F", help="with --noisy: the planted share")
    ap.add_argument(
        "--plant-seed",
        type=int,
        default=0,
        metavar="S",
        help="with --noisy: plant with another seed (other rows broken, other swap partners) in its own folder "
        "noisy-p<S> and result quality_noisy_p<S>: a pool to confirm what was designed on seed 0's",
    )
    ap.add_argument("--seeds", help="comma-separated seeds (default: the regime's)")
    ap.add_argument("--work", help="cache folder (default: bench/work/quality-<regime>)")
    ap.add_argument(
        "--result", help="bench/results/<name>.json (default: quality[_noisy], with the regime when not cpu)"
    )
    ap.add_argument("--pack", action="store_true", help=f"store the finished setup and runs in {CACHE.name}/ and stop")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every stage")
    ap.add_argument("--report", action="store_true", help="write the result from the finished runs only; run none")
    ap.add_argument("--methods", help="comma-separated methods to run, in the regime's order (default: all)")
    ap.add_argument(
        "--fresh-eval",
        action="store_true",
        help=f"rerun {FRESH_METHODS} (or --methods) in runs-fresh/ and score them on GSM8K and MMLU items no "
        "reported comparison used: a confirmation on unseen items (result quality[_noisy]_fresh)",
    )
    args = ap.parse_args()
    regime = REGIMES[args.regime]
    if args.seeds:
        regime.seeds = tuple(int(s) for s in args.seeds.split(","))
    work = Path(args.work or ROOT / "bench" / "work" / f"quality-{args.regime}").resolve()
    variant = work / (("noisy" + (f"-p{args.plant_seed}" if args.plant_seed else "")) if args.noisy else "clean")
    packed = CACHE / f"quality-{args.regime}-{variant.name}.tar.gz"
    if args.pack:
        return pack(variant, packed)
    if not (variant / "setup.json").exists() and packed.exists():
        unpack(packed, variant)
    noisy_name = "_noisy" + (f"_p{args.plant_seed}" if args.plant_seed else "")
    name = args.result or "quality" + (noisy_name if args.noisy else "") + (
        "" if args.regime == "cpu" else f"_{args.regime}"
    ) + ("_fresh" if args.fresh_eval else "")

    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    init_ray(RayConfig())
    t0 = time.perf_counter()
    slice_info = setup(regime, variant, work / "full", args.corrupt if args.noisy else 0.0, args.set, args.plant_seed)
    t_setup = time.perf_counter() - t0
    extra = args.set + (fresh_eval_overrides(regime) if args.fresh_eval else [])
    runs_folder = "runs-fresh" if args.fresh_eval else "runs"
    base = base_eval(regime, variant, extra, "base-fresh" if args.fresh_eval else "base")
    cfg = load_config(ROOT / regime.config, overrides(regime, variant, extra))
    runs: dict[str, dict[int, Path]] = {}
    skipped = 0
    order = run_order(regime)
    if args.methods or args.fresh_eval:
        chosen = args.methods.split(",") if args.methods else list(FRESH_METHODS)
        unknown = sorted(set(chosen) - {method for method, _ in order})
        if unknown:
            raise SystemExit(f"--methods: no method {unknown} in the {args.regime} regime")
        if "lead" not in chosen and not args.fresh_eval:
            raise SystemExit("--methods must include lead: every comparison is made against it")
        skipped += sum(method not in chosen for method, _ in order)
        order = [(method, seed) for method, seed in order if method in chosen]
    for method, seed in order:
        run_dir = variant / runs_folder / f"{method}-s{seed}"
        if args.report:  # the finished runs as they are: nothing is started or redone
            if (run_dir / "eval_items.json").exists():
                runs.setdefault(method, {})[seed] = run_dir
            else:
                skipped += 1
            continue
        runs.setdefault(method, {})[seed] = one_run(regime, variant, method, seed, extra, runs_folder)
        # a summary after every run: an interrupted benchmark still leaves what it measured, marked partial
        write_result(args, regime, variant, name, slice_info, runs, base, cfg, t0, t_setup)
    write_result(args, regime, variant, name, slice_info, runs, base, cfg, t0, t_setup, complete=skipped == 0)


def comparisons() -> dict[str, tuple[str, str]]:
    """The paired comparisons reported (name: (one, other)); `default` is lead-ray's default, `lead` the paper."""
    pairs = {"lead_vs_random": ("lead", "random"), "lead_vs_random_x2": ("lead", "random-x2")}
    pairs |= {"lead_vs_full": ("lead", "full")}
    pairs |= {"default_vs_random": (DEFAULT_METHOD, "random"), "default_vs_random_x2": (DEFAULT_METHOD, "random-x2")}
    pairs |= {"total_vs_random": ("lead+total", "random")}
    pairs |= {"total_vs_random_x2": ("lead+total", "random-x2"), "total_vs_length": ("lead+total", "length")}
    return pairs | {f"{v}_vs_paper": (v, "lead") for v in VARIANTS}


def run_order(regime: Regime) -> list[tuple[str, int]]:
    """The every-seed methods over all seeds first (the comparisons that matter), then the one-seed methods."""
    order = [(method, seed) for seed in regime.seeds for method in regime.every_seed]
    order += [(method, regime.seeds[0]) for method in regime.first_seed_only]
    return order + [(method, seed) for method in regime.ablations for seed in regime.seeds]


def write_result(args, regime, variant, name, slice_info, runs, base, cfg, t0, t_setup, complete=False) -> None:
    clean = clean_holdout(variant, cfg) if args.noisy else None
    methods = summarise_methods(runs, base, clean)
    any_run = next(iter(next(iter(runs.values())).values()))
    stats = json.loads((any_run / "run_stats.json").read_text())
    result = {
        "complete": complete,
        "regime": args.regime,
        "variant": variant.name,
        "command": " ".join(sys.argv),
        "config": regime.config,
        "overrides": overrides(regime, Path("WORK"), args.set),
        "seeds": list(regime.seeds),
        "slice": slice_info,
        "pool_selectable": stats["pool"],
        "budget": stats["budget"],
        "eval_sizes": {k: v["n"] for k, v in methods["base"]["sets"].items()},
        "downstream_sets": list(DOWNSTREAM),
        "methods": methods,
        "default_preset": load_config(None).selection.preset,
        "default_method": DEFAULT_METHOD,
        "paired": paired(runs, methods, comparisons(), clean),
        "source_mix": source_mix(runs),
        "pick_profile": pick_profile(runs, sorted((variant / "clustered" / "pool").glob("*.parquet"))),
        "seconds": {
            "setup_this_invocation": round(t_setup, 1),
            "total_this_invocation": round(time.perf_counter() - t0, 1),
            **machine_seconds(variant, runs),
        },
    }
    if args.noisy:
        result.update(corrupt_rates(variant, runs, cfg))
    if args.fresh_eval:  # a rerun trains the same model only if it picks what the reported run picked
        result["same_picks_as_reported_run"] = same_picks(runs, variant / "runs")
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    if complete:
        print(json.dumps({k: result[k] for k in ("pool_selectable", "budget", "eval_sizes")}, indent=1))
        print(f"wrote {out}")


def machine_seconds(variant: Path, runs: dict) -> dict:
    """What the finished benchmark cost this machine, from what each stage recorded: the setup's warm-up and
    scoring, and every run's training and evaluation (over all invocations; runs reused are counted once)."""
    setup = {}
    for stage, stats in (("warmup", "models/warmup_stats.json"), ("score", "scored/score_stats.json")):
        path = variant / stats
        setup[stage] = json.loads(path.read_text())["seconds"] if path.exists() else None
    per_run = {
        f"{method}-s{seed}": json.loads((run_dir / "bench_seconds.json").read_text())
        for method, by_seed in runs.items()
        for seed, run_dir in by_seed.items()
        if (run_dir / "bench_seconds.json").exists()
    }
    runs_total = sum(r["run"] + r["eval"] for r in per_run.values())
    return {
        "setup_recorded": setup,
        "runs_recorded": len(per_run),
        "runs_total": round(runs_total, 1),
        "all_recorded_hours": round((runs_total + sum(v or 0 for v in setup.values())) / 3600, 2),
        "per_run": per_run,
    }


if __name__ == "__main__":
    main()
