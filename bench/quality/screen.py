"""Issue 33's screen table (marker kind `screen` in bench/quality/tables.py): one seed, each design against the
default, random and random-x2, no interval."""

from __future__ import annotations

SCREENED = (
    "lead+quantile+trim",
    "lead+quantile+end-z",
    "lead+quantile+end-z+trim",
    "lead+quantile+anchor",
    "lead+quantile+anchor-grad",
    "random+end-z",
)


def screen_table(result: dict) -> str:
    """Issue 33's screen (one seed): each design's planted picks and primary metric against the default, random
    and random-x2, and its four clean sets against the default. No interval: one seed decides nothing."""
    against = {"default": "lead+quantile", "random": "random", "random-x2": "random-x2"}
    keys = ("gsm8k_nll", "mmlu_choice_nll", "self_instruct_nll", "holdout_clean_nll")
    lines = [
        "| design | planted picks | primary − default | − random | − random-x2 | "
        + " | ".join(f"{k} − default" for k in keys)
        + " |",
        "|" + "---|" * (5 + len(keys)),
    ]
    for method in ("lead+quantile", *SCREENED, "random"):
        if method not in result["methods"]:
            continue
        rate = result["corrupt_pick_rate"].get(method)
        row = [method, "–" if rate is None else f"{100 * rate:.1f}%"]
        for other in against.values():
            row.append("0" if method == other else _screen_primary(result, method, other))
        for key in keys:
            row.append(_screen_set(result, method, "lead+quantile", key))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _screen_pair(result: dict, one: str, other: str) -> tuple[dict, int]:
    """The paired entry of one − other, whatever the comparison is named, and the sign to read it with (−1 where
    only other − one was compared)."""
    from bench.quality.result import comparisons

    for name, pair in comparisons().items():
        if pair in ((one, other), (other, one)) and result["paired"].get(name):
            return result["paired"][name], 1 if pair == (one, other) else -1
    return {}, 1


def _screen_primary(result: dict, one: str, other: str) -> str:
    entry, sign = _screen_pair(result, one, other)
    primary = entry.get("primary") or {}
    return f"{sign * primary['mean']:+.3f}" if "mean" in primary else "–"


def _screen_set(result: dict, one: str, other: str, key: str) -> str:
    if one == other:
        return ""
    entry, sign = _screen_pair(result, one, other)
    return f"{sign * entry[key]['mean']:+.3f}" if key in entry else "–"
