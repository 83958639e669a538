"""One typed configuration for every lead-ray entry point.

A config is a tree of dataclasses. It is read from YAML, then `--set section.key=value`
overrides are applied, then every field is type-checked and range-checked. Errors name the
offending key (and the file it came from) and say what was expected.

Range rules live next to each field as metadata (`ge`, `gt`, `le`, `lt`, `choices`) so the
reference in the README can be generated from this file alone.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

INPUT_FORMATS = ("auto", "alpaca", "prompt_completion", "question_answer", "sharegpt", "messages", "self_instruct")


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type, or out of range."""


def _f(default, help: str, **rules):
    """A config field with a help text and optional range rules."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


@dataclass
class RayConfig:
    address: Optional[str] = _f(None, "Ray cluster to join; None starts an embedded local Ray (RAY_ADDRESS is honoured).")
    num_cpus: Optional[int] = _f(None, "CPUs for an embedded local Ray; None uses all.", ge=1)
    object_store_memory_mb: Optional[int] = _f(None, "Object store size for an embedded local Ray, MiB.", ge=64)


@dataclass
class IngestConfig:
    inputs: list[str] = _f([], "Input files or folders (JSON, JSONL, Parquet, optionally .gz). CLI positionals replace this.")
    out: Optional[str] = _f(None, "Output folder for the pool; the CLI's --out replaces this.")
    format: str = _f("auto", "Input format for every file, or 'auto' to detect it per file.", choices=INPUT_FORMATS)
    max_sample_chars: int = _f(24_000, "Samples longer than this (all turns together) are rejected as over-long.", ge=1)
    strict: bool = _f(False, "Stop at the first bad row with an error naming file, line and field.")
    chunk_mb: float = _f(16.0, "Target size of one parse task; large JSONL files are split at line breaks.", gt=0)
    rows_per_file: int = _f(200_000, "Most rows in one output Parquet file of the pool.", ge=1)
    dedup_buckets: int = _f(0, "Hash buckets for exact de-duplication (each one is de-duplicated in memory); 0 = one per 512 MB of input.", ge=0)


@dataclass
class Config:
    seed: int = _f(42, "Seed for every random choice.", ge=0)
    ray: RayConfig = field(default_factory=RayConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)


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
    for item in overrides or []:
        _apply_override(raw, item)
    return _build(Config, raw, prefix="", origin=origin)


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected section.key=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value  # a plain string that YAML cannot read is still a string
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = parsed


def _build(cls, raw: Any, prefix: str, origin: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: '{prefix.rstrip('.') or 'config'}' must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), fields, n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(fields)})"
        raise ConfigError(f"{origin}: unknown key '{prefix}{k}'{hint}")
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], raw.get(name, {}), key + ".", origin)
            continue
        value = raw[name] if name in raw else getattr(cls(), name)
        value = _check_type(value, hints[name], key, origin)
        _check_rules(value, f.metadata, key, origin)
        values[name] = value
    return cls(**values)


def _check_type(value: Any, tp: Any, key: str, origin: str) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], key, origin)
    if typing.get_origin(tp) is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{origin}: '{key}' must be a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, args[0], f"{key}[{i}]", origin) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (tp in (int, float) and isinstance(value, bool)) or not isinstance(value, tp):
        raise ConfigError(f"{origin}: '{key}' must be {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_rules(value: Any, rules: typing.Mapping, key: str, origin: str) -> None:
    if value is None:
        return
    checks = {
        "ge": (lambda v, r: v >= r, "≥"), "gt": (lambda v, r: v > r, ">"),
        "le": (lambda v, r: v <= r, "≤"), "lt": (lambda v, r: v < r, "<"),
    }
    for rule, (ok, sym) in checks.items():
        if rule in rules and not ok(value, rules[rule]):
            raise ConfigError(f"{origin}: '{key}' must be {sym} {rules[rule]}, got {value!r}")
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(f"{origin}: '{key}' must be one of {', '.join(rules['choices'])}; got {value!r}")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def reference_markdown() -> str:
    """The config reference table (README links to docs/CONFIG.md, generated from this)."""
    lines = ["| key | type | default | rule | meaning |", "|---|---|---|---|---|"]

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, prefix + f.name + ".")
                continue
            default = getattr(cls(), f.name)
            symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
            rules = ", ".join(f"{symbols[k]} {v}" if k != "choices" else "one of " + "/".join(v)
                              for k, v in f.metadata.items() if k != "help")
            tname = str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__
            lines.append(f"| `{prefix}{f.name}` | {tname} | `{default!r}` | {rules} | {f.metadata.get('help', '')} |")

    walk(Config, "")
    return "\n".join(lines) + "\n"
