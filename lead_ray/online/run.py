"""`lead-ray run`: the online LEAD selection over the clustered pool, as one TorchTrainer run.

Reads clustered/pool, starts the UtilityStore shard(s) and the BanditActor, runs every round inside
one `TorchTrainer.fit()` (train_loop.py), then writes into the run folder (work_dir/run):

  selected.parquet     id, source, messages, final U, IU₀, use count, rounds picked, clusters
  rounds.parquet       one row per round: arm, p vector, size, mean loss, ΔL̂′, β*, cos φ, d_k, d_p,
                       η, reward raw/normalised, unique count, selection / training seconds (ALGORITHM.md §11)
  selections/          the sample indices of every round
  run_stats.json       totals: rounds, unique selected, seconds in selection vs training, checkpoint
  config.yaml          the full config the run ran with (a resume checks it: only stop and hardware keys may change)
Checkpoints (model + optimizer + utility arrays + bandit + RNG + round log + round cursor) live under
ray_train/. `lead-ray run` then writes selected.jsonl, the subset in its input's own format (export.py).
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from lead_ray.config import RESUME_MAY_CHANGE, Config, ConfigError, resume_conflicts, to_dict
from lead_ray.console import train_logging
from lead_ray.core.select import first_round_sizes
from lead_ray.core.utility import rank_weights
from lead_ray.files import require, write_parquet_atomic, write_text_atomic
from lead_ray.online.checkpoint import read_round_log
from lead_ray.online.checks import check_clustering, check_train_switches
from lead_ray.presets import switches


def run(
    cfg: Config,
    run_dir: Path | None = None,
    resume: bool = False,
    cpu_share: float | None = None,
    callbacks: list | None = None,
) -> dict:
    """Run the selection; with `resume`, continue the run in run_dir from its last checkpoint.

    cpu_share: CPUs this run's Train workers may take (default: the whole cluster's; Tune passes its
    per-trial share). callbacks: Ray Train callbacks (Tune passes its TuneReportCallback).
    """
    import ray

    from lead_ray.data.rows import write_round_layout
    from lead_ray.online.pool import index_pool, read_selection
    from lead_ray.runtime import train_scaling, wait_for_workers

    t0 = time.perf_counter()
    check_train_switches(cfg)
    check_clustering(cfg)  # the selection must run on the arms its switches ask for (eval reads any clustering)
    anchor = _anchor_conversations(cfg)  # before any actor starts: a missing anchor.data is a config error
    pool = index_pool(cfg)
    table = read_selection(cfg, pool)  # per-sample selection columns only: the conversations stay on disk
    run_dir = Path(run_dir or cfg.stage_dir("run")).resolve()
    name = _open_run_folder(cfg, run_dir, resume)
    write_round_layout(pool, run_dir / "rows")  # workers read rounds from the pool
    budget, static_order = _budget(cfg, table)
    first_round = _check_round_sizes(cfg, table)
    store, bandit, n_arms = _start_actors(cfg, table, name)
    scaling = train_scaling(cfg.train, ray.cluster_resources(), cpu_share)
    wait_for_workers(scaling, cfg.train.placement_timeout_s, "train")  # Train v2 would wait forever, silently
    settings = _loop_settings(cfg, run_dir, name, pool, table, (store, bandit, n_arms), budget, static_order, scaling)
    settings.anchor = anchor
    result = _trainer(cfg, settings, scaling, callbacks).fit()
    t_fit = time.perf_counter() - t0
    _remove_if_empty(run_dir / "staging")  # where rank 0 wrote each checkpoint before Ray Train moved it
    with result.checkpoint.as_directory() as final:  # the final checkpoint holds every round's record
        rounds = read_round_log(Path(final))
    columns, state_bytes = store.columns(), store.nbytes()
    for actor in [*store.handles, bandit]:  # done with them: free their memory now, and their names
        ray.kill(actor, no_restart=True)
    stats = write_outputs(run_dir, table, columns, rounds, budget)
    stats.update(
        _run_facts(cfg, pool, table, first_round, result, scaling, state_bytes),
        fit_seconds=round(t_fit, 2),
        seconds=round(time.perf_counter() - t0, 2),
    )
    write_text_atomic(run_dir / "run_stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def _run_facts(cfg: Config, pool, table: pa.Table, first_round: dict, result, scaling: dict, state_bytes: int) -> dict:
    """run_stats.json's description of the run beside its totals: settings, sizes, where its checkpoint is."""
    counts = table["source"].value_counts()  # the report compares the selected subset's mix with the pool's
    return dict(
        method=cfg.selection.method,
        pool=table.num_rows,
        first_round_sizes=first_round,
        holdout=len(pool.holdout_ids),
        resumed_from_round=(result.metrics or {}).get("start_round"),
        workers=cfg.train.num_workers,
        use_gpu=scaling["use_gpu"],
        store_shards=cfg.selection.store_shards,
        switches=switches(cfg).to_dict(),
        state_bytes_per_sample=state_bytes / max(table.num_rows, 1),
        checkpoint=result.checkpoint.path,
        pool_source_counts=dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())),
    )


def _loop_settings(cfg: Config, run_dir: Path, name: str, pool, table, actors, budget, static_order, scaling):
    """What every Train worker's loop is given: the run's settings, the actors' handles and their state now."""
    from lead_ray.models.load import materialize_model
    from lead_ray.online.settings import LoopSettings

    store, bandit, n_arms = actors
    return LoopSettings(
        cfg=cfg,
        run_dir=str(run_dir),
        base_dir=str(materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)),
        run_name=name,
        n_arms=n_arms,
        budget=budget,
        pool_size=table.num_rows,
        threads=max(1, round(scaling["resources_per_worker"]["CPU"])),
        store_handles=store.handles,
        store_bounds=store.bounds,
        bandit=bandit,
        **_initial_state(store, bandit),
        static_order=static_order,
        holdout=_inloop_holdout(cfg, pool),
    )


def _anchor_conversations(cfg: Config) -> list | None:
    """`selection.delta: anchor`: the anchor's conversations, which every worker takes its per-round pairs from."""
    if switches(cfg).delta != "anchor":
        return None
    from lead_ray.offline.anchor import read_anchor

    return read_anchor(cfg, "selection.delta=anchor measures each sample's alignment with them")["messages"].to_pylist()


def _inloop_holdout(cfg: Config, pool) -> list:
    """The held-out conversations the loop scores after a round (none when eval.inloop_every is 0)."""
    from lead_ray.online.pool import read_holdout

    if not cfg.eval.inloop_every:
        return []
    return read_holdout(cfg, pool)["messages"].to_pylist()[: cfg.eval.inloop_samples]


def _open_run_folder(cfg: Config, run_dir: Path, resume: bool) -> str:
    """The Ray Train run name: a new one, or (resume) the folder's, after checking the config may resume it.
    Writes config.yaml: `lead-ray run --config RUN_DIR/config.yaml` repeats the run."""
    state_file = run_dir / "run_state.json"
    if resume:
        require(state_file, None, "run state (no run was started in this folder)", "run")
        name = json.loads(state_file.read_text())["train_run_name"]
        saved = require(run_dir / "config.yaml", None, "config of the run to resume", "run")
        conflicts = resume_conflicts(yaml.safe_load(saved.read_text()), to_dict(cfg))
        if conflicts:
            raise ConfigError(
                f"--resume: {run_dir} was started with a different config ({saved}); "
                f"only {', '.join(sorted(RESUME_MAY_CHANGE))} may change on resume. "
                f"Changed: {'; '.join(conflicts)}"
            )
    else:
        name = f"run-{uuid.uuid4().hex[:8]}"  # a fresh name every time: reusing one silently resumes the old run
        for old in (run_dir / "selections").glob("*.npy"):
            old.unlink()
    (run_dir / "selections").mkdir(parents=True, exist_ok=True)
    write_text_atomic(state_file, json.dumps({"train_run_name": name}) + "\n")
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return name


def _rounds_picked(run_dir: Path, rounds: list[dict], chosen: np.ndarray) -> pa.Array:
    """For each chosen index (sorted), the rounds that picked it, as a list column."""
    picks = [np.load(run_dir / "selections" / f"round-{r['round']:05d}.npy") for r in rounds]
    index = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    round_of = np.repeat([r["round"] for r in rounds], [len(p) for p in picks]).astype(np.int32)
    index, round_of = index[np.isin(index, chosen)], round_of[np.isin(index, chosen)]
    order = np.lexsort((round_of, index))
    counts = np.bincount(np.searchsorted(chosen, index[order]), minlength=len(chosen))[: len(chosen)]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(round_of[order], pa.int32()))


def _budget(cfg: Config, table: pa.Table) -> tuple[int, np.ndarray | None]:
    """(unique-sample budget, a static baseline's fixed subset or None)."""
    from lead_ray.core.baselines import STATIC_METHODS, repeat_passes, static_subset

    selection = cfg.selection
    budget = selection.budget_samples or max(1, math.ceil(selection.budget_fraction * table.num_rows))
    if selection.method not in STATIC_METHODS:
        return budget, None
    order = static_subset(
        selection.method,
        budget,
        np.random.default_rng([cfg.seed, 7]),
        iu0=table["iu0"].to_numpy(zero_copy_only=False),
        ifd=table["ifd"].to_numpy(zero_copy_only=False),
        shuffle=selection.shuffle,
        response_tokens=table["n_response_tokens"].to_numpy(zero_copy_only=False),
    )
    passes = repeat_passes(order, selection.static_passes, np.random.default_rng([cfg.seed, 8]), selection.shuffle)
    return len(order), passes  # the subset is fixed now; the loop trains it in rounds


def _check_round_sizes(cfg: Config, table: pa.Table) -> dict[int, int]:
    """Each arm's first-pull size; a warning when one trains less than one optimizer batch."""
    selection, batch = cfg.selection, cfg.train.batch_size
    first_round = first_round_sizes(
        table["difficulty_cluster"].to_numpy(), table["task_cluster"].to_numpy(), selection.rho, selection.min_per_group
    )
    small = {arm: k for arm, k in first_round.items() if k < batch}
    if selection.method in ("lead", "rescore") and small:
        print(
            f"[lead-ray] warning: at selection.rho={selection.rho} a first pull of arm(s) {small} trains fewer "
            f"samples than one batch ({batch}); of {first_round} (arm: samples). Raise selection.rho or "
            f"selection.min_per_group, or use fewer cluster.difficulty_k, if rounds that small are not meant.",
            file=sys.stderr,
            flush=True,
        )
    return first_round


def _floor(cfg: Config, table: pa.Table) -> np.ndarray | None:
    """What selection subtracts from U: the warm-up model's loss (`reducible`), the anchor model's
    (`learnability`, refused while the pool has none scored), or nothing."""
    from lead_ray.online.pool import anchor_column

    utility = switches(cfg).utility
    if utility == "reducible":
        return table["warm_loss"].to_numpy(zero_copy_only=False)
    if utility != "learnability":
        return None
    floor = table[anchor_column(cfg)].to_numpy(zero_copy_only=False)
    if not np.isfinite(floor).any():
        raise ConfigError(f"selection.utility=learnability: no pool row has {anchor_column(cfg)} scored")
    return floor


def _start_actors(cfg: Config, table: pa.Table, name: str):
    """The UtilityStore shard(s) and the BanditActor of this run, as named actors."""
    from lead_ray.online.actors import UtilityClient
    from lead_ray.online.bandit_actor import BanditActor

    selection, chosen = cfg.selection, switches(cfg)
    for stale in [f"utility-{name}-{i}" for i in range(selection.store_shards)] + [f"bandit-{name}"]:
        _kill_named(stale)  # left by an earlier attempt of this run in the same Ray session
    cluster = table["difficulty_cluster"].to_numpy().astype(np.int16)
    store = UtilityClient.create(
        table["iu0_content" if chosen.end_token == "skip" else "iu0"].to_numpy(zero_copy_only=False).astype(np.float32),
        cluster,
        table["task_cluster"].to_numpy().astype(np.int32),
        selection.store_shards,
        name=f"utility-{name}",
        floor=_floor(cfg, table),
        resources=cfg.train.placement_resources,
        weight=rank_weights(table["n_response_tokens"].to_numpy(), chosen.rank_by),
    )
    n_arms = int(cluster.max()) + 1
    bandit = BanditActor.options(name=f"bandit-{name}", resources=cfg.train.placement_resources).remote(
        n_arms,
        selection.exp3_gamma,
        selection.direction_visit,
        cfg.seed,
        selection.arm_choice,
        chosen.reward_norm,
        selection.reward_window,
    )
    return store, bandit, n_arms


def _initial_state(store, bandit) -> dict:
    """The actors' state before round 0, held as objects: a restart before the first checkpoint goes back to it."""
    import ray

    refs = {"initial_store": [h.state.remote() for h in store.handles], "initial_bandit": bandit.state.remote()}
    ray.wait([*refs["initial_store"], refs["initial_bandit"]], num_returns=len(store.handles) + 1)
    return refs


def _trainer(cfg: Config, settings, scaling: dict, callbacks: list | None):
    """The one TorchTrainer that runs every round."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lead_ray.online.train_loop import lead_train_loop

    return TorchTrainer(
        lead_train_loop,
        train_loop_config={"settings": settings},
        scaling_config=ScalingConfig(**scaling),
        run_config=RunConfig(
            **train_logging(),
            name=settings.run_name,
            storage_path=str(Path(settings.run_dir) / "ray_train"),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),  # the latest ones
            callbacks=callbacks or [],
        ),
    )


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _kill_named(name: str) -> None:
    import ray

    try:
        ray.kill(ray.get_actor(name), no_restart=True)
    except ValueError:  # no such actor
        pass


def write_outputs(run_dir: Path, table: pa.Table, cols: dict, rounds: list[dict], budget: int) -> dict:
    """selected.parquet (the chosen rows read back from the pool, with their scores) and rounds.parquet."""
    from lead_ray.data.rows import RoundRows
    from lead_ray.online.pool import ROW_COLUMNS

    chosen = np.flatnonzero(cols["use_count"] > 0)
    scores = table.select([c for c in table.column_names if c not in ROW_COLUMNS]).take(pa.array(chosen))
    sel = RoundRows(run_dir / "rows").read(chosen, ROW_COLUMNS)
    for name in scores.column_names:
        sel = sel.append_column(name, scores[name])
    sel = (
        sel.append_column("u", pa.array(cols["u"][chosen]))
        .append_column("use_count", pa.array(cols["use_count"][chosen].astype(np.int32)))
        .append_column("rounds", _rounds_picked(run_dir, rounds, chosen))
    )
    write_parquet_atomic(sel, run_dir / "selected.parquet")
    log = pa.Table.from_pylist(rounds) if rounds else pa.table({})
    write_parquet_atomic(log, run_dir / "rounds.parquet")
    held = [r["heldout_nll"] for r in rounds if r.get("heldout_nll") is not None]
    return {
        "rounds": len(rounds),
        "unique_selected": int(len(chosen)),
        "budget": budget,
        "samples_trained": int(sum(r["size"] for r in rounds)),
        "pool_forward_samples": int(sum(r["pool_forward_samples"] for r in rounds)),
        "heldout_forward_samples": int(sum(r["heldout_forward_samples"] for r in rounds)),
        "final_heldout_nll": held[-1] if held else None,
        "selection_seconds": round(sum(r["selection_s"] for r in rounds), 3),
        "training_seconds": round(sum(r["train_s"] for r in rounds), 3),
    }
