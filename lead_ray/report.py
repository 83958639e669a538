"""`lead-ray report RUN_DIR [RUN_DIR ...]`: a self-contained HTML page for one run, or a comparison of several.

One run: arm probabilities over rounds, raw and normalised rewards, mean U (IDU) of every difficulty
cluster over rounds, the share of each source in the selected subset vs in the pool, training loss
and held-out NLL per round, seconds in selection vs training per round, and the run's totals and
eval results. Several runs: held-out NLL and training-loss curves overlaid, and one table of totals.
Plots are PNGs from matplotlib, embedded as base64: the file opens anywhere, no server needed.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lead_ray.data.sources import collapsed_folders, source_group


def short_name(name: str, width: int = 40) -> str:
    """A source name that fits a plot label: both ends kept, the middle elided."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[-(width - 1 - head) :]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.set_title(title, fontsize=11)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return fig, ax


def load_run(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "rounds.parquet").exists():
        raise FileNotFoundError(f"{run_dir}: no rounds.parquet (not a finished lead-ray run folder)")
    rounds = pq.read_table(run_dir / "rounds.parquet").to_pylist()
    stats = json.loads((run_dir / "run_stats.json").read_text()) if (run_dir / "run_stats.json").exists() else {}
    ev = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").exists() else None
    sel = (
        pq.read_table(run_dir / "selected.parquet", columns=["source"])
        if (run_dir / "selected.parquet").exists()
        else None
    )
    pool_counts = stats.get("pool_source_counts", {})
    collapsed = collapsed_folders(pool_counts)
    pool = Counter()
    for source, n in pool_counts.items():
        pool[source_group(source, collapsed)] += n
    return {
        "dir": run_dir,
        "name": run_dir.name,
        "rounds": rounds,
        "stats": stats,
        "eval": ev,
        "pool_sources": pool,
        "selected_sources": Counter(source_group(s, collapsed) for s in sel["source"].to_pylist())
        if sel is not None
        else Counter(),
    }


def run_plots(run: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) for every plot of one run."""
    rounds = [r for r in run["rounds"]]
    t = [r["round"] + 1 for r in rounds]
    plots = []
    lead_like = [r for r in rounds if r.get("arm", -1) >= 0]
    if lead_like:
        fig, ax = _figure("Arm probabilities (EXP3) before each round")
        p = np.array([r["p"] for r in lead_like])
        for k in range(p.shape[1]):
            ax.plot([r["round"] + 1 for r in lead_like], p[:, k], marker=".", label=f"cluster {k}")
        ax.scatter(
            [r["round"] + 1 for r in lead_like],
            [r["p"][r["arm"]] for r in lead_like],
            s=60,
            facecolors="none",
            edgecolors="k",
            label="pulled",
        )
        ax.set_xlabel("round"), ax.set_ylabel("p"), ax.legend(fontsize=7, ncol=2)
        plots.append(("Arm probabilities; circles mark the arm pulled", _png(fig)))
    fig, ax = _figure("Reward per round")
    ax.bar(t, [r["reward_raw"] for r in rounds], color="tab:blue", alpha=0.6, label="raw (mean U decrease)")
    ax.plot(t, [r["reward_norm"] for r in rounds], color="tab:red", marker="o", label="normalised")
    ax.set_xlabel("round"), ax.legend(fontsize=8)
    norm = {"minmax": "min–max over the history", "window": "z-score over a window"}.get(
        run.get("stats", {}).get("switches", {}).get("reward_norm", "minmax"), "normalised"
    )
    plots.append((f"Reward: raw, and normalised ({norm}) as EXP3 used it", _png(fig)))
    if rounds and rounds[0].get("u_by_cluster"):
        fig, ax = _figure("Mean U (IDU) of each difficulty cluster, after each round")
        u = np.array([r["u_by_cluster"] for r in rounds], dtype=float)
        for k in range(u.shape[1]):
            ax.plot(t, u[:, k], marker=".", label=f"cluster {k}")
        ax.set_xlabel("round"), ax.set_ylabel("mean U"), ax.legend(fontsize=7, ncol=2)
        plots.append(("IDU per cluster over rounds", _png(fig)))
    fig, ax = _figure("Loss per round")
    ax.plot(t, [r["mean_loss"] for r in rounds], marker="o", label="training loss (selected samples)")
    held = [(r["round"] + 1, r["heldout_nll"]) for r in rounds if r.get("heldout_nll") is not None]
    if held:
        ax.plot(*zip(*held), marker="s", label="held-out NLL")
    ax.set_xlabel("round"), ax.set_ylabel("NLL"), ax.legend(fontsize=8)
    plots.append(("Training loss and held-out NLL", _png(fig)))
    fig, ax = _figure("Seconds per round")
    sel = np.array([r["selection_s"] for r in rounds])
    ax.bar(t, sel, label="selection", color="tab:orange")
    ax.bar(t, [r["train_s"] for r in rounds], bottom=sel, label="training", color="tab:green")
    ax.set_xlabel("round"), ax.set_ylabel("s"), ax.legend(fontsize=8)
    plots.append(("Time split: selection vs training", _png(fig)))
    pool = run["pool_sources"]
    if pool and run["selected_sources"]:
        names = sorted(pool, key=lambda k: -pool[k])[:15]  # the 15 largest sources
        n_pool, n_sel = sum(pool.values()), max(sum(run["selected_sources"].values()), 1)
        fig, ax = _figure("Share of each source: selected vs pool")
        y = np.arange(len(names))
        ax.barh(y - 0.2, [pool[k] / n_pool for k in names], height=0.4, label="pool")
        ax.barh(y + 0.2, [run["selected_sources"].get(k, 0) / n_sel for k in names], height=0.4, label="selected")
        ax.set_yticks(y, [short_name(k) for k in names], fontsize=7), ax.invert_yaxis(), ax.legend(fontsize=8)
        plots.append(("Source mix of the selected subset vs the pool", _png(fig)))
    return plots


def comparison_plots(runs: list[dict]) -> list[tuple[str, str]]:
    plots = []
    for key, title in (("heldout_nll", "Held-out NLL per round"), ("mean_loss", "Training loss per round")):
        fig, ax = _figure(title)
        for run in runs:
            pts = [(r["round"] + 1, r[key]) for r in run["rounds"] if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=run["name"])
        ax.set_xlabel("round"), ax.legend(fontsize=7)
        plots.append((title, _png(fig)))
    return plots


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "img{max-width:100%;border:1px solid #ddd}figure{display:inline-block;width:48%;margin:0.5%}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
)


def _table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))  # noqa: E731
    return (
        "<table><tr>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
        + "</table>"
    )


def summary_row(run: dict) -> dict:
    s = run["stats"]
    row = {
        "run": run["name"],
        "method": s.get("method", "lead"),
        "rounds": s.get("rounds"),
        "unique": s.get("unique_selected"),
        "trained": s.get("samples_trained"),
        "selection_s": s.get("selection_seconds"),
        "training_s": s.get("training_seconds"),
        "final held-out NLL": s.get("final_heldout_nll"),
    }
    for name, m in ((run["eval"] or {}).get("sets") or {}).items():
        row[f"{name} NLL"] = m.get("nll")
        if "accuracy" in m:
            row["MMLU acc"] = m["accuracy"]
        if "exact_match" in m:
            row["GSM8K EM"] = m["exact_match"]
    return row


def report(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write the HTML page (one run: RUN_DIR/report.html; several: OUT, default ./comparison.html)."""
    runs = [load_run(Path(d)) for d in run_dirs]
    if len(runs) == 1:
        title = f"lead-ray run {runs[0]['dir']}"
        plots = run_plots(runs[0])
        dest = Path(out) if out else runs[0]["dir"] / "report.html"
    else:
        title = f"lead-ray: {len(runs)} runs compared"
        plots = comparison_plots(runs)
        dest = Path(out) if out else Path("comparison.html")
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Totals</h2>",
        _table([summary_row(r) for r in runs]),
        "<h2>Plots</h2>",
    ]
    body += [
        f'<figure><img alt="{html.escape(c)}" src="data:image/png;base64,{b}">'
        f"<figcaption>{html.escape(c)}</figcaption></figure>"
        for c, b in plots
    ]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n",
        encoding="utf-8",
    )
    return dest
