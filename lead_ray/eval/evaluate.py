"""`lead-ray eval RUN_DIR`: held-out response NLL, MMLU by answer-letter likelihood, GSM8K exact match.

Every NLL is the shared IU function (models/loss.py) over the response tokens of the one chat
template, so eval numbers and selection utilities are the same quantity.

  NLL sets (holdout, gsm8k, self_instruct): mean over samples of the per-sample response NLL;
  mmlu: each question scored in one forward pass over its prompt: the prediction is the answer letter
        (A-D) with the highest probability at the answer position; reported: accuracy, and the NLL
        (−log p) of the right letter's token;
  gsm8k exact match (eval.generate): greedy decoding in batches, the final number vs the one after ####.

Small jobs run in this process; above eval.ray_min_samples samples they run as a Ray Data job over an
actor pool (one model per actor, `num_gpus=1` per actor when eval.use_gpu asks for GPUs; then always).
The model evaluated is the run's last checkpoint (a LoRA adapter is merged into the base model), or
any HF folder given with --model. Results go to RUN_DIR/eval.json.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from lead_ray.config import Config, ModelConfig
from lead_ray.eval.sets import final_number, load_sets

UNIT_ITEMS = 256  # items per Ray Data unit


def load_eval_model(model_dir: str | Path, base_dir: str | Path | None, model_cfg: ModelConfig):
    """(model, tokenizer) of a run's final checkpoint on this process's device, in eval mode; a LoRA adapter's
    tokenizer from its own folder when it has one (models/load.py: `load_model_or_adapter`)."""
    from lead_ray.models.load import is_adapter, load_model_or_adapter, load_tokenizer, ray_device

    model, tok = load_model_or_adapter(model_dir, base_dir, model_cfg, ray_device())
    if is_adapter(model_dir) and (Path(model_dir) / "tokenizer_config.json").exists():
        tok = load_tokenizer(str(model_dir), model_cfg.trust_remote_code)
    return model.eval(), tok


class EvalWorker:
    """Loads the model once; `process` scores one unit of one set (in-process or as a Ray Data actor)."""

    def __init__(
        self,
        model_dir: str,
        base_dir: str | None,
        model_cfg: ModelConfig,
        batch_tokens: int,
        max_batch: int,
        max_new_tokens: int,
        generate_batch: int,
    ):
        self.model, self.tok = load_eval_model(model_dir, base_dir, model_cfg)
        self.model_cfg, self.batch_tokens, self.max_batch = model_cfg, batch_tokens, max_batch
        self.max_new_tokens, self.generate_batch = max_new_tokens, generate_batch

    def nll(self, conversations: list[list[dict]]) -> list[float]:
        """Response NLL per conversation. Over-long ones keep their *last* max_length tokens (the
        response end, and for MMLU the answer letter), unlike training, which keeps the start."""
        from lead_ray.models.loss import score_encoded
        from lead_ray.models.template import Encoded, encode_conversation

        L = self.model_cfg.max_length
        enc = []
        for m in conversations:
            e = encode_conversation(self.tok, m, 1 << 30)
            enc.append(e if len(e.input_ids) <= L else Encoded(e.input_ids[-L:], e.labels[-L:], True, False))
        losses = score_encoded(self.model, enc, self.tok.pad_token_id, self.batch_tokens, self.max_batch).loss
        return [float(x) for x in losses]

    def generate(self, prompts: list[list[dict]]) -> list[str]:
        """Greedy continuations, batched with left padding."""
        import torch

        from lead_ray.models.template import encode_prompt

        room = max(8, self.model_cfg.max_length - self.max_new_tokens)
        device = next(self.model.parameters()).device
        out = []
        for a in range(0, len(prompts), self.generate_batch):
            ids = [encode_prompt(self.tok, m, room) for m in prompts[a : a + self.generate_batch]]
            width = max(len(x) for x in ids)
            pad = self.tok.pad_token_id
            batch = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=batch,
                    attention_mask=mask,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                    eos_token_id=self.tok.eos_token_id,
                )
            out += self.tok.batch_decode(gen[:, width:], skip_special_tokens=True)
        return out

    def letter_nll(self, items: list[dict]) -> list[float]:
        """MMLU in one forward pass per question: −log p(letter) of each of the four answer letters, read
        from the logits after the shared prompt (the letter token only; flattened, four per question)."""
        import torch

        from lead_ray.models.loss import collate, length_buckets
        from lead_ray.models.template import IGNORE, Encoded, encode_conversation

        prompts, letters = [], []
        for it in items:
            encs = [encode_conversation(self.tok, c, 1 << 30) for c in it["choices"]]
            starts = [e.labels.index(next(x for x in e.labels if x != IGNORE)) for e in encs]
            prompt = encs[0].input_ids[: starts[0]]
            if any(e.input_ids[:s] != prompt for e, s in zip(encs, starts)):
                raise ValueError("MMLU choices do not share their prompt: the template changed")
            prompts.append(prompt[-self.model_cfg.max_length :])
            letters.append([e.input_ids[s] for e, s in zip(encs, starts)])
        out = np.full((len(items), 4), np.nan)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for idx in length_buckets([len(p) for p in prompts], self.batch_tokens, self.max_batch):
                enc = [Encoded(prompts[i], [IGNORE] * len(prompts[i]), False, False) for i in idx]
                batch = collate(enc, self.tok.pad_token_id, padding_side="left")  # last column = last prompt token
                logits = (
                    self.model(
                        **{k: v.to(device) for k, v in batch.items() if k != "labels"},
                        use_cache=False,
                        logits_to_keep=1,
                    )
                    .logits[:, -1]
                    .float()
                )
                logp = torch.log_softmax(logits, -1)
                choice = torch.tensor([letters[i] for i in idx], device=device)
                out[idx] = (-logp.gather(1, choice)).double().cpu().numpy()
        return out.reshape(-1).tolist()

    def process(self, name: str, items: list[dict], generate: int = 0) -> dict:
        """Scores of one unit; `generate`: how many of its first items to answer by greedy generation."""
        if name == "mmlu":
            return {"losses": self.letter_nll(items)}
        result = {"losses": self.nll([it["messages"] for it in items])}
        if generate:
            result["generated"] = self.generate([it["messages"][:-1] for it in items[:generate]])
        return result


def _to_generate(name: str, start: int, n: int, generate: bool, eval_cfg) -> int:
    """How many items of the unit starting at `start` are generated (GSM8K's first generate_samples)."""
    if not generate or name != "gsm8k":
        return 0
    end = min(n, eval_cfg.generate_samples or n)
    return max(0, min(UNIT_ITEMS, end - start))


def per_item(name: str, items: list[dict], parts: dict) -> dict[str, list]:
    """Each item's scores, in the set's (deterministic) order, so two runs can be compared item by item:
    nll (NaN where no response token fits), and for MMLU `correct` and `choice_nll`, for GSM8K generation
    `exact_match`."""
    losses = np.asarray(parts["losses"], np.float64)
    if name == "mmlu":
        by_q = losses.reshape(-1, 4)
        answer = np.array([it["answer"] for it in items], dtype=np.int64)
        pred = np.argmin(np.where(np.isnan(by_q), np.inf, by_q), 1)
        nll = by_q[np.arange(len(items)), answer]
        # among the four letters only: how little of the letters' mass the right one has, whatever mass the model
        # puts on letters at all (`nll` also rewards a model that learnt to answer with a bare letter: format)
        least = np.min(by_q, 1, keepdims=True)  # log-sum-exp from the likeliest letter: no underflow at any NLL
        choice_nll = nll - least[:, 0] + np.log(np.exp(least - by_q).sum(1))
        correct = (pred == answer).astype(float)
        return {"nll": nll.tolist(), "correct": correct.tolist(), "choice_nll": choice_nll.tolist()}
    scores = {"nll": losses.tolist()}
    if "generated" in parts:
        scores["exact_match"] = [float(final_number(g) == it["target"]) for g, it in zip(parts["generated"], items)]
    return scores


def summarise(name: str, items: list[dict], parts: dict) -> dict:
    """Metrics of one set from its per-item scores."""
    scores = per_item(name, items, parts)
    nll = np.asarray(scores["nll"], np.float64)
    out = {
        "n": len(items),
        "nll": float(np.nanmean(nll)) if np.isfinite(nll).any() else None,
        "unscored": int(np.isnan(nll).sum()),  # no response token inside max_length
    }
    if name == "mmlu":
        choice = np.asarray(scores["choice_nll"], np.float64)
        out.update(
            accuracy=float(np.mean(scores["correct"])),
            chance=0.25,
            choice_nll=float(np.nanmean(choice)) if np.isfinite(choice).any() else None,
            choice_nll_chance=math.log(4),
        )
    if "exact_match" in scores:
        out.update(exact_match=float(np.mean(scores["exact_match"])), n_generated=len(scores["exact_match"]))
    return out


def _final_model(run_dir: Path) -> Path:
    """The model a finished run ended with (its final checkpoint's)."""
    stats_file = run_dir / "run_stats.json"
    if not stats_file.exists():
        raise FileNotFoundError(f"{run_dir}: no run_stats.json (finish `lead-ray run` first, or pass --model)")
    return Path(json.loads(stats_file.read_text())["checkpoint"]) / "model"


def _merge_units(units: list[dict], results: list[dict]) -> dict[str, dict]:
    """Per eval set, each per-item field's values in item order (units are slices of a set, in order)."""
    merged: dict[str, dict] = {}
    for unit, result in zip(units, results):
        fields = merged.setdefault(unit["name"], {})
        for key, values in result.items():
            fields.setdefault(key, []).extend(values)
    return merged


def evaluate(
    cfg: Config, run_dir: str | Path | None = None, model_dir: str | Path | None = None, out: str | Path | None = None
) -> dict:
    """Evaluate a run's final model (or model_dir) on cfg.eval.sets; writes and returns the results."""
    import ray

    from lead_ray.models.load import materialize_model
    from lead_ray.runtime import plan_actors
    from lead_ray.stages import run_units_on_actors

    t0 = time.perf_counter()
    eval_cfg = cfg.eval
    run_dir = Path(run_dir or cfg.stage_dir("run")).resolve()
    model_dir = model_dir or _final_model(run_dir)
    base_dir = materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)
    sets = _eval_sets(cfg)
    generate = eval_cfg.generate if eval_cfg.generate is not None else cfg.model.base != "tiny"
    ctor = {
        "model_dir": str(model_dir),
        "base_dir": str(base_dir),
        "model_cfg": cfg.model,
        "batch_tokens": cfg.score.batch_tokens,
        "max_batch": cfg.score.max_batch_size,
        "max_new_tokens": eval_cfg.max_new_tokens,
        "generate_batch": eval_cfg.generate_batch_size,
    }
    total = sum(len(v) for v in sets.values())  # forward passes (one per MMLU question)
    units = [  # UNIT_ITEMS items a unit, each set's in order
        {"name": k, "items": v[a : a + UNIT_ITEMS], "generate": _to_generate(k, a, len(v), generate, eval_cfg)}
        for k, v in sets.items()
        for a in range(0, len(v), UNIT_ITEMS)
    ]
    plan = plan_actors(eval_cfg.use_gpu, eval_cfg.actors, ray.cluster_resources(), len(units))
    if total >= eval_cfg.ray_min_samples or plan.use_gpu:  # on GPUs always the actors: the driver holds none
        results = run_units_on_actors(
            units, EvalWorker, ctor, actors=plan.actors, num_cpus=plan.num_cpus, num_gpus=plan.num_gpus
        )
        mode = f"ray_data ({plan.actors} {'GPU' if plan.use_gpu else 'CPU'} actors)"
    else:
        worker = EvalWorker(**ctor)
        results = [worker.process(**u) for u in units]
        mode = "in_process"
    merged = _merge_units(units, results)
    report = {
        "model": str(model_dir),
        "mode": mode,
        "samples_scored": total,
        "generate": generate,
        "sets": {k: summarise(k, sets[k], merged.get(k, {"losses": []})) for k in sets if sets[k]},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write(Path(out) if out else run_dir / "eval.json", report, sets, merged)
    return report


def _eval_sets(cfg: Config) -> dict[str, list]:
    """cfg.eval.sets' items by set name; 'holdout' is the pool's held-out split (never selected, never trained)."""
    from lead_ray.online.pool import index_pool, read_holdout

    eval_cfg = cfg.eval
    holdout = read_holdout(cfg, index_pool(cfg))["messages"].to_pylist() if "holdout" in eval_cfg.sets else []
    return load_sets(
        eval_cfg.sets,
        eval_cfg.data_dir,
        eval_cfg.max_samples,
        eval_cfg.mmlu_split,
        holdout,
        eval_cfg.set_sizes,
        eval_cfg.set_offsets,
    )


def _write(dest: Path, report: dict, sets: dict, merged: dict) -> None:
    """eval.json (the summary) and eval_items.json beside it (per-item numbers, for paired comparisons)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=2) + "\n")
    items = {k: per_item(k, sets[k], merged.get(k, {"losses": []})) for k in sets if sets[k]}
    dest.with_name(dest.stem + "_items.json").write_text(json.dumps(items) + "\n")
