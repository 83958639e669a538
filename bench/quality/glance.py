"""The README's results-at-a-glance table: the default against its controls on the quality benchmark's three
comparisons (clean pool, noisy pool, unseen clean items), every number read from the result files.

Written into README.md by `python bench/quality/tables.py --docs README.md` (marker kind `glance`).
"""

from __future__ import annotations

# (the comparison's label, which result file of the three, the pair in its `paired`, the control's name)
ROWS = [
    ("clean pool", 0, "default_vs_random", "random"),
    ("clean pool", 0, "default_vs_random_x2", "random-x2"),
    ("noisy pool (15% planted)", 1, "default_vs_random", "random"),
    ("noisy pool (15% planted)", 1, "default_vs_random_x2", "random-x2"),
    ("unseen clean items", 2, "default_vs_random", "random"),
]
COLUMNS = [
    ("gsm8k_nll", "GSM8K NLL"),
    ("mmlu_choice_nll", "MMLU choice NLL"),
    ("self_instruct_nll", "self-instruct NLL"),
    ("holdout_clean_nll", "held-out NLL"),
]


def _difference(entry: dict | None, default: str) -> str:
    """'−0.110 [−0.160, −0.066] better': the default minus the control, and which side the interval favours."""
    if not entry:
        return "–"
    lo, hi = entry["ci"]
    verdict = "no difference" if entry["better"] == "none" else ("better" if entry["better"] == default else "worse")
    if entry["better"] == "none" and (lo > 0 or hi < 0):  # the items' interval excludes 0, the seeds' does not
        verdict = "no difference over seeds"
    elif entry["better"] != "none" and "seed_t_interval" not in entry:  # a result file older than the t-interval
        verdict += " (bootstrap only)"
    return f"{entry['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict}"


def _planted(result: dict, method: str) -> str:
    share = result.get("corrupt_pick_rate_ci", {}).get(method)
    return f"{100 * share['mean']:.0f}% [{100 * share['ci'][0]:.0f}, {100 * share['ci'][1]:.0f}]" if share else "–"


def _seeds(result: dict, one: str, other: str) -> str:
    shared = set(result["methods"][one]["seeds"]) & set(result["methods"][other]["seeds"])
    return str(len(shared))


def glance_table(*results: dict) -> str:
    """One row per (comparison, control): paired ΔNLL (default − control; below 0 the default is better) with
    its 95% interval over items and seeds, and on the noisy pool the planted share of each side's picks."""
    head = ["comparison", "control", "seeds", *(t for _, t in COLUMNS), "planted picks: default / control"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, which, pair, control in ROWS:
        result = results[which]
        default = result["default_method"]
        entry = result["paired"].get(pair) or {}
        # the held-out split has planted pairs on the noisy pool: its unplanted items are the clean column there
        sets = {
            k: entry.get(k) or (entry.get("holdout_nll") if k == "holdout_clean_nll" and which == 0 else None)
            for k, _ in COLUMNS
        }
        planted = f"{_planted(result, default)} / {_planted(result, control)}" if which == 1 else "–"
        cells = [_difference(sets[k], default) for k, _ in COLUMNS]
        lines.append(
            f"| {label} | {control} | {_seeds(result, default, control)} | " + " | ".join(cells) + f" | {planted} |"
        )
    return "\n".join(lines)
