"""Markdown tables of a bench/quality.py result, for docs/BENCHMARKS.md (numbers copied from the JSON, never typed).

python bench/quality_tables.py bench/results/quality.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [
    ("holdout_nll", "held-out NLL ↓"),
    ("gsm8k_nll", "GSM8K NLL ↓"),
    ("gsm8k_exact_match", "GSM8K EM ↑"),
    ("mmlu_correct", "MMLU acc ↑"),
    ("mmlu_nll", "MMLU NLL ↓"),
    ("self_instruct_nll", "self-instruct NLL ↓"),
    ("holdout_clean_nll", "held-out NLL, unplanted items ↓"),
]


def cell(entry: dict | None, digits: int = 3) -> str:
    if not entry:
        return "–"
    lo, hi = entry["ci"]
    return f"{entry['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def methods_table(result: dict) -> str:
    keys = [k for k, _ in COLUMNS if k in result["methods"]["base"]["sets"]]
    head = "| method | seeds | " + " | ".join(t for k, t in COLUMNS if k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 2)]
    order = ["base"] + [m for m in result["methods"] if m != "base"]
    for name in order:
        m = result["methods"][name]
        seeds = ",".join(str(s) for s in m["seeds"]) or "–"
        lines.append(f"| {name} | {seeds} | " + " | ".join(cell(m["sets"].get(k)) for k in keys) + " |")
    return "\n".join(lines)


def paired_table(result: dict) -> str:
    pairs = [p for p in result["paired"] if p != "sign" and result["paired"][p]]
    keys = [k for k, _ in COLUMNS if any(k in result["paired"][p] for p in pairs)]
    lines = ["| pair | " + " | ".join(t for k, t in COLUMNS if k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for p in pairs:
        row = []
        for k in keys:
            e = result["paired"][p].get(k)
            vs = f" (vs {e['vs']})" if e and p == "lead_vs_best_static" else ""  # the best one differs per column
            row.append(
                "–" if not e else f"{e['mean']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}] **{e['better']}**{vs}"
            )
        lines.append(f"| {p} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def corrupt_table(result: dict) -> str:
    if "corrupt_pick_rate" not in result:
        return ""
    kinds = sorted(result.get("corrupt_planted_by_kind", {}))
    lines = [
        "| | corrupt share [95% interval] | " + " | ".join(kinds) + " |",
        "|" + "---|" * (len(kinds) + 2),
        f"| planted (selectable pool) | {result['corrupt_planted_rate']:.3f} | "
        + " | ".join(f"{result['corrupt_planted_by_kind'][k]:.3f}" for k in kinds)
        + " |",
    ]
    for m, r in result["corrupt_pick_rate"].items():
        by_kind = result.get("corrupt_pick_by_kind", {}).get(m, {})
        share = cell(result.get("corrupt_pick_rate_ci", {}).get(m)) if r is not None else "–"
        lines.append(f"| {m} picks | {share} | " + " | ".join(f"{by_kind[k]:.3f}" for k in kinds) + " |")
    return "\n".join(lines)


def profile_table(result: dict) -> str:
    """What each method trained, per seed: the median answer length of its picks and the tokens it trained."""
    profile = result.get("pick_profile")
    if not profile:
        return ""
    lines = [
        f"| method | median answer tokens of picks (pool: {profile['pool_median_response_tokens']:g}) "
        "| trained samples | trained answer tokens |",
        "|---|---|---|---|",
    ]
    for method, seeds in profile.items():
        if method == "pool_median_response_tokens":
            continue
        rows = seeds.values()
        lines.append(
            f"| {method} | "
            + " | ".join(
                ", ".join(f"{r[k]:,g}" for r in rows)
                for k in ("median_response_tokens", "trained_samples", "trained_response_tokens")
            )
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    result = json.loads(Path(sys.argv[1]).read_text())
    print(
        f"complete: {result.get('complete')}; pool_selectable {result['pool_selectable']}, budget {result['budget']}, "
        f"eval sizes {result['eval_sizes']}\n"
    )
    print(methods_table(result), "\n")
    print(paired_table(result), "\n")
    print(corrupt_table(result), "\n")
    print(profile_table(result))


if __name__ == "__main__":
    main()
