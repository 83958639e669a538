"""Ray job entrypoint for `lead-ray anchor` (the reference model of selection.utility=learnability).

    ray job submit --working-dir . -- python jobs/anchor.py --config configs/demo.yaml [--set k=v ...]

Inside a Ray job it joins the job's cluster; work_dir must be on storage every node can reach.
"""

import sys

from lead_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["anchor", *sys.argv[1:]]))
