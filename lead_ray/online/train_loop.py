"""The Ray Train worker loop: every worker runs every round of the LEAD selection (spec §8).

One round t, on all workers of the single long-running TorchTrainer:
  rank 0   draws an arm from the BanditActor (EXP3), predicts ΔL̂′ from the stored directions at the
           current learning rate, asks the UtilityStore for the stratified top-U samples of that
           cluster, marks them used, and broadcasts the plan;
  each     trains one pass over its slice of the round (micro-batches, gradient accumulation, DDP),
           takes each sample's IU from the training forward pass itself (the shared loss function),
           and pushes (index, loss) to the UtilityStore asynchronously, which applies
           U ← (1−b)(L + ΔL̂′) + b·U_prev;
  rank 0   measures the round's update direction g: the mean gradient of the direction parameters
           (the last layer's trainable ones) over the round's optimizer steps, after DDP's all-reduce
           (spec 5.3's "accumulated gradient at each optimizer step, averaged over the round"). Not
           Δθ/η: with Adam, ‖Δθ/η‖² has nothing to do with the gradient's scale, and ΔL̂′ = −η‖g‖²
           (a first-order step along the gradient) then swamps the losses — seen on the toy test,
           where it reached −700 against losses of 5. Then it computes the reward (mean U decrease
           over the trained samples) and updates the bandit. Every `train.checkpoint_every` rounds all ranks report, rank 0 with a
           checkpoint holding the model and the whole selection state.
No forward pass ever runs over samples that are not being trained (spec 11.10).
"""
from __future__ import annotations

import json
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from lead_ray.stages import write_text_atomic

PUSH_EVERY = 1024  # samples per UtilityStore push from one worker


def direction_params(model, which: str) -> dict:
    """Trainable parameters whose change defines the update direction (spec 5.3: the last layer's)."""
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if which == "all":
        return trainable
    layers = [int(m.group(1)) for n in trainable for m in [re.search(r"layers\.(\d+)\.", n)] if m]
    if not layers:
        return trainable
    last = f"layers.{max(layers)}."
    return {n: p for n, p in trainable.items() if last in n}


def lead_train_loop(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from lead_ray.core.baselines import round_slices
    from lead_ray.core.select import quotas_for, trim_to_budget
    from lead_ray.models.load import load_for_training, train_worker_device, training_autocast
    from lead_ray.models.loss import collate, sample_losses, score_encoded
    from lead_ray.models.optim import build_optimizer
    from lead_ray.models.template import encode_conversation
    from lead_ray.online.actors import UtilityClient, restore_bandit
    from lead_ray.online.rows import RoundRows
    from lead_ray.online.tracking import RoundLogger

    cfg, run_dir = config["cfg"], Path(config["run_dir"])
    sc, tc = cfg.selection, cfg.train
    torch.set_num_threads(config["threads"])
    torch.manual_seed(cfg.seed)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    store = UtilityClient(config["store_handles"], config["store_bounds"])
    bandit = config["bandit"]
    rows = RoundRows(shared_run_path(run_dir, "rows"))
    device = train_worker_device()
    model, tok, autocast_dtype = load_for_training(config["base_dir"], cfg.model, tc.lora, device)
    opt, sched, accum = build_optimizer(model, tc, world)
    start_round, t_start = 0, time.perf_counter()
    ckpt = ray.train.get_checkpoint()
    if ckpt:  # a restart: model, optimizer, schedule, cursor and (rank 0) the selection state
        with ckpt.as_directory() as d:
            verify_checkpoint(Path(d))
            state = load_trainer_state(Path(d))
            model.load_state_dict(state["trainable"], strict=False)
            opt.load_state_dict(state["optimizer"])  # moves the state to each parameter's device
            sched.load_state_dict(state["scheduler"])
            start_round = state["next_round"]
            if rank == 0:
                store.restore(Path(d) / "selection")
                restore_bandit(bandit, Path(d) / "selection")
    elif rank == 0:  # a start, or a restart before the first checkpoint: the actors go back to round 0
        store.load_states(config["initial_store"])  # object refs: the state never touches a node's disk
        ray.get(bandit.load_state.remote(config["initial_bandit"]))
    dir_names = list(direction_params(model, sc.direction_params))
    model = ray.train.torch.prepare_model(model)
    plain = model.module if hasattr(model, "module") else model
    dir_params = dict(plain.named_parameters())
    dir_params = {n: dir_params[n] for n in dir_names}
    n_arms, budget = config["n_arms"], config["budget"]
    tracker = RoundLogger(cfg, run_dir, config["run_name"]) if rank == 0 else None
    last_metrics: dict = {}  # the final report repeats the last round's metrics (Tune reads the last report)

    static = config["static_order"]
    static_rounds = round_slices(len(static), sc.max_rounds, tc.batch_size) if static is not None else None
    holdout_enc = [encode_conversation(tok, m, cfg.model.max_length) for m in config["holdout"]] if rank == 0 else []
    pool_enc = None  # the `rescore` baseline's encoded pool, built on first use

    def bcast(obj):
        if world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    for t in range(start_round, sc.max_rounds + 1):
        plan = {"stop": True}
        pool_s = 0.0
        if sc.method == "rescore" and bcast(rank == 0 and t < sc.max_rounds and store.used_count() < budget):
            # The costly iterative baseline: every round, every pool sample is scored by the current model.
            t_pool = time.perf_counter()
            if pool_enc is None:
                everything = np.arange(config["pool_size"], dtype=np.int64)[rank::world]
                pool_enc = (everything, [encode_conversation(tok, m, cfg.model.max_length) for m in rows.messages(everything)])
            with training_autocast(device, autocast_dtype):
                losses, _ = score_encoded(plain.eval(), pool_enc[1], tok.pad_token_id, cfg.score.batch_tokens,
                                          cfg.score.max_batch_size)
            ray.get(store.set_u_async(pool_enc[0], losses) + [store.handles[0].note_forward.remote(t, pool=len(losses))])
            if world > 1:
                dist.barrier()
            pool_s = time.perf_counter() - t_pool
        if rank == 0 and t < sc.max_rounds:
            t_sel = time.perf_counter()
            if static is not None:  # a static baseline: the next slice of the fixed subset
                if t < len(static_rounds):
                    index = static[static_rounds[t]]
                    store.mark_used(index)
                    plan = {"stop": False, "arm": -1, "p": [], "index": index, "eta": float(sched.get_last_lr()[0]),
                            "delta": 0.0, "est": None}
            else:
                unique = store.used_count()
                allowed = np.array([bool(quotas_for(store.eligible_counts(k, sc.use_cap), sc.rho, sc.min_per_group))
                                    for k in range(n_arms)])
                if unique < budget and allowed.any():
                    eta = float(sched.get_last_lr()[0])
                    arm, p = ray.get(bandit.draw.remote(allowed))
                    est = ray.get(bandit.estimate.remote(arm, eta))
                    index = store.select(arm, sc.rho, sc.use_cap, sc.min_per_group)
                    u_sel, used_sel = store.peek(index)
                    index = trim_to_budget(index, u_sel, used_sel == 0, budget - unique)  # the budget is a hard cap
                    if sc.shuffle:
                        index = index[ray.get(bandit.permutation.remote(len(index)))]
                    store.mark_used(index)
                    # U = L + ΔL̂′ smoothed (LEAD); the no-ΔL̂′ ablation and `rescore` use the loss alone
                    delta = est.delta if sc.method == "lead" and sc.use_delta else 0.0
                    plan = {"stop": False, "arm": arm, "p": p, "index": index, "eta": eta, "delta": delta, "est": est}
            if not plan["stop"]:
                np.save(run_dir / "selections" / f"round-{t:05d}.npy", plan["index"])
                plan["selection_s"] = time.perf_counter() - t_sel + pool_s
        plan = bcast(plan)
        if plan["stop"]:
            break
        smooth_b = 0.0 if sc.method == "rescore" else sc.smoothing_b

        # ---- train one pass over this worker's slice of the round
        t_train = time.perf_counter()
        index = plan["index"]
        mine = index[rank::world]
        n_micro = math.ceil(math.ceil(len(index) / world) / tc.micro_batch_size)  # equal on every rank (DDP)
        refs, pending, buf_idx, buf_loss = [], 0, [], []
        grad_sum, steps, forwarded, padding, optimizer_steps = None, 0, 0, 0, 0
        read_s = push_s = 0.0  # bookkeeping inside the training pass, measured for bench/loop.py
        t_read = time.perf_counter()
        my_convs = rows.messages(mine) if len(mine) else rows.messages(index[:1])  # one read for the whole slice
        read_s += time.perf_counter() - t_read
        my_enc = [encode_conversation(tok, m, cfg.model.max_length) for m in my_convs]  # the slice, encoded once
        model.train()
        plain.train()
        for j in range(n_micro):
            chunk = mine[j * tc.micro_batch_size:(j + 1) * tc.micro_batch_size]
            dummy = len(chunk) == 0  # this rank ran out: a zero-weight step keeps DDP's all-reduce in step
            enc = my_enc[j * tc.micro_batch_size:(j + 1) * tc.micro_batch_size] if not dummy else my_enc[:1]
            with training_autocast(device, autocast_dtype):
                losses, _ = sample_losses(model, collate(enc, tok.pad_token_id))
            forwarded += len(enc)
            padding += len(enc) if dummy else 0
            valid = ~torch.isnan(losses)
            loss = losses[valid].mean() if valid.any() and not dummy else losses.nan_to_num(0.0).sum() * 0.0
            (loss / accum).backward()
            if not dummy:
                buf_idx.append(chunk)
                buf_loss.append(losses.detach().float().cpu().numpy())
                if sum(len(b) for b in buf_idx) >= PUSH_EVERY or j == n_micro - 1:
                    # U only matters for the next round's selection, so pushing in batches (one actor
                    # call per PUSH_EVERY samples, not per micro-batch) changes nothing but the overhead.
                    t_push = time.perf_counter()
                    refs += store.apply_async(np.concatenate(buf_idx), np.concatenate(buf_loss), plan["delta"], smooth_b, t)
                    buf_idx, buf_loss = [], []
                    push_s += time.perf_counter() - t_push
            pending += 1
            if pending == accum or j == n_micro - 1:
                if rank == 0 and dir_names:  # the step's gradient on the direction parameters (already all-reduced)
                    g = torch.cat([dir_params[n].grad.detach().flatten().float() for n in dir_names
                                   if dir_params[n].grad is not None])
                    grad_sum = g if grad_sum is None else grad_sum + g
                    steps += 1
                opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
                pending, optimizer_steps = 0, optimizer_steps + 1
        t_push = time.perf_counter()
        if buf_idx:  # this rank's last micro-batch was padding: flush what is left
            refs += store.apply_async(np.concatenate(buf_idx), np.concatenate(buf_loss), plan["delta"], smooth_b, t)
        refs.append(store.handles[0].note_forward.remote(t, forwarded, padding))
        ray.get(refs)  # every update of this round has landed before the reward is read
        push_s += time.perf_counter() - t_push
        if world > 1:
            dist.barrier()
        train_s = time.perf_counter() - t_train

        metrics = {"round": t, "rounds_done": t + 1}
        if rank == 0:
            t_finish = time.perf_counter()
            direction = (grad_sum / steps).cpu().numpy() if grad_sum is not None else None
            heldout, heldout_s = None, 0.0
            if holdout_enc and cfg.eval.inloop_every and (t + 1) % cfg.eval.inloop_every == 0:
                heldout_s = time.perf_counter()
                with training_autocast(device, autocast_dtype):
                    heldout = heldout_nll(plain, holdout_enc, tok, cfg, store, t)
                heldout_s = time.perf_counter() - heldout_s  # evaluation, kept apart from selection bookkeeping
            drop, loss_sum, n = store.round_sums(t)
            est = plan["est"]
            fwd, pad, pool_fwd, held_fwd = ray.get(store.handles[0].forward_counts.remote(t))
            record = {"forward_samples": int(fwd), "padding_samples": int(pad), "pool_forward_samples": int(pool_fwd),
                      "heldout_forward_samples": int(held_fwd), "heldout_nll": heldout,
                      "round": t, "method": sc.method, "arm": plan["arm"], "p": plan["p"], "size": int(len(index)),
                      "trained": int(n), "mean_loss": loss_sum / max(n, 1), "delta": plan["delta"],
                      "beta": est.beta if est else None, "cos_phi": est.cos_phi if est else None,
                      "d_k": est.d_k if est else None, "d_p": est.d_p if est else None, "eta": plan["eta"],
                      "optimizer_steps": optimizer_steps, "unique": store.used_count(), "u_by_cluster": store.cluster_means(),
                      "selection_s": plan["selection_s"], "train_s": train_s,
                      "elapsed_s": time.perf_counter() - t_start}
            reward = drop / max(n, 1)
            record.update(read_s=read_s, push_s=push_s, heldout_s=heldout_s,
                          finish_s=time.perf_counter() - t_finish - heldout_s)
            p_arm = plan["p"][plan["arm"]] if plan["arm"] >= 0 else 1.0
            normalised = ray.get(bandit.finish_round.remote(plan["arm"], p_arm, reward, direction, record))
            tracker.log({**record, "reward_raw": reward, "reward_norm": normalised},
                        store.peek(index)[0] if tracker.run is not None else None)
            metrics.update(mean_loss=record["mean_loss"], reward=reward, **({"heldout_nll": heldout} if heldout is not None else {}))
            last_metrics = {k: v for k, v in metrics.items() if k in ("mean_loss", "heldout_nll", "rounds_done")}
            print(f"[lead-ray] {sc.method} round {t + 1}/{sc.max_rounds}: arm {plan['arm']} (p={p_arm:.3f}), "
                  f"{len(index)} samples, mean loss {record['mean_loss']:.4f}, ΔL̂′ {plan['delta']:.2e}, "
                  + (f"held-out NLL {heldout:.4f}, " if heldout is not None else "") +
                  f"reward {reward:+.4f} (norm {normalised:+.3f}), unique {record['unique']}/{budget}, "
                  f"select {plan['selection_s']:.2f} s, train {train_s:.1f} s", flush=True)
        if (t + 1) % tc.checkpoint_every == 0:
            _report(metrics, t + 1, rank, model, opt, sched, store, bandit, tok)
    if rank == 0 and holdout_enc and cfg.eval.inloop_every and t > start_round:
        last = ray.get(bandit.rounds.remote())[-1]  # the run ended between measurements: measure the final model
        if last.get("heldout_nll") is None:
            with training_autocast(device, autocast_dtype):
                final = heldout_nll(plain, holdout_enc, tok, cfg, store, last["round"])
            ray.get(bandit.amend_last.remote({"heldout_nll": final, "heldout_forward_samples": len(holdout_enc)}))
            last_metrics["heldout_nll"] = final
    if tracker is not None:
        tracker.finish()
    _report({**last_metrics, "round": -1, "start_round": start_round}, t, rank, model, opt, sched, store, bandit, tok)  # final state, always


def heldout_nll(model, encoded, tok, cfg, store, round_: int) -> float:
    """Mean response NLL of the held-out samples (never selectable), counted as held-out forwards."""
    import ray
    from lead_ray.models.loss import score_encoded

    losses, _ = score_encoded(model.eval(), encoded, tok.pad_token_id, cfg.score.batch_tokens, cfg.score.max_batch_size)
    ray.get(store.handles[0].note_forward.remote(round_, held_out=len(losses)))
    return float(np.nanmean(losses))


MANIFEST = "MANIFEST.json"


def write_manifest(folder: Path) -> None:
    """Every file of a checkpoint with its size, written last (write, then rename)."""
    files = {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*")) if f.is_file()}
    write_text_atomic(folder / MANIFEST, json.dumps(files, indent=1))


def verify_checkpoint(folder: Path) -> None:
    """Refuse a checkpoint that is incomplete: no manifest, or a file missing or of the wrong size."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        raise RuntimeError(f"checkpoint {folder} has no {MANIFEST}: it was not completely written; not loading it")
    for rel, size in json.loads(manifest.read_text()).items():
        f = folder / rel
        if not f.is_file() or f.stat().st_size != size:
            raise RuntimeError(f"checkpoint {folder}: {rel} is missing or truncated ({MANIFEST} says {size} bytes); not loading it")


def load_trainer_state(folder: Path) -> dict:
    """trainer.pt of a checkpoint, onto the CPU: it may have been written on a GPU, and be read on a host
    without one (a resume with train.use_gpu=false) or by a worker whose GPU is not the writer's GPU 0.
    load_state_dict then moves each tensor to its parameter's device."""
    import torch

    return torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)


def shared_run_path(run_dir: Path, name: str) -> Path:
    """A path under the run folder that the driver wrote; a clear error where this node cannot see it."""
    path = run_dir / name
    if not path.exists():
        import socket

        raise FileNotFoundError(
            f"{path} was written by the driver but does not exist on this node ({socket.gethostname()}): on a "
            f"multi-node cluster, work_dir must be on storage that every node mounts at the same path "
            f"(NFS/EFS, a ReadWriteMany volume); see README, 'Before your first GPU cluster run'")
    return path


def _report(metrics: dict, next_round: int, rank: int, model, opt, sched, store, bandit, tok) -> None:
    """All ranks report (a barrier); rank 0 attaches the checkpoint: model + optimizer + selection state."""
    import ray.train
    import torch

    from lead_ray.online.actors import save_bandit

    if rank != 0:
        ray.train.report(metrics)
        return
    plain = model.module if hasattr(model, "module") else model
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain.save_pretrained(tmp / "model", safe_serialization=True)  # the LoRA adapter, or the full model
        tok.save_pretrained(tmp / "model")
        trainable = {n: p.detach().cpu() for n, p in plain.named_parameters() if p.requires_grad}
        torch.save({"trainable": trainable, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "next_round": next_round}, tmp / "trainer.pt")
        (tmp / "selection").mkdir()
        store.save(tmp / "selection")  # the actors hand over bytes; this process writes them, on its own node
        save_bandit(bandit, tmp / "selection")
        write_manifest(tmp)
        ray.train.report({**metrics, "next_round": next_round}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
