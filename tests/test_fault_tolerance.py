"""Nothing lost, nothing done twice: a Train worker, the UtilityStore actor, or the driver killed mid-run,
or a run stopped at its max_rounds and resumed with more.

Each run ends with the same rounds, arms, selections and utilities as one uninterrupted run with the
same seed (the toy pool of test_online, 8 rounds, a checkpoint every 2). The kill lands once round 5
has been selected; the checkpoint before it is after round 4, so rounds 4-5 are redone from it.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import ray

from lead_ray.online.checkpoint import verify_checkpoint
from lead_ray.online.run import run
from tests.test_online import toy_config, toy_pool

ROUNDS, KILL_AT = 8, 5


def config(work):
    cfg = toy_config(work, 1)
    cfg.selection.max_rounds, cfg.train.checkpoint_every = ROUNDS, 2
    return cfg


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory):
    work = tmp_path_factory.mktemp("reference")
    toy_pool(work)
    run(config(work))
    return work


def assert_same_run(ref: Path, got: Path):
    a = pq.read_table(ref / "run" / "rounds.parquet").to_pylist()
    b = pq.read_table(got / "run" / "rounds.parquet").to_pylist()
    assert [r["round"] for r in b] == list(range(ROUNDS))  # none missing, none repeated
    assert [r["arm"] for r in a] == [r["arm"] for r in b]
    assert [r["forward_samples"] for r in a] == [r["forward_samples"] for r in b]  # no round counted twice
    for t in range(ROUNDS):
        sa = np.load(ref / "run" / "selections" / f"round-{t:05d}.npy")
        sb = np.load(got / "run" / "selections" / f"round-{t:05d}.npy")
        assert sa.tolist() == sb.tolist(), t
    ua = pq.read_table(ref / "run" / "selected.parquet").sort_by("id")
    ub = pq.read_table(got / "run" / "selected.parquet").sort_by("id")
    assert ua["id"].equals(ub["id"]) and ua["use_count"].equals(ub["use_count"])
    assert np.allclose(ua["u"].to_numpy(), ub["u"].to_numpy(), atol=1e-4)


def kill_when_round_starts(work: Path, find_pid, done: dict):
    """Background: once round KILL_AT is selected, SIGKILL the process find_pid() names."""
    marker = work / "run" / "selections" / f"round-{KILL_AT:05d}.npy"
    deadline = time.time() + 300
    while time.time() < deadline and not marker.exists():
        time.sleep(0.05)
    pid = find_pid()
    os.kill(pid, signal.SIGKILL)
    done["pid"] = pid


def alive_actor_pid(**filters) -> int:
    from ray.util.state import list_actors

    found = list_actors(
        address=ray.get_runtime_context().gcs_address,
        detail=True,
        filters=[(k, "=", v) for k, v in filters.items()] + [("state", "=", "ALIVE")],
    )
    assert found, filters
    return found[0].pid


def run_with_kill(work: Path, find_pid):
    toy_pool(work)
    done = {}
    killer = threading.Thread(target=kill_when_round_starts, args=(work, find_pid, done), daemon=True)
    killer.start()
    stats = run(config(work))
    killer.join(timeout=60)
    assert "pid" in done, "the kill never happened"
    return stats


def test_train_worker_killed_mid_round(reference, tmp_path):
    stats = run_with_kill(tmp_path, lambda: alive_actor_pid(class_name="RayTrainWorker"))
    assert stats["rounds"] == ROUNDS and stats["resumed_from_round"] in (2, 4, 6)  # restarted from a checkpoint
    assert_same_run(reference, tmp_path)


def test_utility_store_killed_restarts_and_restores(reference, tmp_path):
    import json

    def store_pid():
        name = json.loads((tmp_path / "run" / "run_state.json").read_text())["train_run_name"]
        return alive_actor_pid(name=f"utility-{name}-0")

    stats = run_with_kill(tmp_path, store_pid)
    assert stats["resumed_from_round"] in (2, 4, 6)  # the workers restarted from a checkpoint, which restored the store
    assert_same_run(reference, tmp_path)


def test_driver_killed_then_resumed(reference, tmp_path):
    toy_pool(tmp_path)
    cfg = config(tmp_path)
    args = [
        sys.executable,
        "-m",
        "lead_ray.cli",
        "run",
        "--work-dir",
        str(tmp_path),
        "--set",
        f"selection.max_rounds={ROUNDS}",
        "--set",
        "train.checkpoint_every=2",
    ]
    for key in (
        "model.max_length",
        "model.tiny.hidden_size",
        "model.tiny.intermediate_size",
        "selection.rho",
        "selection.budget_fraction",
        "selection.exp3_gamma",
        "train.lr",
        "train.lora.enabled",
        "train.batch_size",
        "train.micro_batch_size",
        "eval.holdout_fraction",
    ):
        section, _, leaf = key.rpartition(".")
        value = getattr(eval("cfg." + section), leaf)  # noqa: S307 - test helper over known keys
        args += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    env = {**os.environ, "RAY_ADDRESS": "", "LEAD_RAY_PROGRESS": "0"}
    env.pop("RAY_ADDRESS")
    driver = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1]
    )
    marker = tmp_path / "run" / "selections" / f"round-{KILL_AT:05d}.npy"
    deadline = time.time() + 300
    while time.time() < deadline and not marker.exists() and driver.poll() is None:
        time.sleep(0.05)
    assert driver.poll() is None, "the driver ended before it could be killed"
    family = psutil.Process(driver.pid).children(recursive=True)
    driver.send_signal(signal.SIGKILL)  # the driver, and the embedded Ray it started with it
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    driver.wait(timeout=30)
    assert not (tmp_path / "run" / "run_stats.json").exists()  # it really did not finish
    stats = run(cfg, tmp_path / "run", resume=True)
    assert stats["resumed_from_round"] in (2, 4, 6)
    assert_same_run(reference, tmp_path)


def test_stopped_run_resumed_continues_exactly(reference, tmp_path):
    """Stop after round 4, resume to 8: the same rounds, arms, selections and utilities as one run to 8.
    Then a resume with nothing left to do finishes cleanly."""
    toy_pool(tmp_path)
    cfg = config(tmp_path)
    cfg.selection.max_rounds = 4
    run(cfg)
    stats = run(config(tmp_path), resume=True)
    assert stats["resumed_from_round"] == 4 and stats["rounds"] == ROUNDS  # continued from the checkpoint
    assert_same_run(reference, tmp_path)
    # nothing left to do (max_rounds below the checkpoint's next round): a clean finish, the run unchanged
    cfg = config(tmp_path)
    cfg.selection.max_rounds = 1
    stats = run(cfg, resume=True)
    assert stats["resumed_from_round"] == ROUNDS and stats["rounds"] == ROUNDS
    assert_same_run(reference, tmp_path)


def fsdp_config(work):
    cfg = toy_config(work, 2)
    cfg.selection.max_rounds, cfg.train.checkpoint_every, cfg.train.strategy = ROUNDS, 2, "fsdp"
    return cfg


def test_fsdp_on_two_workers_trains_as_one_ddp_worker_and_resumes_from_its_shards(reference, tmp_path):
    """`train.strategy: fsdp` (FSDP2 on gloo): stopped at its round-2 checkpoint (written sharded) and resumed
    from the shards, the same rounds, arms, selections and utilities as the one-worker DDP reference (the batch is
    the same 4 samples per step; float32 sums in another order differ in their last bits only), and the final
    model/, gathered from the shards, the reference's weights."""
    from lead_ray.config import ConfigError
    from lead_ray.models.load import load_model
    from lead_ray.online.fsdp import SHARDED

    toy_pool(tmp_path)
    cfg = fsdp_config(tmp_path)
    cfg.selection.max_rounds = 2
    run(cfg)
    assert list((tmp_path / "run" / "ray_train").rglob(SHARDED)), "no sharded trainer state written"
    stats = run(fsdp_config(tmp_path), resume=True)
    assert stats["resumed_from_round"] == 2 and stats["workers"] == 2
    assert_same_run(reference, tmp_path)
    models = [load_model(Path(final_checkpoint(w)) / "model", cfg.model)[0] for w in (reference, tmp_path)]
    for (name, p), (_, q) in zip(models[0].named_parameters(), models[1].named_parameters()):
        assert np.allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-5), name
    per_sample = fsdp_config(tmp_path)
    per_sample.selection.delta = "sample"
    with pytest.raises(ConfigError, match="'train.strategy' = fsdp with selection.delta=sample"):
        run(per_sample, tmp_path / "refused")


def final_checkpoint(work: Path) -> str:
    return __import__("json").loads((work / "run" / "run_stats.json").read_text())["checkpoint"]


def test_resume_with_a_changed_selection_config_is_refused(reference, tmp_path):
    """A run records its config; a resume that changes what is selected stops before it starts anything."""
    import shutil

    from lead_ray.config import ConfigError, load_config, to_dict

    saved = reference / "run" / "config.yaml"
    assert to_dict(load_config(saved)) == to_dict(config(reference))
    (tmp_path / "run").mkdir()
    for f in ("config.yaml", "run_state.json"):
        shutil.copy(reference / "run" / f, tmp_path / "run" / f)
    cfg = config(reference)
    cfg.selection.rho = 0.9
    with pytest.raises(ConfigError, match=r"selection\.rho: 0\.\d+ -> 0\.9"):
        run(cfg, tmp_path / "run", resume=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "run_state.json"]


def test_half_written_checkpoint_is_refused(reference):
    ckpt = Path(__import__("json").loads((reference / "run" / "run_stats.json").read_text())["checkpoint"])
    verify_checkpoint(ckpt)  # a complete one passes
    broken = ckpt.parent / "broken-copy"
    import shutil

    shutil.copytree(ckpt, broken)
    trainer = broken / "trainer.pt"
    trainer.write_bytes(trainer.read_bytes()[: trainer.stat().st_size // 2])
    with pytest.raises(RuntimeError, match="trainer.pt is missing or truncated"):
        verify_checkpoint(broken)
    (broken / "MANIFEST.json").unlink()
    with pytest.raises(RuntimeError, match="not completely written"):
        verify_checkpoint(broken)


def test_second_node_lost_mid_round_and_replaced(reference, tmp_path):
    """A real two-node cluster (tests/two_nodes.py, in its own process): the node holding the Train worker,
    the UtilityStore and the bandit dies mid-round; the run carries on from its checkpoint on a replacement
    node and ends with the same selection as the uninterrupted one-node reference."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    script = Path(__file__).with_name("two_nodes.py")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(reference)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["rounds"] == ROUNDS and stats["resumed_from_round"] in (2, 4, 6)  # restarted from a checkpoint
