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
    """One row per unit: the unit, and its position, which every result carries back (Ray Data does not keep the
    order of rows through a map by default, and callers pair results with their units)."""
    import ray

    rows = [{"item": orjson.dumps(it), "position": i} for i, it in enumerate(items)]
    return ray.data.from_items(rows, override_num_blocks=len(items))


def _in_unit_order(rows) -> list[dict]:
    """The results of the rows, in the order of the units they came from."""
    return [orjson.loads(r["result"]) for r in sorted(rows, key=lambda r: int(r["position"]))]


def run_units(items: list[dict], fn, fn_kwargs: dict, name: str) -> list[dict]:
    """`fn(**item, **fn_kwargs)` for every item, one Ray task per item; returns the results in the items' order."""
    if not items:
        return []

    def call(batch: dict) -> dict:
        out = [orjson.dumps(fn(**orjson.loads(raw), **fn_kwargs)) for raw in batch["item"]]
        return {"result": np.array(out, dtype=object), "position": batch["position"]}

    call.__name__ = name  # what Ray Data's progress bar shows
    return _in_unit_order(_dataset(items).map_batches(call, batch_size=1, batch_format="numpy").take_all())


class _ActorCall:
    """Adapter: build the user's worker class once per actor, call `.process(**item)` per unit."""

    def __init__(self, worker_cls, ctor_kwargs: dict):
        self.worker = worker_cls(**ctor_kwargs)

    def __call__(self, batch: dict) -> dict:
        out = [orjson.dumps(self.worker.process(**orjson.loads(raw))) for raw in batch["item"]]
        return {"result": np.array(out, dtype=object), "position": batch["position"]}


def run_units_on_actors(
    items: list[dict], worker_cls, ctor_kwargs: dict, *, actors: int, num_cpus: float, num_gpus: float = 0
) -> list[dict]:
    """`worker_cls(**ctor_kwargs).process(**item)` for every item on a pool of `actors` actors; the results in the
    items' order, whatever order the actors finished them in."""
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
    rows = []
    for row in ds.iter_rows():  # streamed: a progress line as units finish
        rows.append(row)
        progress.update()
    return _in_unit_order(rows)
