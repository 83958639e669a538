"""The online loop on a local Ray: the toy end-to-end check of LEAD spec §12, with 1 and 2 workers."""

import json
import os
import random
import string

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_ray.config import load_config
from lead_ray.export import write_source_format
from lead_ray.online.run import run
from tests.conftest import write_jsonl

WORDS = ["alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "kilo", "lima", "mike", "oscar", "papa"]


def toy_pool(work, n_per=80, seed=0):
    """Arm 0: 'ping <word>' → 'pong' (learnable). Arm 1: 'pick <word>' → 8 random letters (noise)."""
    rng = random.Random(seed)
    records, rows = [], []
    for arm in (0, 1):
        for i in range(n_per):
            word = f"{rng.choice(WORDS)}{i}"
            prompt = f"ping {word}" if arm == 0 else f"pick {word}"
            answer = "pong" if arm == 0 else "".join(rng.choices(string.ascii_lowercase, k=8))
            records.append({"instruction": prompt, "output": answer})
            rows.append(
                {
                    "id": f"{arm}-{i:04d}-{rng.random():.6f}",
                    "source": "toy.jsonl",
                    "line": len(records),
                    "format": "alpaca",
                    "iu0": 5.6,
                    "iu0_content": 5.6,  # the same ranking: an end_token=skip run picks what a paper run does
                    "ifd": 0.5,
                    "warm_loss": 1.0 if arm == 0 else 5.0,  # the noise arm's loss is irreducible
                    "n_response_tokens": len(answer) + 1,
                    "difficulty_cluster": arm,
                    "task_cluster": i % 2,
                    "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                }
            )
    src = write_jsonl(work / "toy.jsonl", records)
    for r in rows:
        r["file"] = str(src)
    (work / "clustered" / "pool").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), work / "clustered" / "pool" / "part-0.parquet")


def toy_config(work, workers):
    return load_config(
        None,
        [
            f"work_dir={work}",
            "model.max_length=64",
            "model.tiny.hidden_size=64",
            "model.tiny.intermediate_size=128",
            "selection.rho=0.2",
            "selection.max_rounds=10",
            "selection.budget_fraction=1.0",
            "selection.exp3_gamma=0.5",
            "train.lr=0.003",
            "train.lora.enabled=false",
            "train.batch_size=4",
            f"train.micro_batch_size={4 // workers}",
            f"train.num_workers={workers}",
            "train.checkpoint_every=5",
            "eval.holdout_fraction=0",
        ],
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_toy_learnable_cluster_wins(ray_session, tmp_path, workers):
    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, workers)
    cfg.tracking.wandb = workers == 2  # and the 2-worker run checks the offline wandb folder and the report
    stats = run(cfg)
    rounds = pq.read_table(tmp_path / "run" / "rounds.parquet").to_pylist()
    # spec 11.10: no forward pass over the pool outside training. Every sample the model saw in a round
    # is one of that round's selected samples (padding steps aside, which carry zero weight).
    for r in rounds:
        assert r["forward_samples"] - r["padding_samples"] == r["size"] == r["trained"]
    assert stats["rounds"] == 10 and [r["round"] for r in rounds] == list(range(10))
    assert all(r["size"] == 16 for r in rounds)  # ⌊0.2 · 40⌋ from each of the 2 task groups
    # one optimizer step sees batch_size = 4 samples, over 1 worker or 2: 4 steps per round either way
    assert all(r["optimizer_steps"] == 4 for r in rounds), [r["optimizer_steps"] for r in rounds]
    # the bandit moves toward the learnable arm
    p_last = rounds[-1]["p"]
    assert p_last[0] > p_last[1], [r["p"] for r in rounds]
    assert sum(r["arm"] == 0 for r in rounds) >= 5
    # its samples' U falls, while the noise arm's stays high
    sel = pq.read_table(tmp_path / "run" / "selected.parquet").to_pandas()
    u = sel.groupby("difficulty_cluster")["u"].mean()
    assert u[0] < 5.6 - 1.0 and (1 not in u or u[1] > u[0] + 1.0), u.to_dict()
    # rewards: positive on average for the learnable arm, and larger than the noise arm's
    r0 = [r["reward_raw"] for r in rounds if r["arm"] == 0]
    r1 = [r["reward_raw"] for r in rounds if r["arm"] == 1]
    assert np.mean(r0) > 0 and (not r1 or np.mean(r0) > np.mean(r1))
    # spec 11.11 fields, and the round ΔL̂′ is never positive
    for key in (
        "p",
        "size",
        "mean_loss",
        "delta",
        "beta",
        "cos_phi",
        "reward_raw",
        "reward_norm",
        "unique",
        "selection_s",
        "train_s",
        "elapsed_s",
        "read_s",
        "push_s",
        "finish_s",
        "heldout_s",
    ):
        assert key in rounds[0]
    assert all(r["delta"] <= 0 for r in rounds) and rounds[0]["delta"] == 0.0
    assert all(r["heldout_nll"] is None for r in rounds)  # eval.holdout_fraction=0: nothing to measure, not NaN
    # outputs: the subset in its input format, and totals
    lines = write_source_format(tmp_path / "run").read_text().splitlines()
    assert len(lines) == stats["unique_selected"] == len(sel)
    assert all(set(json.loads(x)) == {"instruction", "output"} for x in lines)
    assert stats["samples_trained"] == 160 and stats["state_bytes_per_sample"] == 23  # 19 in arrays + 4 of group index
    if workers == 2:
        check_wandb_and_report(tmp_path / "run")


def check_wandb_and_report(run_dir):
    import base64
    import io
    import re

    import matplotlib.image

    from lead_ray.report import report

    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, offline  # one wandb run, offline, no account
    data = list(offline[0].glob("run-*.wandb"))
    assert data and data[0].stat().st_size > 1000
    raw = data[0].read_bytes()  # the records are protobuf: their keys are stored as plain bytes
    for key in (b"smoothing_b", b"mean_loss", b"p/cluster_1", b"u_mean/cluster_0", b"u_round", b"reward_norm"):
        assert key in raw, key
    page = report([run_dir]).read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 5 and "Arm probabilities" in page and "Source mix" in page
    for b in images:  # every plot is a real picture, not a blank canvas
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(b)), format="png")
        assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.05


def test_lora_run_stops_at_the_budget_and_checkpoints_an_adapter(ray_session, tmp_path):
    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.selection.budget_samples, cfg.train.lora.enabled, cfg.train.lora.r = 40, True, 4
    cfg.train.checkpoint_every = 1  # a checkpoint every round, and the final one: train.keep_checkpoints (2) kept
    stats = run(cfg)
    assert stats["rounds"] == 3 and stats["unique_selected"] == 40  # 16 new per round, the third cut to the 8 left
    final = __import__("pathlib").Path(stats["checkpoint"])
    model_dir = final / "model"
    assert (model_dir / "adapter_config.json").exists() and (model_dir / "adapter_model.safetensors").exists()
    kept = sorted(p for p in final.parent.iterdir() if p.is_dir() and p.name.startswith("checkpoint_"))
    assert len(kept) == 2 and final in kept, kept
    earlier = next(p for p in kept if p != final)  # resumable from trainer.pt alone: the weights are stored once
    assert (earlier / "trainer.pt").exists() and not (earlier / "model").exists()
    assert not (tmp_path / "run" / "staging").exists()  # written under the run folder, moved, the folder removed
    rounds = pq.read_table(tmp_path / "run" / "rounds.parquet").to_pylist()
    assert rounds[1]["d_p"] > 0  # round 2 saw round 1's direction: the last layer's LoRA gradients


def test_uniform_arm_choice_leaves_exp3_untouched(ray_session):
    """The no-bandit ablation: arms drawn uniformly from the allowed ones, EXP3 weights never move."""
    import ray

    from lead_ray.online.bandit_actor import BanditActor

    bandit = BanditActor.remote(3, 0.1, "latest", 0, "uniform")
    arms = [ray.get(bandit.draw.remote(np.array([True, False, True])))[0] for _ in range(60)]
    assert set(arms) == {0, 2} and 15 < arms.count(0) < 45
    assert ray.get(bandit.finish_round.remote(0, 0.5, 3.0, None)) == 0.0
    assert json.loads(ray.get(bandit.state.remote())["json"])["bandit"]["log_w"] == [0.0, 0.0, 0.0]


def test_an_embedded_ray_polls_its_train_workers_every_quarter_second(ray_session):
    """Ray Train's controller reads these from the driver's environment as each fit starts (its
    ENV_VARS_TO_PROPAGATE): at Ray's 2 s default poll every fit of a local run ended up to 2 s after its work, and
    a preemption watcher had nothing to watch on one machine."""
    from ray.train.v2._internal.constants import (
        ENABLE_PREEMPTION_WATCHER_ENV_VAR,
        ENV_VARS_TO_PROPAGATE,
        HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    )

    from lead_ray.runtime import LOCAL_TRAIN_POLL_S

    assert {HEALTH_CHECK_INTERVAL_S_ENV_VAR, ENABLE_PREEMPTION_WATCHER_ENV_VAR} <= ENV_VARS_TO_PROPAGATE
    assert os.environ[HEALTH_CHECK_INTERVAL_S_ENV_VAR] == LOCAL_TRAIN_POLL_S == "0.25"
    assert os.environ[ENABLE_PREEMPTION_WATCHER_ENV_VAR] == "0"
