"""Issue 33's decision rule (docs/BENCHMARK_LOG.md, declared 2026-12-07 04:15 UTC), applied to the result files by
code, not by a reader: each design's three goals on each pool, yes / no / open, and the verdict.

  (1) on both plantings its planted-pick share is at most half of random's, its interval below random's;
  (2) no clean downstream set (GSM8K NLL, MMLU choice_nll, self-instruct NLL) is worse than under the default on
      any pool (worse: both intervals exclude 0, as every pooled difference's `better` says);
  (3) its primary metric against random-x2 (a filter: against random-x2 with the same filter) is better on the
      clean pool and on both plantings.

A goal is measured only on 5 seeds of both sides; fewer leave it open. Marker kind `decision` in
bench/quality/tables.py, with the clean, seed-0 planted and fresh planted result files.
"""

from __future__ import annotations

from dataclasses import dataclass

SEEDS = 5
DEFAULT = "lead+quantile"
CLEAN_SETS = ("gsm8k_nll", "mmlu_choice_nll", "self_instruct_nll")
POOLS = ("clean", "seed-0 planting", "fresh planting")


@dataclass(frozen=True)
class Design:
    method: str
    pair: str  # the name its comparisons carry in `paired`
    control_x2: str  # the pair of its primary-metric test (3)


DESIGNS = (
    Design("lead+quantile+trim", "trim", "trim_vs_random_x2"),
    Design("lead+quantile+end-z", "end_z", "end_z_vs_random_x2_end_z"),
    Design("lead+quantile+end-z+trim", "end_z_trim", "end_z_trim_vs_random_x2_end_z"),
    # the learner never trains on the anchor (only the reference model does): random-x2 as it is
    Design("lead+quantile+anchor", "anchor", "anchor_vs_random_x2"),
)
MARK = {True: "yes", False: "**no**", None: "open"}


def _seeds(entry: dict | None) -> int:
    return int((entry or {}).get("seeds") or 0)


def planted_half(result: dict, method: str) -> tuple[str, bool | None]:
    """Goal (1) on one planting: the design's share against random's, and whether it holds."""
    rates = result.get("corrupt_pick_rate_ci", {})
    mine, theirs = rates.get(method), rates.get("random")
    if not mine or not theirs:
        return "not run", None
    lo, hi = (100 * x for x in mine["ci"])
    text = f"{100 * mine['mean']:.1f}% [{lo:.1f}, {hi:.1f}] vs {100 * theirs['mean']:.1f}%"
    if min(_seeds(mine), _seeds(theirs)) < SEEDS:
        n = min(_seeds(mine), _seeds(theirs))
        return f"{text} ({n} seed{'s' * (n != 1)})", None
    return text, mine["mean"] <= theirs["mean"] / 2 and mine["ci"][1] < theirs["ci"][0]


def clean_sets_not_worse(results: list[dict], design: Design) -> tuple[str, bool | None]:
    """Goal (2) over every pool: the clean sets on which the design is worse than the default."""
    worse, short = [], False
    for pool, result in zip(POOLS, results):
        entries = result.get("paired", {}).get(f"{design.pair}_vs_default", {})
        for key in CLEAN_SETS:
            entry = entries.get(key)
            if _seeds(entry) < SEEDS:
                short = True
            elif entry["better"] == DEFAULT:
                worse.append(f"{key} on the {pool} ({entry['mean']:+.3f})")
    if worse:
        return "worse: " + "; ".join(worse), False
    return ("none worse so far" if short else "none worse"), (None if short else True)


def primary_better(result: dict, design: Design) -> tuple[str, bool | None]:
    """Goal (3) on one pool: the primary metric against the random-x2 control, both intervals."""
    primary = result.get("paired", {}).get(design.control_x2, {}).get("primary")
    if not primary or "mean" not in primary:
        return "not run", None
    if primary["seeds"] < SEEDS or "ci" not in primary:
        n = primary["seeds"]
        return f"{primary['mean']:+.3f} ({n} seed{'s' * (n != 1)})", None
    lo, hi = primary["ci"]
    text = f"{primary['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    return text, primary["better"] == design.method


def decision_table(clean: dict, planted: dict, fresh: dict) -> str:
    """One row per design: each goal's measurement and mark, and the verdict (yes only when every goal holds)."""
    head = ["design", "(1) seed-0 planting", "(1) fresh planting", "(2) clean sets vs the default"]
    head += [f"(3) primary vs random-x2, {pool}" for pool in POOLS] + ["verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    results = [clean, planted, fresh]
    for design in DESIGNS:
        cells = [planted_half(planted, design.method), planted_half(fresh, design.method)]
        cells.append(clean_sets_not_worse(results, design))
        cells += [primary_better(result, design) for result in results]
        marks = [ok for _, ok in cells]
        verdict = "**no**" if False in marks else "yes" if all(marks) else "open"
        lines.append(
            f"| {design.method} | " + " | ".join(f"{text}: {MARK[ok]}" for text, ok in cells) + f" | {verdict} |"
        )
    return "\n".join(lines)
