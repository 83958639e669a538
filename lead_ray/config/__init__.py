"""One typed configuration for every lead-ray entry point.

A config is a tree of dataclasses, one per section: the offline stages' sections (ray, ingest, model, warmup,
score, cluster) in config/offline.py, the run's (selection, train, eval, tracking, tune) in config/online.py,
and the root `Config` here. It is read from YAML, then `--set section.key=value` overrides are applied, then
every field is type-checked and range-checked (typed.py). Errors name the offending key (and the file it came
from) and say what was expected.

Range rules live next to each field as metadata (`ge`, `gt`, `le`, `lt`, `choices`) so the
reference in docs/CONFIG.md can be generated from these files alone.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lead_ray.config.offline import (
    GPU_CHOICES,
    INPUT_FORMATS,
    LORA_TARGETS,
    AnchorConfig,
    ClusterConfig,
    IngestConfig,
    LoraSettings,
    ModelConfig,
    RayConfig,
    ScoreConfig,
    TinyModelConfig,
    TrainingSettings,
    WarmupConfig,
)
from lead_ray.config.online import (
    EVAL_SETS,
    SELECTION_METHODS,
    EvalConfig,
    SelectionConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)
from lead_ray.typed import ConfigError, apply_override, build, setting
from lead_ray.typed import reference_markdown as typed_reference

__all__ = [
    "ConfigError",
    "Config",
    "load_config",
    "config_from_dict",
    "apply_override",
    "to_dict",
    "INPUT_FORMATS",
    "GPU_CHOICES",
    "RayConfig",
    "IngestConfig",
    "LORA_TARGETS",
    "TinyModelConfig",
    "ModelConfig",
    "LoraSettings",
    "TrainingSettings",
    "WarmupConfig",
    "AnchorConfig",
    "ScoreConfig",
    "ClusterConfig",
    "SELECTION_METHODS",
    "SelectionConfig",
    "EVAL_SETS",
    "EvalConfig",
    "TrackingConfig",
    "TuneConfig",
    "TrainConfig",
]


@dataclass
class Config:
    seed: int = setting(42, "Seed for every random choice.", ge=0)
    work_dir: str = setting(
        "runs/default", "Folder of this pipeline's stages: prepared/, models/, scored/, clustered/."
    )
    ray: RayConfig = field(default_factory=RayConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def stage_dir(self, stage: str) -> Path:
        """Where a stage writes: work_dir/<stage> (ingest.out overrides 'prepared').

        Absolute, resolved on the driver: Ray workers (Train workers especially) run in other folders.
        """
        if stage == "prepared" and self.ingest.out:
            return Path(self.ingest.out).resolve()
        return (Path(self.work_dir) / stage).resolve()


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read YAML (if given), apply `key.sub=value` overrides, validate, return a Config."""
    raw: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return config_from_dict(raw, overrides, origin)


def config_from_dict(raw: dict, overrides: list[str] | None = None, origin: str = "config") -> Config:
    """A validated Config from a raw mapping (as YAML gives it, or `to_dict` of another Config) and
    `key.sub=value` overrides; `raw` is not changed."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        apply_override(raw, item)
    return build(Config, raw, prefix="", origin=origin, check=_check_training)


def _check_training(built, section: str, origin: str) -> None:
    if isinstance(built, TrainingSettings):
        check_batch_sizes(built, built.num_workers, section, origin)
    if isinstance(built, SelectionConfig) and built.rho + built.trim_top >= 1:
        raise ConfigError(
            f"{origin}: '{section}.trim_top' = {built.trim_top} leaves nothing to take: with {section}.rho = "
            f"{built.rho} a round would skip and take more than a whole group; keep rho + trim_top below 1"
        )


def check_batch_sizes(ts: TrainingSettings, world: int, section: str, origin: str = "config") -> None:
    """One optimizer step sees exactly `batch_size` samples whatever the number of workers: each of the
    `world` workers accumulates batch_size / (micro_batch_size · world) micro-batches. Refuses sizes
    that do not divide, naming sizes that do."""
    b, m = ts.batch_size, ts.micro_batch_size
    if b % (m * world) == 0:
        return
    if b % world:
        fix = f"use a {section}.batch_size that is a multiple of {world} ({world * max(1, round(b / world))}, ...)"
    else:
        micro = [d for d in range(b // world, 0, -1) if (b // world) % d == 0]
        sizes = " or ".join(map(str, micro[:4]))
        fix = f"use {section}.micro_batch_size {sizes}, or {section}.batch_size {m * world} or {2 * m * world}"
    raise ConfigError(
        f"{origin}: '{section}.batch_size' = {b} is not a multiple of {section}.micro_batch_size × workers "
        f"= {m} × {world} = {m * world}, so an optimizer step would not see {b} samples; {fix}"
    )


def resolve_paths(cfg: Config, base: Path | None = None) -> Config:
    """A copy whose relative paths (work_dir, ingest inputs and output, model and tokenizer files, the eval
    data folder) are absolute, against `base` (default: the current folder). Commands do this before any
    Ray worker, actor or Tune trial sees the config: those run in folders of their own."""
    base = Path(base or Path.cwd())
    out = copy.deepcopy(cfg)

    def absolute(p: str) -> str:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    out.work_dir = absolute(out.work_dir)
    out.ingest.inputs = [absolute(p) for p in out.ingest.inputs]
    out.ingest.out = absolute(out.ingest.out) if out.ingest.out else None
    out.model.base = out.model.base if out.model.base == "tiny" else absolute(out.model.base)
    out.model.tokenizer = out.model.tokenizer if out.model.tokenizer == "bytes" else absolute(out.model.tokenizer)
    out.eval.data_dir = absolute(out.eval.data_dir)
    out.anchor.data = absolute(out.anchor.data) if out.anchor.data else None
    return out


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


# What a resumed run may change: when it stops and on what hardware. Every other key under these
# sections decides what is selected and how it is trained, so changing it mid-run gives a run that
# is neither the old config's nor the new one's.
RESUME_MAY_CHANGE = {
    "selection.max_rounds",
    "selection.budget_fraction",
    "selection.budget_samples",
    "train.num_workers",
    "train.use_gpu",
    "train.micro_batch_size",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.gradient_checkpointing",
    "train.placement_timeout_s",
    "train.max_failures",
    "train.placement_resources",
}
RESUME_SECTIONS = ("seed", "work_dir", "model", "selection", "train")


def resume_conflicts(saved: dict, new: dict) -> list[str]:
    """`key: saved -> new` for every result-changing key that differs between a run's saved config and
    the one it is resumed with (both as `to_dict` gives them)."""

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a, b = dict(flat(saved)), dict(flat(new))
    keys = [k for k in dict.fromkeys([*a, *b]) if k.split(".")[0] in RESUME_SECTIONS and k not in RESUME_MAY_CHANGE]
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def reference_markdown() -> str:
    """The config reference table (docs/CONFIG.md is generated from this)."""
    return typed_reference(Config)
