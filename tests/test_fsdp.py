"""`train.strategy: fsdp` (PyTorch FSDP2) on 2 CPU workers (gloo): the same rounds as DDP, checkpoints written
sharded, and a run stopped at a checkpoint resumed from its shards ends as the DDP run does."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from lead_ray.config import ConfigError
from lead_ray.models.load import load_model
from lead_ray.online.fsdp import SHARDED
from lead_ray.online.run import run
from tests.test_online import toy_config, toy_pool

ROUNDS = 4


def two_workers(work, strategy: str, rounds: int):
    cfg = toy_config(work, 2)
    cfg.selection.max_rounds, cfg.train.checkpoint_every, cfg.train.strategy = rounds, 2, strategy
    return cfg


def test_fsdp_trains_as_ddp_does_and_resumes_from_its_sharded_checkpoint(ray_session, tmp_path):
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    for work in (ddp, fsdp):
        toy_pool(work)
    run(two_workers(ddp, "ddp", ROUNDS))
    stopped = run(two_workers(fsdp, "fsdp", 2))  # stops at its round-2 checkpoint, as a killed run would
    assert {p.name for p in (fsdp / "run" / "ray_train").rglob(SHARDED)}, "no sharded trainer state written"
    stats = run(two_workers(fsdp, "fsdp", ROUNDS), fsdp / "run", resume=True)
    assert stopped["rounds"] == 2 and stats["resumed_from_round"] == 2
    a, b = (pq.read_table(w / "run" / "rounds.parquet").to_pylist() for w in (ddp, fsdp))
    assert [r["round"] for r in b] == list(range(ROUNDS)) and [r["arm"] for r in a] == [r["arm"] for r in b]
    # float32 on both; FSDP reduce-scatters where DDP all-reduces: the sums differ in their last bits only
    assert np.allclose([r["mean_loss"] for r in a], [r["mean_loss"] for r in b], rtol=1e-5, atol=1e-6)
    for t in range(ROUNDS):
        picks = [np.load(w / "run" / "selections" / f"round-{t:05d}.npy") for w in (ddp, fsdp)]
        assert picks[0].tolist() == picks[1].tolist(), t
    # the final checkpoint's model/ is the whole model, gathered from the shards: what eval loads
    model, _ = load_model(stats["checkpoint"] + "/model", two_workers(fsdp, "fsdp", ROUNDS).model)
    reference, _ = load_model(run_stats_model(ddp), two_workers(ddp, "ddp", ROUNDS).model)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        assert np.allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-5), name


def run_stats_model(work) -> str:
    import json

    return json.loads((work / "run" / "run_stats.json").read_text())["checkpoint"] + "/model"


def test_fsdp_refuses_per_sample_deltas(ray_session, tmp_path):
    toy_pool(tmp_path)
    cfg = two_workers(tmp_path, "fsdp", 1)
    cfg.selection.delta = "sample"
    with pytest.raises(ConfigError, match="'train.strategy' = fsdp with selection.delta=sample"):
        run(cfg)
