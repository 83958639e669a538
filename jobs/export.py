"""Ray job entrypoint for `lead-ray export`.

    ray job submit --working-dir . -- python jobs/export.py RUN_DIR --out DIR [--min-use N]

Copies a finished run's selected subset to DIR: the original input records and Parquet with scores.
"""

import sys

from lead_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
