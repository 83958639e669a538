"""Ray job entrypoint for `lead-ray tune`.

    ray job submit --working-dir . -- python jobs/tune.py --config configs/demo.yaml [--set tune.search=optuna ...]

Needs the pipeline's clustered pool under work_dir (run jobs/pipeline.py first); work_dir must be on
storage every node can reach.
"""

import sys

from lead_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
