"""Videos per second of the `index` job on a generated collection: the local engine vs Ray Data with N workers.

    python benchmarks/index_throughput.py                          # 40 clips, ViT-B 8x224, local vs Ray 2 workers
    python benchmarks/index_throughput.py --videos 6 --model tiny  # a quick smoke run
    python benchmarks/index_throughput.py --ray-address auto --workers 8 --videos 400 --dir /shared/bench
                                                                   # on a real cluster (see docs/batch_jobs.md)

Clips are H.264 from timesformer_video.synthetic (`--seconds`, `--size`, `--fps`), generated once into `--dir` (default
~/.cache/timesformer-bench/collection_*, or $TIMESFORMER_BENCH_CACHE). The model is ViT-B/16 8x224 with random
weights (same cost as the released checkpoint; cached beside the clips), or `--weights` for real ones; `--model tiny`
is the 2-block 48-d test model. Each engine writes a fresh output in a temporary directory.

Reported per engine: wall time of the whole job (model load, Ray start and replica start-up included) and
videos/s over it; the start-up (until the first result) and the steady videos/s once every replica is busy (results
after the first one per replica); and whether the Ray rows equal the local rows. Use a quiet machine: on a shared
one the figures measure the neighbours.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from timesformer_video.jobs import operators, runner
from timesformer_video.jobs.results import read_output
from timesformer_video.synthetic import make_video

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get('TIMESFORMER_BENCH_CACHE', '~/.cache/timesformer-bench')).expanduser()
TINY = {'name': 'timesformer_tiny_bench', 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48,
        'depth': 2, 'num_heads': 4}


def make_collection(directory: Path, count: int, seconds: float, size: tuple[int, int], fps: int) -> Path:
    for i in range(count):
        path = directory / f'clip{i:04d}.mp4'
        if not path.exists():
            make_video(path.with_suffix('.tmp.mp4'), seconds=seconds, size=size, fps=fps, seed=i)
            path.with_suffix('.tmp.mp4').rename(path)  # a cut-off generation is never taken for a clip
    return directory


def random_weights(record: dict | None, model_name: str) -> Path:
    """Cached random weights of the model's exact shape (the speed of a checkpoint does not depend on its values)."""
    path = CACHE / f'random_{model_name}.pt'
    return path if path.exists() else operators.save_random_weights(path, model_name, record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--videos', type=int, default=40)
    parser.add_argument('--seconds', type=float, default=4.0)
    parser.add_argument('--size', default='320x240', help='WIDTHxHEIGHT')
    parser.add_argument('--fps', type=int, default=25)
    parser.add_argument('--dir', type=Path, default=None, help='where the clips are (generated if missing)')
    parser.add_argument('--model', choices=('base', 'tiny'), default='base')
    parser.add_argument('--weights', default=None, help='real weights for the base model instead of random ones')
    parser.add_argument('--engines', default='local,ray')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--cpus-per-worker', type=float, default=1)
    parser.add_argument('--decode-workers', type=int, default=None, help='default: the job\'s rule')
    parser.add_argument('--batch-size', type=int, default=1, help='clips per model forward')
    parser.add_argument('--ray-address', default=None)
    parser.add_argument('--json', type=Path, default=None, help='also write the results here')
    args = parser.parse_args()

    width, height = (int(v) for v in args.size.lower().split('x'))
    directory = args.dir or CACHE / f'collection_{width}x{height}_{args.fps}fps_{args.seconds:g}s'
    make_collection(directory, args.videos, args.seconds, (width, height), args.fps)
    clips = sorted(directory.glob('clip*.mp4'))[:args.videos]
    record = TINY if args.model == 'tiny' else None
    name = TINY['name'] if record else 'timesformer_k400_8x224'
    weights = args.weights or random_weights(record, name)
    spec = operators.OperatorSpec(model_name=name, weights=str(Path(weights).resolve()), model_cfg=record)

    import torch

    print(f'{len(clips)} clips of {args.seconds:g} s {width}x{height} {args.fps} fps in {directory}; model {name}; '
          f'{os.cpu_count()} CPUs here, torch threads {torch.get_num_threads()}', flush=True)
    results, rows = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(','):
            out = Path(tmp) / f'{engine}.parquet'
            summary = runner.run_index(runner.IndexJob([str(c) for c in clips], str(out), spec, engine=engine,
                                                       workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                                                       decode_workers=args.decode_workers,
                                                       batch_size=args.batch_size,
                                                       ray_address=args.ray_address, overwrite=True, progress=False))
            rows[engine] = {r['path']: r for r in read_output(out)}
            replicas = args.workers if engine == 'ray' else 1
            steady = summary.steady_videos_per_s(replicas)
            results.append({'engine': engine, 'workers': replicas,
                            'videos': summary.processed, 'failed': summary.failed,
                            'wall_s': round(summary.wall_s, 2), 'videos_per_s': round(summary.videos_per_s, 3),
                            'startup_s': round(summary.first_result_s or 0, 2),
                            'steady_videos_per_s': round(steady, 3) if steady else None})
            print(json.dumps(results[-1]), flush=True)
    if {'local', 'ray'} <= rows.keys():
        local, ray = rows['local'], rows['ray']
        same = local.keys() == ray.keys() and all(
            local[p]['labels'] == ray[p]['labels'] and local[p]['error'] == ray[p]['error'] for p in local)
        diff = max((float(np.abs(local[p]['feature'] - ray[p]['feature']).max())
                    for p in local if local[p]['feature'] is not None), default=0.0)
        print(f'ray rows equal local rows: labels/errors {"yes" if same else "NO"}, '
              f'max |feature difference| {diff:.3g}')
    print(f'\n{"engine":<7} {"workers":>7} {"videos":>6} {"wall s":>8} {"videos/s":>9} {"start-up s":>10} '
          f'{"steady videos/s":>15}')
    for r in results:
        steady = f'{r["steady_videos_per_s"]:.3f}' if r['steady_videos_per_s'] else '-'
        print(f'{r["engine"]:<7} {r["workers"]:>7} {r["videos"]:>6} {r["wall_s"]:>8.1f} {r["videos_per_s"]:>9.3f} '
              f'{r["startup_s"]:>10.1f} {steady:>15}')
    if args.json:
        args.json.write_text(json.dumps({'clips': len(clips), 'model': name, 'results': results}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
