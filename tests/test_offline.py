"""Offline stage on a local Ray with the tiny preset: warm-up, scoring (resumable), clustering (deterministic)."""

import json
import os
import random
import shutil
import signal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_ray.config import ConfigError, config_from_dict, load_config, to_dict
from lead_ray.core import bins
from lead_ray.data.ingest import prepare
from lead_ray.models.load import load_model, load_model_or_adapter
from lead_ray.models.loss import SampleNLL, end_token_nll, score_encoded
from lead_ray.models.template import encode_conversation
from lead_ray.offline.cluster import cluster
from lead_ray.offline.score import score
from lead_ray.offline.warmup import in_sample, warmup
from tests.conftest import write_jsonl

TOPICS = ["apples", "rivers", "engines", "poems", "taxes", "stars", "bread", "chess"]


def corpus(path, n=160, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "instruction": f"Write {rng.randint(2, 9)} facts about {topic}, item {i}.",
                "output": " ".join(
                    rng.choice(["red", "blue", "fast", "old", "new", "big"]) for _ in range(rng.randint(3, 30))
                ),
            }
        )
    # near-duplicate prompts: the same question, different answers
    rows += [
        {"instruction": "Explain why the sky is blue in one sentence.", "output": f"Because of scattering, take {k}."}
        for k in range(3)
    ]
    rows.append({"instruction": "Summarise: " + "long text " * 60, "output": "short"})  # prompt fills max_length
    write_jsonl(path, rows)


@pytest.fixture(scope="module")
def pipeline(ray_session, tmp_path_factory):
    work = tmp_path_factory.mktemp("offline")
    corpus(work / "in" / "data.jsonl")
    cfg = load_config(
        None,
        [
            f"work_dir={work}",
            f"ingest.inputs=[{work / 'in'}]",
            "model.max_length=192",
            "model.tiny.hidden_size=64",
            "model.tiny.intermediate_size=128",
            "warmup.fraction=0.4",
            "warmup.epochs=3",
            "warmup.lr=0.003",
            "warmup.lora.enabled=false",
            "warmup.batch_size=4",
            "score.unit_rows=50",
            "cluster.difficulty_k=3",
            "cluster.task_k=2",
            "cluster.near_dup_threshold=0.95",
        ],
    )
    prepare(cfg)
    stats = {"warmup": warmup(cfg), "score": score(cfg), "cluster": cluster(cfg)}
    return cfg, work, stats


def scored(work):
    return pq.read_table(work / "scored" / "units").sort_by("id")


def test_warmup_learns_its_sample(pipeline):
    cfg, work, stats = pipeline
    w = stats["warmup"]
    pool = pq.read_table(work / "prepared" / "pool")
    chosen = in_sample(pool["id"].to_pylist(), cfg.seed, cfg.warmup.fraction, cfg.eval.holdout_fraction)
    assert w["samples"] == int(chosen.sum()) > 20 and w["optimizer_steps"] > 0
    convs = [m for m, keep in zip(pool["messages"].to_pylist(), chosen) if keep]
    losses = {}
    for name in ("base", "warmup"):
        model, tok = load_model(work / "models" / name, cfg.model)
        enc = [encode_conversation(tok, c, cfg.model.max_length) for c in convs]
        losses[name] = np.nanmean(score_encoded(model.eval(), enc, tok.pad_token_id, 4096, 16)[0])
    assert losses["warmup"] < losses["base"] - 0.1, losses


def test_warmup_worker_killed_after_an_epoch_goes_on_from_that_epoch(pipeline, tmp_path):
    """The fixture's warm-up again in a fresh folder, its Train worker killed once the first epoch's checkpoint is
    registered: Ray Train restarts the worker, which resumes from that epoch (weights, optimizer, schedule, random
    state) and ends with the weights the uninterrupted warm-up ended with."""
    import threading
    import time

    import torch

    from tests.test_fault_tolerance import alive_actor_pid

    cfg, work, _ = pipeline
    shutil.copytree(work / "prepared", tmp_path / "prepared")
    shutil.copytree(work / "models" / "base", tmp_path / "models" / "base")
    again = config_from_dict(to_dict(cfg), [f"work_dir={tmp_path}"])
    killed: dict = {}

    def kill_after_first_epoch():
        deadline = time.time() + 300
        while time.time() < deadline and not list(
            (tmp_path / "ray_train").glob("warmup-*/checkpoint_manager_snapshot.json")
        ):
            time.sleep(0.02)
        killed["pid"] = alive_actor_pid(class_name="RayTrainWorker")
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
    killer.start()
    stats = warmup(again)
    killer.join(timeout=60)
    assert "pid" in killed and stats["resumed_from_epoch"] in (1, 2), stats  # 3 epochs: the kill fell before the last
    weights = [load_model(w / "models" / "warmup", cfg.model)[0].state_dict() for w in (work, tmp_path)]
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6) for k in weights[0])
    assert not (tmp_path / "models" / ".warmup-staging").exists()


def test_scores_are_the_shared_loss_and_well_formed(pipeline):
    cfg, work, stats = pipeline
    t = scored(work)
    assert t.num_rows == stats["score"]["rows"] == pq.read_table(work / "prepared" / "pool").num_rows
    assert stats["score"]["units"] == 4 and stats["score"]["units_scored_now"] == 4
    assert 0 <= stats["score"]["padding_fraction"] < 0.5  # length buckets
    trainable = t["trainable"].to_numpy(zero_copy_only=False)
    assert trainable.sum() == t.num_rows - 1  # only the over-long prompt is untrainable
    iu0 = t["iu0"].to_numpy(zero_copy_only=False)
    assert np.isfinite(iu0[trainable]).all() and np.isnan(iu0[~trainable]).all()
    ifd = t["ifd"].to_numpy(zero_copy_only=False)
    assert ((ifd >= 0) & (ifd <= 1)).all() and (ifd > 0).any()
    emb = np.stack(t["embedding"].to_numpy(zero_copy_only=False))
    assert emb.shape == (t.num_rows, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    # the Ray actors computed IU0 with the same function as a direct call on the base model
    model, tok = load_model(work / "models" / "base", cfg.model)
    rows = t.slice(0, 5).to_pylist()
    enc = [encode_conversation(tok, r["messages"], cfg.model.max_length) for r in rows]
    direct, n, content = score_encoded(model.eval(), enc, tok.pad_token_id, 4096, 16, end_id=tok.eos_token_id)
    assert np.allclose(direct, [r["iu0"] for r in rows], atol=1e-5, equal_nan=True)
    assert np.allclose(content, [r["iu0_content"] for r in rows], atol=1e-5, equal_nan=True)
    assert not np.allclose(content, direct, equal_nan=True)  # the end-of-turn tokens left out
    end = end_token_nll(enc, SampleNLL(direct, n, content), tok.eos_token_id)
    assert np.allclose(end, [r["iu0_end"] for r in rows], atol=1e-3, equal_nan=True)
    assert list(n) == [r["n_response_tokens"] for r in rows]


def test_rescoring_skips_finished_units_and_redoes_lost_ones(pipeline):
    cfg, work, _ = pipeline
    before = scored(work)
    units = sorted((work / "scored" / "units").glob("*.parquet"))
    units[1].unlink()
    again = score(cfg)
    assert (again["units_scored_now"], again["units_skipped"]) == (1, 3)
    after = scored(work)
    assert after.column_names == before.column_names
    for col in ("id", "trainable", "n_tokens", "n_response_tokens", "messages"):
        assert after[col].equals(before[col])
    for col in ("iu0", "ifd"):
        assert np.allclose(
            after[col].to_numpy(zero_copy_only=False),
            before[col].to_numpy(zero_copy_only=False),
            atol=1e-6,
            equal_nan=True,
        )


def test_clusters_add_up_and_are_ordered(pipeline):
    cfg, work, stats = pipeline
    c = stats["cluster"]
    assert c["rows_in"] == c["rows_out"] + c["not_trainable"] + c["near_dups_dropped"]
    assert c["not_trainable"] == 1 and c["difficulty_k"] <= 3
    assert c["difficulty_centroids"] == sorted(c["difficulty_centroids"])
    t = pq.read_table(work / "clustered" / "pool")
    assert t.num_rows == c["rows_out"] and "embedding" not in t.column_names
    # the default preset bins IFD by quantile: each sample's arm is the bin of the recorded edges its IFD falls
    # in, arms are ordered by IFD, and equal-count up to ties
    assert c["difficulty_bins"] == "quantile" and c["ifd_above_one"] == "keep"
    ifd = t["ifd"].to_numpy(zero_copy_only=False)
    arm = t["difficulty_cluster"].to_numpy()
    assert (bins.assign(ifd, np.array(c["difficulty_edges"])) == arm).all()
    arms = sorted(set(arm.tolist()))
    assert all(ifd[arm == a].max() <= ifd[arm == b].min() for a, b in zip(arms, arms[1:]))
    if len(np.unique(ifd)) == len(ifd):
        assert max(c["difficulty_sizes"].values()) - min(c["difficulty_sizes"].values()) <= 1
    assert sum(c["difficulty_sizes"].values()) == t.num_rows
    narrow = pq.read_table(work / "clustered" / "pool.narrow")  # the run's driver reads this copy
    assert narrow["id"].to_pylist() == t["id"].to_pylist() and "messages" not in narrow.column_names
    # the three "sky is blue" prompts: the 2nd and 3rd are flagged as near-duplicates of an earlier one
    sky = t.filter(np.array(["sky is blue" in m[0]["content"] for m in t["messages"].to_pylist()]))
    assert sorted(x is None for x in sky["near_dup_of"].to_pylist()) == [False, False, True]


def test_clusters_are_deterministic_and_other_groupings(pipeline):
    cfg, work, first = pipeline
    before = pq.read_table(work / "clustered" / "pool").sort_by("id")
    again = cluster(cfg)
    after = pq.read_table(work / "clustered" / "pool").sort_by("id")
    assert after.to_pandas().equals(before.to_pandas())  # NaN (an unknown IFD, warm_loss) equals NaN here
    drop = lambda s: {k: v for k, v in s.items() if k not in ("seconds", "step_seconds")}  # noqa: E731
    assert drop(again) == drop(json.loads((work / "clustered" / "clusters.json").read_text()))
    assert drop(again) == drop(first["cluster"])
    by_source = cluster(
        load_config(
            None,
            [
                f"work_dir={work}",
                "cluster.task_groups=source",
                "cluster.drop_near_dups=true",
                "cluster.difficulty_k=3",
                "cluster.near_dup_threshold=0.95",
            ],
        )
    )
    flagged = first["cluster"]["near_duplicates"]
    assert by_source["task_labels"] == {"in/data.jsonl": 0} and by_source["near_dups_dropped"] == flagged >= 2
    assert by_source["rows_out"] == first["cluster"]["rows_out"] - flagged
    with pytest.raises(
        ConfigError, match=r"'cluster.difficulty_k' = 100000 is larger than the pool's \d+ trainable samples"
    ):
        cluster(load_config(None, [f"work_dir={work}", "cluster.difficulty_k=100000"]))
    cluster(cfg)  # leave the default clustering in place for other tests


def test_score_needs_the_warmup_model(ray_session, tmp_path):
    (tmp_path / "prepared" / "pool").mkdir(parents=True)
    import pyarrow as pa

    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "prepared" / "pool" / "part-0.parquet")
    with pytest.raises(FileNotFoundError, match="run `lead-ray warmup`"):
        score(load_config(None, [f"work_dir={tmp_path}"]))


def test_score_requests_a_gpu_per_actor_only_when_asked(pipeline, monkeypatch):
    """score.use_gpu=true asks Ray for GPUs even on a cluster that has none yet (an autoscaler starts
    them for the request); false and auto (no GPU here) ask for none. The requested resources are what
    is checked: the actor pool is replaced by a recorder."""
    import dataclasses

    cfg, work, _ = pipeline
    asked = []
    monkeypatch.setattr(
        "lead_ray.offline.score.run_units_on_actors",
        lambda items, cls, ctor, **resources: asked.append(resources) or [],
    )
    for setting in (True, False, "auto"):
        score(dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, use_gpu=setting)))
    assert [a["num_gpus"] for a in asked] == [1, 0, 0] and asked[0]["actors"] == 1


# ----------------------------------------------------------------------------- IFD above one


def test_cluster_drops_answers_whose_end_token_is_a_surprise_and_counts_them(pipeline, tmp_path):
    """cluster.end_nll_above: rows whose iu0_end exceeds it leave the pool (NaN kept), counted apart; counts add
    up; the threshold is recorded in clusters.json, where a run checks it."""
    cfg, work, _ = pipeline
    shutil.copytree(work / "scored", tmp_path / "scored")
    scores = pa.concat_tables(
        [pq.read_table(u, columns=["iu0_end", "trainable"]) for u in sorted((tmp_path / "scored" / "units").glob("*"))]
    ).to_pandas()
    threshold = float(np.nanmedian(scores["iu0_end"]))  # half the trainable rows above it
    expected = int(((scores["iu0_end"] > threshold) & scores["trainable"]).sum())
    stats = cluster(config_from_dict(to_dict(cfg), [f"work_dir={tmp_path}", f"cluster.end_nll_above={threshold}"]))
    assert stats["end_nll_above"] == threshold and stats["end_nll_dropped"] == expected > 0
    parts = ("rows_out", "not_trainable", "near_dups_dropped", "ifd_above_one_dropped", "end_nll_dropped")
    assert stats["rows_in"] == sum(stats[k] for k in parts)
    out = pq.read_table(tmp_path / "clustered" / "pool")
    assert not (np.nan_to_num(out["iu0_end"].to_numpy(zero_copy_only=False), nan=0.0) > threshold).any()
    assert out.num_rows == stats["rows_out"] == sum(stats["difficulty_sizes"].values())


def test_cluster_end_z_gate_drops_each_sources_outliers_and_counts_add_up(pipeline, tmp_path):
    """cluster.end_z_above: rows whose iu0_end is far above their own source group's spread leave the pool;
    counted apart, with every group's threshold in clusters.json; the kept rows are exactly the ones at or
    below their group's threshold (core/gate.py, tested on its own in test_gate.py)."""
    from lead_ray.core.gate import group_thresholds
    from lead_ray.data.sources import collapsed_folders, source_group

    cfg, work, _ = pipeline
    shutil.copytree(work / "scored", tmp_path / "scored")
    units = sorted((tmp_path / "scored" / "units").glob("*.parquet"))
    first = pq.read_table(units[0])
    planted = np.zeros(first.num_rows, bool)
    planted[::9] = True  # answers that stop where the model is sure they go on
    end = np.where(planted, 25.0, first["iu0_end"].to_numpy(zero_copy_only=False)).astype(np.float32)
    pq.write_table(first.set_column(first.schema.get_field_index("iu0_end"), "iu0_end", pa.array(end)), units[0])
    rows = pa.concat_tables([pq.read_table(u, columns=["source", "iu0_end", "trainable"]) for u in units])
    sources = rows["source"].to_pylist()
    collapsed = collapsed_folders(sources)
    names = sorted({source_group(s, collapsed) for s in sources})
    codes = np.array([names.index(source_group(s, collapsed)) for s in sources])
    values = rows["iu0_end"].to_numpy(zero_copy_only=False).astype(np.float64)
    trainable = rows["trainable"].to_numpy(zero_copy_only=False)
    thresholds = group_thresholds(np.where(trainable, values, np.nan), codes, len(names), z=3.5)
    expected = int((trainable & (np.nan_to_num(values, nan=-1) > thresholds[codes])).sum())
    stats = cluster(config_from_dict(to_dict(cfg), [f"work_dir={tmp_path}", "cluster.end_z_above=3.5"]))
    assert stats["end_z_above"] == 3.5 and stats["end_z_dropped"] == expected >= int(planted.sum()) - 2
    assert stats["end_z_thresholds"] == pytest.approx(dict(zip(names, thresholds.tolist())))
    parts = ("rows_out", "not_trainable", "near_dups_dropped", "ifd_above_one_dropped", "end_nll_dropped")
    assert stats["rows_in"] == sum(stats[k] for k in parts) + stats["end_z_dropped"]
    out = pq.read_table(tmp_path / "clustered" / "pool", columns=["iu0_end"])
    assert not (out["iu0_end"].to_numpy(zero_copy_only=False) >= 25.0).any()
    assert out.num_rows == stats["rows_out"] == sum(stats["difficulty_sizes"].values())


def test_cluster_drops_ifd_above_one_and_quantile_arms_are_even(pipeline, tmp_path):
    cfg, work, _ = pipeline
    shutil.copytree(work / "scored", tmp_path / "scored")
    units = sorted((tmp_path / "scored" / "units").glob("*.parquet"))
    first = pq.read_table(units[0])
    marked = np.zeros(first.num_rows, bool)
    marked[::7] = True  # plant mismatched pairs: IFD above 1
    ifd_raw = np.where(marked, 1.5, first["ifd_raw"].to_numpy(zero_copy_only=False)).astype(np.float32)
    pq.write_table(first.set_column(first.schema.get_field_index("ifd_raw"), "ifd_raw", pa.array(ifd_raw)), units[0])
    above = pa.concat_tables([pq.read_table(u, columns=["ifd_raw", "trainable"]) for u in units]).to_pandas()
    expected = int(((above["ifd_raw"] > 1) & above["trainable"]).sum())  # planted, and any the tiny model gave
    dropping = ["cluster.difficulty_bins=quantile", "cluster.ifd_above_one=drop"]
    stats = cluster(config_from_dict(to_dict(cfg), [f"work_dir={tmp_path}", *dropping]))
    assert stats["ifd_above_one"] == "drop" and stats["difficulty_bins"] == "quantile"
    assert stats["ifd_above_one_dropped"] == expected >= int(marked.sum()) - 1
    parts = ("rows_out", "not_trainable", "near_dups_dropped", "ifd_above_one_dropped")
    assert stats["rows_in"] == sum(stats[k] for k in parts)
    out = pq.read_table(tmp_path / "clustered" / "pool")
    assert not (np.nan_to_num(out["ifd_raw"].to_numpy(zero_copy_only=False)) > 1).any()
    sizes = list(stats["difficulty_sizes"].values())
    distinct = len(np.unique(out["ifd"].to_numpy(zero_copy_only=False))) == out.num_rows
    assert not distinct or max(sizes) - min(sizes) <= 1, sizes
    assert len(scored(tmp_path)) == len(scored(work))


# ----------------------------------------------------------------------------- anchor (selection.utility learnability)


def test_anchor_stops_when_held_out_nll_stops_falling_keeps_the_best_epoch_and_score_adds_its_loss(pipeline, tmp_path):
    """`lead-ray anchor`: trained until the held-out anchor NLL has not fallen for `patience` epochs, the best
    epoch's weights kept (their NLL on the held-out pairs is
    the best one recorded; a LoRA adapter, scored unmerged on the base model); then `score` writes its loss per
    row, and a unit written before the anchor model
    existed counts as not done."""
    from lead_ray.offline.anchor import anchor, anchor_split
    from lead_ray.offline.score import _done

    cfg, work, _ = pipeline
    rows = pq.read_table(work / "prepared" / "pool").sort_by("id").slice(0, 60)
    for folder in ("anchor", "prepared/pool"):
        (tmp_path / folder).mkdir(parents=True)
        pq.write_table(rows, tmp_path / folder / "part-0.parquet")
    over = [f"work_dir={tmp_path}", f"anchor.data={tmp_path / 'anchor'}", "score.ifd=false", "score.unit_rows=30"]
    over += ["anchor.lora.enabled=true", "anchor.lr=3.0", "anchor.max_epochs=6", "anchor.patience=0"]
    over += ["anchor.batch_size=4"]
    acfg = config_from_dict(to_dict(cfg), over)
    stats = anchor(acfg)
    assert stats["trained_on"] + stats["held_out"] == 60 and stats["held_out"] >= 8
    history = stats["val_history"]
    # patience 0: training stops at the first epoch whose held-out NLL is not below every earlier one (or at
    # max_epochs). Whether and when that happens depends on the trajectory, which moves in the third decimal here
    # and with the machine's thread count, so the rule is checked on the trajectory the run had
    first_not_better = next((i + 1 for i in range(1, len(history)) if history[i] >= min(history[:i])), None)
    assert len(history) == stats["epochs_run"] == (first_not_better or 6), history
    assert stats["best_val_loss"] == min(history) == history[stats["best_epoch"] - 1], history
    assert (tmp_path / "models" / "anchor" / "adapter_config.json").exists()  # a LoRA adapter, saved unmerged
    model, tok = load_model_or_adapter(tmp_path / "models" / "anchor", work / "models" / "base", acfg.model, "cpu")
    held_out = rows.filter(pa.array(anchor_split(rows["id"].to_pylist(), acfg.seed, 0.2)))
    enc = [encode_conversation(tok, m, acfg.model.max_length) for m in held_out["messages"].to_pylist()]
    losses = score_encoded(model.eval(), enc, tok.pad_token_id, 4096, 64).loss
    assert float(np.nanmean(losses)) == pytest.approx(stats["best_val_loss"], rel=1e-3)
    after = score(acfg)
    assert after["units_scored_now"] == 2 and after["anchor"]
    units = pq.read_table(tmp_path / "scored" / "units").sort_by("id")
    by_id = dict(zip(held_out["id"].to_pylist(), losses.tolist()))
    got = {i: v for i, v in zip(units["id"].to_pylist(), units["anchor_loss"].to_pylist()) if i in by_id}
    assert got == pytest.approx(by_id, rel=1e-3)
    unit = next((tmp_path / "scored" / "units").glob("*.parquet"))
    assert _done(unit, has_anchor=True) and _done(unit, has_anchor=False)
    pq.write_table(pq.read_table(unit).drop_columns(["anchor_loss", "anchor_content"]), unit)
    assert not _done(unit, has_anchor=True) and _done(unit, has_anchor=False)  # scored again once there is one
