"""Starting or joining Ray, the same way for the CLI, jobs/ and tests."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from lead_ray.config import RayConfig, TrainingSettings

# Passed to every Ray worker: wandb never needs an account unless the user turns it on.
WORKER_ENV = {
    "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # one progress line per stage (Ray's), not one bar per worker per weight file
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    # transformers' Hub kernels (on by default on CUDA): fetched at load time, absent offline; see models/load.py
    "USE_HUB_KERNELS": os.environ.get("USE_HUB_KERNELS", "NO"),
}
# Ray Train's controller polls its workers every 2 s by default, so each fit of an embedded run (the demo, a
# laptop run) ended up to 2 s after its work did and started a poll later than it could. A local Ray has a
# handful of workers: a quarter-second poll costs nothing there and saves ~3.5 s per fit. A cluster keeps Ray's
# default (or the RAY_TRAIN_HEALTH_CHECK_INTERVAL_S its operator sets).
LOCAL_TRAIN_POLL_S = "0.25"
# Ray Train's PreemptionWatcher (an actor per fit that logs node drains, for spot clusters) has nothing to watch on
# one machine, and each fit's start printed a core_worker error line about its constructor arguments.
LOCAL_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": LOCAL_TRAIN_POLL_S, "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def init_ray(rc: RayConfig) -> None:
    """Join `ray.address` (or RAY_ADDRESS) when given, else start an embedded local Ray.

    Idempotent: inside a Ray job, or when the caller already called ray.init, this does nothing.
    """
    import ray

    if ray.is_initialized():
        return
    from lead_ray.console import quiet_ray_libraries, ray_init_kwargs, worker_env

    address = rc.address or os.environ.get("RAY_ADDRESS")
    env = {**WORKER_ENV, **worker_env()}
    kwargs = dict(runtime_env={"env_vars": env}, log_to_driver=True, **ray_init_kwargs())
    if address:
        ray.init(address=address, **kwargs)
    else:
        for key, value in LOCAL_TRAIN_ENV.items():  # read by TorchTrainer.fit, which passes them to its controller
            os.environ.setdefault(key, value)
        mem = rc.object_store_memory_mb and rc.object_store_memory_mb * 2**20
        ray.init(address="local", num_cpus=rc.num_cpus, object_store_memory=mem, **kwargs)
    quiet_ray_libraries()


# ----------------------------------------------------------------------------- GPUs: asked for, never guessed


def wants_gpu(setting: bool | str, cluster: dict) -> bool:
    """A stage's `use_gpu`: true requests GPUs (on an autoscaling cluster the request is what starts a GPU
    node), false never uses one, auto uses them when the cluster has GPUs at the moment the stage starts."""
    if setting == "auto":
        return cluster.get("GPU", 0) > 0
    return bool(setting)


def train_scaling(ts: TrainingSettings, cluster: dict, cpu_share: float | None = None) -> dict:
    """ScalingConfig arguments for warm-up and online training: GPU workers with one CPU each, or CPU
    workers splitting `cpu_share` (default: the cluster's CPUs) less half a CPU left to Ray's own tasks."""
    use_gpu = wants_gpu(ts.use_gpu, cluster)
    cpus = cpu_share or cluster.get("CPU", 1)
    per_worker = 1 if use_gpu else max(0.5, (cpus - 0.5) / ts.num_workers)
    placed = getattr(ts, "placement_resources", {})  # train.placement_resources: keep workers on chosen nodes
    return {"num_workers": ts.num_workers, "use_gpu": use_gpu, "resources_per_worker": {"CPU": per_worker, **placed}}


@dataclass
class ActorPlan:
    """How a model-loading stage (score, eval) sizes its Ray Data actor pool."""

    actors: int
    num_cpus: float
    num_gpus: float
    threads: int  # torch threads per actor

    @property
    def use_gpu(self) -> bool:
        return self.num_gpus > 0


def plan_actors(setting: bool | str, requested: int, cluster: dict, units: int, cpus_per_actor: int = 2) -> ActorPlan:
    """One actor per GPU (at least one: a requested GPU the cluster does not have yet is what the
    autoscaler adds), or one per `cpus_per_actor` CPUs; `requested` > 0 overrides the count. Never more
    actors than units of work."""
    gpus, cpus = int(cluster.get("GPU", 0)), int(cluster.get("CPU", 1))
    if wants_gpu(setting, cluster):
        actors = max(1, min(requested or max(1, gpus), units or 1))
        return ActorPlan(actors, num_cpus=1, num_gpus=1, threads=2)
    actors = max(1, min(requested or max(1, cpus // cpus_per_actor), units or 1))
    threads = max(1, cpus // actors)  # CPU actors split the CPUs (torch threads = CPUs held)
    return ActorPlan(actors, num_cpus=max(0.5, threads - 0.5), num_gpus=0, threads=threads)


# ----------------------------------------------------------------------------- waiting for the workers

NOTICE_AFTER_S = 0.0  # say what is missing at once (the bound: within a minute)
POLL_S = 5.0


def worker_bundle(scaling: dict) -> dict[str, float]:
    """What one Ray Train worker asks for, as ScalingConfig arguments (train_scaling) describe it."""
    bundle = {k: float(v) for k, v in scaling["resources_per_worker"].items() if v}
    if scaling["use_gpu"]:
        bundle["GPU"] = bundle.get("GPU", 1.0)
    return bundle


def placeable_workers(nodes: list[dict], bundle: dict[str, float]) -> int:
    """How many workers of `bundle` the alive nodes could hold at most (each node's total resources)."""
    count = 0
    for node in nodes:
        if not node.get("Alive", True):
            continue
        have = node.get("Resources", {})
        count += min(int(have.get(k, 0.0) // v) for k, v in bundle.items())
    return count


def wait_for_workers(scaling: dict, timeout_s: float, stage: str, nodes=None, clock=time.monotonic) -> float:
    """Block until the cluster's nodes could hold every worker `scaling` asks for; return the seconds waited.

    Ray Train v2 retries a placement that never succeeds forever, and says nothing at lead-ray's log level. So
    before a trainer starts: if the workers do not fit, say at once what was asked and what the cluster has, ask
    the autoscaler for them (ray.autoscaler.sdk.request_resources; without an autoscaler it is a no-op), and stop
    after `timeout_s` with the same numbers. `nodes`: a callable listing nodes (tests); ray.nodes by default."""
    import ray

    list_nodes = nodes or ray.nodes
    bundle, wanted = worker_bundle(scaling), scaling["num_workers"]
    t0, asked = clock(), False
    while True:
        current = list_nodes()
        if placeable_workers(current, bundle) >= wanted or timeout_s <= 0:
            if asked:
                _request(None)
            return clock() - t0
        have = _cluster_summary(current)
        if not asked:
            print(
                f"[lead-ray] {stage}: waiting for {wanted} worker(s) of {bundle}; the cluster has {have}. An "
                f"autoscaler is asked for them; stopping after {timeout_s:.0f} s (placement_timeout_s).",
                file=sys.stderr,
                flush=True,
            )
            _request([bundle] * wanted)
            asked = True
        if clock() - t0 >= timeout_s:
            _request(None)
            raise RuntimeError(
                f"{stage}: the cluster cannot hold {wanted} worker(s) of {bundle} after {timeout_s:.0f} s of waiting "
                f"(it has {have}). Lower {stage}.num_workers, set {stage}.use_gpu=false, or add nodes "
                f"(cluster.yaml, k8s/rayjob.yaml), then run again."
            )
        time.sleep(POLL_S)


def _cluster_summary(nodes: list[dict]) -> str:
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    per_node = [{k: v for k, v in r.items() if k in ("CPU", "GPU")} for r in alive]
    return f"{len(alive)} node(s): {per_node}"


def _request(bundles: list[dict] | None) -> None:
    """Ask the autoscaler for these bundles (None: withdraw the request); a cluster without one ignores it."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles or [])
    except Exception:  # noqa: BLE001 - no autoscaler (a local Ray): nothing to ask
        pass
