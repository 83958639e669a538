"""Per-sample ΔL̂′: the ghost inner products equal ⟨∇L(x), ĝ⟩ computed with autograd one sample at a time."""

import numpy as np
import pytest
import torch

from lead_ray.config import load_config
from lead_ray.core.idu import predicted_direction, sample_delta, update_delta
from lead_ray.models.ghost import GhostProducts
from lead_ray.models.load import apply_lora, load_model, materialize_model
from lead_ray.models.loss import collate, masked_mean, sample_losses
from lead_ray.models.template import encode_conversation
from lead_ray.online.direction import direction_params

CONVS = [
    [
        {"role": "user", "content": f"question {i} " * (i + 1)},
        {"role": "assistant", "content": f"answer {i}" * (3 - i % 3)},
    ]
    for i in range(5)
]


def small_model(tmp_path, lora: bool):
    cfg = load_config(None, ["model.tiny.hidden_size=32", "model.tiny.intermediate_size=64", "model.max_length=160"])
    folder = materialize_model(cfg.model, tmp_path / "base", seed=0)
    model, tok = load_model(folder, cfg.model, torch.device("cpu"), master_float32=True)
    if lora:
        model = apply_lora(model, cfg.train.lora)
        for name, p in model.named_parameters():  # LoRA B starts at 0; move it so every product is nonzero
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
    model.train()
    for m in model.modules():  # dropout off: the per-sample reference must see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model, tok, [encode_conversation(tok, c, cfg.model.max_length) for c in CONVS]


def reference_products(model, tok, encoded, params, hat) -> np.ndarray:
    out = []
    for e in encoded:
        model.zero_grad(set_to_none=True)
        losses, *_ = sample_losses(model, collate([e], tok.pad_token_id))
        losses[0].backward()
        g = torch.cat([p.grad.flatten() for p in params.values()])
        out.append(float(g @ torch.as_tensor(hat)))
    return np.array(out)


@pytest.mark.parametrize("lora", [True, False])
def test_ghost_products_equal_per_example_autograd(tmp_path, lora):
    torch.manual_seed(0)
    model, tok, encoded = small_model(tmp_path, lora)
    params = direction_params(model, "last_layer")
    if not lora:  # a full model's last layer also holds norm scales: the ghost path covers linear layers only
        params = {n: p for n, p in params.items() if "norm" not in n}
        for n, p in model.named_parameters():
            p.requires_grad_(n in params)
    hat = np.random.default_rng(0).normal(size=sum(p.numel() for p in params.values())).astype(np.float32)
    expected = reference_products(model, tok, encoded, params, hat)

    ghost = GhostProducts(model, params)
    ghost.set_direction(hat, torch.device("cpu"))
    model.zero_grad(set_to_none=True)
    accum = 2
    losses, *_ = sample_losses(model, collate(encoded, tok.pad_token_id))
    (masked_mean(losses) / accum).backward()
    got = ghost.collect(np.full(len(encoded), 1.0 / (len(encoded) * accum)))
    assert np.all(np.abs(expected) > 1e-6), expected
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # and the batch's gradient is the mean of the per-sample ones, so the mean product is ⟨g_batch, ĝ⟩
    g_batch = torch.cat([p.grad.flatten() for p in params.values()]) * accum
    assert float(g_batch @ torch.as_tensor(hat)) == pytest.approx(got.mean(), rel=1e-4)
    # no direction: no hook work, zeros
    ghost.set_direction(None, torch.device("cpu"))
    losses, *_ = sample_losses(model, collate(encoded, tok.pad_token_id))
    masked_mean(losses).backward()
    assert not ghost.collect(np.ones(len(encoded))).any()


def test_ghost_refuses_non_linear_direction_parameters(tmp_path):
    model, _, _ = small_model(tmp_path, lora=False)
    with pytest.raises(ValueError, match="linear layers"):
        GhostProducts(model, direction_params(model, "last_layer"))  # includes the norm scales


def test_sample_delta_averages_to_the_round_value():
    """−η⟨g(x), ĝ⟩ averaged over samples whose mean gradient is ĝ is the round's −η‖ĝ‖²."""
    rng = np.random.default_rng(1)
    g_k, g_p = rng.normal(size=50), rng.normal(size=50)
    hat = predicted_direction(g_k, g_p, 0.3)
    per_sample = rng.normal(size=(8, 50))
    per_sample += hat - per_sample.mean(0)  # a round whose mean gradient is exactly ĝ
    deltas = sample_delta(0.01, per_sample @ hat)
    assert deltas.mean() == pytest.approx(-0.01 * float(hat @ hat), rel=1e-4)
    assert predicted_direction(None, None, 0.5) is None
    np.testing.assert_array_equal(predicted_direction(None, g_p, 0.5), g_p.astype(np.float32))


def test_update_delta_predicts_the_loss_change_an_adam_step_makes(tmp_path):
    """`selection.delta: update`: ⟨g(x), Δθ⟩ is each sample's loss change under the step Adam took, to first
    order; the paper's −η⟨g(x), ĝ⟩ (`sample`) is orders of magnitude smaller than that change."""
    torch.manual_seed(0)
    model, tok, encoded = small_model(tmp_path, lora=True)
    params = direction_params(model, "last_layer")
    for n, p in model.named_parameters():
        p.requires_grad_(n in params)  # the step moves the direction parameters only
    lr, batch = 1e-4, collate(encoded, tok.pad_token_id)
    opt = torch.optim.Adam(params.values(), lr=lr)
    flat = lambda: torch.cat([p.detach().flatten() for p in params.values()]).clone()  # noqa: E731
    before = flat()
    model.zero_grad(set_to_none=True)
    losses, *_ = sample_losses(model, batch)
    masked_mean(losses).backward()
    g_mean = torch.cat([p.grad.flatten() for p in params.values()]).clone()
    opt.step()
    with torch.no_grad():
        after_losses = sample_losses(model, batch)[0].double().numpy()
    change = flat() - before
    actual = after_losses - losses.detach().double().numpy()

    def ghost_products(direction):  # at θ, before the step, as training computes them
        with torch.no_grad():
            for p, v in zip(params.values(), torch.split(before, [p.numel() for p in params.values()])):
                p.copy_(v.view_as(p))
        ghost = GhostProducts(model, params)
        ghost.set_direction(direction.numpy(), torch.device("cpu"))
        model.zero_grad(set_to_none=True)
        masked_mean(sample_losses(model, batch)[0]).backward()
        return ghost.collect(np.full(len(encoded), 1.0 / len(encoded)))

    predicted = update_delta(ghost_products(change))
    assert np.all(np.abs(actual) > 1e-6), actual
    np.testing.assert_allclose(predicted, actual, rtol=0.05, atol=1e-6)
    paper = sample_delta(lr, ghost_products(g_mean))
    assert np.abs(paper).max() < 0.01 * np.abs(actual).min(), (paper, actual)


@pytest.mark.parametrize("delta,per_sample", [("round", False), ("update", False), ("sample", True)])
def test_the_stored_direction_is_bounded_unless_per_sample_products_need_it_whole(tmp_path, delta, per_sample):
    """Full fine-tuning's last layer is the direction: longer than `selection.direction_dims`, what rank 0 sends
    the BanditActor is its sketch (the actor keeps one per arm and the previous one, so its memory is bounded by
    (arms + 1) · dims floats); per-sample ΔL̂′ reads the whole direction on every worker, so it stays whole."""
    from lead_ray.online.direction import RoundDirection

    model, tok, encoded = small_model(tmp_path, lora=False)
    names = list(direction_params(model, "last_layer"))
    rounds = RoundDirection(model, names, delta, per_sample, rank=0, accum=1, sketch_dims=512)
    size = sum(p.numel() for p in rounds.params.values())  # per-sample: the linear weights among them
    assert size > 512
    rounds.begin_round(None, "cpu")
    masked_mean(sample_losses(model, collate(encoded, tok.pad_token_id)).loss).backward()
    rounds.before_step()
    direction, _ = rounds.finish_round()
    assert direction.shape == ((size,) if per_sample else (512,))


ANCHOR = [
    [{"role": "user", "content": f"trusted {i} " * (2 + i)}, {"role": "assistant", "content": f"reply {i} " * 2}]
    for i in range(6)
]


def test_anchor_gradient_and_its_ghost_products_equal_per_example_autograd(tmp_path):
    """`selection.delta: anchor`: g_anchor is the gradient of the anchor pairs' mean IU (dropout off, no `.grad`
    touched, micro-batched), and the training pass's ghost products with it are each sample's ⟨g(x), g_anchor⟩."""
    from lead_ray.models.ghost import anchor_gradient

    torch.manual_seed(0)
    model, tok, encoded = small_model(tmp_path, lora=True)
    for m in model.modules():  # dropout back on: anchor_gradient must switch it off itself
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    params = direction_params(model, "last_layer")
    anchor = [encode_conversation(tok, c, 160) for c in ANCHOR]
    model.zero_grad(set_to_none=True)
    g_anchor = anchor_gradient(model, params, anchor, tok.pad_token_id, micro_batch=4)
    assert all(p.grad is None for p in model.parameters()) and model.training  # nothing left behind
    model.eval()
    masked_mean(sample_losses(model, collate(anchor, tok.pad_token_id)).loss).backward()
    expected = torch.cat([p.grad.flatten() for p in params.values()]).numpy()
    np.testing.assert_allclose(g_anchor, expected, rtol=1e-4, atol=1e-7)

    for m in model.modules():  # the per-sample reference must see the same function as the batch
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.train()
    reference = reference_products(model, tok, encoded, params, g_anchor)
    ghost = GhostProducts(model, params)
    ghost.set_direction(g_anchor, torch.device("cpu"))
    model.zero_grad(set_to_none=True)
    masked_mean(sample_losses(model, collate(encoded, tok.pad_token_id)).loss).backward()
    got = ghost.collect(np.full(len(encoded), 1.0 / len(encoded)))
    assert np.all(np.abs(reference) > 1e-6), reference
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-6)


def test_round_direction_with_an_anchor_needs_no_stored_direction_and_standardises_each_push(tmp_path):
    """Round 0 already has per-sample values (g_anchor needs no earlier round); the values a push gets are the
    products standardised over it, scaled to its losses' spread; the anchor's own backward leaves no products."""
    from lead_ray.config import load_config
    from lead_ray.core.idu import anchor_delta
    from lead_ray.online.direction import round_direction
    from lead_ray.online.pushes import RoundPushes

    torch.manual_seed(0)
    model, tok, encoded = small_model(tmp_path, lora=True)
    cfg = load_config(None, ["model.max_length=160", "selection.delta=anchor", "selection.anchor_batch=4"])
    names = list(direction_params(model, "last_layer"))
    rounds = round_direction(model, names, cfg, (0, 1), tok, None, ANCHOR)
    assert rounds.products_due(None) and rounds.anchor.batch == 4
    rounds.begin_round(None, "cpu", t=3)
    assert rounds.anchor_s > 0 and rounds.ghost.sums is None
    out = sample_losses(model, collate(encoded, tok.pad_token_id))
    masked_mean(out.loss).backward()
    losses = out.loss.detach().numpy()
    raw = rounds.sample_deltas(losses, eta=1e-3)
    applied = []

    class Store:
        def apply_async(self, index, loss, delta, b, t):
            applied.append(delta)
            return []

    pushes = RoundPushes(Store(), 0.0, 0.0, 3, rounds.push_transform())
    pushes.add(np.arange(len(raw)), losses, last=True, deltas=raw)
    np.testing.assert_allclose(applied[0], anchor_delta(raw, losses, 1.0), rtol=1e-6)
    assert np.std(applied[0]) == pytest.approx(np.std(losses), rel=1e-4)
    np.testing.assert_array_equal(np.argsort(applied[0]), np.argsort(raw))  # the better aligned, the higher
