"""Tables for docs/BENCHMARKS.md from the micro- and scale-benchmarks' result files (marker kinds `ingest`,
`embed`, `iu0`, `cluster_cost`, `cluster_quality`, `scorer`, `delta_cost` and `rescore` in
bench/quality/tables.py), so the figures the docs give are the result files' latest run."""

from __future__ import annotations

SCORER_ROWS = (  # bench/micro/scorer.py's variants, in the order and words the docs give them
    ("fp32 full", "float32, logits at every position (the earlier scorer)"),
    ("fp32 response", "float32, logits from the first response position (`logits_to_keep`)"),
    ("bf16 autocast", "float32 weights, CPU bf16 autocast, response-only"),
    ("bf16 weights", "bf16 weights, response-only"),
)

DELTA_MODELS = {  # bench/micro/delta_cost.py's models and where their direction layer is
    "smollm2-lora": "SmolLM2-135M + LoRA (r 16, bf16 autocast), the last layer's adapters",
    "tiny-full": "tiny preset, full fine-tuning, the last layer's linear weights",
}


def ingest_table(r: dict) -> str:
    """bench/micro/ingest.py: the cold run, Ray's share of it, and the 26-copy run's marginal rate."""
    s, big = r["seconds"], r["scaled"]
    rows = [
        (
            "rows read = accepted + rejected + duplicates",
            f"{r['rows']:,} = {r['accepted']:,} + {r['rejected']:,} + {r['duplicates']:,} ({r['input_mb']} MB)",
        ),
        (
            "cold run: wall from before `ray.init` to `prepare_stats.json` written",
            f"{s['wall_incl_ray_start']} s → **{r['rows_per_s']:,} rows/s** (goal ≥ 20,000: "
            f"{'met' if r['rows_per_s'] >= 20_000 else '**not met**'})",
        ),
        ("of which `ray.init` (with the dashboard, which Ray Train needs)", f"{s['ray_init']} s"),
        ("the same run after Ray's start-up", f"{r['rows_per_s_after_ray_start']:,} rows/s"),
        ("warm Ray, the pool again", f"{big['warm_1x_seconds']} s"),
        (
            f"warm Ray, {big['copies']} copies of the pool ({big['rows']:,} rows)",
            f"{big['seconds']} s → {big['rows_per_s']:,} rows/s; **marginal {big['marginal_rows_per_s']:,} rows/s**",
        ),
        ("peak RSS: driver / driver + every Ray process", f"{r['driver_peak_rss_mb']:,} MB / {r['peak_rss_mb']:,} MB"),
    ]
    return _table(["measure", "value"], rows)


def embed_table(r: dict) -> str:
    """bench/micro/offline.py's prompt embeddings: plain sentence-transformers against the Ray Data actor pool."""
    e = r["embedding"]
    rows = [
        ("plain sentence-transformers, one process, 2 threads, before Ray starts", f"{e['plain_texts_per_s']:.1f}"),
        ("the same with Ray running idle beside it", f"{e['plain_texts_per_s_with_ray_idle']:.1f}"),
        (
            "Ray Data actor pool (the score stage's path), steady state (actor busy time)",
            f"{e['ray_steady_texts_per_s']:.1f} → **ratio {e['embed_ratio_steady_vs_st']:.2f}** (goal ≥ 0.85)",
        ),
        (
            "Ray Data actor pool, wall clock including actor start-up",
            f"{e['ray_wall_texts_per_s']:.1f} → ratio {e['embed_ratio_vs_st']:.2f}",
        ),
        (
            f"FLOP-bound limit at the measured {e['matmul_gflops']:.0f} GFLOP/s float32 matmul rate",
            f"{e['flop_bound_texts_per_s']:.0f} (plain reaches {100 * e['plain_share_of_flop_bound']:.0f}% of it)",
        ),
    ]
    return _table(["path", "texts/s"], rows)


def iu0_table(r: dict) -> str:
    """bench/micro/offline.py's IU₀ scoring speed on the tiny preset and on SmolLM2."""
    rows = []
    for key, name in (("iu0_tiny", "tiny preset"), ("iu0_smollm2_135m", "SmolLM2-135M-Instruct (GGUF, float32)")):
        m = r[key]
        rows.append(
            (
                f"{name}: {m['params_m']:.2f} M parameters, {m['samples']} samples, {m['tokens']:,} tokens",
                f"{m['tokens_per_s']:,.0f}",
            )
        )
    return _table(["model", "tokens/s"], rows)


def cluster_cost_table(r: dict) -> str:
    """bench/micro/offline.py's clustering cost at each N (each in its own process)."""
    header = ["N", "vectors", "1-D difficulty k-means", "task k-means fit (20k sample)", "assignment of all N"]
    header += ["fit + assign", "assignment = exact", "peak RSS", "near-dup k-NN (build + query)"]
    rows = [
        [f"{c['n']:,}", f"{c['vectors_mb']:,.0f} MB", f"{c['difficulty_kmeans_s']:.2f} s", f"{c['task_fit_s']:.2f} s"]
        + [f"{c['assign_s']:.2f} s", f"{c['kmeans_assign_s']:.2f} s", f"{100 * c['assign_agreement_vs_exact']:.1f}%"]
        + [f"{c['peak_rss_mb']:,.0f} MB", f"{c['near_dup_knn_s']:.1f} s" if "near_dup_knn_s" in c else "not run"]
        for c in r["clustering_cost"]
    ]
    return _table(header, rows)


def cluster_quality_table(r: dict) -> str:
    """bench/micro/offline.py's task clusters against known labels, beside a random assignment."""
    names = {
        "source_group": "source group (code, role-play, tool use, GSM8K, self-instruct, T0)",
        "t0_task_family": "T0 task family (T0 prompts only)",
    }
    header = ["ground truth", "classes", "points", "ARI", "purity", "ARI, random assignment", "purity, random"]
    rows = [
        [names.get(key, key), q["classes"], f"{q['points']:,}", f"**{q['ari']:.2f}**", f"{q['purity']:.2f}"]
        + [_no_minus_zero(q["ari_random"], 3), f"{q['purity_random']:.2f}"]
        for key, q in r["quality"].items()
    ]
    return _table(header, rows)


def scorer_table(r: dict) -> str:
    """bench/micro/scorer.py: each scoring variant's speed and its distance from float32."""
    rows = []
    for key, name in SCORER_ROWS:
        v = r["variants"][key]
        same = key == "fp32 full"
        vs = "—" if same else f"{100 * v['mean_nll_rel_diff']:.2g}%"
        diff = "—" if same else f"{100 * v['mean_rel_diff']:.2g}% / {100 * v['max_rel_diff']:.2g}%"
        rows.append([name, f"{v['tokens_per_s']:,.0f}", f"{v['mean_nll']:.4f}", vs, diff])
    header = ["variant", "tokens/s", "mean NLL", "mean NLL vs fp32", "per-sample rel. diff (mean / max)"]
    return _table(header, rows)


def delta_cost_table(r: dict) -> str:
    """bench/micro/delta_cost.py: a pass with the per-sample hooks idle against one with them at work."""
    header = ["model", "direction parameters", "round mode, s / pass (median)", "sample mode, s / pass (median)"]
    header += ["round-mode passes, min–max", "overhead (goal ≤ 5%)"]
    rows = [
        [DELTA_MODELS.get(key, key), f"{m['direction_params']:,}", f"{m['median_round_s']:.3g}"]
        + [f"{m['median_sample_s']:.3g}", f"{min(m['seconds_round']):.3g}–{max(m['seconds_round']):.3g}"]
        + [f"{100 * m['overhead']:+.1f}%"]
        for key, m in r["models"].items()
    ]
    return _table(header, rows)


def rescore_table(r: dict) -> str:
    """bench/scale/rescore.py: LEAD against re-scoring the whole pool every round, and their ratio."""
    header = ["", "rounds", "unique selected", "wall s", "selection s", "training s", "pool forwards"]
    rows = [
        [name, m["rounds"], f"{m['unique_selected']:,}", f"{m['wall_seconds']:,.1f}", f"{m['selection_seconds']:,.2f}"]
        + [f"{m['training_seconds']:,.1f}", f"{m['pool_forward_samples']:,}"]
        for name, m in r["methods"].items()
    ]
    ratio, goal = r["rescore_over_lead_wall"], r["goal_wall_ratio"]
    verdict = "met" if ratio >= goal else "**not met**"
    both = f"{r['rescore_over_lead_selection_plus_training']:.0f}× on selection + training"
    rows.append(["rescore / lead", "", "", f"**{ratio:.0f}×** (goal ≥ {goal}×: {verdict})", both, "", ""])
    return _table(header, rows)


def _signed(x: float) -> str:
    """x with its sign to 3 decimals, or 0 where it rounds to zero."""
    return "0" if round(x, 3) == 0 else f"{x:+.3f}"


def _no_minus_zero(x: float, digits: int) -> str:
    """x rounded, without the sign of a value that rounds to zero (-0.000)."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _table(header: list[str], rows: list) -> str:
    """A Markdown table: the header's cells, then each row's."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def selection_runs_table(r: dict) -> str:
    """bench/micro/selection.py: each method and budget, means over its seeds (held-out NLL with its range)."""
    groups: dict[tuple, list[dict]] = {}
    for row in r["rows"]:
        groups.setdefault((row["method"], row["budget"]), []).append(row)
    header = ["method", "budget", "wall s", "selection s", "training s", "rounds", "unique", "trained"]
    header += ["pool forwards", "held-out NLL (min–max)", "GSM8K NLL", "self-instr. NLL", "MMLU NLL", "MMLU acc"]
    rows = []
    for (method, budget), runs in groups.items():
        m = {k: sum(x[k] for x in runs) / len(runs) for k, v in runs[0].items() if isinstance(v, (int, float))}
        held = [x["nll_holdout"] for x in runs]
        if method == "base":
            rows.append(["base (no online training)", "—", "—", "—", "—", 0, 0, 0, 0, f"{held[0]:.3f}"] + _evals(m))
            continue
        spread = f" ({min(held):.3f}–{max(held):.3f})" if len(held) > 1 else ""
        rows.append(
            [method, f"{100 * budget:.1f}%", f"{m['wall_s']:.1f}", f"{m['selection_s']:.2f}", f"{m['training_s']:.1f}"]
            + [f"{m['rounds']:.1f}", f"{m['unique']:,.0f}", f"{m['samples_trained']:,.0f}"]
            + [f"{m['pool_forward_samples']:,.0f}", f"{m['nll_holdout']:.3f}{spread}"]
            + _evals(m)
        )
    return _table(header, rows)


def _evals(means: dict) -> list[str]:
    return [f"{means[k]:.3f}" for k in ("nll_gsm8k", "nll_self_instruct", "nll_mmlu", "mmlu_acc")]


def selection_goals_table(r: dict) -> str:
    """bench/micro/selection.py's ratios against their goals (5% budget; 2.5% in brackets where measured)."""
    ratios, nll, cost = r["ratios"], r["heldout_nll"], r["ablation_cost"]
    wall = ratios["rescore_over_lead_wall_b0.05"]
    gap, compute = r["lead_vs_full_nll_gap"], r["lead_over_full_train_compute"]
    beats = r["lead_beats_random_seeds"]
    worst = max(cost, key=cost.get)
    idu_first = worst == "lead-no-idu" and cost[worst] > 0
    rows = [
        [
            "wall time `rescore` / LEAD, equal budget (5%; 2.5%)",
            "≥ 10×",
            f"**{wall:.1f}×** ({ratios['rescore_over_lead_wall_b0.025']:.1f}×): {_met(wall >= 10)}",
        ],
        [
            "selection + training seconds `rescore` / LEAD (5%; 2.5%)",
            "—",
            f"{ratios['rescore_over_lead_loop_b0.05']:.0f}× ({ratios['rescore_over_lead_loop_b0.025']:.0f}×)",
        ],
        [
            "LEAD better than `random` on held-out NLL at 5%",
            f"{r['seeds']} of {r['seeds']} seeds",
            f"**{beats} of {r['seeds']}: {_met(beats == r['seeds'])}** ({nll['lead']:.3f} vs {nll['random']:.3f})",
        ],
        [
            "LEAD at 5% vs `full`, held-out NLL gap (relative)",
            "within 2%",
            f"**{100 * gap:+.0f}%: {_met(gap <= 0.02)}**",
        ],
        [
            "LEAD's training compute / `full`'s (samples trained)",
            "≤ 1/10",
            f"{compute:.3f} (≈ 1/{1 / compute:.0f}): {_met(compute <= 0.1)}",
        ],
        [
            "ablation order: removing IDU hurts most",
            "as the paper",
            f"**{'reproduced' if idu_first else 'not reproduced'}**: "
            + ", ".join(f"{k.removeprefix('lead-')} {v:+.3f}" for k, v in cost.items())
            + " (held-out NLL − LEAD's)",
        ],
    ]
    return _table(["ratio", "goal", "measured"], rows)


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def store_updates_table(r: dict) -> str:
    """bench/micro/loop.py's UtilityStore update rate by push size: one actor, and a client over 4 shards."""
    one, four = r["updates_one_actor"], r["updates_sharded4"]
    rows = [[f"{int(b):,}", _rate(one[b]), _rate(four[b])] for b in sorted(one, key=int)]
    best = max(one.values())
    rows.append(["goal ≥ 5M samples/s, one actor", f"**{_met(best >= 5e6)}**", ""])
    return _table(["push size (samples)", "one actor", "client over 4 shards"], rows)


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M/s" if x >= 1e6 else f"{x / 1e3:.0f}k/s"


def topk_table(r: dict) -> str:
    """bench/micro/loop.py's top-k over a 10M-sample cluster, through the actors, and the state per sample."""
    rows = [
        [f"{t['shards']}", f"{t['n']:,}", f"{t['selected']:,}", f"{t['seconds']:.2f} s ({_met(t['seconds'] <= 0.5)})"]
        + [f"{t['state_bytes_per_sample']:g} ({_met(t['state_bytes_per_sample'] <= 32)})"]
        for t in (r["topk_one_actor"], r["topk_sharded4"])
    ]
    header = ["store shards", "cluster size", "selected", "top-k (goal ≤ 0.5 s)", "state bytes per sample (goal ≤ 32)"]
    return _table(header, rows)


def spread_table(base: dict, spread: dict) -> str:
    """bench/micro/selection.py at ρ = 0.02 with 2 samples per group (selection_spread.json) beside the ρ = 0.1
    runs (selection.json), 5% budget: per seed, then the mean."""

    def row(name: str, runs: list[dict]) -> list[str]:
        def per_seed(key: str, mean: bool = False) -> str:
            values = [r[key] for r in runs]
            text = " / ".join(f"{v:.3f}" if isinstance(v, float) else f"{v:,}" for v in values)
            return f"{text} ({sum(values) / len(values):.3f})" if mean else text

        return [name, per_seed("rounds"), per_seed("samples_trained"), per_seed("nll_holdout", True)] + [
            per_seed("nll_mmlu", True)
        ]

    def runs_of(result: dict, method: str) -> list[dict]:
        return sorted(
            (r for r in result["rows"] if r["method"] == method and r["budget"] == 0.05), key=lambda r: r["seed"]
        )

    seeds = " / ".join(str(r["seed"]) for r in runs_of(spread, "lead"))
    rows = [
        row("LEAD, ρ = 0.02, min 2 per group", runs_of(spread, "lead")),
        row("LEAD, ρ = 0.1 (table above)", runs_of(base, "lead")),
        row("random", runs_of(spread, "random")),
    ]
    return _table([f"5% budget, seeds {seeds}", "rounds", "trained", "held-out NLL (mean)", "MMLU NLL (mean)"], rows)


def revisit_table(r: dict) -> str:
    """bench/micro/selection.py with revisits (selection_revisit.json): held-out NLL per seed, each ablation's
    difference from LEAD, and the mean cost."""
    names = {"lead-no-smoothing": "no smoothing (b = 0)", "lead-no-delta": "no ΔL̂′", "lead-no-idu": "no IDU (both)"}
    names["lead-no-bandit"] = "no bandit (uniform arms)"
    by = {(x["method"], x["seed"]): x for x in r["rows"]}
    rows = []
    for seed in sorted({x["seed"] for x in r["rows"] if x["method"] == "lead"}):
        lead = by[("lead", seed)]
        cells = [str(seed), f"{lead['unique']:,} / {lead['samples_trained']:,}", f"{lead['nll_holdout']:.3f}"]
        for name in names:
            diff = by[(name, seed)]["nll_holdout"] - lead["nll_holdout"]
            cells.append(f"{by[(name, seed)]['nll_holdout']:.3f} ({_signed(diff)})")
        rows.append(cells)
    rows.append(["**mean cost**", "", ""] + [f"**{_signed(r['ablation_cost'][n])}**" for n in names])
    return _table(["seed", "unique / trained (lead)", "lead", *names.values()], rows)


MICRO_TABLES = {
    "ingest": ingest_table,
    "embed": embed_table,
    "iu0": iu0_table,
    "cluster_cost": cluster_cost_table,
    "cluster_quality": cluster_quality_table,
    "scorer": scorer_table,
    "delta_cost": delta_cost_table,
    "rescore": rescore_table,
    "selection_runs": selection_runs_table,
    "selection_goals": selection_goals_table,
    "store_updates": store_updates_table,
    "topk": topk_table,
    "revisit": revisit_table,
}
