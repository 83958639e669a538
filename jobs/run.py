"""Ray job entrypoint for `lead-ray run`.

    ray job submit --working-dir . -- python jobs/run.py --config configs/demo.yaml [--resume RUN_DIR] [--set k=v ...]

Inside a Ray job it joins the job's cluster; work_dir must be on storage every node can reach.
"""

import sys

from lead_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
