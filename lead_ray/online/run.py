"""`lead-ray run`: the online LEAD selection over the clustered pool, as one TorchTrainer run.

Reads clustered/pool, starts the UtilityStore shard(s) and the BanditActor, runs every round inside
one `TorchTrainer.fit()` (train_loop.py), then writes into the run folder (work_dir/run):

  selected.parquet     id, source, messages, final U, IU₀, use count, rounds picked, clusters
  selected.jsonl       the same samples re-exported in their input's own format (one record per line)
  rounds.parquet       one row per round: arm, p vector, size, mean loss, ΔL̂′, β*, cos φ, d_k, d_p,
                       η, reward raw/normalised, unique count, selection / training seconds (spec 11.11)
  selections/          the sample indices of every round
  run_stats.json       totals: rounds, unique selected, seconds in selection vs training, checkpoint
  config.yaml          the full config the run ran with (a resume checks it: only stop and hardware keys may change)
Checkpoints (model + optimizer + utility arrays + bandit + RNG + round cursor) live under ray_train/.
"""
from __future__ import annotations

import json
import math
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq
import yaml

from lead_ray.config import RESUME_MAY_CHANGE, Config, ConfigError, check_batch_sizes, resume_conflicts, to_dict
from lead_ray.core.select import first_round_sizes
from lead_ray.stages import write_parquet_atomic, write_text_atomic

POOL_COLUMNS = ["id", "source", "file", "line", "format", "messages", "iu0", "ifd", "difficulty_cluster", "task_cluster"]


def read_pool(cfg: Config) -> tuple[pa.Table, pa.Table]:
    """(selectable pool, held-out split) of the clustered pool, each sorted by id.

    The held-out split (eval.holdout_fraction, by id hash) is never selectable; `lead-ray eval` and the
    in-loop held-out NLL read it. The selectable rows get the dense `index` the UtilityStore uses.
    """
    from lead_ray.data.split import is_holdout

    pool_dir = cfg.stage_dir("clustered") / "pool"
    if not any(pool_dir.glob("*.parquet")):
        raise FileNotFoundError(f"no clustered pool at {pool_dir}: run `lead-ray cluster` first")
    table = pq.read_table(pool_dir, columns=POOL_COLUMNS).sort_by("id")
    held = is_holdout(table["id"].to_pylist(), cfg.eval.holdout_fraction)
    holdout = table.filter(pa.array(held)).slice(0, cfg.eval.holdout_max)
    table = table.filter(pa.array(~held))
    table = table.append_column("index", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    return table, holdout


def run(cfg: Config, run_dir: Path | None = None, resume: bool = False, cpu_share: float | None = None,
        callbacks: list | None = None) -> dict:
    """Run the selection; with `resume`, continue the run in run_dir from its last checkpoint.

    cpu_share: CPUs this run's Train workers may take (default: the whole cluster's; Tune passes its
    per-trial share). callbacks: Ray Train callbacks (Tune passes its TuneReportCallback).
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lead_ray.models.load import materialize_model
    from lead_ray.online.actors import BanditActor, UtilityClient
    from lead_ray.online.rows import write_round_rows
    from lead_ray.online.train_loop import lead_train_loop
    from lead_ray.runtime import train_scaling

    from lead_ray.core.baselines import STATIC_METHODS, static_subset

    t0 = time.perf_counter()
    check_batch_sizes(cfg.train, cfg.train.num_workers, "train")  # here, not in each worker's retries
    table, holdout = read_pool(cfg)
    run_dir = Path(run_dir or cfg.stage_dir("run")).resolve()
    state_file = run_dir / "run_state.json"
    if resume:
        if not state_file.exists():
            raise FileNotFoundError(f"--resume: {run_dir} has no run_state.json (no run was started there)")
        name = json.loads(state_file.read_text())["train_run_name"]
        saved = run_dir / "config.yaml"
        if saved.exists():  # runs from before config.yaml was written have nothing to compare
            conflicts = resume_conflicts(yaml.safe_load(saved.read_text()), to_dict(cfg))
            if conflicts:
                raise ConfigError(f"--resume: {run_dir} was started with a different config ({saved}); "
                                  f"only {', '.join(sorted(RESUME_MAY_CHANGE))} may change on resume. "
                                  f"Changed: {'; '.join(conflicts)}")
    else:
        # A fresh Ray Train run name every time: reusing one silently resumes the old run.
        name = f"run-{uuid.uuid4().hex[:8]}"
        for old in (run_dir / "selections").glob("*.npy"):
            old.unlink()
    (run_dir / "selections").mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps({"train_run_name": name}) + "\n")
    # The config this run (or its latest resume) ran with; `lead-ray run --config run_dir/config.yaml` repeats it.
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    write_round_rows(table, run_dir / "rows")
    n = table.num_rows
    sc, tc = cfg.selection, cfg.train
    budget = sc.budget_samples or max(1, math.ceil(sc.budget_fraction * n))
    static_order = None
    if sc.method in STATIC_METHODS:  # the subset is fixed now; the loop trains it in rounds
        static_order = static_subset(sc.method, budget, np.random.default_rng([cfg.seed, 7]),
                                     iu0=table["iu0"].to_numpy(zero_copy_only=False),
                                     ifd=table["ifd"].to_numpy(zero_copy_only=False), shuffle=sc.shuffle)
        budget = len(static_order)
    cluster = table["difficulty_cluster"].to_numpy().astype(np.int16)
    first_round = first_round_sizes(cluster, table["task_cluster"].to_numpy(), sc.rho, sc.min_per_group)
    small = {a: k for a, k in first_round.items() if k < tc.batch_size}
    if sc.method in ("lead", "rescore") and small:
        print(f"[lead-ray] warning: at selection.rho={sc.rho} a first pull of arm(s) {small} trains fewer samples "
              f"than one batch ({tc.batch_size}); of {first_round} (arm: samples). Raise selection.rho or "
              f"selection.min_per_group, or use fewer cluster.difficulty_k, if rounds that small are not meant.",
              file=sys.stderr, flush=True)
    for stale in [f"utility-{name}-{i}" for i in range(sc.store_shards)] + [f"bandit-{name}"]:
        _kill_named(stale)  # left by an earlier attempt of this run in the same Ray session
    store = UtilityClient.create(table["iu0"].to_numpy(zero_copy_only=False).astype(np.float32), cluster,
                                 table["task_cluster"].to_numpy().astype(np.int32), sc.store_shards, name=f"utility-{name}")
    n_arms = int(cluster.max()) + 1
    bandit = BanditActor.options(name=f"bandit-{name}").remote(n_arms, sc.exp3_gamma, sc.direction_visit, cfg.seed, sc.arm_choice)
    # The state before round 0, held as objects: a restart before the first checkpoint goes back to it.
    initial_store, initial_bandit = [h.state.remote() for h in store.handles], bandit.state.remote()
    ray.wait([*initial_store, initial_bandit], num_returns=len(store.handles) + 1)
    base = materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)

    scaling = train_scaling(tc, ray.cluster_resources(), cpu_share)
    use_gpu = scaling["use_gpu"]
    trainer = TorchTrainer(
        lead_train_loop,
        train_loop_config={"cfg": cfg, "run_dir": str(run_dir), "base_dir": str(base), "n_arms": n_arms,
                           "budget": budget, "store_handles": store.handles, "store_bounds": store.bounds,
                           "bandit": bandit, "threads": max(1, round(scaling["resources_per_worker"]["CPU"])), "static_order": static_order, "pool_size": n,
                           "initial_store": initial_store, "initial_bandit": initial_bandit, "run_name": name,
                           "holdout": holdout["messages"].to_pylist()[:cfg.eval.inloop_samples] if cfg.eval.inloop_every else []},
        scaling_config=ScalingConfig(**scaling),
        run_config=RunConfig(name=name, storage_path=str(run_dir / "ray_train"),
                             failure_config=FailureConfig(max_failures=tc.max_failures), callbacks=callbacks or []))
    result = trainer.fit()
    t_fit = time.perf_counter() - t0

    rounds = ray.get(bandit.rounds.remote())
    columns, state_bytes = store.columns(), store.nbytes()
    for actor in [*store.handles, bandit]:  # done with them: free their memory now, and their names
        ray.kill(actor, no_restart=True)
    stats = write_outputs(run_dir, table, columns, rounds, budget)
    from collections import Counter

    from lead_ray.report import collapsed_folders, source_group
    sources = table["source"].to_pylist()
    collapsed = collapsed_folders(sources)
    stats.update(pool_sources=dict(Counter(source_group(x, collapsed) for x in sources)),
                 source_folders_collapsed=sorted(collapsed))
    stats.update(method=sc.method, pool=n, first_round_sizes=first_round, holdout=holdout.num_rows, resumed_from_round=(result.metrics or {}).get("start_round"), workers=tc.num_workers, use_gpu=use_gpu, store_shards=sc.store_shards,
                 state_bytes_per_sample=state_bytes / max(n, 1), checkpoint=result.checkpoint.path,
                 fit_seconds=round(t_fit, 2), seconds=round(time.perf_counter() - t0, 2))
    (run_dir / "run_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _kill_named(name: str) -> None:
    import ray

    try:
        ray.kill(ray.get_actor(name), no_restart=True)
    except ValueError:  # no such actor
        pass


def write_outputs(run_dir: Path, table: pa.Table, cols: dict, rounds: list[dict], budget: int) -> dict:
    picked_in: dict[int, list[int]] = {}
    for r in rounds:
        for i in np.load(run_dir / "selections" / f"round-{r['round']:05d}.npy").tolist():
            picked_in.setdefault(i, []).append(r["round"])
    chosen = np.flatnonzero(cols["use_count"] > 0)
    sel = table.take(pa.array(chosen))
    sel = (sel.append_column("u", pa.array(cols["u"][chosen]))
              .append_column("use_count", pa.array(cols["use_count"][chosen].astype(np.int32)))
              .append_column("rounds", pa.array([picked_in.get(int(i), []) for i in chosen], pa.list_(pa.int32()))))
    write_parquet_atomic(sel, run_dir / "selected.parquet")
    export_source_format(sel, run_dir / "selected.jsonl")
    log = pa.Table.from_pylist(rounds) if rounds else pa.table({})
    write_parquet_atomic(log, run_dir / "rounds.parquet")
    held = [r["heldout_nll"] for r in rounds if r.get("heldout_nll") is not None]
    return {"rounds": len(rounds), "unique_selected": int(len(chosen)), "budget": budget,
            "samples_trained": int(sum(r["size"] for r in rounds)),
            "pool_forward_samples": int(sum(r.get("pool_forward_samples", 0) for r in rounds)),
            "heldout_forward_samples": int(sum(r.get("heldout_forward_samples", 0) for r in rounds)),
            "final_heldout_nll": held[-1] if held else None,
            "selection_seconds": round(sum(r["selection_s"] for r in rounds), 3),
            "training_seconds": round(sum(r["train_s"] for r in rounds), 3)}


def export_run(run_dir: Path, out: Path, min_use: int = 1) -> int:
    """The selected subset of a finished run, in its input's own format and as Parquet, into `out`."""
    src = run_dir / "selected.parquet"
    if not src.exists():
        raise FileNotFoundError(f"{run_dir}: no selected.parquet (is the run finished?)")
    sel = pq.read_table(src)
    sel = sel.filter(pa.compute.greater_equal(sel["use_count"], min_use))
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(sel, out / "selected.parquet")
    export_source_format(sel, out / "selected.jsonl")
    return sel.num_rows


def export_source_format(sel: pa.Table, dest: Path) -> None:
    """Each selected sample as its original input record (JSONL line, JSON-array element or Parquet row)."""
    wanted: dict[str, set[int]] = {}
    for f, line in zip(sel["file"].to_pylist(), sel["line"].to_pylist()):
        wanted.setdefault(f, set()).add(line)
    records: dict[tuple[str, int], bytes] = {}
    for f, lines in wanted.items():
        records.update(_original_records(f, lines))
    tmp = dest.with_name("." + dest.name + ".tmp")
    with open(tmp, "wb") as out:
        for f, line in zip(sel["file"].to_pylist(), sel["line"].to_pylist()):
            out.write(records[(f, line)] + b"\n")
    tmp.replace(dest)


def _original_records(path: str, lines: set[int]) -> dict[tuple[str, int], bytes]:
    from lead_ray.data.plan import open_input

    if path.endswith(".parquet"):
        rows = pq.read_table(path).to_pylist()
        return {(path, i): orjson.dumps(rows[i - 1], default=str) for i in lines}
    with open_input(path) as f:
        data = f.read()
    if data.lstrip().startswith(b"["):  # a JSON array: line = 1-based element
        array = orjson.loads(data)
        return {(path, i): orjson.dumps(array[i - 1]) for i in lines}
    out = {}
    for i, raw in enumerate(data.split(b"\n"), start=1):  # JSONL: the line exactly as it was
        if i in lines:
            out[(path, i)] = raw.rstrip(b"\r")
    return out
