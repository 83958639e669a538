"""`lead-ray` command line: parse, load the config, call the stage, say where the outputs went."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from lead_ray.config import INPUT_FORMATS, ConfigError, load_config, reference_markdown, resolve_paths, to_dict
from lead_ray.console import set_verbose, verbose

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (see docs/CONFIG.md)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set ingest.max_sample_chars=8000 (repeatable)",
    )


def _verbose_arg(p: argparse.ArgumentParser, default) -> None:
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=default,
        help="Ray's own logs and progress output, and a traceback on failure (or LEAD_RAY_VERBOSE=1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lead-ray",
        description=(
            "LEAD data selection for instruction tuning on Ray. Stages read and write a run folder; "
            "every stage takes --config FILE and --set KEY=VALUE overrides."
        ),
    )
    _verbose_arg(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_offline_commands(sub)
    _add_selection_commands(sub)
    _add_tool_commands(sub)
    for command in sub.choices.values():  # --verbose after the command as well as before it
        _verbose_arg(command, argparse.SUPPRESS)
    return parser


def _add_offline_commands(sub) -> None:
    """prepare, warmup, score, cluster: the pool and what selection reads from it."""
    p = sub.add_parser(
        "prepare",
        help="ingest instruction files into a de-duplicated Parquet pool",
        description="Read JSON/JSONL/Parquet files (or folders of them, .gz too) in any supported "
        "format and write OUT/pool/*.parquet, OUT/rejects.jsonl and OUT/prepare_stats.json.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="files or folders (default: ingest.inputs)")
    p.add_argument("--out", "-o", metavar="DIR", help="output folder (default: ingest.out, else work_dir/prepared)")
    p.add_argument("--format", choices=INPUT_FORMATS, help="force one input format for every file (default: auto)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad row, naming file, line and field")
    _config_args(p)

    for name, text in (
        ("warmup", "fine-tune the warm-up model on a random ~1% of the pool (Ray Train)"),
        ("score", "IU0, IFD and prompt embeddings for every pool sample (Ray Data actor pool; resumable)"),
        ("cluster", "difficulty clusters (bandit arms) x task groups, and near-duplicates"),
    ):
        p = sub.add_parser(name, help=text.replace("%", "%%"), description=text + ". Reads and writes under work_dir.")
        p.add_argument("--work-dir", "-w", metavar="DIR", help="pipeline folder (default: work_dir)")
        _config_args(p)


def _add_selection_commands(sub) -> None:
    """run, eval, export: the selection, its model's evaluation, and its subset."""
    p = sub.add_parser(
        "run",
        help="the online LEAD selection: one Ray Train run over all rounds",
        description="EXP3 over difficulty clusters, top-IDU samples inside, IDU from the training "
        "forward pass. Writes selected.parquet/.jsonl, rounds.parquet, checkpoints, run_stats.json.",
    )
    p.add_argument("--work-dir", "-w", metavar="DIR", help="pipeline folder (default: work_dir)")
    p.add_argument("--out", "-o", metavar="RUN_DIR", help="run folder (default: work_dir/run)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    _config_args(p)

    p = sub.add_parser(
        "eval",
        help="held-out NLL, MMLU and GSM8K of a run's final model (or any model folder)",
        description="Response NLL on the held-out split, GSM8K and self-instruct user-oriented tasks; "
        "MMLU by answer-letter likelihood; GSM8K exact match by greedy decoding (eval.generate). "
        "Writes RUN_DIR/eval.json.",
    )
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="run folder (default: work_dir/run)")
    p.add_argument(
        "--model", metavar="DIR", help="evaluate this HF folder (or LoRA adapter) instead of the run's checkpoint"
    )
    p.add_argument("--out", "-o", metavar="FILE", help="results file (default: RUN_DIR/eval.json)")
    p.add_argument("--work-dir", "-w", metavar="DIR", help="pipeline folder (default: work_dir)")
    _config_args(p)

    p = sub.add_parser(
        "export",
        help="copy a run's selected subset out: original records (JSONL) + Parquet with scores",
        description="Writes OUT/selected.jsonl (each selected sample as its original input record) and "
        "OUT/selected.parquet (id, source, messages, U, IU0, use count, rounds, clusters) "
        "from RUN_DIR/selected.parquet. Idempotent: files are written then renamed.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    p.add_argument("--out", "-o", metavar="DIR", required=True, help="destination folder")
    p.add_argument("--min-use", type=int, default=1, help="keep samples selected at least this many times (default 1)")
    p.add_argument(
        "--to",
        default="source",
        metavar="FORMATS",
        help="comma-separated: source (original records), messages (TRL), sharegpt and alpaca (LLaMA-Factory, with "
        "dataset_info.json), hf (datasets.load_from_disk); default: source",
    )
    p.add_argument("--with-scores", action="store_true", help="add lead-ray's per-sample scores as columns")


def _add_tool_commands(sub) -> None:
    """tune, report, pipeline, demo, config."""
    p = sub.add_parser(
        "tune",
        help="Ray Tune sweep of selection knobs (tune.space), one lead-ray run per trial",
        description="Grid, random or Optuna search over tune.space with ASHA on the per-round held-out NLL. "
        "Needs the pipeline's clustered pool. Writes work_dir/tune/<name>/: trials.parquet, "
        "trials.csv, best.yaml, knobs.png.",
    )
    p.add_argument("--work-dir", "-w", metavar="DIR", help="pipeline folder (default: work_dir)")
    _config_args(p)

    p = sub.add_parser(
        "report",
        help="an HTML report (embedded plots) of one run, or a comparison of several",
        description="One RUN_DIR: RUN_DIR/report.html with arm probabilities, rewards, IDU per cluster, "
        "source mix, loss and held-out NLL curves, time split. Several: a comparison page.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", "-o", metavar="FILE", help="HTML file (default: RUN_DIR/report.html, or ./comparison.html)")

    p = sub.add_parser(
        "pipeline",
        help="every stage in order: prepare, warmup, score, cluster, run",
        description="Runs prepare, warmup, score, cluster and run with one config (a rerun "
        "re-scores only units not yet scored).",
    )
    p.add_argument("--work-dir", "-w", metavar="DIR", help="pipeline folder (default: work_dir)")
    _config_args(p)

    p = sub.add_parser(
        "demo",
        help="run the demo pipeline on the repo's sample data on a local Ray",
        description="Runs prepare, warmup, score, cluster and run on data/sample with "
        "configs/demo.yaml and the tiny model preset.",
    )
    p.add_argument("--out", "-o", metavar="DIR", default="runs/demo", help="run folder (default: runs/demo)")
    _config_args(p)

    p = sub.add_parser("config", help="print the effective config, or the reference of every key")
    p.add_argument("--reference", action="store_true", help="print the config reference as Markdown")
    _config_args(p)


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
    """demo and pipeline: prepare → warmup → score → cluster → run."""
    out = args.out if args.command == "demo" else args.work_dir
    if out:
        overrides.append("work_dir=" + json.dumps(out))
    cfg = load_config(args.config or (DEMO_CONFIG if args.command == "demo" else None), overrides)
    if args.command == "demo":  # the demo's inputs are repo paths: resolve them to run from any folder
        cfg.ingest.inputs = [p if Path(p).exists() else str(REPO_ROOT / p) for p in cfg.ingest.inputs]
    cfg = resolve_paths(cfg)
    for name in ("prepare", "warmup", "score", "cluster", "run"):
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
        f"  lead-ray prepare your/data/ --config your.yaml   # then warmup, score, cluster, run: see README"
    )


COMMANDS = {
    "config": _cmd_config,
    "prepare": _cmd_prepare,
    "warmup": _cmd_stage,
    "score": _cmd_stage,
    "cluster": _cmd_stage,
    "run": _cmd_stage,
    "eval": _cmd_stage,
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
