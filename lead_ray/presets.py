"""`selection.preset`: the paper's behaviour or lead-ray's remedies, one switch away (docs/ALGORITHM.md §12).

Each remedy is its own config key; a key left at 'preset' takes the preset's value, a key set explicitly wins,
so an ablation is one override (`--set selection.preset=robust --set selection.delta=sample`). The config keeps
'preset' as written (a Tune trial that changes selection.preset moves every switch with it); code reads the
resolved values from `switches(cfg)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lead_ray.config import Config


@dataclass(frozen=True)
class Switches:
    difficulty_bins: str  # cluster: kmeans | quantile
    ifd_above_one: str  # cluster: keep | drop
    reward_norm: str  # bandit: minmax | window
    delta: str  # IDU: round | sample
    utility: str  # selection ranks: idu | reducible

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "paper": Switches("kmeans", "keep", "minmax", "round", "idu"),
    # the paper with equal-count difficulty arms: the one remedy a declared confirmation found better than the
    # paper (docs/BENCHMARKS.md); the others stay one key away
    "robust": Switches("quantile", "keep", "minmax", "round", "idu"),
}


def switches(cfg: Config) -> Switches:
    """Every switch resolved: the explicit value where one is set, the preset's otherwise."""
    chosen = PRESETS[cfg.selection.preset]
    explicit = {
        "difficulty_bins": cfg.cluster.difficulty_bins,
        "ifd_above_one": cfg.cluster.ifd_above_one,
        "reward_norm": cfg.selection.reward_norm,
        "delta": cfg.selection.delta,
        "utility": cfg.selection.utility,
    }
    return Switches(**{k: getattr(chosen, k) if v == "preset" else v for k, v in explicit.items()})
