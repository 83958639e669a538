"""selection.end_token (ALGORITHM.md §12): U with or without the end-of-turn token, from scoring through the
training step to the run's first ranking; training's loss keeps the token either way."""

import json

import numpy as np
import pytest

from lead_ray.config import load_config


@pytest.mark.parametrize("end_token", ["count", "skip"])
def test_a_run_starts_from_iu0_content_only_with_skip(ray_session, end_token):
    """The wiring of selection.end_token at the start of a run: the store's U₀ is iu0 or iu0_content."""
    import pyarrow as pa
    import ray

    from lead_ray.online.run import _start_actors

    table = pa.table(
        {
            "iu0": pa.array([9.0, 2.0, 3.0], pa.float32()),  # sample 0: a cut-off answer, its end token a surprise
            "iu0_content": pa.array([1.0, 2.0, 3.0], pa.float32()),
            "difficulty_cluster": [0, 0, 0],
            "task_cluster": [0, 0, 0],
            "n_response_tokens": pa.array([3, 3, 3], pa.int32()),
        }
    )
    cfg = load_config(None, [f"selection.end_token={end_token}"])
    store, bandit, _ = _start_actors(cfg, table, f"end-{end_token}")
    keys, _ = store.ranking(np.arange(3))
    assert keys.tolist() == ([1.0, 2.0, 3.0] if end_token == "skip" else [9.0, 2.0, 3.0])
    for handle in [*store.handles, bandit]:
        ray.kill(handle)


def test_a_skip_run_trains_as_the_paper_and_reports_u_without_the_end_token(ray_session, tmp_path):
    """One round of the stored paper run with selection.end_token=skip: the same picks and the same training
    (training's loss keeps the end token), but the round's U (mean_loss) leaves it out, so it differs."""
    from lead_ray.online.run import run
    from tests.paper_run import FIXTURE, fingerprint
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.selection.preset, cfg.selection.end_token, cfg.selection.max_rounds = "paper", "skip", 1
    stats = run(cfg)
    assert stats["switches"]["end_token"] == "skip"
    got, stored = fingerprint(tmp_path / "run"), json.loads(FIXTURE.read_text())
    first, paper = got["rounds"][0], stored["rounds"][0]
    assert (first["arm"], first["index"]) == (paper["arm"], paper["index"])
    # the paper test reproduces mean_loss to rtol 1e-4; without the end token it moves by ~0.6% (5.267 vs 5.237)
    assert not np.isclose(first["mean_loss"], paper["mean_loss"], rtol=1e-3), (first["mean_loss"], paper["mean_loss"])


def test_the_training_step_backpropagates_every_answer_token_and_hands_on_the_utility_apart(tmp_path):
    """RoundLoop._loss_step: training's loss and gradients are the same with or without end_id; the utility it
    hands to the store is IU (end_id None) or the mean without the end-of-turn token."""
    import torch

    from lead_ray.models.load import load_model, materialize_model
    from lead_ray.models.loss import collate, per_sample_nll
    from lead_ray.models.template import encode_conversation
    from lead_ray.online.train_loop import RoundLoop

    cfg = load_config(None, ["model.max_length=64"])
    model, tok = load_model(materialize_model(cfg.model, tmp_path / "base", seed=0), cfg.model)
    chats = [[{"role": "user", "content": "ping"}, {"role": "assistant", "content": a}] for a in ("pong", "a b c")]
    encoded = [encode_conversation(tok, chat, 64) for chat in chats]
    loop = object.__new__(RoundLoop)  # only what _loss_step reads
    loop.model, loop.tok, loop.device, loop.autocast_dtype, loop.accum = model.eval(), tok, torch.device("cpu"), None, 1
    out = {}
    for end_id in (None, tok.eos_token_id):
        loop.end_id = end_id
        model.zero_grad()
        loss, utility = loop._loss_step(encoded, padded=False)
        out[end_id] = loss, utility, [p.grad.clone() for p in model.parameters() if p.grad is not None]
    (loss, utility, grads), (skip_loss, skip_utility, skip_grads) = out[None], out[tok.eos_token_id]
    assert np.array_equal(loss, skip_loss) and np.array_equal(utility, loss)
    assert all(torch.equal(a, b) for a, b in zip(grads, skip_grads)) and len(grads) > 0
    batch = collate(encoded, tok.pad_token_id)
    with torch.no_grad():
        content = per_sample_nll(model(input_ids=batch["input_ids"]).logits, batch["labels"], tok.eos_token_id).content
    np.testing.assert_allclose(skip_utility, content.numpy(), rtol=1e-5)
    assert not np.allclose(skip_utility, loss)
