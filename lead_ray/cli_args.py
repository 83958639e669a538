"""`lead-ray`'s argument parser: every subcommand, its arguments and its help text."""

from __future__ import annotations

import argparse

from lead_ray.config import INPUT_FORMATS


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


def _work_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", "-w", metavar="DIR", help="pipeline folder (default: work_dir)")


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
        ("anchor", "train the reference model of selection.utility=learnability on anchor.data (Ray Train)"),
        ("score", "IU0, IFD and prompt embeddings for every pool sample (Ray Data actor pool; resumable)"),
        ("cluster", "difficulty clusters (bandit arms) x task groups, and near-duplicates"),
    ):
        p = sub.add_parser(name, help=text.replace("%", "%%"), description=text + ". Reads and writes under work_dir.")
        _work_dir_arg(p)
        _config_args(p)


def _add_selection_commands(sub) -> None:
    """run, eval, export: the selection, its model's evaluation, and its subset."""
    p = sub.add_parser(
        "run",
        help="the online LEAD selection: one Ray Train run over all rounds",
        description="EXP3 over difficulty clusters, top-IDU samples inside, IDU from the training "
        "forward pass. Writes selected.parquet/.jsonl, rounds.parquet, checkpoints, run_stats.json.",
    )
    _work_dir_arg(p)
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

    p = sub.add_parser(
        "eval-data",
        help="fetch the eval sets (GSM8K, MMLU, self-instruct) from the Hugging Face Hub into eval.data_dir's layout",
        description="Downloads openai/gsm8k, cais/mmlu and yizhongw/self_instruct (human_eval) with `datasets` and "
        "writes them as DIR/gsm8k/test.jsonl, DIR/mmlu/<split>/*.csv and "
        "DIR/self_instruct_user_oriented/user_oriented_instructions.jsonl; then set eval.data_dir=DIR. Without "
        "the Hub, names each set it could not fetch and where its files go.",
    )
    p.add_argument("--out", "-o", metavar="DIR", required=True, help="folder to write (eval.data_dir)")
    _work_dir_arg(p)
    _config_args(p)

    p = sub.add_parser(
        "export",
        help="copy a run's selected subset out in the formats fine-tuning tools read",
        description="Writes the selected samples of RUN_DIR in each --to format, and always OUT/selected.parquet "
        "(id, source, messages, U, IU0, use count, rounds, clusters). Idempotent: files are written then renamed.",
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
    p.add_argument(
        "--with-scores",
        action="store_true",
        help="add each sample's scores as fields of the messages, sharegpt, alpaca and hf exports: u (its final "
        "utility), iu0 (base-model loss), ifd, use_count (rounds it was trained in), difficulty_cluster, task_cluster",
    )


def _add_tool_commands(sub) -> None:
    """tune, report, pipeline, demo, config."""
    p = sub.add_parser(
        "tune",
        help="Ray Tune sweep of selection knobs (tune.space), one lead-ray run per trial",
        description="Grid, random or Optuna search over tune.space with ASHA on the per-round held-out NLL. "
        "Needs the pipeline's clustered pool. Writes work_dir/tune/<name>/: trials.parquet, "
        "trials.csv, best.yaml, knobs.png.",
    )
    _work_dir_arg(p)
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
    _work_dir_arg(p)
    _config_args(p)

    p = sub.add_parser(
        "demo",
        help="run the demo pipeline on the repo's sample data on a local Ray",
        description="Runs prepare, warmup, score, cluster and run on data/sample with "
        "configs/demo.yaml and the tiny model preset.",
    )
    p.add_argument("--out", "-o", metavar="DIR", default="runs/demo", help="run folder (default: runs/demo)")
    _config_args(p)

    p = sub.add_parser(
        "plan",
        help="per-GPU memory of warm-up, anchor and online training for this config; refuses one that will not fit",
    )
    p.add_argument("--gpu-memory-gb", type=float, default=80.0, metavar="GB", help="memory of one GPU (default 80)")
    _config_args(p)

    p = sub.add_parser("config", help="print the effective config, or the reference of every key")
    p.add_argument("--reference", action="store_true", help="print the config reference as Markdown")
    _config_args(p)
