"""docs/BENCHMARKS.md's summary table (marker kind `summary` in bench/quality/tables.py): each question's verdict
and key number read from the result files, so the first table a reader meets cannot drift from them."""

from __future__ import annotations

from bench.quality.screen import SCREENED, _screen_pair

DEFAULT = "lead+quantile"
NLL_SETS = ("gsm8k_nll", "mmlu_choice_nll", "self_instruct_nll", "holdout_nll")
SCREEN_MARGIN = 0.03  # issue 33's screen: a design goes on if its primary is at most this much above the default's
GOALS = {"driver_mb_10m": 1500, "bookkeeping_share": 0.01, "cold_rows_per_s": 20_000, "rescore_ratio": 10}


def summary_table(quality, noisy, screen, power, rescore, scale, loop, ingest, gpu) -> str:
    rows = [
        _equal_compute(quality, noisy),
        _broken_pairs(noisy),
        _screen(screen),
        _power(power),
        _rescore(rescore),
        _driver(scale),
        _bookkeeping(loop),
        _ingest(ingest),
        _gpu(gpu),
    ]
    lines = ["| question | verdict | result file | command |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {q} | {v} | {f} | {c} |" for q, v, f, c in rows])


def _sets_by_winner(entry: dict) -> tuple[list[str], list[str]]:
    """The NLL sets a paired entry (default − control) calls better for the default, and those it calls worse.
    The held-out split counts its unplanted items where the pool was planted."""
    keys = [k for k in NLL_SETS if k != "holdout_nll"] + [
        "holdout_clean_nll" if "holdout_clean_nll" in entry else "holdout_nll"
    ]
    keys = [k for k in keys if k in entry]
    better = [k for k in keys if entry[k]["better"] not in ("none", entry[k]["vs"])]
    worse = [k for k in keys if entry[k]["better"] == entry[k]["vs"]]
    return better, worse


def _equal_compute(quality: dict, noisy: dict) -> tuple:
    parts, wins, losses = [], 0, 0
    for pool, result in (("clean pool", quality), ("noisy pool", noisy)):
        entry = result["paired"].get("default_vs_random_x2") or {}
        better, worse = _sets_by_winner(entry)
        wins, losses = wins + len(better), losses + len(worse)
        seeds = max((e["seeds"] for k, e in entry.items() if k.endswith("_nll")), default=0)
        parts.append(f"{pool}: better on {_names(better)}, worse on {_names(worse)} ({seeds} seeds)")
    verdict = "**Yes**" if wins and not losses else "**No**"
    return (
        "Does the default select better data than a random subset trained twice (`random-x2`)?",
        f"{verdict}: {'; '.join(parts)}; table below",
        "`quality.json`, `quality_noisy.json`",
        "`python bench/quality/run.py [--noisy]`",
    )


def _names(keys: list[str]) -> str:
    return ", ".join(k.replace("_nll", "").replace("_", "-") for k in keys) or "none"


def _broken_pairs(noisy: dict) -> tuple:
    ours, ci = noisy["corrupt_pick_rate"][DEFAULT], noisy["corrupt_pick_rate_ci"][DEFAULT]["ci"]
    theirs, their_ci = noisy["corrupt_pick_rate"]["random"], noisy["corrupt_pick_rate_ci"]["random"]["ci"]
    met = ours <= theirs / 2 and ci[1] < their_ci[0]  # issue 33's goal: at most half of random's, interval below
    return (
        "Does it keep broken pairs out (at most half of random's planted picks)?",
        f"**{'Yes' if met else 'No'}**: {_pct(ours, ci)} planted picks against random's {_pct(theirs, their_ci)}",
        "`quality_noisy.json`",
        "`python bench/quality/run.py --noisy`",
    )


def _pct(x: float, ci: list[float]) -> str:
    return f"{100 * x:.0f}% [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"


def _screen(screen: dict) -> tuple:
    """Issue 33's screen rule on one seed: fewer planted picks than the default, primary at most +0.03 above it."""
    rates, passed, failed = screen["corrupt_pick_rate"], [], []
    for method in SCREENED:
        if method not in screen["methods"] or method.startswith("random"):
            continue
        entry, sign = _screen_pair(screen, method, DEFAULT)
        primary = sign * entry["primary"]["mean"] if entry.get("primary") else None
        ok = primary is not None and rates[method] < rates[DEFAULT] and primary <= SCREEN_MARGIN
        (passed if ok else failed).append(f"`{method.removeprefix(DEFAULT + '+')}` ({primary:+.3f})")
    return (
        "Which designs pass issue 33's one-seed screen (primary against the default, nats)?",
        f"pass: {', '.join(passed) or 'none'}; fail: {', '.join(failed) or 'none'}",
        "`quality_noisy_screen.json`",
        'see "Making the default pay for itself"',
    )


def _power(power: dict) -> tuple:
    plan = power["primary_planned"]
    return (
        "How small a difference can the quality benchmark detect?",
        f"{plan['mde_at_planned_seeds']:.2f} nats on the primary metric at {power['planned_seeds']} seeds "
        f"(0.03 would need {plan['seeds_for_0.03_nats']} seeds); seeds, not items, limit it",
        "`quality_power.json`",
        "`python bench/quality/power.py`",
    )


def _rescore(rescore: dict) -> tuple:
    ratio = rescore["rescore_over_lead_wall"]
    met = ratio >= GOALS["rescore_ratio"]
    return (
        "Does LEAD save compute against re-scoring the pool every round?",
        f"**{'Yes' if met else 'No'}**: `rescore` takes {ratio:.0f}× LEAD's wall time at "
        f"{rescore['pool_selectable']:,} samples (goal ≥ {GOALS['rescore_ratio']}×), growing with the pool",
        "`rescore_scale.json`",
        "`python bench/scale/rescore.py`",
    )


def _driver(scale: dict) -> tuple:
    mb = scale["run"]["10000000"]["driver_peak_rss_mb"]
    met = mb <= GOALS["driver_mb_10m"]
    return (
        "Does the driver stay small at 10M samples?",
        f"**{'Yes' if met else 'No'}**: {mb:,.0f} MB peak (goal ≤ {GOALS['driver_mb_10m']:,} MB)",
        "`scale.json`",
        "`python bench/scale/run.py`",
    )


def _bookkeeping(loop: dict) -> tuple:
    share = loop["bookkeeping"]["bookkeeping_share"]
    met = share <= GOALS["bookkeeping_share"]
    return (
        "Is selection bookkeeping ≤ 1% of a round?",
        f"**{'Yes' if met else 'No'}**: {100 * share:.2f}% with the tiny model (most of it actor calls)",
        "`loop.json`",
        "`python bench/micro/loop.py`",
    )


def _ingest(ingest: dict) -> tuple:
    rate, goal = ingest["rows_per_s"], GOALS["cold_rows_per_s"]
    return (
        "Is ingest ≥ 20k rows/s from a cold start?",
        f"**{'Yes' if rate >= goal else 'No'}**: {rate:,} rows/s with Ray's start-up, "
        f"{ingest['scaled']['marginal_rows_per_s']:,} marginal once Ray is up",
        "`ingest.json` (scoring: `offline.json`, `scorer.json`)",
        "`python bench/micro/ingest.py`",
    )


def _gpu(gpu: dict) -> tuple:
    device = gpu["header"]["device"]
    on_gpu = device != "cpu"
    verdict = (
        f'measured on {device}: the table in "The GPU check"'
        if on_gpu
        else "the demo and a 12-round bf16 run ran on one H200 (an earlier lend); throughput, memory and the GPU tests "
        "not yet measured: the GPU check is ready, its CPU dry run recorded"
    )
    return ("Does the GPU path run?", verdict, "`gpu_check*.json`", "`python bench/gpu/check.py`")
