"""Markdown tables of a bench/quality.py result, for docs/BENCHMARKS.md (numbers copied from the JSON, never typed).

python bench/quality_tables.py bench/results/quality.json
python bench/quality_tables.py --switches bench/results/quality.json bench/results/quality_noisy.json
python bench/quality_tables.py --docs docs/BENCHMARKS.md [--check]

`--docs` rewrites every block of the file that sits between a marker and its end,

    <!-- quality_tables KIND RESULT.json [RESULT.json] -->
    ...
    <!-- /quality_tables -->

with the table KIND (methods, paired, corrupt, profile, switches, gate) made from the result files named (paths
from the repository root); `--check` only says which blocks are out of date (exit 1), as the tests do.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- quality_tables (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /quality_tables -->)", re.S)

COLUMNS = [
    ("holdout_nll", "held-out NLL ↓"),
    ("gsm8k_nll", "GSM8K NLL ↓"),
    ("gsm8k_exact_match", "GSM8K EM ↑"),
    ("mmlu_correct", "MMLU acc ↑"),
    ("mmlu_nll", "MMLU NLL ↓"),
    ("mmlu_choice_nll", "MMLU choice NLL ↓"),
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


# The end-token gate's confirmation, as declared in docs/BENCHMARKS.md (2026-12-05, 04:55 UTC) before it ran:
# paired against the default over items and seeds, on the freshly planted pool and on the clean pool's unseen items
GATE_PAIR, GATE, DEFAULT = "quantile_end_gate_vs_default", "lead+quantile+end-gate", "lead+quantile"
GATE_BETTER_ON_ONE = ("gsm8k_nll", "self_instruct_nll", "holdout_clean_nll")
GATE_WORSE_ON_NONE = {
    "planted": (*GATE_BETTER_ON_ONE, "mmlu_choice_nll"),
    "fresh": ("gsm8k_nll", "mmlu_choice_nll", "self_instruct_nll"),
}
NAMES = dict(COLUMNS)


def gate_table(planted: dict, fresh: dict) -> str:
    """Each declared test of the gate's confirmation, what was measured, and whether it holds; then the verdict:
    yes (every test holds), no (a measured test fails) or open (the rest hold, a test was not measured)."""
    lines = ["| pool | test | measured (gate − default) | holds |", "|---|---|---|---|"]
    held: list[bool | None] = []

    def row(pool: str, test: str, measured: str, ok: bool | None) -> None:
        held.append(ok)
        lines.append(f"| {pool} | {test} | {measured} | {({True: 'yes', False: '**no**', None: '–'})[ok]} |")

    test = "planted picks: interval below the default's share"
    rates = planted.get("corrupt_pick_rate_ci", {})
    if GATE in rates and DEFAULT in rates:
        gate, default = rates[GATE], rates[DEFAULT]
        row("planted", test, f"{cell(gate)} against {default['mean']:.3f}", gate["ci"][1] < default["mean"])
    else:
        row("planted", test, "not measured", None)
    entries = planted["paired"].get(GATE_PAIR, {})
    test = "better on at least one of " + ", ".join(NAMES[k] for k in GATE_BETTER_ON_ONE)
    shown = "; ".join(f"{NAMES[k]} {signed(entries[k])}" for k in GATE_BETTER_ON_ONE if k in entries)
    better = any(entries.get(k, {}).get("better") == GATE for k in GATE_BETTER_ON_ONE)
    row("planted", test, shown or "not measured", better if entries else None)
    for pool, result in (("planted", planted), ("fresh", fresh)):
        entries = result["paired"].get(GATE_PAIR, {})
        for key in GATE_WORSE_ON_NONE[pool]:
            entry = entries.get(key)
            measured = f"{signed(entry)} (better: {entry['better']})" if entry else "not measured"
            row(pool, f"not worse on {NAMES[key]}", measured, entry["better"] != DEFAULT if entry else None)
    verdict = "**no**" if False in held else "yes" if all(held) else "open: a test was not measured"
    lines.append(f"| | **verdict** | {held.count(True)} of {len(held)} tests hold | {verdict} |")
    return "\n".join(lines)


def block_table(spec: str) -> str:
    """The table a marker asks for: 'KIND RESULT.json [RESULT.json]'."""
    kind, *files = spec.split()
    results = [json.loads((ROOT / f).read_text()) for f in files]
    if kind == "switches":
        return switch_table(*results)
    if kind == "gate":
        return gate_table(*results)
    tables = {"methods": methods_table, "paired": paired_table, "corrupt": corrupt_table, "profile": profile_table}
    if kind not in tables or len(results) != 1:
        raise SystemExit(f"quality_tables: bad marker {spec!r} (kinds: {', '.join([*tables, 'switches'])})")
    return tables[kind](results[0])


def update_docs(text: str) -> tuple[str, list[str]]:
    """The text with every marked block regenerated, and the specs of the blocks that changed."""
    stale: list[str] = []

    def regenerate(match: re.Match) -> str:
        body = block_table(match["spec"]) + "\n"
        if body != match["body"]:
            stale.append(match["spec"])
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(regenerate, text), stale


def main() -> None:
    if sys.argv[1] == "--docs":
        path = Path(sys.argv[2])
        text, stale = update_docs(path.read_text())
        if "--check" in sys.argv:
            print("\n".join(f"out of date: {spec}" for spec in stale) or "every table is current")
            raise SystemExit(1 if stale else 0)
        path.write_text(text)
        print(f"{len(stale)} table(s) rewritten in {path}")
        return
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
