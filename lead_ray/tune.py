"""`lead-ray tune`: Ray Tune sweeps of the selection knobs, one whole lead-ray run per trial.

The search space lives in the config (`tune.space`: config key → {grid|choice|uniform|loguniform|randint}).
Each trial copies the base config, applies its values, and builds its own TorchTrainer inside the
trial function (Train V2 style); TuneReportCallback forwards the run's per-round reports (held-out
NLL, training loss) to Tune, so ASHA can stop poor trials after `tune.grace_rounds` rounds. Keys under
`cluster.` make the trial re-cluster the shared scored pool into its own folder first.

Outputs in work_dir/tune/<name>/: trials.parquet and trials.csv (one row per trial: values, final
metric, rounds, status), best.yaml (the full config of the best trial, ready for `--config`),
knobs.png (the metric against each knob).
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from pathlib import Path

import yaml

from lead_ray.config import Config, ConfigError, config_from_dict, resolve_paths, to_dict
from lead_ray.console import verbose

TRIAL_CPU = 0.1  # the trial function only drives its TorchTrainer; the Train workers hold the CPUs
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")


def param_space(space: dict[str, dict], search: str) -> dict:
    """Config keys → Ray Tune domains (keys keep their dots; the trial applies them as overrides)."""
    from ray import tune

    out = {}
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(
                f"'tune.space.{key}' must be one of {{{' | '.join(d + ': ...' for d in DISTRIBUTIONS)}}}, got {spec!r}"
            )
        kind, values = next(iter(spec.items()))
        if kind in ("grid", "choice"):
            if not isinstance(values, list) or not values:
                raise ConfigError(f"'tune.space.{key}.{kind}' must be a non-empty list")
            out[key] = tune.grid_search(values) if kind == "grid" and search != "optuna" else tune.choice(values)
        else:
            if not (isinstance(values, list) and len(values) == 2):
                raise ConfigError(f"'tune.space.{key}.{kind}' must be [low, high]")
            out[key] = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](*values)
    return out


def trial_config(base: dict, params: dict) -> Config:
    return config_from_dict(base, [f"{key}={json.dumps(value)}" for key, value in params.items()], origin="tune trial")


def _own_clustering(base: Config, trial: Config, params: dict) -> bool:
    """A trial re-clusters when it sets a cluster.* key, or a selection.preset that changes the cluster switches."""
    from lead_ray.presets import switches

    def clustering(c: Config) -> tuple:
        return switches(c).difficulty_bins, switches(c).ifd_above_one

    return any(k.startswith("cluster.") for k in params) or clustering(base) != clustering(trial)


def lead_trial(params: dict, base: dict, cpu_share: float) -> None:
    """One Tune trial: (re-cluster if asked, then) a whole lead-ray run reporting every round."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from lead_ray.online.run import run

    cfg = trial_config(base, params)
    trial_dir = Path(ray.tune.get_context().get_trial_dir())
    if _own_clustering(config_from_dict(base), cfg, params):  # its own clustering of the shared scores
        from lead_ray.offline.cluster import cluster

        for stage in ("prepared", "models", "scored"):
            link = trial_dir / stage
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(cfg.stage_dir(stage), link)
        cfg.work_dir = str(trial_dir)
        cluster(cfg)
    run(cfg, trial_dir / "run", cpu_share=cpu_share, callbacks=[TuneReportCallback()])


def tune_selection(cfg: Config) -> dict:
    import ray
    from ray import tune

    cfg = resolve_paths(cfg)  # each trial runs in a folder of its own: relative paths would point there

    sweep = cfg.tune
    if sweep.metric == "heldout_nll" and (not cfg.eval.inloop_every or cfg.eval.holdout_fraction == 0):
        raise ConfigError("tune.metric heldout_nll needs eval.inloop_every ≥ 1 and eval.holdout_fraction > 0")
    for key in sweep.space:  # fail fast on a key the config does not have
        _check_key(cfg, key)
    space = param_space(sweep.space, sweep.search)
    concurrent, cpu_share = _trial_shares(cfg, ray.cluster_resources())
    search_alg, scheduler = _search(cfg, concurrent)
    name = f"tune-{uuid.uuid4().hex[:8]}"  # a fresh name: reusing one would resume an old sweep
    out = cfg.stage_dir("tune") / name
    base = to_dict(cfg)
    trainable = tune.with_resources(
        tune.with_parameters(lead_trial, base=base, cpu_share=cpu_share), {"CPU": TRIAL_CPU}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=sweep.metric,
            mode="min",
            num_samples=sweep.num_samples,
            scheduler=scheduler,
            search_alg=search_alg,
            max_concurrent_trials=concurrent,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(cfg.stage_dir("tune")),
            callbacks=_callbacks(cfg, out),
            verbose=2 if verbose() else 1,  # quiet: Tune's status lines, not a results table every few seconds
        ),
    )
    results = tuner.fit()
    rows = _trial_rows(results, sweep)
    for line in failed_trials(rows, sweep.metric):  # one line per failed trial; all failed: one clear error
        print(f"[lead-ray] {line}", file=sys.stderr, flush=True)
    best = results.get_best_result(metric=sweep.metric, mode="min", scope="last", filter_nan_and_inf=True)
    best_cfg = trial_config(base, {k: best.config[k] for k in sweep.space})
    out.mkdir(parents=True, exist_ok=True)
    (out / "best.yaml").write_text(
        f"# best of {len(rows)} trials by {sweep.metric} = {best.metrics.get(sweep.metric)}\n"
        + yaml.safe_dump(to_dict(best_cfg), sort_keys=False)
    )
    _write_table(rows, out)
    _plot_knobs(rows, list(sweep.space), sweep.metric, out / "knobs.png")
    return {
        "name": name,
        "dir": str(out),
        "trials": len(rows),
        "concurrent": concurrent,
        "search": sweep.search,
        "best": {k: best.config[k] for k in sweep.space},
        "best_metric": best.metrics.get(sweep.metric),
    }


def _trial_shares(cfg: Config, cluster: dict) -> tuple[int, float]:
    """(trials at once, the CPUs each trial's Train workers may take)."""
    from lead_ray.runtime import wants_gpu

    sweep, per_trial = cfg.tune, cfg.train.num_workers
    gpus, cpus = cluster.get("GPU", 0), cluster.get("CPU", 1)
    if wants_gpu(cfg.train.use_gpu, cluster):  # GPU trials: as many as the GPUs there are now (at least one)
        concurrent = sweep.max_concurrent or max(1, int(gpus // per_trial))
    else:
        concurrent = sweep.max_concurrent or max(1, int(cpus // (per_trial + 0.5)))
    # Half of a trial's CPU share goes to its Train workers: a trial that ASHA stops releases its worker
    # group only after a while, and the next trial's group must fit beside it.
    return concurrent, max(0.6, cpus / concurrent / 2)


def _search(cfg: Config, concurrent: int):
    """(search algorithm or None for grid/random, ASHA on rounds_done or None)."""
    from ray.tune.schedulers import ASHAScheduler

    sweep, search_alg = cfg.tune, None
    if sweep.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg = ConcurrencyLimiter(
            OptunaSearch(metric=sweep.metric, mode="min", seed=cfg.seed), max_concurrent=concurrent
        )
    if not sweep.asha:
        return search_alg, None
    rounds = cfg.selection.max_rounds
    return search_alg, ASHAScheduler(
        time_attr="rounds_done", max_t=rounds, grace_period=sweep.grace_rounds, reduction_factor=2
    )


class TrialsFailed(RuntimeError):
    pass


def failed_trials(rows: list[dict], metric: str) -> list[str]:
    """One line per trial that errored, naming it, its knobs and the last line of its error. Raises
    TrialsFailed (one line) when no trial reported a finite metric, instead of Tune's "No best trial found"."""
    lines = []
    for r in rows:
        if r["error"]:
            own = (metric, "rounds_done", "error", "trial_dir")
            knobs = ", ".join(f"{k}={v}" for k, v in r.items() if k not in own)
            last = [x.strip() for x in r["error"].splitlines() if x.strip()][-1:] or [""]
            lines.append(f"trial {Path(r['trial_dir'] or '?').name} ({knobs}) failed: {last[0]}")
    finite = [r for r in rows if r[metric] is not None and math.isfinite(r[metric])]
    if not finite:
        first = lines[0] if lines else "no trial reported " + metric
        raise TrialsFailed(f"none of the {len(rows)} trials finished with a {metric}; {first}")
    return lines


def _trial_rows(results, sweep) -> list[dict]:
    """One row per trial: its knobs, the metric, rounds done, error."""
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append(
            {
                **{k: r.config.get(k) for k in sweep.space},
                sweep.metric: m.get(sweep.metric),
                "rounds_done": m.get("rounds_done"),
                "error": str(r.error)[-400:] if r.error else None,  # the end holds the cause
                "trial_dir": r.path,
            }
        )
    return rows


def _callbacks(cfg: Config, out: Path) -> list:
    """Ray's wandb integration: one wandb run per trial, offline unless tracking.mode says otherwise.
    (Each trial's own lead-ray run logs its rounds too, when tracking.wandb is on.)"""
    if not cfg.tracking.wandb:
        return []
    from ray.air.integrations.wandb import WandbLoggerCallback

    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", cfg.tracking.mode)  # Ray's callback asks for an API key unless offline
    return [WandbLoggerCallback(project=cfg.tracking.project, group=out.name, mode=cfg.tracking.mode, dir=str(out))]


def _check_key(cfg: Config, key: str) -> None:
    node = cfg
    for part in key.split("."):
        if not hasattr(node, part):
            raise ConfigError(f"'tune.space': {key!r} is not a config key")
        node = getattr(node, part)


def _write_table(rows: list[dict], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(
        [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in rows]
    )
    pq.write_table(table, out / "trials.parquet")
    pyarrow.csv.write_csv(table, out / "trials.csv")


def _plot_knobs(rows: list[dict], knobs: list[str], metric: str, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(knobs), figsize=(4 * len(knobs), 3.2), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        pts = [
            (r[knob], r[metric]) for r in rows if r.get(metric) is not None and isinstance(r.get(knob), (int, float))
        ]
        if pts:
            ax.scatter(*zip(*pts))
        ax.set_xlabel(knob), ax.set_ylabel(metric), ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} (last report) of every trial")
    fig.savefig(dest, dpi=90, bbox_inches="tight")
    plt.close(fig)
