"""The stored toy-pool run that `selection.preset=paper` must reproduce bit for bit.

    python -m tests.paper_run      # rewrite tests/fixtures/paper_toy_run.json (only when the paper behaviour
                                   # itself is meant to change; say why in the commit)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

FIXTURE = Path(__file__).parent / "fixtures" / "paper_toy_run.json"


def fingerprint(run_dir: Path) -> dict:
    """Per round: the arm, the selected indices in training order, ΔL̂′ and the mean loss; the final U of every
    selected sample as the SHA-256 of its float32 bytes."""
    rounds = pq.read_table(run_dir / "rounds.parquet").to_pylist()
    selections = sorted((run_dir / "selections").glob("round-*.npy"))
    selected = pq.read_table(run_dir / "selected.parquet", columns=["id", "u"]).sort_by("id")
    u = selected["u"].to_numpy().astype(np.float32)
    return {
        "rounds": [
            {
                "arm": r["arm"],
                "index": np.load(s).tolist(),
                "delta": r["delta"].hex() if isinstance(r["delta"], float) else r["delta"],
                "mean_loss": float(r["mean_loss"]).hex(),
            }
            for r, s in zip(rounds, selections, strict=True)
        ],
        "selected_ids": selected["id"].to_pylist(),
        "u_sha256": hashlib.sha256(u.tobytes()).hexdigest(),
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
