"""Starting or joining Ray, the same way for the CLI, jobs/ and tests."""

from __future__ import annotations

import os
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
