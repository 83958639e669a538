"""Running a stage's work units as a Ray Data job.

Every stage cuts its input into units (a chunk of files, a bucket, a slice of the pool), and each
unit is one row of a Ray Data dataset. The unit's body reads its own input, writes its own output
file atomically, and returns a small JSON-able dict of counters, which is all the driver collects.
This gives streaming, parallelism and progress bars from Ray Data, per-unit resumability (a rerun
skips units whose output exists), and a driver that never holds the data.

`run_units` uses stateless tasks; `run_units_on_actors` keeps an actor pool alive across units, for
bodies that load a model once (`compute=ActorPoolStrategy`, with `num_gpus` when the cluster has GPUs).
"""

from __future__ import annotations

import numpy as np
import orjson

from lead_ray.console import Progress


def _dataset(items: list[dict]):
    import ray

    return ray.data.from_items([{"item": orjson.dumps(it)} for it in items], override_num_blocks=len(items))


def run_units(items: list[dict], fn, fn_kwargs: dict, name: str) -> list[dict]:
    """`fn(**item, **fn_kwargs)` for every item, one Ray task per item; returns the results."""
    if not items:
        return []

    def call(batch: dict) -> dict:
        out = [orjson.dumps(fn(**orjson.loads(raw), **fn_kwargs)) for raw in batch["item"]]
        return {"result": np.array(out, dtype=object)}

    call.__name__ = name  # what Ray Data's progress bar shows
    rows = _dataset(items).map_batches(call, batch_size=1, batch_format="numpy").take_all()
    return [orjson.loads(r["result"]) for r in rows]


class _ActorCall:
    """Adapter: build the user's worker class once per actor, call `.process(**item)` per unit."""

    def __init__(self, worker_cls, ctor_kwargs: dict):
        self.worker = worker_cls(**ctor_kwargs)

    def __call__(self, batch: dict) -> dict:
        out = [orjson.dumps(self.worker.process(**orjson.loads(raw))) for raw in batch["item"]]
        return {"result": np.array(out, dtype=object)}


def run_units_on_actors(
    items: list[dict], worker_cls, ctor_kwargs: dict, *, actors: int, num_cpus: float, num_gpus: float = 0
) -> list[dict]:
    """`worker_cls(**ctor_kwargs).process(**item)` for every item on a pool of `actors` actors."""
    import ray

    if not items:
        return []
    adapter = type(worker_cls.__name__, (_ActorCall,), {})  # the progress bar shows the worker's name
    ds = _dataset(items).map_batches(
        adapter,
        fn_constructor_kwargs={"worker_cls": worker_cls, "ctor_kwargs": ctor_kwargs},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    progress = Progress(worker_cls.__name__, len(items), "units")
    results = []
    for row in ds.iter_rows():  # streamed: a progress line as units finish
        results.append(orjson.loads(row["result"]))
        progress.update()
    return results
