"""The Ray Train worker loop: every worker runs every round of the LEAD selection (ALGORITHM.md §8).

One round t, on all workers of the single long-running TorchTrainer:
  plan     rank 0 draws an arm from the BanditActor (EXP3), predicts ΔL̂′ from the stored directions at
           the current learning rate, asks the UtilityStore for the stratified top-U samples of that
           cluster, marks them used, and broadcasts the plan;
  train    each worker trains one pass over its slice of the round (micro-batches, gradient
           accumulation, DDP or FSDP: online/fsdp.py), takes each sample's IU from the training forward pass itself (the
           shared loss function; `selection.end_token: skip` takes its mean without the end-of-turn
           token), and pushes (index, loss) to the UtilityStore asynchronously, which
           applies U ← (1−b)(L + ΔL̂′) + b·U_prev; with `selection.delta: sample` ΔL̂′ is each sample's
           −η⟨g(x), ĝ⟩, from the same backward pass (models/ghost.py);
  finish   rank 0 measures the round's update direction g: the mean gradient of the direction
           parameters (the last layer's trainable ones) over the round's optimizer steps, after DDP's
           all-reduce (ALGORITHM.md §5.3: not Δθ/η, whose scale under Adam has nothing to do with the
           gradient's). It computes the reward (mean U decrease over the trained samples), updates the
           bandit and appends the round to the round log, which rank 0 owns and checkpoints.
Every `train.checkpoint_every` rounds all ranks report, rank 0 with a checkpoint holding the model, the
optimizer and the whole selection state (UtilityStore, BanditActor, round log).
No forward pass ever runs over samples that are not being trained (ALGORITHM.md §11).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from lead_ray.online.checkpoint import (
    TrainerState,
    load_checkpoint,
    report_sharded,
    report_with_checkpoint,
    restore_selection,
    shared_run_path,
)
from lead_ray.online.collective import accumulating, broadcast_from_rank0, sum_over_workers
from lead_ray.online.direction import direction_params, round_direction
from lead_ray.online.fsdp import shard
from lead_ray.online.pool_rescore import PoolRescore
from lead_ray.online.pushes import RoundPushes
from lead_ray.online.rounds import RoundPlan, RoundTotals, TrainedRound, eta_seconds, progress_line, round_record
from lead_ray.online.settings import LoopSettings
from lead_ray.presets import switches


def lead_train_loop(config: dict) -> None:
    """The function every Ray Train worker runs (`train_loop_config={"settings": LoopSettings}`)."""
    from lead_ray.console import quiet_train_worker

    quiet_train_worker()
    RoundLoop(config["settings"]).train()


class RoundLoop:
    """One worker's state for the whole run; `train` runs the rounds as named steps."""

    def __init__(self, settings: LoopSettings):
        import ray.train
        import torch

        from lead_ray.data.rows import RoundRows
        from lead_ray.online.actors import UtilityClient

        self.s, self.cfg = settings, settings.cfg
        self.selection, self.training = self.cfg.selection, self.cfg.train
        self.switches = switches(self.cfg)
        torch.set_num_threads(settings.threads)
        torch.manual_seed(self.cfg.seed)
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.run_dir = Path(settings.run_dir)
        self.store = UtilityClient(settings.store_handles, settings.store_bounds)
        self.bandit = settings.bandit
        self.rows = RoundRows(shared_run_path(self.run_dir, "rows"))
        self.round_log: list[dict] = []  # rank 0's: one record per finished round
        self._setup_model()
        self.start_round = self._restore()
        self._setup_distributed()
        self._setup_round_inputs()

    # ------------------------------------------------------------------ setup

    def _setup_model(self) -> None:
        from lead_ray.models.load import load_for_training, train_worker_device
        from lead_ray.models.optim import build_optimizer

        self.device = train_worker_device()
        self.model, self.tok, self.autocast_dtype = load_for_training(
            self.s.base_dir, self.cfg.model, self.training.lora, self.device, self.training.gradient_checkpointing
        )
        self.sharded = self.training.strategy == "fsdp"
        if self.sharded:  # before the optimizer, which must see the sharded parameters (online/fsdp.py)
            shard(self.model, self.device)
        self.opt, self.sched, self.accum = build_optimizer(self.model, self.training, self.world)
        self.end_id = self.tok.eos_token_id if self.switches.end_token == "skip" else None  # U without it
        self.t_start = time.perf_counter()

    def _restore(self) -> int:
        """The round to start at: 0, or the checkpoint's cursor after a restart (model, optimizer,
        schedule; rank 0 also the selection actors and the round log)."""
        import ray
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if not ckpt:  # a start, or a restart before the first checkpoint: the actors go back to round 0
            if self.rank == 0:
                self.store.load_states(self.s.initial_store)  # object refs: never a node's disk
                ray.get(self.bandit.load_state.remote(self.s.initial_bandit))
            return 0
        with ckpt.as_directory() as d:
            next_round = load_checkpoint(Path(d), self.model, self.opt, self.sched)
            if self.rank == 0:
                self.round_log = restore_selection(Path(d), self.store, self.bandit)
            return next_round

    def _setup_distributed(self) -> None:
        import ray.train.torch

        names = list(direction_params(self.model, self.selection.direction_params))
        if not self.sharded:
            self.model = ray.train.torch.prepare_model(self.model)
        self.plain = self.model.module if hasattr(self.model, "module") else self.model  # without DDP
        self.direction = round_direction(
            self.plain, names, self.cfg, (self.rank, self.accum), self.tok, self.autocast_dtype, self.s.anchor
        )

    def _setup_round_inputs(self) -> None:
        from lead_ray.core.baselines import round_slices
        from lead_ray.models.template import encode_conversation
        from lead_ray.online.tracking import RoundLogger

        static = self.s.static_order
        self.static_rounds = (
            None if static is None else round_slices(len(static), self.selection.max_rounds, self.training.batch_size)
        )
        self.holdout_enc = (  # a sharded model's forward pass needs every worker: each scores the held-out split
            [encode_conversation(self.tok, m, self.cfg.model.max_length) for m in self.s.holdout]
            if self.rank == 0 or self.sharded
            else []
        )
        rescore = self.selection.method == "rescore"  # the baseline that scores the whole pool every round
        share = (self.rows, self.tok, self.cfg.model.max_length, self.s.pool_size, self.rank, self.world)
        self.pool_rescore = PoolRescore(*share) if rescore else None
        self.tracker = RoundLogger(self.cfg, self.run_dir, self.s.run_name) if self.rank == 0 else None
        self.smooth_b = 0.0 if rescore else self.selection.smoothing_b

    # ------------------------------------------------------------------ the rounds

    def train(self) -> None:
        next_round, metrics = self.start_round, {}
        for t in range(self.start_round, self.selection.max_rounds):
            pool_forwards, pool_s = self._rescore_pool(t)
            plan = broadcast_from_rank0(self._plan_round(t, pool_s) if self.rank == 0 else None, self.world)
            if plan is None:
                break
            trained = self._train_round(t, plan)
            counts = sum_over_workers([trained.forwarded, trained.padding, pool_forwards], self.world, self.device)
            heldout = self._heldout_nll() if self._heldout_due(t) else (None, 0.0)
            metrics = self._finish_round(t, plan, trained, counts, heldout) if self.rank == 0 else {}
            next_round = t + 1
            if next_round % self.training.checkpoint_every == 0:
                self._report({"round": t, "rounds_done": next_round, **metrics}, next_round)
        self._finish_run(next_round, metrics)

    def _rescore_pool(self, t: int) -> tuple[int, float]:
        """The `rescore` baseline only: every pool sample scored by the current model before the round."""
        if self.pool_rescore is None or not broadcast_from_rank0(self.rank == 0 and self._budget_left(t), self.world):
            return 0, 0.0
        import torch.distributed as dist

        t0 = time.perf_counter()
        forwarded = self.pool_rescore(lambda encoded: self._score(encoded, self.end_id).content, self.store)
        if self.world > 1:
            dist.barrier()
        return forwarded, time.perf_counter() - t0

    def _budget_left(self, t: int) -> bool:
        return t < self.selection.max_rounds and self.store.used_count() < self.s.budget

    def _plan_round(self, t: int, pool_s: float) -> RoundPlan | None:
        """Rank 0: the round's samples (a static slice, or the bandit's arm and its top-U samples)."""
        t0 = time.perf_counter()
        plan = self._plan_static(t) if self.s.static_order is not None else self._plan_bandit()
        if plan is not None:
            np.save(self.run_dir / "selections" / f"round-{t:05d}.npy", plan.index)
            plan.selection_s = time.perf_counter() - t0 + pool_s
        return plan

    def _plan_static(self, t: int) -> RoundPlan | None:
        if t >= len(self.static_rounds):
            return None
        index = self.s.static_order[self.static_rounds[t]]
        self.store.mark_used(index)
        return RoundPlan(index, -1, [], float(self.sched.get_last_lr()[0]), 0.0, None, 0.0)

    def _plan_bandit(self) -> RoundPlan | None:
        import ray

        from lead_ray.online.plan import allowed_arms, eligible_counts, pick_samples

        sel, unique = self.selection, self.store.used_count()
        counts = eligible_counts(self.store, self.s.n_arms, sel)
        allowed = allowed_arms(self.store, self.s.n_arms, sel, counts)
        if unique >= self.s.budget or not allowed.any():
            return None
        eta = float(self.sched.get_last_lr()[0])
        arm, p, estimate = ray.get(self.bandit.draw_and_estimate.remote(allowed, eta))
        index = pick_samples(self.store, arm, sel, self.s.budget - unique, counts[arm])
        if sel.shuffle:
            index = index[ray.get(self.bandit.permutation.remote(len(index)))]
        self.store.mark_used(index)
        # U = L + ΔL̂′ smoothed (LEAD); the no-ΔL̂′ ablation and `rescore` use the loss alone
        delta = estimate.delta if sel.method == "lead" and sel.use_delta else 0.0
        stored = self.direction.ghost is not None and self.direction.anchor is None  # `anchor` measures its own
        direction = ray.get(self.bandit.direction.remote(arm, estimate.beta)) if stored else None
        return RoundPlan(index, arm, p, eta, delta, estimate, 0.0, direction)

    def _train_round(self, t: int, plan: RoundPlan) -> TrainedRound:
        """One pass over this worker's slice of the round; each sample's loss goes to the store."""
        import torch.distributed as dist

        from lead_ray.models.template import encode_conversation

        t0, micro = time.perf_counter(), self.training.micro_batch_size
        mine = plan.index[self.rank :: self.world]
        n_micro = math.ceil(math.ceil(len(plan.index) / self.world) / micro)  # equal on every rank (DDP)
        t_read = time.perf_counter()
        convs = self.rows.messages(mine if len(mine) else plan.index[:1])  # one read for the whole slice
        read_s = time.perf_counter() - t_read
        encoded = [encode_conversation(self.tok, m, self.cfg.model.max_length) for m in convs]  # once per round
        pushes = RoundPushes(self.store, plan.delta, self.smooth_b, t, self.direction.push_transform())
        per_sample = self.direction.products_due(plan.direction)
        self.direction.begin_round(plan.direction, self.device, t)
        forwarded, padding, optimizer_steps = 0, 0, 0
        self.model.train()
        self.plain.train()
        for j in range(n_micro):
            chunk = mine[j * micro : (j + 1) * micro]
            padded = len(chunk) == 0  # this rank ran out: a zero-weight step keeps DDP's all-reduce in step
            with accumulating(self.model, steps_now=(j + 1) % self.accum == 0 or j == n_micro - 1):
                losses, utility = self._loss_step(
                    encoded[j * micro : (j + 1) * micro] if not padded else encoded[:1], padded
                )
            forwarded, padding = forwarded + len(losses), padding + (len(losses) if padded else 0)
            deltas = self.direction.sample_deltas(losses, plan.eta) if per_sample else None
            if not padded:
                pushes.add(chunk, utility, last=j == n_micro - 1, deltas=deltas)
            if (j + 1) % self.accum == 0 or j == n_micro - 1:
                self.direction.before_step()
                self.opt.step(), self.sched.step(), self.opt.zero_grad(set_to_none=True)
                optimizer_steps += 1
        pushes.finish()  # every update of this round has landed before the reward is read
        if self.world > 1:
            dist.barrier()
        direction, ghost_s = self.direction.finish_round()
        return TrainedRound(
            forwarded,
            padding,
            optimizer_steps,
            direction,
            time.perf_counter() - t0,
            read_s,
            pushes.seconds,
            np.concatenate(pushes.all_deltas) if per_sample and pushes.all_deltas else None,
            ghost_s,
            self.direction.anchor_s,
            self.direction.anchor_forwards,
        )

    def _loss_step(self, encoded: list, padded: bool) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward of one micro-batch. Returns each sample's IU (the loss it trained on) and the
        utility selection reads (the same IU, or without the end-of-turn token: selection.end_token), detached,
        on the CPU."""
        from lead_ray.models.load import training_autocast
        from lead_ray.models.loss import collate, masked_mean, sample_losses

        with training_autocast(self.device, self.autocast_dtype):
            out = sample_losses(self.model, collate(encoded, self.tok.pad_token_id), end_id=self.end_id)
        (masked_mean(out.loss, zero_weight=padded) / self.accum).backward()
        loss = out.loss.detach().float().cpu().numpy()
        return loss, loss if self.end_id is None else out.content.detach().float().cpu().numpy()

    def _finish_round(self, t: int, plan: RoundPlan, trained: TrainedRound, counts: list[int], held) -> dict:
        """Rank 0: reward, bandit update, the round's record (with the held-out NLL `held` measured), progress."""
        import ray

        t0 = time.perf_counter()
        heldout, heldout_s = held  # evaluation, kept apart from selection bookkeeping
        (drop, loss_sum, n), used, means = self.store.round_summary(t)  # one call per store shard
        reward = drop / max(n, 1)
        normalised = 0.0  # a static baseline's round pulls no arm
        if plan.arm >= 0:
            p_arm = plan.p[plan.arm]
            normalised = ray.get(self.bandit.finish_round.remote(plan.arm, p_arm, reward, trained.direction))
        record = self._round_record(t, plan, trained, RoundTotals(*counts, n, loss_sum, used, means), heldout)
        record.update(
            reward_raw=reward,
            reward_norm=normalised,
            heldout_s=heldout_s,
            finish_s=time.perf_counter() - t0,
        )
        self.round_log.append(record)
        self.tracker.log(record, self.store.peek(plan.index)[0] if self.tracker.run is not None else None)
        self._print_round(record, plan)
        return {
            "mean_loss": record["mean_loss"],
            "reward": reward,
            **({"heldout_nll": heldout} if heldout is not None else {}),
        }

    def _round_record(self, t, plan, trained, totals: RoundTotals, heldout) -> dict:
        """One row of rounds.parquet (ALGORITHM.md §11)."""
        return round_record(
            t,
            self.selection.method,
            self.switches.delta,
            plan,
            trained,
            totals,
            heldout,
            len(self.holdout_enc),
            time.perf_counter() - self.t_start,
        )

    def _print_round(self, record: dict, plan: RoundPlan) -> None:
        rounds = len(self.static_rounds) if self.static_rounds is not None else self.selection.max_rounds
        eta_s = eta_seconds(record, self.start_round, rounds, self.s.budget, self.s.static_order is None)
        print(progress_line(record, plan, self.selection.max_rounds, self.s.budget, eta_s), flush=True)

    def _heldout_due(self, t: int) -> bool:
        """Whether round t measures the held-out NLL here: on rank 0, or on every worker of a sharded model."""
        every = self.cfg.eval.inloop_every
        return bool(self.holdout_enc) and bool(every) and (t + 1) % every == 0

    def _heldout_nll(self) -> tuple[float, float]:
        """Mean response NLL of the held-out samples (never selectable), and the seconds it took."""
        t0 = time.perf_counter()
        return float(np.nanmean(self._score(self.holdout_enc).loss)), time.perf_counter() - t0

    def _score(self, encoded: list, end_id: int | None = None):
        """Forward-only losses of encoded conversations under the current model (models/loss.py score_encoded)."""
        from lead_ray.models.load import training_autocast
        from lead_ray.models.loss import score_encoded

        score = self.cfg.score
        with training_autocast(self.device, self.autocast_dtype):
            return score_encoded(
                self.plain.eval(), encoded, self.tok.pad_token_id, score.batch_tokens, score.max_batch_size, end_id
            )

    def _finish_run(self, next_round: int, metrics: dict) -> None:
        """The final model's held-out NLL when the last round did not measure it, then the final report."""
        ran = next_round > self.start_round
        if self.rank == 0 and not ran:
            print(
                f"[lead-ray] nothing left to run: the checkpoint is at round {self.start_round} and "
                f"selection.max_rounds = {self.selection.max_rounds}, or the budget is spent",
                flush=True,
            )
        last = self.round_log[-1] if self.rank == 0 and self.round_log else None
        missing = (
            ran
            and last is not None
            and last["heldout_nll"] is None
            and bool(self.holdout_enc)
            and self.cfg.eval.inloop_every > 0
        )
        if broadcast_from_rank0(missing, self.world) if self.sharded else missing:
            heldout = self._heldout_nll()[0]  # every worker of a sharded model; rank 0 keeps it
            if last is not None:
                last["heldout_nll"] = metrics["heldout_nll"] = heldout
                last["heldout_forward_samples"] = len(self.holdout_enc)
        if self.tracker is not None:
            self.tracker.finish()
        final = {k: v for k, v in metrics.items() if k in ("mean_loss", "heldout_nll")}  # Tune reads the last report
        done = {**final, "round": -1, "rounds_done": next_round, "start_round": self.start_round}
        self._report(done, next_round, final=True)

    # ------------------------------------------------------------------ checkpoints

    def _report(self, metrics: dict, next_round: int, final: bool = False) -> None:
        """All ranks report (a barrier); rank 0 attaches the checkpoint: model, optimizer, selection state."""
        import ray.train

        state = TrainerState(self.plain, self.tok, self.opt, self.sched, next_round)
        if self.sharded:  # every worker writes its shards
            report_sharded(metrics, state, self.store, self.bandit, self.round_log, self.run_dir / "staging", final)
            return
        if self.rank != 0:
            ray.train.report(metrics)
            return
        report_with_checkpoint(metrics, state, self.store, self.bandit, self.round_log, self.run_dir / "staging", final)
