"""Per-sample ⟨∇L(x), ĝ⟩ on the direction parameters, read off the backward pass training already runs.

For a linear layer y = W a (+ c), one sample's gradient is Σ_t δ_t a_tᵀ (+ Σ_t δ_t), with a_t the layer's input
and δ_t = ∂loss/∂y_t at token t. Its inner product with a direction Ĝ (same shape as W) never needs that
gradient materialised:

    ⟨Σ_t δ_t a_tᵀ, Ĝ⟩ = Σ_t δ_tᵀ (Ĝ a_t)          (+ ⟨Σ_t δ_t, ĝ_c⟩ for the bias)

a forward hook keeps a_t, a hook on the output's gradient receives δ_t during the ordinary backward, and one
matmul of the size of the layer's own forward gives every sample's product (the "ghost" inner product of
in-training selection methods). The backward differentiates the micro-batch loss Σ_x w_x L(x) (w_x = 1/(n·accum),
masked_mean's weights), so the product of sample x is divided by w_x to give ⟨∇L(x), ĝ⟩.

Covers the weights and biases of nn.Linear layers: LoRA adapters (lora_A, lora_B are nn.Linear) and a full
model's projections. A direction parameter of any other kind (a norm's scale) is refused at setup.
"""

from __future__ import annotations

import time

import numpy as np
import torch


class GhostProducts:
    """Hooks on the linear layers that own the direction parameters; `direction` in the flat layout of
    `RoundDirection._gradient` (online/direction.py) (the parameters' gradients concatenated in `params` order)."""

    def __init__(self, model: torch.nn.Module, params: dict[str, torch.nn.Parameter]):
        owner = {id(p): name for name, p in params.items()}
        self.layers: dict[int, tuple[str | None, str | None]] = {}  # id(linear layer) → (weight, bias) names
        covered = set()
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                weight = owner.get(id(module.weight))
                bias = owner.get(id(module.bias)) if module.bias is not None else None
                if weight or bias:
                    self.layers[id(module)] = (weight, bias)
                    covered |= {weight, bias}
                    module.register_forward_hook(self._forward_hook)
        other = sorted(set(params) - covered)
        if other:
            raise ValueError(
                f"selection.delta=sample needs direction parameters of linear layers; {other[:3]} are not "
                "(use LoRA, or selection.delta=round)"
            )
        self.shapes = {name: p.shape for name, p in params.items()}
        self.hat: dict[str, torch.Tensor] | None = None
        self.sums: torch.Tensor | None = None
        self.seconds = 0.0

    def set_direction(self, direction: np.ndarray | None, device) -> None:
        """ĝ for the coming round (None: no products this round, e.g. round 1 has no direction yet)."""
        if direction is None:
            self.hat = None
            return
        # a copy: ĝ arrives read-only from the object store, and torch must not alias read-only memory
        flat = torch.tensor(np.asarray(direction, np.float32), device=device)
        sizes = [int(np.prod(shape)) for shape in self.shapes.values()]
        parts = torch.split(flat, sizes)
        self.hat = {name: part.view(shape) for (name, shape), part in zip(self.shapes.items(), parts, strict=True)}

    def _forward_hook(self, module, inputs, output) -> None:
        if self.hat is None or not torch.is_grad_enabled() or not output.requires_grad:
            return
        activations = inputs[0].detach()
        output.register_hook(lambda grad: self._accumulate(module, activations, grad))

    def _accumulate(self, module: torch.nn.Linear, activations: torch.Tensor, grad: torch.Tensor) -> None:
        t0 = time.perf_counter()
        weight, bias = self.layers[id(module)]
        grad = grad.float().reshape(grad.shape[0], -1, grad.shape[-1])  # (samples, tokens, out)
        products = torch.zeros(grad.shape[0], device=grad.device)
        if weight is not None:  # Σ_t δ_tᵀ (Ĝ a_t)
            projected = activations.float().reshape(grad.shape[0], -1, activations.shape[-1]) @ self.hat[weight].T
            products += (grad * projected).sum((1, 2))
        if bias is not None:
            products += grad.sum(1) @ self.hat[bias]
        self.sums = products if self.sums is None else self.sums + products
        self.seconds += time.perf_counter() - t0

    def collect(self, weights: torch.Tensor | np.ndarray) -> np.ndarray:
        """The micro-batch's ⟨∇L(x), ĝ⟩ per sample (0 where the weight is 0), and a reset for the next one."""
        weights = np.asarray(weights, np.float64)
        sums = np.zeros(len(weights)) if self.sums is None else self.sums.detach().double().cpu().numpy()
        self.sums = None
        return np.divide(sums, weights, out=np.zeros_like(sums), where=weights > 0)


def linear_params(model: torch.nn.Module, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.nn.Parameter]:
    """The direction parameters that belong to linear layers (all of them under LoRA), in their order."""
    linear = {id(p) for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters(recurse=False)}
    return {name: p for name, p in params.items() if id(p) in linear}


def anchor_gradient(
    model: torch.nn.Module,
    params: dict[str, torch.nn.Parameter],
    encoded: list,
    pad_id: int,
    micro_batch: int,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """g_anchor for `selection.delta: anchor`: the gradient of the mean IU over `encoded` (anchor pairs) on the
    direction parameters, flat in `params` order (the ghost products' layout). Computed with autograd.grad, so no
    `.grad` is touched and no DDP all-reduce runs (every worker takes the same pairs and gets the same vector);
    backward stops at the direction layer, the only one it is asked for. Dropout is off while it runs."""
    from lead_ray.models.load import training_autocast
    from lead_ray.models.loss import collate, sample_losses

    device = next(iter(params.values())).device
    total = [torch.zeros_like(p, dtype=torch.float32) for p in params.values()]
    was_training, n_valid = model.training, 0
    model.eval()
    try:
        for a in range(0, len(encoded), micro_batch):
            with torch.enable_grad(), training_autocast(device, autocast_dtype):
                losses = sample_losses(model, collate(encoded[a : a + micro_batch], pad_id)).loss.float()
            valid = ~torch.isnan(losses)
            if not valid.any():
                continue
            n_valid += int(valid.sum())
            grads = torch.autograd.grad(losses[valid].sum(), list(params.values()), allow_unused=True)
            for acc, g in zip(total, grads):
                if g is not None:
                    acc += g.float()
    finally:
        model.train(was_training)
    flat = torch.cat([g.flatten() for g in total]) / max(n_valid, 1)
    return flat.cpu().numpy()
