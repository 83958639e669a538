"""What `lead-ray run` refuses before any actor or worker starts: training settings its selection switches cannot
run with, and a clustered pool made with other cluster switches than the run asks for."""

from __future__ import annotations

import json

from lead_ray.config import Config, ConfigError, check_batch_sizes
from lead_ray.online.direction import PER_SAMPLE
from lead_ray.presets import PRESETS, switches


def check_train_switches(cfg: Config) -> None:
    """Training settings that cannot run with the selection's switches: refused here, not in each worker's retries."""
    check_batch_sizes(cfg.train, cfg.train.num_workers, "train")
    delta = switches(cfg).delta
    if cfg.train.gradient_checkpointing and delta in PER_SAMPLE:
        raise ConfigError(
            f"'train.gradient_checkpointing' = true with selection.delta={delta}: the per-sample "
            "products read each layer's kept activations, which checkpointing recomputes; turn one of them off"
        )
    if cfg.train.strategy == "fsdp" and delta in PER_SAMPLE:
        raise ConfigError(
            f"'train.strategy' = fsdp with selection.delta={delta}: the per-sample products need each "
            "direction layer whole on every worker, which FSDP shards; use ddp, or delta: round"
        )


def check_clustering(cfg: Config) -> None:
    """The clustered pool must have been made with this config's cluster switches (a preset changes them too)."""
    summary = cfg.stage_dir("clustered") / "clusters.json"
    if not summary.exists():
        return
    made = json.loads(summary.read_text())
    wanted, paper = switches(cfg), PRESETS["paper"]
    # key: (what the pool was clustered with, what this run asks for); a key missing from an older pool's summary
    # means the behaviour before the key existed: the paper's arms, no end-token gate
    clustered_with = {
        "difficulty_bins": (made.get("difficulty_bins", paper.difficulty_bins), wanted.difficulty_bins),
        "ifd_above_one": (made.get("ifd_above_one", paper.ifd_above_one), wanted.ifd_above_one),
        "end_nll_above": (made.get("end_nll_above"), cfg.cluster.end_nll_above),
        "end_z_above": (made.get("end_z_above"), cfg.cluster.end_z_above),
    }
    for key, (had, asked) in clustered_with.items():
        if had != asked:
            by_preset = f" (selection.preset={cfg.selection.preset})" if hasattr(paper, key) else ""
            raise ConfigError(
                f"the clustered pool in {summary.parent} was made with cluster.{key}={had}, this run asks for "
                f"{asked}{by_preset}: run `lead-ray cluster` with this config first, or --set "
                f"cluster.{key}={'null' if had is None else had}" + _preset_hint(cfg, key, had)
            )


def _preset_hint(cfg: Config, key: str, had: str | float | None) -> str:
    """Why a pool clustered with an older lead-ray is refused: the default preset moved its arms."""
    if not hasattr(PRESETS["paper"], key) or getattr(PRESETS["paper"], key) != had:
        return ""
    if getattr(cfg.cluster, key) != "preset":
        return ""
    return (
        " (the default selection.preset, 'robust', bins difficulty by quantile; a pool clustered by lead-ray "
        "before that default, or with selection.preset=paper, has the paper's arms: --set selection.preset=paper "
        "runs the paper's LEAD on it)"
    )
