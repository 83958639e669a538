"""The GPU check's table for the docs (marker kind `gpu_check` in bench/quality/tables.py), from the JSON that
bench/gpu/check.py wrote: one row per measurement, a failed step as its error."""

from __future__ import annotations


def _train_rows(name: str, step: dict) -> list[str]:
    if "error" in step:
        return [f"| {name} | failed: {step['error'][:120]} |"]
    a1, b, a2 = step["lead_ray_a1"], step["plain_b"], step["lead_ray_a2"]
    mfu = ", ".join("–" if p["mfu"] is None else f"{100 * p['mfu']:.1f}%" for p in (a1, b, a2))
    memory = ", ".join("–" if p["peak_memory_mib"] is None else f"{p['peak_memory_mib']:,.0f}" for p in (a1, b, a2))
    return [
        f"| {name}: tokens/s, lead-ray A1 / plain B / lead-ray A2 (padded) | "
        f"{a1['tokens_per_s']:,.0f} / {b['tokens_per_s']:,.0f} / {a2['tokens_per_s']:,.0f} "
        f"({a1['padded_tokens_per_s']:,.0f} / {b['padded_tokens_per_s']:,.0f} / {a2['padded_tokens_per_s']:,.0f}) |",
        f"| {name}: lead-ray ÷ plain (A/B/A mean; A2 alone; A1–A2 drift) | **{step['ratio']:.3f}**; "
        f"{step['ratio_a2']:.3f}; {100 * step['a_drift']:.0f}% (goal ≥ {step['goal']}) |",
        f"| {name}: step median / p95 (s), A1, B, A2 | "
        + ", ".join(f"{p['step_s_median']:.3f} / {p['step_s_p95']:.3f}" for p in (a1, b, a2))
        + " |",
        f"| {name}: MFU; peak memory (MiB), A1, B, A2 | {mfu}; {memory} |",
        f"| {name}: model load (s); trainable of {step['params']:,} parameters | {step['load_s']}; "
        f"{step['trainable_params']:,} |",
    ]


def _row(label: str, step: dict, text) -> str:
    return f"| {label} | {'failed: ' + step['error'][:120] if 'error' in step else text(step)} |"


def gpu_check_table(result: dict) -> str:
    head = result.get("header", {})
    lines = [
        "| measurement | value |",
        "|---|---|",
        f"| where | {head.get('device')}, torch {head.get('torch')}, CUDA {head.get('cuda')}, transformers "
        f"{head.get('transformers')}, model `{result.get('model')}`, commit {str(head.get('git_sha'))[:7]} |",
    ]
    for name in ("train_lora", "train_full"):
        if name in result:
            lines += _train_rows(name.replace("train_", ""), result[name])
    rows = {
        "precision": (
            "bf16 against float32 IU, one batch (max / mean relative difference)",
            lambda s: f"{s['max_rel_diff']:.2e} / {s['mean_rel_diff']:.2e}",
        ),
        "ghost": (
            "ghost products against torch.func per-sample gradients (max relative error)",
            lambda s: f"{s['max_rel_err']:.1e} (goal ≤ {s['goal']:.0e}; {s['torch_func'].split(' (')[0]})",
        ),
        "checkpoint": (
            "full model's checkpoint: size (MiB), write / restore (s)",
            lambda s: f"{s['mib']:,.0f}; {s['write_s']} / {s['restore_s']}",
        ),
        "scoring": (
            "scoring: tokens/s, padding fraction",
            lambda s: f"{s['tokens_per_s']:,.0f}, {s['padding_fraction']:.3f} ({s['dtype']})",
        ),
        "ddp": (
            "two gloo DDP workers on one device against one: largest loss difference",
            lambda s: f"{s['max_abs_diff']:.1e} over {s['steps']} steps",
        ),
    }
    for key, (label, text) in rows.items():
        if key in result:
            lines.append(_row(label, result[key], text))
    seconds = result.get("seconds", {})
    lines.append(f"| the check's own time (s) | {sum(seconds.values()):.0f} |")
    return "\n".join(lines)
