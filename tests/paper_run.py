"""The stored toy-pool run that `selection.preset=paper` must reproduce: every round's arm and selected indices
exactly, losses, ΔL̂′ and final U to 1e-5 relative (two runs of the same code on this machine already differ at
1e-7 in the losses: CPU float kernels are not run-to-run deterministic, while the selections are identical).

    python -m tests.paper_run      # rewrite tests/fixtures/paper_toy_run.json (only when the paper behaviour
                                   # itself is meant to change; say why in the commit)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

FIXTURE = Path(__file__).parent / "fixtures" / "paper_toy_run.json"


def fingerprint(run_dir: Path) -> dict:
    """Per round: the arm, the selected indices in training order, ΔL̂′ and the mean loss; the final U of every
    selected sample, in id order."""
    rounds = pq.read_table(run_dir / "rounds.parquet").to_pylist()
    selections = sorted((run_dir / "selections").glob("round-*.npy"))
    selected = pq.read_table(run_dir / "selected.parquet", columns=["id", "u"]).sort_by("id")
    u = selected["u"].to_numpy().astype(np.float64)
    return {
        "rounds": [
            {
                "arm": r["arm"],
                "index": np.load(s).tolist(),
                "delta": float(r["delta"]),
                "mean_loss": float(r["mean_loss"]),
            }
            for r, s in zip(rounds, selections, strict=True)
        ],
        "selected_ids": selected["id"].to_pylist(),
        "u": u.tolist(),
    }


def main() -> None:
    import tempfile

    from lead_ray.config import RayConfig
    from lead_ray.online.run import run
    from lead_ray.runtime import init_ray
    from tests.test_online import toy_config, toy_pool

    init_ray(RayConfig(num_cpus=2, object_store_memory_mb=512))
    with tempfile.TemporaryDirectory() as tmp:
        toy_pool(Path(tmp))
        run(toy_config(Path(tmp), 1))
        FIXTURE.write_text(json.dumps(fingerprint(Path(tmp) / "run"), indent=1) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
