"""Ray job entrypoint for the ingest stage.

    ray job submit --working-dir . -- python jobs/prepare.py --config configs/demo.yaml [--set k=v ...]

Takes the same arguments as `lead-ray prepare`; inside a Ray job it joins the job's cluster.
"""

import sys

from lead_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
