"""Markdown tables of a bench/quality/run.py result, for docs/BENCHMARKS.md (numbers copied from the JSON, never typed).

python bench/quality/tables.py bench/results/quality.json
python bench/quality/tables.py --switches bench/results/quality.json bench/results/quality_noisy.json
python bench/quality/tables.py --docs docs/BENCHMARKS.md [--check]   (and README.md)

`--docs` rewrites every block between `<!-- quality_tables KIND RESULT.json ... -->` and `<!-- /quality_tables -->`
with the table KIND (methods, paired, corrupt, profile, primary, screen; over several files: switches, glance,
decision, or a declared confirmation: gate, total-choice) made from the result files named (paths from the
repository root); `--check` only says which blocks are out of date (exit 1), as the tests do.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench.quality.result's comparison names, when run as a script

from bench.gpu.table import gpu_check_table  # noqa: E402
from bench.micro.table import MICRO_TABLES, spread_table  # noqa: E402
from bench.quality.decision import decision_table  # noqa: E402
from bench.quality.glance import glance_table  # noqa: E402
from bench.quality.screen import screen_table  # noqa: E402
from bench.quality.summary import summary_table  # noqa: E402
from bench.scale.table import loop_table, scale_run_table  # noqa: E402

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
    """What each method trained, per seed: the median answer length of its picks and the tokens it trained (its
    answer tokens, where every gradient comes from, and all its tokens, the training compute; – where the result
    file predates that column)."""
    profile = result.get("pick_profile")
    if not profile:
        return ""
    lines = [
        f"| method | median answer tokens of picks (pool: {profile['pool_median_response_tokens']:g}) "
        "| trained samples | trained answer tokens | trained tokens, prompt and answer |",
        "|---|---|---|---|---|",
    ]
    keys = ("median_response_tokens", "trained_samples", "trained_response_tokens", "trained_tokens")
    for method, seeds in profile.items():
        if method == "pool_median_response_tokens":
            continue
        cells = [", ".join(f"{r[k]:,g}" if k in r else "–" for r in seeds.values()) for k in keys]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
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


NAMES = dict(COLUMNS)


@dataclass(frozen=True)
class Declared:
    """A confirmation as declared in docs/BENCHMARK_LOG.md before it ran: a candidate paired against a reference
    method over items and seeds, and its tests, each (pool, kind, metric or compared method). The pools name the
    result files of the marker, in order. Kinds: `rate_below` (the candidate's planted-pick interval lies below
    the method's share), `rate_half` (its share is at most half of the method's and its interval lies below the
    method's interval), `better_on_one` (better on one of the metrics), `not_worse` (the interval is not above 0)."""

    candidate: str
    reference: str
    pair: str
    label: str
    pools: tuple[str, ...]
    tests: tuple[tuple[str, str, str | tuple[str, ...]], ...]


_DOWNSTREAM_NLLS = ("gsm8k_nll", "mmlu_choice_nll", "self_instruct_nll")
_GATE_BETTER_ON_ONE = ("gsm8k_nll", "self_instruct_nll", "holdout_clean_nll")
DECLARED = {
    # The end-token gate (2026-12-05, 04:55 UTC): the freshly planted pool and the clean pool's unseen items
    "gate": Declared(
        "lead+quantile+end-gate",
        "lead+quantile",
        "quantile_end_gate_vs_default",
        "gate − default",
        ("planted", "fresh"),
        (
            ("planted", "rate_below", "lead+quantile"),
            ("planted", "better_on_one", _GATE_BETTER_ON_ONE),
            *(("planted", "not_worse", k) for k in (*_GATE_BETTER_ON_ONE, "mmlu_choice_nll")),
            *(("fresh", "not_worse", k) for k in _DOWNSTREAM_NLLS),
        ),
    ),
    # `rank_by: total` read again on MMLU choice_nll (2026-12-05, 06:25 UTC): the tests of 2026-11-24 with
    # MMLU NLL replaced by MMLU choice NLL; (a) the clean pool's unseen items, (b) and (c) the planted pool
    "total-choice": Declared(
        "lead+quantile+total",
        "lead+quantile",
        "quantile_total_vs_default",
        "total − default",
        ("planted", "fresh"),
        (
            *(("fresh", "not_worse", k) for k in ("gsm8k_nll", "mmlu_choice_nll")),
            *(("planted", "not_worse", k) for k in _DOWNSTREAM_NLLS),
            ("planted", "rate_half", "random"),
        ),
    ),
}


def _rate_test(declared: Declared, result: dict, kind: str, other: str) -> tuple[str, str, bool | None]:
    """The planted-pick test: its name, what was measured and whether it holds (None: not measured)."""
    rates = result.get("corrupt_pick_rate_ci", {})
    who = "the default" if other == declared.reference else other
    if kind == "rate_below":
        test = f"planted picks: interval below {who}'s share"
    else:
        test = f"planted picks: at most half of {who}'s, interval below {who}'s"
    if declared.candidate not in rates or other not in rates:
        return test, "not measured", None
    mine, theirs = rates[declared.candidate], rates[other]
    if kind == "rate_below":
        return test, f"{cell(mine)} against {theirs['mean']:.3f}", mine["ci"][1] < theirs["mean"]
    holds = mine["mean"] <= theirs["mean"] / 2 and mine["ci"][1] < theirs["ci"][0]
    return test, f"{cell(mine)} against {cell(theirs)}", holds


def confirmation_table(declared: Declared, *results: dict) -> str:
    """Each declared test, what was measured, and whether it holds; then the verdict: yes (every test holds),
    no (a measured test fails) or open (the rest hold, a test was not measured)."""
    lines = [f"| pool | test | measured ({declared.label}) | holds |", "|---|---|---|---|"]
    held: list[bool | None] = []
    by_pool = dict(zip(declared.pools, results, strict=True))
    for pool, kind, what in declared.tests:
        result = by_pool[pool]
        entries = result["paired"].get(declared.pair, {})
        if kind in ("rate_below", "rate_half"):
            test, measured, ok = _rate_test(declared, result, kind, what)
        elif kind == "better_on_one":
            test = "better on at least one of " + ", ".join(NAMES[k] for k in what)
            measured = "; ".join(f"{NAMES[k]} {signed(entries[k])}" for k in what if k in entries) or "not measured"
            ok = any(entries.get(k, {}).get("better") == declared.candidate for k in what) if entries else None
        else:
            entry = entries.get(what)
            test = f"not worse on {NAMES[what]}"
            measured = f"{signed(entry)} (better: {entry['better']})" if entry else "not measured"
            ok = entry["better"] != declared.reference if entry else None
        held.append(ok)
        lines.append(f"| {pool} | {test} | {measured} | {({True: 'yes', False: '**no**', None: '–'})[ok]} |")
    verdict = "**no**" if False in held else "yes" if all(held) else "open: a test was not measured"
    lines.append(f"| | **verdict** | {held.count(True)} of {len(held)} tests hold | {verdict} |")
    return "\n".join(lines)


DECISION_PAIRS = (  # issue 33's comparisons, in the order a reader asks them
    "default_vs_random",
    "default_vs_random_x2",
    "trim_vs_default",
    "trim_vs_random",
    "trim_vs_random_x2",
    "end_z_vs_default",
    "end_z_vs_random_end_z",
    "end_z_vs_random_x2_end_z",
    "end_z_trim_vs_default",
    "end_z_trim_vs_random",
    "end_z_trim_vs_random_end_z",
    "end_z_trim_vs_random_x2_end_z",
    "end_z_trim_vs_random_x1_6_end_z",  # token-matched (declared 2026-12-07 20:24 UTC)
    "anchor_vs_default",
    "anchor_vs_random",
    "anchor_vs_random_x2",
    "anchor_vs_random_x1_3",  # token-matched
    "random_end_z_vs_random",
    "random_vs_random_x2",  # what twice the tokens buys a random subset
)


def primary_table(result: dict) -> str:
    """Issue 33's primary metric per comparison: mean ΔNLL over the four clean sets with the two-level bootstrap
    and the t-interval over per-seed values, the verdict (both must exclude 0), and the mde at 5 seeds."""
    lines = [
        "| comparison | seeds | primary ΔNLL [bootstrap 95%] | t-interval over seeds | better | mde at 5 seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name in DECISION_PAIRS:
        entry = (result["paired"].get(name) or {}).get("primary")
        if not entry:
            continue
        if "mean" not in entry:
            missing = ", ".join(entry.get("missing", [])) or "fewer than 2 seeds"
            lines.append(f"| {name} | {entry.get('seeds', 0)} | not measured ({missing}) | – | – | – |")
            continue
        lo, hi = entry["seed_t_interval"]
        lines.append(
            f"| {name} | {entry['seeds']} | {signed(entry)} | [{lo:+.3f}, {hi:+.3f}] | {entry['better']} | "
            f"{entry['mde']['nats']:.3f} |"
        )
    return "\n".join(lines)


def block_table(spec: str) -> str:
    """The table a marker asks for: 'KIND RESULT.json ...'."""
    kind, *files = spec.split()
    results = [json.loads((ROOT / f).read_text()) for f in files]
    several = {"switches": switch_table, "glance": glance_table, "decision": decision_table}
    several |= {"summary": summary_table, "spread": spread_table}
    several |= {name: lambda *r, d=declared: confirmation_table(d, *r) for name, declared in DECLARED.items()}
    if kind in several:
        return several[kind](*results)
    tables = {"methods": methods_table, "paired": paired_table, "corrupt": corrupt_table, "profile": profile_table}
    tables |= {"primary": primary_table, "screen": screen_table, "gpu_check": gpu_check_table}
    tables |= {"scale_run": scale_run_table, "loop": loop_table, **MICRO_TABLES}
    if kind not in tables or len(results) != 1:
        raise SystemExit(f"quality_tables: bad marker {spec!r} (kinds: {', '.join([*tables, *several])})")
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
