"""Ray job entrypoint for `lead-ray eval`.

    ray job submit --working-dir . -- \
        python jobs/eval.py --config configs/demo.yaml [RUN_DIR] [--set eval.data_dir=/mnt/eval]

Inside a Ray job it joins the job's cluster; the run folder and eval.data_dir must be on storage every node can reach.
"""

import sys

from lead_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
