"""`selection.preset`: the paper's behaviour or lead-ray's remedies, one switch away (docs/ALGORITHM.md §12).

Each remedy is its own config key; a key left at 'preset' takes the preset's value, a key set explicitly wins,
so an ablation is one override (`--set selection.preset=robust --set selection.delta=sample`). The config keeps
'preset' as written (a Tune trial that changes selection.preset moves every switch with it); code reads the
resolved values from `switches(cfg)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lead_ray.config import Config, to_dict


@dataclass(frozen=True)
class Switches:
    difficulty_bins: str  # cluster: kmeans | quantile
    ifd_above_one: str  # cluster: keep | drop
    reward_norm: str  # bandit: minmax | window
    delta: str  # IDU: round | sample | update | anchor
    utility: str  # selection ranks: idu | reducible | learnability
    rank_by: str  # selection weighs the rank key: mean (per answer token) | total (times them) | saturating
    end_token: str  # U counts the answer's end-of-turn token: count | skip

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "paper": Switches("kmeans", "keep", "minmax", "round", "idu", "mean", "count"),
    # the paper with equal-count difficulty arms: the one remedy a declared confirmation found better than the
    # paper (docs/BENCHMARKS.md); the others stay one key away
    "robust": Switches("quantile", "keep", "minmax", "round", "idu", "mean", "count"),
}


# the config section of each switch's key
SECTION = {
    "difficulty_bins": "cluster",
    "ifd_above_one": "cluster",
    "reward_norm": "selection",
    "delta": "selection",
    "utility": "selection",
    "rank_by": "selection",
    "end_token": "selection",
}


def switches(cfg: Config) -> Switches:
    """Every switch resolved: the explicit value where one is set, the preset's otherwise."""
    chosen = PRESETS[cfg.selection.preset]

    def resolve(key: str) -> str:
        value = getattr(getattr(cfg, SECTION[key]), key)
        return getattr(chosen, key) if value == "preset" else value

    return Switches(**{key: resolve(key) for key in SECTION})


def resolved_dict(cfg: Config) -> dict:
    """The config as a dict with every switch at its resolved value and no selection.preset: two configs that
    run the same selection give the same dict, however their presets and explicit keys spell it."""
    out = to_dict(cfg)
    for key, value in switches(cfg).to_dict().items():
        out[SECTION[key]][key] = value
    del out["selection"]["preset"]
    return out
