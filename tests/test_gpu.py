"""GPU checks: run only with `pytest -m gpu` on a host with a CUDA GPU (the default suite hides GPUs).
bench/gpu/smoke.py runs them as part of its GPU smoke test."""

import pytest
import torch

from lead_ray.config import load_config

pytestmark = pytest.mark.gpu


def test_training_on_cuda_is_bf16_autocast_over_float32_weights(tmp_path):
    from lead_ray.models.load import load_for_training, materialize_model, training_autocast
    from lead_ray.models.loss import collate, sample_losses
    from lead_ray.models.template import encode_conversation

    cfg = load_config(
        None,
        [
            "model.tiny.hidden_size=64",
            "model.tiny.intermediate_size=128",
            "model.max_length=64",
            "train.lora.enabled=false",
            "train.lr=2.0e-5",
        ],
    )
    device = torch.device("cuda", 0)
    model, tok, autocast_dtype = load_for_training(
        materialize_model(cfg.model, tmp_path / "base", 0), cfg.model, cfg.train.lora, device
    )
    assert autocast_dtype == torch.bfloat16 and {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=0.0)
    enc = encode_conversation(tok, [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}], 64)
    with training_autocast(device, autocast_dtype):
        losses, *_ = sample_losses(model, collate([enc], tok.pad_token_id))
    losses.mean().backward()
    opt.step()
    moved = sum(int((p.detach() != b).sum()) for p, b in zip(model.parameters(), before) if p.grad is not None)
    assert moved / sum(p.numel() for p in model.parameters() if p.grad is not None) > 0.95


def test_toy_run_on_one_gpu_checkpoints_state_a_cpu_can_load(ray_session, tmp_path):
    import pyarrow.parquet as pq

    from lead_ray.online.checkpoint import load_trainer_state
    from lead_ray.online.run import run
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.train.use_gpu, cfg.selection.max_rounds = True, 4
    stats = run(cfg)
    assert stats["use_gpu"] is True and stats["rounds"] == 4
    rounds = pq.read_table(tmp_path / "run" / "rounds.parquet").to_pylist()
    assert all(r["optimizer_steps"] == 4 for r in rounds)
    from pathlib import Path

    state = load_trainer_state(Path(stats["checkpoint"]))
    assert {t.device.type for t in state["trainable"].values()} == {"cpu"}
