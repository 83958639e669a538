"""Tables for the docs from bench/results/scale.json and loop.json (marker kinds `scale_run` and `loop` in
bench/quality/tables.py), so the per-round figures in SCALING.md and BENCHMARKS.md are the result files'."""

from __future__ import annotations

GOALS = {"select_round_s": 1.0, "read_round_s": 2.0}  # issue 34's per-round goals at 10M


def _met(value: float, goal: float) -> str:
    return f"{value:,.3g} ({'met' if value <= goal else '**not met**'}: ≤ {goal})"


def scale_run_table(result: dict) -> str:
    """The run stage at each pool size: time to the first round, a round's selection and read, memory."""
    lines = [
        "| samples | index (s) | selection columns (s) | layout (s) | store up (s) | first round ready (s) | "
        "select a round (s), mean / max | read a round, one worker (s) | rows read | driver peak RSS (MB) | "
        "largest Ray process (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in sorted(result.get("run", {}).items(), key=lambda kv: int(kv[0])):
        big = int(n) >= 10_000_000
        select = _met(r["select_round_s"], GOALS["select_round_s"]) if big else f"{r['select_round_s']:,.3g}"
        read = _met(r["read_round_s"], GOALS["read_round_s"]) if big else f"{r['read_round_s']:,.3g}"
        rows_read = f"~{round(sum(r['read_rows']) / len(r['read_rows'])):,}" if "read_rows" in r else "–"
        lines.append(
            f"| {int(n) // 1_000_000}M | {r['index_s']} | {r['read_selection_s']} | {r['write_layout_s']} | "
            f"{r['start_store_s']} | **{r['first_round_ready_s']}** | {select} / {r['select_round_s_max']} | {read} | "
            f"{rows_read} | {r['driver_peak_rss_mb']:,.0f} | {r['max_process_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def loop_table(result: dict) -> str:
    """bench/micro/loop.py's bookkeeping share of a round and what it is made of, per round."""
    b = result["bookkeeping"]
    rounds = b["rounds"]
    per_round = {k: 1000 * b[k] / rounds for k in ("selection_s", "read_s", "push_s", "finish_s", "train_s")}
    share = b["bookkeeping_share"]
    return "\n".join(
        [
            "| bookkeeping share of a round | selection | reading the round's rows | pushes | finish | training |",
            "|---|---|---|---|---|---|",
            f"| **{100 * share:.2f}%** ({'met' if share <= 0.01 else '**not met**'}: goal ≤ 1%) | "
            + " | ".join(f"{per_round[k]:,.1f} ms" for k in ("selection_s", "read_s", "push_s", "finish_s"))
            + f" | {per_round['train_s'] / 1000:,.2f} s |",
        ]
    )
