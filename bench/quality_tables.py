"""Markdown tables of a bench/quality.py result, for docs/BENCHMARKS.md (numbers copied from the JSON, never typed).

python bench/quality_tables.py bench/results/quality.json
python bench/quality_tables.py --switches bench/results/quality.json bench/results/quality_noisy.json
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


def signed(entry: dict) -> str:
    """A paired difference and its interval, signs shown."""
    return f"{entry['mean']:+.3f} [{entry['ci'][0]:+.3f}, {entry['ci'][1]:+.3f}]"


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
            row.append("–" if not e else f"{signed(e)} **{e['better']}**{vs}")
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


DOWNSTREAM_COLUMNS = [("gsm8k_nll", "GSM8K NLL"), ("mmlu_nll", "MMLU NLL"), ("self_instruct_nll", "self-instruct NLL")]


def switch_table(clean: dict, noisy: dict) -> str:
    """Each one-switch ablation against the paper's LEAD on both pools: paired differences on the downstream
    NLLs (below 0: the switch is better) and, on the noisy pool, the share of planted pairs among its picks."""
    head = ["switch", "pool", "seeds"] + [t for _, t in DOWNSTREAM_COLUMNS] + ["held-out NLL", "planted picks"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    paper_rate = noisy.get("corrupt_pick_rate_ci", {}).get("lead")
    lines.append("| lead (the paper) | noisy | | | | | | " + (cell(paper_rate) if paper_rate else "–") + " |")
    switches = [p for p in {**clean["paired"], **noisy["paired"]} if p.endswith("_vs_paper")]
    for pair in switches:
        name = "lead-robust" if pair == "robust_vs_paper" else pair.removesuffix("_vs_paper")
        for pool, result in (("clean", clean), ("noisy", noisy)):
            entries = result["paired"].get(pair) or {}
            if not entries:
                lines.append(f"| {name} | {pool} | 0 |" + " – |" * (len(head) - 3))
                continue
            seeds = max(e.get("seeds", 1) for e in entries.values())
            row = [_signed(entries.get(k)) for k, _ in DOWNSTREAM_COLUMNS] + [_signed(entries.get("holdout_nll"))]
            rate = result.get("corrupt_pick_rate_ci", {}).get(name)
            row.append(cell(rate) if rate else "–")
            lines.append(f"| {name} | {pool} | {seeds} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _signed(entry: dict | None) -> str:
    if not entry:
        return "–"
    mark = "" if entry["better"] == "none" else " **paper**" if entry["better"] == entry["vs"] else " **switch**"
    return signed(entry) + mark


def main() -> None:
    if sys.argv[1] == "--switches":
        clean, noisy = (json.loads(Path(f).read_text()) for f in sys.argv[2:4])
        print(switch_table(clean, noisy))
        return
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
