"""The one chat template and the one loss (LEAD spec §12 'IU / loss'), on the tiny preset."""

import json
import random

import numpy as np
import pytest
import torch

from lead_ray.config import load_config
from lead_ray.models.load import byte_tokenizer, load_model, materialize_model
from lead_ray.models.loss import (
    collate,
    end_token_nll,
    length_buckets,
    per_sample_nll,
    sample_losses,
    score_encoded,
)
from lead_ray.models.template import IGNORE, encode_answer_only, encode_conversation, prompt_text
from lead_ray.offline.score import ifd_scores

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "and 3+3?"},
    {"role": "assistant", "content": "6"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = load_config(None, ["model.max_length=256"])
    folder = materialize_model(cfg.model, tmp_path_factory.mktemp("m") / "base", seed=0)
    model, tok = load_model(folder, cfg.model)
    return model.eval(), tok, cfg


def test_byte_tokenizer_round_trips_any_text():
    tok = byte_tokenizer()
    text = "naïve café — 数学 🙂\n\ttabs"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode()) and tok.decode(ids) == text
    assert len(tok) == 259 and tok.pad_token_id != tok.eos_token_id


def test_only_assistant_tokens_and_eos_are_supervised():
    tok = byte_tokenizer()
    e = encode_conversation(tok, CHAT, 10_000)
    supervised = [i for i, lab in zip(e.input_ids, e.labels) if lab != IGNORE]
    assert tok.decode(supervised) == "4<|eos|>6<|eos|>"
    assert all(lab in (IGNORE, i) for i, lab in zip(e.input_ids, e.labels))
    last = encode_conversation(tok, CHAT, 10_000, supervise="last")
    assert tok.decode([i for i, lab in zip(last.input_ids, last.labels) if lab != IGNORE]) == "6<|eos|>"
    assert last.input_ids == e.input_ids
    alone = encode_answer_only(tok, CHAT, 10_000)
    assert tok.decode(alone.input_ids) == "<|bos|><|assistant|>\n6<|eos|>\n"
    assert prompt_text(CHAT) == "Be brief.\n2+2?\n4\nand 3+3?"


def test_truncation_flags():
    tok = byte_tokenizer()
    e = encode_conversation(tok, CHAT, 20)
    assert e.truncated and e.prompt_too_long and e.n_supervised == 0 and len(e.input_ids) == 20
    e = encode_conversation(tok, CHAT, 60)  # the first answer starts at token 50
    assert e.truncated and not e.prompt_too_long and e.n_supervised > 0


def test_iu_equals_library_loss_for_a_single_sample(tiny):
    model, tok, _ = tiny
    e = encode_conversation(tok, CHAT, 256)
    batch = collate([e], tok.pad_token_id)
    with torch.no_grad():
        ours, n, _ = sample_losses(model, batch)
        theirs = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    assert n.item() == e.n_supervised
    assert abs(ours.item() - theirs.item()) < 1e-5


@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_equals_single_whatever_the_padding(tiny, side):
    model, tok, _ = tiny
    rng = random.Random(0)
    words = "the cat sat on a mat while seven dogs ran past quickly".split()
    convs = [
        [
            {"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(1, 12)))},
            {"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(1, 20)))},
        ]
        for _ in range(9)
    ]
    enc = [encode_conversation(tok, c, 256) for c in convs]
    with torch.no_grad():
        single = torch.stack([sample_losses(model, collate([e], tok.pad_token_id))[0][0] for e in enc])
        for order in (list(range(9)), rng.sample(range(9), 9)):
            batched, *_ = sample_losses(model, collate([enc[i] for i in order], tok.pad_token_id, side))
            assert torch.allclose(batched, single[order], atol=1e-5, rtol=0)


def test_masked_prompt_tokens_do_not_change_iu(tiny):
    """Labels on prompt positions change the loss; masking them (IGNORE) gives exactly the response-only IU."""
    model, tok, _ = tiny
    e = encode_conversation(tok, CHAT, 256)
    batch = collate([e], tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    iu, *_ = per_sample_nll(logits, batch["labels"])
    unmasked = batch["input_ids"].clone()  # every position labelled
    all_tokens, *_ = per_sample_nll(logits, unmasked)
    garbage = batch["labels"].clone()
    garbage[garbage == IGNORE] = IGNORE  # masked positions stay masked whatever the token there
    assert not torch.isclose(iu, all_tokens)
    assert torch.equal(per_sample_nll(logits, garbage)[0], iu)
    # manual mean over response positions, shifted by one
    logp = torch.log_softmax(logits[0, :-1], -1)
    target = batch["labels"][0, 1:]
    keep = target != IGNORE
    manual = -logp[keep.nonzero().squeeze(1), target[keep]].mean()
    assert abs(manual.item() - iu.item()) < 1e-5


def test_content_nll_leaves_out_only_the_end_of_turn_tokens(tiny):
    """per_sample_nll(end_id): `loss` unchanged, `content` the mean over the other supervised tokens (checked by
    hand); an answer of the end token alone has no content (NaN) but a loss."""
    model, tok, _ = tiny
    enc = [encode_conversation(tok, CHAT, 256), encode_conversation(tok, CHAT[:2] + [CHAT[2] | {"content": ""}], 256)]
    batch = collate(enc, tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    plain = per_sample_nll(logits, batch["labels"])
    out = per_sample_nll(logits, batch["labels"], end_id=tok.eos_token_id)
    assert torch.equal(out.loss, plain.loss) and torch.equal(out.n, plain.n) and torch.equal(plain.content, plain.loss)
    logp = torch.log_softmax(logits[0, :-1].float(), -1)
    target = batch["labels"][0, 1:]
    keep = (target != IGNORE) & (target != tok.eos_token_id)
    assert int((target == tok.eos_token_id).sum()) == 2  # both answers' end tokens, the multi-turn case
    manual = -logp[keep.nonzero().squeeze(1), target[keep]].mean()
    assert abs(manual.item() - out.content[0].item()) < 1e-5 and out.content[0] != out.loss[0]
    assert torch.isnan(out.content[1]) and torch.isfinite(out.loss[1]) and out.n[1] == 1


def test_end_token_nll_is_the_mean_over_the_end_of_turn_tokens_alone(tiny):
    """end_token_nll from a score_encoded(end_id) result equals the end tokens' mean NLL taken by hand: two end
    tokens (multi-turn), one (an answer of the end token alone: the whole loss), none (nothing supervised)."""
    model, tok, _ = tiny
    chats = [CHAT, CHAT[:2] + [CHAT[2] | {"content": ""}]]
    enc = [encode_conversation(tok, c, 256) for c in chats] + [encode_conversation(tok, CHAT, 20)]
    out = score_encoded(model.eval(), enc, tok.pad_token_id, 4096, 8, end_id=tok.eos_token_id)
    end = end_token_nll(enc, out, tok.eos_token_id)
    batch = collate(enc[:1], tok.pad_token_id)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=batch["input_ids"]).logits[0, :-1].float(), -1)
    target = batch["labels"][0, 1:]
    at_end = (target == tok.eos_token_id).nonzero().squeeze(1)
    assert len(at_end) == 2
    assert abs(-logp[at_end, target[at_end]].mean().item() - end[0]) < 1e-4
    assert abs(end[1] - out.loss[1]) < 1e-6 and np.isnan(out.content[1])
    assert np.isnan(end[2]) and out.n[2] == 0


def test_scoring_reports_each_batch_with_its_padding(tiny):
    """Progress and the padding fraction in score_stats.json: each batch's rows, real tokens, and rows × its
    longest sample (what the model computed); length buckets keep the padding small."""
    model, tok, _ = tiny
    enc = [encode_conversation(tok, CHAT[: 1 + 2 * (i % 2 + 1)], 256) for i in range(6)]
    heard = []
    score_encoded(model.eval(), enc, tok.pad_token_id, 4096, 2, on_batch=lambda *a: heard.append(a))
    assert sum(h[0] for h in heard) == 6 and sum(h[1] for h in heard) == sum(len(e.input_ids) for e in enc)
    widths = sorted(len(e.input_ids) for e in enc)  # batches of 2 in length order
    assert [h[2] for h in heard] == [2 * widths[1], 2 * widths[3], 2 * widths[5]]


def test_no_supervised_tokens_gives_nan(tiny):
    model, tok, _ = tiny
    e = encode_conversation(tok, CHAT, 20)
    losses, counts, _ = score_encoded(model, [e], tok.pad_token_id, 4096, 8)
    assert np.isnan(losses[0]) and counts[0] == 0


def test_length_buckets_cover_every_index_within_budget():
    rng = random.Random(1)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    batches = length_buckets(lengths, max_tokens=1024, max_batch=16)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) <= 16 and (len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1024)


def test_tiny_preset_is_reproducible_and_materialised_once(tmp_path):
    cfg = load_config()
    a = materialize_model(cfg.model, tmp_path / "a", seed=3)
    b = materialize_model(cfg.model, tmp_path / "b", seed=3)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert materialize_model(cfg.model, tmp_path / "a", seed=3) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    # another model in the same folder is built, not the old one silently reused
    bigger = load_config(None, ["model.tiny.hidden_size=64", "model.tiny.intermediate_size=128"])
    materialize_model(bigger.model, tmp_path / "a", seed=3)
    assert json.loads((a / "config.json").read_text())["hidden_size"] == 64
    materialize_model(cfg.model, tmp_path / "a", seed=4)  # another seed: other weights
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()
    with pytest.raises(FileNotFoundError, match="neither 'tiny', a .gguf file, nor an HF folder"):
        materialize_model(load_config(None, ["model.base=/nonexistent"]).model, tmp_path / "c", seed=0)


def test_ifd_edge_cases():
    s_cond = np.array([0.5, 2.0, 1.0, 0.3, np.nan, 0.4, 0.2])
    s_uncond = np.array([1.0, 1.0, 0.0, 0.6, 1.0, 0.8, 0.4])
    valid = np.array([True, True, True, True, True, False, True])
    assert ifd_scores(s_cond, s_uncond, valid).tolist() == pytest.approx([0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5])


def test_models_load_without_hub_kernels(tmp_path):
    """transformers turns Hub kernels on by default (fetched at load time; on CUDA it raises when the optional
    `kernels` package is missing, as on the first GPU host): lead-ray loads plain PyTorch layers, and every Ray
    worker gets USE_HUB_KERNELS=NO unless the user set it."""
    import os

    from lead_ray.runtime import WORKER_ENV

    cfg = load_config(None, ["model.max_length=64"])
    model, _ = load_model(materialize_model(cfg.model, tmp_path / "base", seed=0), cfg.model)
    assert model.use_kernels is False
    assert WORKER_ENV["USE_HUB_KERNELS"] == os.environ.get("USE_HUB_KERNELS", "NO")


def _adapter(base, cfg, folder, seed: int, scale: float = 0.3):
    """A LoRA adapter on `base` with random updates (moving the tiny model's losses by ~0.3), saved alone."""
    from lead_ray.models.load import apply_lora

    model, tok = load_model(base, cfg.model)
    model = apply_lora(model, cfg.train.lora)
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=g) * scale
    model.save_pretrained(folder)
    return model.eval(), tok


def test_scoring_keeps_lora_adapters_unmerged_on_one_copy_of_the_base_model(tmp_path):
    """A bf16 scorer: the warm-up and anchor adapters stay float32 branches on the one bf16 base model (a merge into
    bf16 weights rounds small updates away, and two merged models would hold the base twice); the base pass has no
    adapter in it, and each adapter's losses are its float32 model's within bf16 noise."""
    from lead_ray.models.load import ScoringModels

    cfg = load_config(None, ["model.max_length=256", "train.lora.enabled=true"])
    base = materialize_model(cfg.model, tmp_path / "base", seed=0)
    warm, tok = _adapter(base, cfg, tmp_path / "warm", 1)
    anchor, _ = _adapter(base, cfg, tmp_path / "anchor", 2)
    encoded = [encode_conversation(tok, CHAT[1 : 3 + 2 * (i % 2)], 256) for i in range(8)]

    def losses(model):
        return score_encoded(model, encoded, tok.pad_token_id, 16384, 64).loss

    bf16 = load_config(None, ["model.max_length=256", "model.dtype=bfloat16"]).model
    scoring = ScoringModels(base, bf16, "cpu", warmup=tmp_path / "warm", anchor=tmp_path / "anchor", other=None)
    assert scoring.has("warmup") and scoring.has("anchor") and not scoring.has("other")
    with scoring.use(None) as model:
        plain = losses(model)
    assert np.array_equal(plain, losses(load_model(base, bf16)[0].eval()))  # adapters off
    for name, reference in (("warmup", warm), ("anchor", anchor)):
        with scoring.use(name) as model:
            got = losses(model)
        assert np.abs(got - losses(reference)).max() < 0.005 < 0.05 < np.abs(got - plain).max(), name
    dtypes = {("lora_" in n, p.dtype) for n, p in scoring.peft.named_parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}
    weights = {p.data_ptr() for p in scoring.peft.parameters()} | {p.data_ptr() for p in scoring.base.parameters()}
    assert len(weights) == len(list(scoring.peft.parameters()))  # the base's weights once, inside the PeftModel
