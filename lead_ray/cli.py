"""`lead-ray` command line: parse, load the config, call the stage, say where the outputs went."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from lead_ray.cli_args import build_parser
from lead_ray.config import ConfigError, load_config, reference_markdown, resolve_paths, to_dict
from lead_ray.console import set_verbose, verbose

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"


def _prepare(cfg) -> dict:
    from lead_ray.data.ingest import prepare

    stats = prepare(cfg)
    out = cfg.stage_dir("prepared")
    print(
        f"\nprepare: {stats['input_rows']} input rows = {stats['accepted']} accepted + "
        f"{stats['rejected']} rejected + {stats['duplicates']} duplicates "
        f"({stats['files']} files, {stats['seconds']['total']:.1f} s)"
    )
    if stats["reject_reasons"]:
        print("  rejects by reason: " + ", ".join(f"{k} {v}" for k, v in stats["reject_reasons"].items()))
    print(f"  pool:    {out / 'pool'}/\n  rejects: {out / 'rejects.jsonl'}\n  stats:   {out / 'prepare_stats.json'}")
    return stats


def _warmup(cfg) -> dict:
    from lead_ray.offline.warmup import warmup

    stats = warmup(cfg)
    print(
        f"\nwarmup: {stats['samples']} samples, {stats['epochs']} epochs, final loss {stats['final_train_loss']:.4f} "
        f"({stats['seconds']:.0f} s)\n  model: {stats['model']}/"
    )
    return stats


def _anchor(cfg) -> dict:
    from lead_ray.offline.anchor import anchor

    stats = anchor(cfg)
    print(
        f"\nanchor: {stats['trained_on']} pairs trained on, {stats['held_out']} held out; best epoch "
        f"{stats['best_epoch']} of {stats['epochs_run']} (held-out NLL {stats['best_val_loss']:.4f}, "
        f"{stats['seconds']:.0f} s)\n  model: {stats['model']}/ (run `lead-ray score` next)"
    )
    return stats


def _score(cfg) -> dict:
    from lead_ray.offline.score import score

    stats = score(cfg)
    print(
        f"\nscore: {stats['rows']} rows in {stats['units']} units ({stats['units_skipped']} already done), "
        f"{stats['tokens_scored_now']} tokens now ({stats['seconds']:.0f} s)\n  scored: "
        f"{cfg.stage_dir('scored')}/units/"
    )
    return stats


def _cluster(cfg) -> dict:
    from lead_ray.offline.cluster import cluster

    stats = cluster(cfg)
    print(
        f"\ncluster: {stats['rows_out']} rows in {stats['difficulty_k']} difficulty clusters "
        f"(sizes {list(stats['difficulty_sizes'].values())}); {stats['not_trainable']} not trainable, "
        f"{stats['near_duplicates']} near-duplicates ({stats['near_dups_dropped']} dropped)\n"
        f"  clustered pool: {cfg.stage_dir('clustered')}/pool/\n  summary: {cfg.stage_dir('clustered')}/clusters.json"
    )
    return stats


def _run(cfg, run_dir: str | None = None, resume: bool = False) -> dict:
    from lead_ray.export import write_source_format
    from lead_ray.online.run import run

    stats = run(cfg, run_dir, resume)
    out = Path(run_dir or cfg.stage_dir("run"))
    write_source_format(out)
    print(
        f"\nrun: {stats['rounds']} rounds, {stats['unique_selected']} unique samples selected "
        f"(budget {stats['budget']}), {stats['selection_seconds']:.1f} s selecting vs "
        f"{stats['training_seconds']:.1f} s training ({stats['seconds']:.0f} s in all)\n"
        f"  selected: {out}/selected.parquet, {out}/selected.jsonl\n  rounds:   {out}/rounds.parquet\n"
        f"  stats:    {out}/run_stats.json\n  checkpoint: {stats['checkpoint']}"
    )
    return stats


def _eval(cfg, run_dir, model, out) -> dict:
    from lead_ray.eval.evaluate import evaluate

    report = evaluate(cfg, run_dir, model, out)
    print(f"\neval of {report['model']} ({report['mode']}, {report['seconds']:.0f} s):")
    for name, m in report["sets"].items():
        extra = "".join(f", {k} {m[k]:.3f}" for k in ("accuracy", "exact_match") if k in m)
        print(
            f"  {name:14s} n={m['n']:5d}  NLL {m['nll']:.4f}{extra}"
            if m["nll"] is not None
            else f"  {name}: nothing scored"
        )
    return report


def _tune(cfg) -> dict:
    from lead_ray.tune import tune_selection

    res = tune_selection(cfg)
    print(
        f"\ntune: {res['trials']} trials ({res['search']}, {res['concurrent']} at once); best {res['best']} "
        f"→ {cfg.tune.metric} {res['best_metric']:.4f}\n  best config: {res['dir']}/best.yaml\n"
        f"  all trials: {res['dir']}/trials.csv\n  plot: {res['dir']}/knobs.png"
    )
    return res


def _with_ray(stage):
    """A stage that needs Ray: join or start it (the config's `ray` section) first."""

    def call(cfg, *args):
        from lead_ray.runtime import init_ray

        init_ray(cfg.ray)
        return stage(cfg, *args)

    return call


STAGES = {
    "prepare": _with_ray(_prepare),
    "warmup": _with_ray(_warmup),
    "anchor": _with_ray(_anchor),
    "score": _with_ray(_score),
    "cluster": _with_ray(_cluster),
    "run": _with_ray(_run),
    "eval": _with_ray(_eval),
    "tune": _with_ray(_tune),
}


def _cmd_config(args, overrides) -> None:
    if args.reference:
        print(reference_markdown(), end="")
    else:
        print(yaml.safe_dump(to_dict(load_config(args.config, overrides)), sort_keys=False), end="")


def _cmd_eval_data(args, overrides) -> None:
    from lead_ray.eval.fetch import fetch_eval_sets

    written = fetch_eval_sets(args.out)
    print(f"eval-data: {', '.join(f'{k} {v:,} items' for k, v in written.items())} in {args.out}")
    print(f"  lead-ray eval RUN_DIR --set eval.data_dir={args.out}")


def _cmd_plan(args, overrides) -> None:
    """Per-GPU memory of every training stage for this config; exits 1 (through main) when one will not fit."""
    from lead_ray.models.memory import plan_stages

    text, fits = plan_stages(load_config(args.config, overrides), args.gpu_memory_gb)
    print(text)
    if not fits:
        raise ConfigError("a training stage will not fit (above): change what its 'change:' line says")


def _cmd_prepare(args, overrides) -> None:
    for flag, key in (("inputs", "ingest.inputs"), ("out", "ingest.out")):
        if getattr(args, flag):
            overrides.append(f"{key}=" + json.dumps(getattr(args, flag)))
    if args.format:
        overrides.append(f"ingest.format={args.format}")
    if args.strict:
        overrides.append("ingest.strict=true")
    cfg = resolve_paths(load_config(args.config, overrides))
    from lead_ray.data.plan import list_input_files

    list_input_files(cfg.ingest.inputs)  # a missing input is named before Ray starts
    STAGES["prepare"](cfg)


def _cmd_stage(args, overrides) -> None:
    """warmup, score, cluster, run, tune, eval: the pipeline folder may be given with --work-dir."""
    if getattr(args, "work_dir", None):
        overrides.append("work_dir=" + json.dumps(args.work_dir))
    cfg = resolve_paths(load_config(args.config, overrides))  # before any worker or trial sees it
    if args.command == "run":
        STAGES["run"](cfg, args.resume or args.out, bool(args.resume))
    elif args.command == "eval":
        STAGES["eval"](cfg, args.run_dir, args.model, args.out)
    else:
        STAGES[args.command](cfg)


def _cmd_report(args, overrides) -> None:
    from lead_ray.report import report

    print(f"report: {report([Path(d) for d in args.run_dirs], args.out)}")


def _cmd_export(args, overrides) -> None:
    from lead_ray.export import EXPORT_FORMATS, export_run

    formats = tuple(f.strip() for f in args.to.split(",") if f.strip())
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown:
        raise ConfigError(
            f"export --to: unknown format(s) {', '.join(unknown)}; choose from {', '.join(EXPORT_FORMATS)}"
        )
    n = export_run(Path(args.run_dir), Path(args.out), args.min_use, formats, args.with_scores)
    print(f"export: {n} samples ({', '.join(formats)} and Parquet) to {args.out}/")


def _cmd_pipeline(args, overrides) -> None:
    """demo and pipeline: prepare → warmup (→ anchor, when anchor.data is set) → score → cluster → run."""
    out = args.out if args.command == "demo" else args.work_dir
    if out:
        overrides.append("work_dir=" + json.dumps(out))
    cfg = load_config(args.config or (DEMO_CONFIG if args.command == "demo" else None), overrides)
    if args.command == "demo":  # the demo's inputs are repo paths: resolve them to run from any folder
        cfg.ingest.inputs = [p if Path(p).exists() else str(REPO_ROOT / p) for p in cfg.ingest.inputs]
    cfg = resolve_paths(cfg)
    for name in ("prepare", "warmup", *(("anchor",) if cfg.anchor.data else ()), "score", "cluster", "run"):
        STAGES[name](cfg)
    print(f"\n{args.command} finished; outputs under {cfg.work_dir}/")
    if args.command == "demo":
        _demo_ending(cfg)


def _demo_ending(cfg) -> None:
    """The demo's report, and what to run next on its outputs."""
    from lead_ray.report import report

    run_dir = cfg.stage_dir("run")
    page = report([run_dir])
    work = cfg.work_dir
    print(
        f"\nreport: {page}  (open it in a browser)\nnext:\n"
        f"  lead-ray eval {run_dir} --work-dir {work} --set eval.max_samples=100   # held-out, GSM8K, MMLU, ...\n"
        f"  lead-ray export {run_dir} --out {work}/export --to messages,sharegpt,alpaca   # for TRL / LLaMA-Factory\n"
        f"  lead-ray tune --config configs/demo.yaml --work-dir {work}   # sweep smoothing and EXP3's gamma\n"
        f"  lead-ray prepare your/data/ --config your.yaml   # then warmup, score, cluster, run: see docs/STAGES.md"
    )


COMMANDS = {
    "config": _cmd_config,
    "plan": _cmd_plan,
    "prepare": _cmd_prepare,
    "warmup": _cmd_stage,
    "anchor": _cmd_stage,
    "score": _cmd_stage,
    "cluster": _cmd_stage,
    "run": _cmd_stage,
    "eval": _cmd_stage,
    "eval-data": _cmd_eval_data,
    "tune": _cmd_stage,
    "report": _cmd_report,
    "export": _cmd_export,
    "pipeline": _cmd_pipeline,
    "demo": _cmd_pipeline,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        set_verbose(True)
    try:
        COMMANDS[args.command](args, list(getattr(args, "overrides", [])))
        return 0
    except ConfigError as e:
        print(f"lead-ray: config error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one clear line; the traceback under --verbose
        if verbose():
            raise
        print(f"lead-ray: {failure_line(e)}", file=sys.stderr)
        return 1


def failure_line(e: Exception) -> str:
    """A failure in one line: known input errors as they are; anything else as its type and the last line of
    its message (a Ray task error carries the remote traceback before it), pointing at --verbose."""
    from lead_ray.data.ingest import IngestError
    from lead_ray.eval.sets import EvalDataError

    # bad input, or a stage's input missing ("no clustered pool at X: run `lead-ray cluster` first")
    if isinstance(e, (IngestError, EvalDataError, FileNotFoundError)):
        return str(e)
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if len(last) > 400:
        last = last[:400] + " …"
    return f"{type(e).__name__}: {last} (run again with --verbose for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
