"""Index a video collection (TimeSformer labels + embeddings, resumable, local or Ray) and search it in Milvus.

    python scripts/videos.py index VIDEOS... --out results.parquet [--milvus ./videos.db] [--engine ray]
    python scripts/videos.py search VIDEO --milvus ./videos.db -k 5

The same command as `timesformer-videos` (installed with the package by `scripts/setup.sh`). See docs/batch_jobs.md.
"""

import sys

from timesformer_video.jobs.cli import main

if __name__ == '__main__':
    sys.exit(main())
