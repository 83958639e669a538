"""Typed dataclass trees: fields with help and range rules, built from a raw mapping with every value
type- and range-checked, and a markdown reference of every key. Knows nothing of lead-ray's settings
(config/ declares them); an error names the key, the file it came from and what was expected, and an
unknown key gets the closest known one suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type, or out of range."""


def setting(default, help: str, **rules):
    """A config field with a help text and optional range rules."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


def apply_override(raw: dict, item: str) -> None:
    """Set `key.sub=value` (the value read as YAML) in a raw config mapping."""
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


def build(cls, raw: Any, prefix: str, origin: str, defaults=None, check: Callable | None = None):
    """An instance of the dataclass `cls` from a raw mapping. `defaults`: the instance whose values fill absent
    keys (a parent's default for a nested section); `check(built, section, origin)`: called on every
    dataclass built, for rules across fields."""
    defaults = defaults if defaults is not None else cls()
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
            values[name] = build(hints[name], raw.get(name, {}), key + ".", origin, getattr(defaults, name), check)
            continue
        value = raw[name] if name in raw else getattr(defaults, name)
        value = check_type(value, hints[name], key, origin)
        check_rules(value, f.metadata, key, origin)
        values[name] = value
    built = cls(**values)
    if check is not None:
        check(built, prefix.rstrip("."), origin)
    return built


def check_type(value: Any, tp: Any, key: str, origin: str) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:  # the first type the value has (bool | str: true, false or a word)
            try:
                return check_type(value, option, key, origin)
            except ConfigError:
                pass
        return check_type(value, inner[-1], key, origin)
    if typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: '{key}' must be a mapping, got {type(value).__name__} {value!r}")
        return value
    if typing.get_origin(tp) is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{origin}: '{key}' must be a list, got {type(value).__name__} {value!r}")
        return [check_type(v, args[0], f"{key}[{i}]", origin) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if (tp in (int, float) and isinstance(value, bool)) or not isinstance(value, tp):
        raise ConfigError(f"{origin}: '{key}' must be {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def check_rules(value: Any, rules: typing.Mapping, key: str, origin: str) -> None:
    if value is None:
        return
    checks = {
        "ge": (lambda v, r: v >= r, "≥"),
        "gt": (lambda v, r: v > r, ">"),
        "le": (lambda v, r: v <= r, "≤"),
        "lt": (lambda v, r: v < r, "<"),
    }
    for rule, (ok, sym) in checks.items():
        if rule in rules and not ok(value, rules[rule]):
            raise ConfigError(f"{origin}: '{key}' must be {sym} {rules[rule]}, got {value!r}")
    if "choices" in rules and isinstance(value, list):
        for i, v in enumerate(value):
            check_rules(v, {"choices": rules["choices"]}, f"{key}[{i}]", origin)
    elif "choices" in rules and value not in rules["choices"]:
        raise ConfigError(
            f"{origin}: '{key}' must be one of {', '.join(map(yaml_word, rules['choices']))}; got {value!r}"
        )


def yaml_word(value) -> str:
    """A choice as it is written in YAML (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def reference_markdown(root: type) -> str:
    """A markdown table of every key under the dataclass `root`: type, default, rules, help."""
    lines = ["| key | type | default | rule | meaning |", "|---|---|---|---|---|"]

    def walk(cls, prefix, instance):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, prefix + f.name + ".", getattr(instance, f.name))
                continue
            default = getattr(instance, f.name)
            symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
            rules = ", ".join(
                f"{symbols[k]} {v}" if k != "choices" else "one of " + "/".join(map(yaml_word, v))
                for k, v in f.metadata.items()
                if k != "help"
            )
            tname = str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__
            tname = tname.replace(" | ", " or ")  # a table cell: no pipes
            lines.append(f"| `{prefix}{f.name}` | {tname} | `{default!r}` | {rules} | {f.metadata.get('help', '')} |")

    walk(root, "", root())
    return "\n".join(lines) + "\n"
