"""Offline-stage benchmark: embedding throughput, IU₀ scoring speed, clustering cost and quality.

    python bench/micro/offline.py [--texts 1536] [--quality-per-class 250] [--sizes 10000,100000,1000000]

Everything is measured in this one run, on this machine, and written to bench/results/offline.json
(the last line printed is that JSON):

1. Prompt embeddings (all-MiniLM-L6-v2, 128 tokens, batch 64): plain single-process
   sentence-transformers (before Ray starts, 2 threads) vs the Ray Data actor-pool pipeline the score
   stage uses (one actor, 2 threads, units of 512 prompts). Ratios: end to end (actor start-up
   included) and steady state (actor busy time). Reference: the encoder's FLOP-bound limit from a
   measured float32 matmul rate.
2. IU₀ scoring tokens/s (the shared loss, length-bucketed, no gradients) for the tiny preset and for
   SmolLM2-135M-Instruct (GGUF, de-quantised to float32) on a small slice of the pool.
3. Task clustering cost at N = 10k, 100k, 1M synthetic 384-d unit vectors: k-means fit on a
   20k sample + exact nearest-centroid (argmin) assignment of all N, and the 1-D difficulty k-means on N
   scalars; each N in a fresh subprocess so its peak RSS (VmHWM) is its own. Near-duplicate k-NN build cost
   at 10k and 100k.
4. Task-cluster quality on ../shared/data/pool: prompts sampled per ground-truth class (source group,
   and T0 task family), embedded, clustered with k = number of classes by the cluster stage's code,
   adjusted Rand index and purity vs the labels, next to a random assignment.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
POOL = SHARED / "data" / "pool"
SMOLLM = SHARED / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBED_TOKENS, EMBED_BATCH, UNIT = 128, 64, 512


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def group_of(rel: str, manifest: dict) -> tuple[str, str | None]:
    """(source group, T0 task family or None) of a pool file."""
    if rel.startswith("t0_train_50k/"):
        return "t0", manifest["pool/" + rel].get("t0_task_family")
    return {
        "gpteacher/codegen-instruct.json": "code",
        "noncommercial/code_alpaca_2k.json": "code",
        "gpteacher/roleplay-simple-deduped-roleplay-instruct.json": "roleplay",
        "gpteacher/toolformer-dedupe-only-dataset.json": "toolformer",
        "gsm8k/train.jsonl": "gsm8k",
        "self_instruct/seed_tasks.jsonl": "self_instruct",
    }[rel], None


def read_prompts() -> list[tuple[str, str, str | None]]:
    """(prompt, source group, t0 family) for every record of the shared pool, via the ingest readers."""
    from lead_ray.data.formats import READERS, Reject, detect_format
    from lead_ray.models.template import prompt_text

    manifest = {e["file"]: e for e in json.loads((SHARED / "data" / "MANIFEST.json").read_text())}
    out = []
    for path in sorted(POOL.rglob("*.json*")):
        rel = path.relative_to(POOL).as_posix()
        text = path.read_text()
        records = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(x) for x in text.splitlines() if x.strip()]
        )
        group, family = group_of(rel, manifest)
        for r in records:
            try:
                for conv in READERS[detect_format(r)](r):
                    out.append((prompt_text(conv), group, family))
            except (Reject, KeyError, ValueError):
                continue
    return out


# ----------------------------------------------------------------------------- 1. embeddings


def matmul_gflops(threads: int = 2) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t = time.perf_counter()
    reps = 10
    for _ in range(reps):
        a @ b
    return 2 * 2048**3 * reps / (time.perf_counter() - t) / 1e9


def encoder_flops_per_text(tokens: np.ndarray, d=384, ffn=1536, layers=6) -> np.ndarray:
    """Forward FLOPs of a BERT-style encoder per text: dense matmuls plus attention scores and mixing."""
    return tokens * (2 * (4 * d * d + 2 * d * ffn) * layers) + 2 * 2 * tokens**2 * d * layers


class EmbedUnits:
    """The score stage's embedding path on its own: an actor embedding whole units of prompts."""

    def __init__(self, threads: int):
        import torch

        from lead_ray.offline.score import PromptEmbedder

        torch.set_num_threads(threads)
        self.embed = PromptEmbedder(EMBED_TOKENS)

    def __call__(self, batch: dict) -> dict:
        t = time.perf_counter()
        v = self.embed(list(batch["text"]), EMBED_BATCH)
        return {"n": np.array([len(v)]), "busy": np.array([time.perf_counter() - t])}


def bench_embeddings(texts: list[str]) -> dict:
    import torch

    from lead_ray.offline.score import PromptEmbedder

    torch.set_num_threads(2)
    plain = PromptEmbedder(EMBED_TOKENS)
    plain(texts[:EMBED_BATCH], EMBED_BATCH)  # warm-up
    t = time.perf_counter()
    plain(texts, EMBED_BATCH)
    plain_rate = len(texts) / (time.perf_counter() - t)
    tok = plain.model.tokenizer(texts, truncation=True, max_length=EMBED_TOKENS)["input_ids"]
    tokens = np.array([len(x) for x in tok])
    gflops = matmul_gflops()
    limit = gflops * 1e9 / encoder_flops_per_text(tokens).mean()

    import ray

    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    init_ray(RayConfig())
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items([{"text": x} for x in texts], override_num_blocks=max(1, len(texts) // UNIT)).materialize()
    t = time.perf_counter()
    rows = ds.map_batches(
        EmbedUnits,
        fn_constructor_kwargs={"threads": 2},
        batch_size=UNIT,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1.5,
    ).take_all()
    wall = time.perf_counter() - t
    busy = sum(float(r["busy"]) for r in rows)
    assert sum(int(r["n"]) for r in rows) == len(texts)
    t = time.perf_counter()
    plain(texts, EMBED_BATCH)
    plain_ray_up = len(texts) / (time.perf_counter() - t)
    return {
        "texts": len(texts),
        "mean_tokens": float(tokens.mean()),
        "plain_texts_per_s": plain_rate,
        "plain_texts_per_s_with_ray_idle": plain_ray_up,
        "ray_wall_texts_per_s": len(texts) / wall,
        "ray_steady_texts_per_s": len(texts) / busy,
        "embed_ratio_vs_st": len(texts) / wall / plain_rate,
        "embed_ratio_steady_vs_st": len(texts) / busy / plain_rate,
        "matmul_gflops": gflops,
        "flop_bound_texts_per_s": limit,
        "plain_share_of_flop_bound": plain_rate / limit,
    }


# ----------------------------------------------------------------------------- 2. IU0 speed


def bench_iu0(convs: list[list[dict]], base: str, max_length: int, work: Path) -> dict:
    import torch

    from lead_ray.config import load_config
    from lead_ray.models.load import load_model, materialize_model
    from lead_ray.models.loss import score_encoded
    from lead_ray.models.template import encode_conversation

    torch.set_num_threads(2)
    cfg = load_config(None, [f"model.base={base}", f"model.max_length={max_length}"])
    t = time.perf_counter()
    folder = materialize_model(cfg.model, work / f"model-{Path(base).stem}", seed=0)
    prepare_s = time.perf_counter() - t
    model, tok = load_model(folder, cfg.model)
    model.eval()
    enc = [encode_conversation(tok, c, max_length) for c in convs]
    score_encoded(model, enc[:4], tok.pad_token_id, 8192, 32)  # warm-up
    t = time.perf_counter()
    score_encoded(model, enc, tok.pad_token_id, 8192, 32)
    dt = time.perf_counter() - t
    tokens = sum(len(e.input_ids) for e in enc)
    return {
        "samples": len(enc),
        "tokens": tokens,
        "seconds": dt,
        "tokens_per_s": tokens / dt,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "materialise_s": prepare_s,
    }


# ----------------------------------------------------------------------------- 3. clustering cost


def clustering_cost_child(n: int, near_dups: bool) -> dict:
    """Runs in a fresh subprocess: one N, its own peak RSS."""
    from sklearn.cluster import KMeans

    from lead_ray.config import ClusterConfig
    from lead_ray.offline.cluster import kmeans_1d, nearest

    cc = ClusterConfig()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, 384)).astype(np.float32)
    x = np.empty((n, 384), np.float32)  # filled in chunks, so generator temporaries do not inflate peak RSS
    for s in range(0, n, 50_000):
        e = min(n, s + 50_000)
        x[s:e] = centres[rng.integers(0, 2000, e - s)] + 0.3 * rng.standard_normal((e - s, 384), dtype=np.float32)
        x[s:e] /= np.linalg.norm(x[s:e], axis=1, keepdims=True)
    ifd = rng.beta(5, 2, n).astype(np.float32)
    out = {"n": n, "vectors_mb": x.nbytes / 2**20}
    t = time.perf_counter()
    kmeans_1d(ifd, 7, 0)
    out["difficulty_kmeans_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sample = x[rng.choice(n, size=min(cc.fit_sample, n), replace=False)]
    cents = KMeans(n_clusters=cc.task_k, n_init=3, random_state=0).fit(sample).cluster_centers_.astype(np.float32)
    out["task_fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = nearest(cents, x)
    out["assign_s"] = time.perf_counter() - t
    out["kmeans_assign_s"] = out["task_fit_s"] + out["assign_s"]
    exact = ((x[:20000, None, :] - cents[None]) ** 2).sum(-1).argmin(1)
    out["assign_agreement_vs_exact"] = float((exact == labels[:20000]).mean())
    if near_dups:
        import hnswlib

        t = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=384)
        index.init_index(max_elements=n, M=cc.hnsw_m, ef_construction=cc.hnsw_ef, random_seed=0)
        index.add_items(x, np.arange(n))
        index.set_ef(cc.hnsw_ef)
        index.knn_query(x, k=6)
        out["near_dup_knn_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that across execve from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_clustering_cost(sizes: list[int]) -> list[dict]:
    results = []
    for n in sizes:
        code = (
            f"import json,sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from bench.micro.offline import clustering_cost_child; "
            f"print(json.dumps(clustering_cost_child({n}, {n <= 100_000})))"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
        log(f"  N={n}: {results[-1]}")
    return results


# ----------------------------------------------------------------------------- 4. cluster quality


def bench_quality(records, per_class: int, seed: int = 0) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from lead_ray.offline.cluster import nearest
    from lead_ray.offline.score import PromptEmbedder

    rng = random.Random(seed)
    embedder = PromptEmbedder(EMBED_TOKENS)
    out = {}
    for name, key in (("source_group", 1), ("t0_task_family", 2)):
        by = {}
        for r in records:
            if r[key] is not None:
                by.setdefault(r[key], []).append(r)
        picked = [r for label in sorted(by) for r in rng.sample(by[label], min(per_class, len(by[label])))]
        truth = [r[key] for r in picked]
        x = embedder([r[0] for r in picked], EMBED_BATCH)
        k = len(by)
        cents = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x).cluster_centers_.astype(np.float32)
        pred = nearest(cents, x)
        rand = np.random.default_rng(seed).integers(0, k, len(picked))

        def purity(p, truth=truth):
            return sum(Counter(t for t, q in zip(truth, p) if q == c).most_common(1)[0][1] for c in set(p)) / len(p)

        out[name] = {
            "classes": k,
            "points": len(picked),
            "ari": adjusted_rand_score(truth, pred),
            "ari_random": adjusted_rand_score(truth, rand),
            "purity": purity(list(pred)),
            "purity_random": purity(list(rand)),
        }
        log(f"  {name}: {out[name]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1536)
    ap.add_argument("--iu0-samples", type=int, default=256)
    ap.add_argument("--smollm-samples", type=int, default=32)
    ap.add_argument("--quality-per-class", type=int, default=200)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    args = ap.parse_args()
    os.environ.setdefault("LEAD_RAY_PROGRESS", "0")
    rng = random.Random(0)
    records = read_prompts()
    log(f"{len(records)} pool prompts read")
    result = {"machine": f"{os.cpu_count()} CPUs"}

    log("1. embedding throughput")
    texts = [r[0] for r in rng.sample(records, args.texts)]
    result["embedding"] = emb = bench_embeddings(texts)
    log(f"  {emb}")

    log("2. IU0 scoring speed")
    from lead_ray.data.formats import READERS, detect_format

    convs = []
    for path in sorted((POOL / "t0_train_50k").glob("*.jsonl"))[:64] + [POOL / "gsm8k" / "train.jsonl"]:
        for line in path.read_text().splitlines()[:8]:
            r = json.loads(line)
            if not r.get("completion", "x").startswith("<|endoftext|>"):
                convs += READERS[detect_format(r)](r)
    convs = [[{"role": m["role"], "content": m["content"].strip()} for m in c] for c in convs]
    rng.shuffle(convs)
    with tempfile.TemporaryDirectory() as tmp:
        result["iu0_tiny"] = bench_iu0(convs[: args.iu0_samples], "tiny", 1024, Path(tmp))
        log(f"  tiny: {result['iu0_tiny']}")
        if SMOLLM.exists():
            result["iu0_smollm2_135m"] = bench_iu0(convs[: args.smollm_samples], str(SMOLLM), 512, Path(tmp))
            log(f"  SmolLM2-135M: {result['iu0_smollm2_135m']}")
    result["iu0_tokens_per_s_tiny"] = result["iu0_tiny"]["tokens_per_s"]

    log("3. clustering cost")
    cost = bench_clustering_cost([int(s) for s in args.sizes.split(",")])
    result["clustering_cost"] = cost
    result["kmeans_assign_s"] = {str(c["n"]): c["kmeans_assign_s"] for c in cost}
    result["peak_rss_mb"] = {str(c["n"]): c["peak_rss_mb"] for c in cost}

    log("4. cluster quality")
    result["quality"] = q = bench_quality(records, args.quality_per_class)
    result["ari_task_clusters"] = q["source_group"]["ari"]
    result["ari_random"] = q["source_group"]["ari_random"]
    result["embed_ratio_vs_st"] = emb["embed_ratio_vs_st"]

    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "offline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
