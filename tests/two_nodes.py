"""A run on a two-node Ray cluster that loses its second node mid-round (run by tests/test_fault_tolerance.py in
a subprocess: it starts a cluster of its own, which a pytest process already holding a Ray session cannot).

The head (the driver, Ray Train's controller, 1 CPU) and a second node with 2 CPUs and a custom resource
`side`; `train.placement_resources: {side: 0.01}` puts the Train worker, the UtilityStore shards and the
BanditActor on the second node (the controller stays with the driver). The run goes in a thread; once its
round KILL_AT is selected, the main thread kills that node's raylet and everything on it, and a fresh node
with the same resources joins 2 s later (Ray adds nodes from the main thread only). The run must finish
with the same rounds, arms, selections and utilities as the test module's uninterrupted one-node reference run
(its folder is the second argument: the same toy pool and config, placed elsewhere). Writes
`<work>/stats.json` (not stdout: Ray's deduplicated worker-log lines can reach stdout after the last print).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = {"num_cpus": 2, "resources": {"side": 4}}


def main(work: Path, reference: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from lead_ray.online.run import run
    from tests.test_fault_tolerance import KILL_AT, assert_same_run, config
    from tests.test_online import toy_pool

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = {"side": cluster.add_node(**SIDE)}
    ray.init(address=cluster.address)

    def placed(folder: Path):
        toy_pool(folder)
        cfg = config(folder)
        cfg.train.placement_resources = {"side": 0.01}
        return cfg

    outcome: dict = {}

    def killed_run():  # in a thread: Ray only adds nodes from the main thread
        try:
            outcome["stats"] = run(placed(work / "killed"), cpu_share=2)
        except BaseException as err:  # reported by the main thread
            outcome["error"] = err

    runner = threading.Thread(target=killed_run, daemon=True)
    runner.start()
    marker = work / "killed" / "run" / "selections" / f"round-{KILL_AT:05d}.npy"
    deadline = time.time() + 600
    while time.time() < deadline and not marker.exists() and runner.is_alive():
        time.sleep(0.05)
    assert marker.exists(), "the run never reached the round to kill it in"
    cluster.remove_node(nodes["side"], allow_graceful=False)  # raylet and every worker on it, SIGKILL
    time.sleep(2)
    nodes["side"] = cluster.add_node(**SIDE)  # the node comes back (a replacement with the same resources)
    runner.join(timeout=600)
    if "error" in outcome:
        raise outcome["error"]
    stats = outcome["stats"]
    assert_same_run(reference, work / "killed")
    result = {"resumed_from_round": stats["resumed_from_round"], "rounds": stats["rounds"]}
    (work / "stats.json").write_text(json.dumps(result))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
