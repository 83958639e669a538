"""A round's update direction and the per-sample ΔL̂′ that read it (ALGORITHM.md §5.3, §12).

The direction parameters are the last layer's trainable ones. Each round, rank 0 measures the direction g
the round moved them in, which the BanditActor stores for the arm it pulled:
  round / sample   g = the mean gradient over the round's optimizer steps (after DDP's all-reduce);
  update           g = the change the round made to the parameters' values.
With `selection.delta: sample | update`, every micro-batch's backward pass also yields each sample's inner
product with the arm's stored direction (models/ghost.py), from which the sample's own ΔL̂′ is computed; with
`anchor`, the product is with g_anchor, the mean gradient of a few trusted pairs measured afresh at the round's
start (AnchorTarget), standardised over each push (core/idu.py: anchor_delta).
Otherwise a direction longer than `selection.direction_dims` is sent as its count sketch (core/idu.py): the
round-level ΔL̂′ reads only norms and inner products, and the actor's memory stays bounded.
"""

from __future__ import annotations

import re
import time

import numpy as np

PER_SAMPLE = ("sample", "update", "anchor")  # selection.delta values computed per sample from the training backward


def direction_params(model, which: str) -> dict:
    """Trainable parameters whose change defines the update direction (ALGORITHM.md §5.3: the last layer's)."""
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if which == "all":
        return trainable
    layers = [int(m.group(1)) for n in trainable for m in [re.search(r"layers\.(\d+)\.", n)] if m]
    if not layers:
        return trainable
    last = f"layers.{max(layers)}."
    return {n: p for n, p in trainable.items() if last in n}


class AnchorTarget:
    """`selection.delta: anchor`: each round, g_anchor over `batch` anchor pairs drawn with a (seed, round) RNG,
    the same on every worker, so every worker computes the same vector and nothing is communicated."""

    def __init__(self, model, tok, conversations: list, cfg, autocast_dtype=None):
        from lead_ray.models.template import encode_conversation

        if not conversations:
            raise ValueError("selection.delta=anchor: the anchor (anchor.data) has no pairs")
        self.encoded = [encode_conversation(tok, m, cfg.model.max_length) for m in conversations]
        self.model, self.batch, self.seed = model, min(cfg.selection.anchor_batch, len(self.encoded)), cfg.seed
        self.pad_id, self.micro_batch, self.autocast_dtype = (
            tok.pad_token_id,
            cfg.train.micro_batch_size,
            autocast_dtype,
        )

    def gradient(self, t: int, params: dict) -> np.ndarray:
        from lead_ray.models.ghost import anchor_gradient

        rows = np.random.default_rng([self.seed, t]).choice(len(self.encoded), self.batch, replace=False)
        chosen = [self.encoded[i] for i in np.sort(rows)]
        return anchor_gradient(self.model, params, chosen, self.pad_id, self.micro_batch, self.autocast_dtype)


class RoundDirection:
    """One worker's direction bookkeeping: the parameters, the ghost products (per-sample ΔL̂′ only) and,
    on rank 0, the running measurement of the current round's direction."""

    def __init__(
        self,
        plain_model,
        names: list[str],
        delta: str,
        per_sample: bool,
        rank: int,
        accum: int,
        sketch_dims: int = 0,
        anchor: AnchorTarget | None = None,
        anchor_weight: float = 1.0,
    ):
        from lead_ray.models.ghost import GhostProducts, linear_params

        params = dict(plain_model.named_parameters())
        self.params = {n: params[n] for n in names}
        self.delta, self.rank, self.accum = delta, rank, accum
        self.sketch_dims = 0 if per_sample else sketch_dims  # the ghost products need the full direction
        self.ghost = None
        if per_sample:
            self.params = linear_params(plain_model, self.params)  # the same set for g and every g(x)
            self.ghost = GhostProducts(plain_model, self.params)
        self.anchor = anchor if per_sample and delta == "anchor" else None
        self.anchor_weight, self.anchor_s, self.anchor_forwards = anchor_weight, 0.0, 0
        self.grad_sum, self.steps, self.start, self.ghost_s0 = None, 0, None, 0.0

    def begin_round(self, stored_direction, device, t: int = 0) -> None:
        """Before the round's first step: the ghost products' direction (the arm's stored one, or with `anchor`
        this round's g_anchor), and (`update`) the parameters' values the round starts from."""
        if self.ghost is not None:
            self.ghost.set_direction(None, device)  # no products from the anchor's own backward pass
            self.anchor_s, self.anchor_forwards = 0.0, 0
            if self.anchor is not None:
                t0 = time.perf_counter()
                stored_direction = self.anchor.gradient(t, self.params)
                self.anchor_s, self.anchor_forwards = time.perf_counter() - t0, self.anchor.batch
            self.ghost.set_direction(stored_direction, device)
            self.ghost_s0 = self.ghost.seconds
        self.grad_sum, self.steps = None, 0
        self.start = self._values() if self.delta == "update" else None

    def products_due(self, stored_direction) -> bool:
        """Whether this round computes per-sample products (`anchor`: always; else once the arm has a direction)."""
        return self.ghost is not None and (self.anchor is not None or stored_direction is not None)

    def sample_deltas(self, losses: np.ndarray, eta: float) -> np.ndarray:
        """Per-sample ΔL̂′ of the micro-batch just backpropagated (NaN-loss samples: weight 0): −η⟨g(x), ĝ⟩
        (`sample`) or ⟨g(x), Δθ̂⟩ (`update`)."""
        from lead_ray.core.idu import sample_delta, update_delta

        valid = np.isfinite(losses)
        weights = np.where(valid, 1.0 / (max(int(valid.sum()), 1) * self.accum), 0.0)  # masked_mean's / accum
        products = self.ghost.collect(weights)
        if self.delta == "anchor":  # standardised when pushed, over the push (push_transform)
            return products.astype(np.float32)
        return update_delta(products) if self.delta == "update" else sample_delta(eta, products)

    def push_transform(self):
        """What turns a push's per-sample products into ΔL̂′ (`anchor`: core/idu.py anchor_delta), or None."""
        if self.anchor is None:
            return None
        from lead_ray.core.idu import anchor_delta

        return lambda products, losses: anchor_delta(products, losses, self.anchor_weight)

    def before_step(self) -> None:
        """Before each optimizer step: add its gradient to the round's sum (rank 0; not for `update`)."""
        if self.start is not None:
            return
        g = self._gradient()
        if g is not None:
            self.grad_sum, self.steps = (g if self.grad_sum is None else self.grad_sum + g), self.steps + 1

    def finish_round(self) -> tuple[np.ndarray | None, float]:
        """The round's direction (rank 0; None elsewhere) and the seconds the ghost products took."""
        direction = (self.grad_sum / self.steps).cpu().numpy() if self.grad_sum is not None else None
        if self.start is not None:  # `update`: the round's direction is the change it made (rank 0)
            direction = (self._values() - self.start).cpu().numpy()
        if direction is not None and 0 < self.sketch_dims < direction.size:
            from lead_ray.core.idu import sketch

            direction = sketch(direction, self.sketch_dims)  # what the BanditActor stores, bounded
        return direction, (self.ghost.seconds - self.ghost_s0 if self.ghost is not None else 0.0)

    def _values(self):
        """Rank 0: the direction parameters' current values, flat, in the order of their gradients (a sharded
        parameter is gathered first, by every worker)."""
        import torch

        from lead_ray.online.fsdp import whole

        values = [whole(p.detach()) for p in self.params.values()]
        if self.rank != 0 or not self.params:
            return None
        return torch.cat([v.flatten().float() for v in values]).clone()

    def _gradient(self):
        """Rank 0: this optimizer step's gradient on the direction parameters (already all-reduced; a sharded one is
        gathered first, by every worker)."""
        import torch

        from lead_ray.online.fsdp import whole

        grads = [whole(p.grad.detach()) for p in self.params.values() if p.grad is not None]
        if self.rank != 0 or not self.params:
            return None
        return torch.cat([g.flatten().float() for g in grads])


def round_direction(plain_model, names: list[str], cfg, rank_accum: tuple[int, int], tok, autocast_dtype, anchor=None):
    """A worker's RoundDirection for the run's switches: per-sample products only for `lead` with ΔL̂′ on, and with
    `selection.delta: anchor` the AnchorTarget over the anchor's conversations."""
    from lead_ray.presets import switches

    sel, delta = cfg.selection, switches(cfg).delta
    per_sample = delta in PER_SAMPLE and sel.method == "lead" and sel.use_delta
    target = AnchorTarget(plain_model, tok, anchor, cfg, autocast_dtype) if per_sample and delta == "anchor" else None
    rank, accum = rank_accum
    return RoundDirection(
        plain_model, names, delta, per_sample, rank, accum, sel.direction_dims, target, sel.anchor_weight
    )
