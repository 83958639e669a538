"""bench/quality/run.py's result file: every method's scores, the paired comparisons, and what the runs cost."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.quality.regimes import DEFAULT_METHOD, METHOD_ALIASES, ROOT, VARIANTS, overrides
from bench.quality.stats import (
    DOWNSTREAM,
    clean_holdout,
    corrupt_rates,
    paired,
    pick_profile,
    same_picks,
    source_mix,
    summarise_methods,
)
from lead_ray.config import load_config


def comparisons() -> dict[str, tuple[str, str]]:
    """The paired comparisons reported (name: (one, other)); `default` is lead-ray's default, `lead` the paper."""
    pairs = {"lead_vs_random": ("lead", "random"), "lead_vs_random_x2": ("lead", "random-x2")}
    pairs |= {"lead_vs_full": ("lead", "full")}
    pairs |= {"default_vs_random": (DEFAULT_METHOD, "random"), "default_vs_random_x2": (DEFAULT_METHOD, "random-x2")}
    pairs |= {"robust_vs_paper": ("lead-robust", "lead"), "robust_vs_random": ("lead-robust", "random")}
    pairs |= {"total_vs_random": ("lead+total", "random")}
    pairs |= {"total_vs_random_x2": ("lead+total", "random-x2"), "total_vs_length": ("lead+total", "length")}
    # the candidate robust preset (the default plus rank_by total) against the default when it was declared
    # (lead+quantile, spelled out so the pair keeps its meaning if the default moves) and random
    pairs |= {"quantile_total_vs_default": ("lead+quantile+total", "lead+quantile")}
    pairs |= {"quantile_total_vs_random": ("lead+quantile+total", "random")}
    pairs |= {"quantile_saturating_vs_default": ("lead+quantile+saturating", "lead+quantile")}
    pairs |= {"quantile_saturating_vs_random": ("lead+quantile+saturating", "random")}
    pairs |= {"quantile_drop_saturating_vs_default": ("lead+quantile+drop+saturating", "lead+quantile")}
    pairs |= {"quantile_drop_saturating_vs_random": ("lead+quantile+drop+saturating", "random")}
    pairs |= {"quantile_skip_end_vs_default": ("lead+quantile+skip-end", "lead+quantile")}
    pairs |= {"quantile_skip_end_vs_random": ("lead+quantile+skip-end", "random")}
    pairs |= {"quantile_drop_skip_end_vs_default": ("lead+quantile+drop+skip-end", "lead+quantile")}
    pairs |= {"quantile_drop_skip_end_vs_random": ("lead+quantile+drop+skip-end", "random")}
    pairs |= {"quantile_end_gate_vs_default": ("lead+quantile+end-gate", "lead+quantile")}
    pairs |= {"quantile_end_gate_vs_random": ("lead+quantile+end-gate", "random")}
    # issue 33: every candidate against the default, random and random-x2; a filter's controls against theirs
    for name, method in (
        ("trim", "lead+quantile+trim"),
        ("end_z", "lead+quantile+end-z"),
        ("end_z_trim", "lead+quantile+end-z+trim"),
        ("anchor", "lead+quantile+anchor"),
        ("anchor_grad", "lead+quantile+anchor-grad"),
    ):
        pairs |= {f"{name}_vs_default": (method, DEFAULT_METHOD), f"{name}_vs_random": (method, "random")}
        pairs |= {f"{name}_vs_random_x2": (method, "random-x2")}
    pairs |= {"end_z_vs_random_end_z": ("lead+quantile+end-z", "random+end-z")}
    pairs |= {"end_z_vs_random_x2_end_z": ("lead+quantile+end-z", "random-x2+end-z")}
    pairs |= {"end_z_trim_vs_random_end_z": ("lead+quantile+end-z+trim", "random+end-z")}
    pairs |= {"end_z_trim_vs_random_x2_end_z": ("lead+quantile+end-z+trim", "random-x2+end-z")}
    pairs |= {"random_end_z_vs_random": ("random+end-z", "random")}
    pairs |= {"random_end_z_vs_default": ("random+end-z", DEFAULT_METHOD)}
    pairs |= {"random_end_z_vs_random_x2": ("random+end-z", "random-x2")}
    pairs |= {"random_vs_random_x2": ("random", "random-x2")}
    # the token-matched controls: a design against random trained for as many tokens as the design trains
    pairs |= {"anchor_vs_random_x1_3": ("lead+quantile+anchor", "random-x1.3")}
    pairs |= {"end_z_trim_vs_random_x1_6_end_z": ("lead+quantile+end-z+trim", "random-x1.6+end-z")}
    return pairs | {f"{v}_vs_paper": (v, "lead") for v in VARIANTS}


def write_result(args, regime, variant, name, slice_info, runs, base, cfg, t0, t_setup, complete=False) -> None:
    clean = clean_holdout(variant, cfg) if args.noisy else None
    ran = runs  # what ran (machine time, reruns); `runs` adds the preset rows computed from their variant's runs
    runs = ran | {alias: ran[method] for alias, method in METHOD_ALIASES.items() if method in ran}
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
        "method_aliases": METHOD_ALIASES,
        "paired": paired(runs, methods, comparisons(), clean),
        "source_mix": source_mix(runs),
        "pick_profile": pick_profile(runs, sorted((variant / "clustered" / "pool").glob("*.parquet"))),
        "environment": environment(),
        "run_environments": run_environments(ran),
        "seconds": {
            "setup_this_invocation": round(t_setup, 1),
            "total_this_invocation": round(time.perf_counter() - t0, 1),
            **machine_seconds(variant, ran),
        },
    }
    if args.noisy:
        result.update(corrupt_rates(variant, runs, cfg))
    if args.fresh_eval:  # a rerun trains the same model only if it picks what the reported run picked
        result["same_picks_as_reported_run"] = same_picks(ran, variant / "runs")
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


def run_environments(runs: dict) -> list[dict]:
    """Which library versions each run trained under (bench_environment.json, written by one_run since
    2026-11-24): the same config can pick a little differently under other versions, so a result mixing
    environments says so. Runs from before the record are listed under environment None."""
    groups: dict[str, list[str]] = {}
    for method, by_seed in runs.items():
        for seed, run_dir in by_seed.items():
            path = run_dir / "bench_environment.json"
            key = json.dumps(json.loads(path.read_text()), sort_keys=True) if path.exists() else "null"
            groups.setdefault(key, []).append(f"{method}-s{seed}")
    return [{"environment": json.loads(key), "runs": sorted(names)} for key, names in sorted(groups.items())]


def environment() -> dict[str, str]:
    """The library versions of this invocation: the same settings can pick a little differently under other
    versions (numerics move; docs/BENCHMARK_LOG.md, the fresh-items confirmation)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("torch", "transformers", "peft", "ray", "numpy", "pyarrow"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out
