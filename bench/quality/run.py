"""Selection quality: does training on LEAD's subset beat training on a random subset of the same size?

    python bench/quality/run.py                   # CPU regime, clean pool   → bench/results/quality.json
    python bench/quality/run.py --noisy           # the same with 15% planted broken pairs → quality_noisy.json
    python bench/quality/run.py --regime gpu      # one H100: bigger pool, 2.5% budget, full-size eval sets
    python bench/quality/run.py --regime smoke    # tiny model, small pool and eval sets: checks this script

1. Setup, once per regime and variant (cached; a changed setting is refused, not silently reused):
   `prepare` over ../shared/data/pool (without noncommercial/), a slice stratified by source so that
   GSM8K, code, role-play, tool use, self-instruct and T0 are all present, planted corruptions for
   --noisy (bench/quality/corrupt.py), then warmup, score and cluster.
2. Every method and seed: `lead-ray run`, then `lead-ray eval` with per-item scores (eval_items.json).
   A finished run is reused only when its config.yaml equals the one it would run with now.
   The base model (before any online training) is evaluated once.
3. Statistics (lead_ray/eval/stats.py): every method's mean per eval metric with a 95% interval over
   seeds and items, and paired differences LEAD − random, LEAD − the best static baseline and
   LEAD − full, per seed and pooled. With --noisy: the share of each method's picks that are planted.

Settings are the regime's, fixed before any result is seen; nothing here is tuned on the eval sets.
They live in bench/quality/regimes.py, the result file is written by bench/quality/result.py, the statistics
are bench/quality/stats.py and the cache across machines bench/quality/cache.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.quality.anchor import anchor_folder, make_anchor, prepare_anchor  # noqa: E402
from bench.quality.cache import ANCHOR_SETUP, CACHE, log, pack, pack_part, run_patterns, unpack, unpack_parts  # noqa: E402
from bench.quality.content import add_content_column, add_end_column_to_units  # noqa: E402
from bench.quality.corrupt import plant_pool  # noqa: E402
from bench.quality.pool_slice import source_groups, stratified_slice  # noqa: E402
from bench.quality.regimes import (  # noqa: E402
    DEFAULT_METHOD,
    FRESH_METHODS,
    REGIMES,
    SHARED,
    Regime,
    fresh_eval_overrides,
    method_settings,
    overrides,
    run_order,
)
from bench.quality.result import environment, write_result  # noqa: E402
from lead_ray.config import config_from_dict, load_config, to_dict  # noqa: E402
from lead_ray.presets import PRESETS, resolved_dict, switches  # noqa: E402

# ----------------------------------------------------------------------------- setup


def setup(regime: Regime, variant: Path, full: Path, corrupt: float, extra: list[str], plant_seed: int = 0) -> dict:
    """prepare (shared), slice, plant, warmup, score, cluster; the slice's composition and planted counts."""
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
    ensure_full_pool(regime, full, extra)
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


def clustered_work(variant: Path, cfg) -> Path:
    """The work_dir whose clustered pool a run reads: the variant's own, or (cluster switches away from the
    paper) a sibling sharing prepared/, models/ and scored/ whose pool is clustered with those switches."""
    from lead_ray.offline.cluster import cluster

    chosen, paper = switches(cfg), PRESETS["paper"]
    gate, z_gate = cfg.cluster.end_nll_above, cfg.cluster.end_z_above
    gated = gate is not None or z_gate is not None
    if (chosen.difficulty_bins, chosen.ifd_above_one, gated) == (paper.difficulty_bins, paper.ifd_above_one, False):
        return variant
    name = f"{chosen.difficulty_bins}-{chosen.ifd_above_one}" + (f"-end{gate:g}" if gate is not None else "")
    name += f"-endz{z_gate:g}" if z_gate is not None else ""
    work = variant / "clusterings" / name
    work.mkdir(parents=True, exist_ok=True)
    for shared in ("prepared", "models") + (("scored",) if not gated else ()):
        if not (work / shared).exists():
            (work / shared).symlink_to(variant / shared, target_is_directory=True)
    if gated:  # scored units of its own, with the column the gates read
        add_end_column_to_units(variant, work, cfg)
    if not (work / "clustered" / "clusters.json").exists():
        log(f"clustering {work.name}")
        cluster(_rebased(cfg, work))
    return work


def paper_budget(variant: Path, cfg) -> int:
    """The unique-sample budget a run on the variant's own clustered pool gets (budget_fraction × selectable)."""
    import math

    from lead_ray.online.pool import index_pool

    # the paper's switches: its pool and the columns it reads (a count of rows needs no other)
    paper = ["selection.preset=paper", "cluster.difficulty_bins=preset", "cluster.ifd_above_one=preset"]
    paper += ["selection.utility=preset", "selection.end_token=preset", "cluster.end_nll_above=null"]
    paper += ["cluster.end_z_above=null"]
    selectable = index_pool(config_from_dict(to_dict(cfg), [f"work_dir={variant}", *paper])).size
    return max(1, math.ceil(cfg.selection.budget_fraction * selectable))


def _rebased(cfg, work: Path):
    return config_from_dict(to_dict(cfg), [f"work_dir={work}"])


def ensure_full_pool(regime: Regime, full: Path, extra: list[str]) -> None:
    """The whole prepared pool (../shared/data/pool without noncommercial/) the slices and anchors come from."""
    from lead_ray.data.ingest import prepare

    if not (full / "prepared" / "prepare_stats.json").exists():
        inputs = [
            str(p) for p in sorted((SHARED / "data" / "pool").iterdir()) if p.is_dir() and p.name != "noncommercial"
        ]
        prepare(
            load_config(ROOT / regime.config, overrides(regime, full, extra) + ["ingest.inputs=" + json.dumps(inputs)])
        )


def one_run(regime: Regime, variant: Path, method: str, seed: int, extra: list[str], runs: str = "runs") -> Path:
    """A run and its evaluation, reused when its recorded config equals this one."""
    from lead_ray.eval.evaluate import evaluate
    from lead_ray.online.run import run

    run_dir = variant / runs / f"{method}-s{seed}"
    selection_method, keys = method_settings(method)
    settings = overrides(regime, variant, extra) + [f"seed={seed}", f"selection.method={selection_method}", *keys]
    needs_anchor = {"selection.utility=learnability", "selection.delta=anchor"} & set(keys)
    if needs_anchor:  # the variant's trusted pairs (bench/quality/anchor.py)
        settings.append(f"anchor.data={anchor_folder(variant)}")
    cfg = load_config(ROOT / regime.config, settings)
    work = clustered_work(variant, cfg)
    if work != variant:  # the same number of unique samples as on the paper's pool, however many were dropped
        budget = paper_budget(variant, cfg)
        cfg = load_config(ROOT / regime.config, settings + [f"work_dir={work}", f"selection.budget_samples={budget}"])
    saved = run_dir / "config.yaml"
    if (run_dir / "eval_items.json").exists() and same_run(load_config(saved), cfg):
        return run_dir
    if switches(cfg).end_token == "skip":
        add_content_column(variant, work, cfg)  # a pool scored before the column existed
    if needs_anchor and not (anchor_folder(variant) / "part-0.parquet").exists():
        ensure_full_pool(regime, variant.parent / "full", extra)
        make_anchor(variant, variant.parent / "full")
    if switches(cfg).utility == "learnability":
        # once per variant, as the warm-up: the reference model does not depend on the run's seed
        prepare_anchor(variant, work, config_from_dict(to_dict(cfg), [f"work_dir={variant}", "seed=42"]))
        if not (parts_folder(regime, variant) / "anchor-setup.tar.gz").exists():
            pack_part(variant, parts_folder(regime, variant), "anchor-setup", ANCHOR_SETUP)
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    run(cfg, run_dir)
    t1 = time.perf_counter()
    evaluate(_rebased(cfg, variant), run_dir)  # the variant's held-out items, the same for every method
    seconds = {"run": round(t1 - t0, 1), "eval": round(time.perf_counter() - t1, 1)}
    (run_dir / "bench_seconds.json").write_text(json.dumps(seconds) + "\n")
    (run_dir / "bench_environment.json").write_text(json.dumps(environment()) + "\n")
    log(f"{variant.name}/{run_dir.name}: {seconds}")
    # packed at once: a later checkout (another session, another machine) reuses it; commit bench/cache/
    pack_part(variant, parts_folder(regime, variant) / runs, run_dir.name, run_patterns(runs, run_dir.name))
    return run_dir


def parts_folder(regime: Regime, variant: Path) -> Path:
    """Where the runs finished after the variant's main pack are packed one by one (bench/quality/cache.py)."""
    name = next(name for name, known in REGIMES.items() if known is regime)
    return CACHE / f"quality-{name}-{variant.name}"


# keys that cannot change a run of this benchmark (and runs cached before a key existed must stay valid):
# the slices are far smaller than any near-duplicate partition (one search over all points), and while
# near-duplicates are kept, how they are searched changes only their flags, which selection never reads
NO_EFFECT = {"cluster": ("near_dup_partition_rows",)}
NO_EFFECT_WHILE_KEPT = {"cluster": ("near_dup_search",)}
# keys added after pools and runs were cached, at the value that is what those ran: left out of a key at that value
AS_BEFORE = {
    "cluster": {"end_nll_above": None, "end_z_above": None},
    "warmup": {"gradient_checkpointing": False, "placement_timeout_s": 600.0},
}


def _without_no_effect(d: dict) -> dict:
    ignored = [NO_EFFECT] + ([NO_EFFECT_WHILE_KEPT] if not d["cluster"].get("drop_near_dups", False) else [])
    ignored += [{s: [k for k, v in keys.items() if d[s].get(k, v) == v] for s, keys in AS_BEFORE.items()}]
    for section, keys in (pair for table in ignored for pair in table.items()):
        for key in keys:
            d[section].pop(key, None)
    return d


def same_run(saved, cfg) -> bool:
    """Whether a finished run's config runs what `cfg` asks: switches compared resolved, so a run made before a
    switch joined the presets (its key then explicit) is the same run as one that takes it from the preset."""
    return _without_no_effect(resolved_dict(saved)) == _without_no_effect(resolved_dict(cfg))


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


# ----------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
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
    return ap


def main() -> None:
    args = parser().parse_args()
    regime = REGIMES[args.regime]
    if args.seeds:
        regime.seeds = tuple(int(s) for s in args.seeds.split(","))
    work = Path(args.work or ROOT / "bench" / "work" / f"quality-{args.regime}").resolve()
    variant = work / (("noisy" + (f"-p{args.plant_seed}" if args.plant_seed else "")) if args.noisy else "clean")
    packed = parts_folder(regime, variant).with_suffix(".tar.gz")
    if args.pack:
        return pack(variant, packed)
    fresh = not (variant / "setup.json").exists() and packed.exists()
    if fresh:
        unpack(packed, variant)
    for runs in ("", "runs", "runs-fresh"):
        unpack_parts(parts_folder(regime, variant) / runs, variant, every=fresh)
    noisy_name = "_noisy" + (f"_p{args.plant_seed}" if args.plant_seed else "")
    name = args.result or "quality" + (noisy_name if args.noisy else "") + (
        "" if args.regime == "cpu" else f"_{args.regime}"
    ) + ("_fresh" if args.fresh_eval else "")

    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    if not args.report:  # a report reads finished runs' files: no Ray, so it can run beside a benchmark
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
        if not {"lead", DEFAULT_METHOD} & set(chosen) and not args.fresh_eval:
            raise SystemExit(f"--methods must include lead or {DEFAULT_METHOD}: the comparisons are made against them")
        if args.methods:  # a part of the benchmark; --fresh-eval alone is the whole of its confirmation
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


if __name__ == "__main__":
    main()
