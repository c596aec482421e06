"""Index a video collection (TimeSformer labels + embeddings, resumable, local or Ray) and search it in Milvus.

    python scripts/videos.py index VIDEOS... --out results.parquet [--milvus ./videos.db] [--engine ray]
    python scripts/videos.py search VIDEO --milvus ./videos.db -k 5

Runs from any working directory: the `jobs` package, the operator and the decoder are loaded from this checkout
by path (not from Towhee's hub, and without putting the checkout's loose modules on sys.path).
See docs/batch_jobs.md.
"""

import importlib.util
import sys
from pathlib import Path

JOBS = Path(__file__).resolve().parents[1] / 'jobs'


def _load_jobs():
    sys.path.insert(0, str(JOBS.parent / 'scripts'))
    from checkout import load_package

    load_package('jobs', JOBS)
    return importlib.import_module('jobs.cli')


if __name__ == '__main__':
    sys.exit(_load_jobs().main())
