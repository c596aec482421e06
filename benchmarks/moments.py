"""Moments: indexing speed against plain per-video indexing, peak memory by video length, search latency.

    python benchmarks/moments.py                                  # tiny model, 1 min throughput, 10 min RSS, 10k
    python benchmarks/moments.py --model full --throughput-minutes 1 --rss-minutes 10 60 --moments 10000

Three measurements, each in its own process (so a peak RSS is that run's alone), side by side in one run:

1. Throughput: the `index` job (local engine, this machine's cores) over the same 720p video(s), once plain (one
   row per video) and once as moments (`--window`, `--stride`), alternating, `--repeats` times. Reported: seconds
   of wall time per minute of video and the ratio moments / plain.
2. Peak RSS of a moments `index` run over a long 720p video (10 and 60 minutes by default): memory should not grow
   with the video's length (the lazy decoder, windows batched through the model).
3. Search latency: `search_moments` (k=5) in a Milvus Lite moments collection of `--moments` windows of random
   768-d embeddings (ViT-B's), without and with a label filter; and over a tenth of them, for the ratio. The query's
   own embedding (one clip through the model) is not included: it is the model's cost, as in `index`.

Videos are those of benchmarks/long_video.py (1280x720 H.264 30 fps; a one-minute encode, longer ones repeat its
packets with shifted timestamps, cached in `--cache`). Weights are random (`--model full`: ViT-B/16 8x224;
`tiny`: the 2-block 48-d test model, which measures decoding and plumbing). The load average before each run is
printed with it: on a shared machine every figure measures the neighbours too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = {'name': 'timesformer_tiny_bench', 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48,
        'depth': 2, 'num_heads': 4}
FULL = 'timesformer_k400_8x224'


def spec_for(args, window: float | None):
    from timesformer_video.jobs import operators

    cfg = TINY if args.model == 'tiny' else None
    name = TINY['name'] if cfg else FULL
    weights = args.cache / f'random_{name}.pt'
    if not weights.exists():
        tmp = weights.with_suffix('.partial')
        operators.save_random_weights(tmp, name, cfg)
        tmp.replace(weights)
    options = {} if window is None else {'window': window, 'stride': args.stride or window}
    return operators.OperatorSpec(model_name=name, weights=str(weights), model_cfg=cfg, device='cpu',
                                  options=options)


# ---- children ----------------------------------------------------------------------------------------------------

def child_index(args) -> dict:
    from timesformer_video.jobs import runner

    spec = spec_for(args, args.window if args.mode == 'moments' else None)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = runner.run_index(runner.IndexJob(args.videos, Path(tmp) / 'out.parquet', spec, progress=False))
        wall = time.perf_counter() - start
    assert summary.failed == 0, 'a video failed'
    return {'mode': args.mode, 'wall_s': wall, 'videos': summary.processed, 'windows': summary.windows,
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_search(args) -> dict:
    import numpy as np

    from timesformer_video.jobs import milvus_store, moments
    dim = 768  # ViT-B's, whatever --model: the search does not run the model
    rng = np.random.default_rng(0)
    labels = [f'label{i}' for i in range(40)]
    settings = {'model_name': 'bench', 'options': {'window': 4.0, 'stride': 4.0}}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (args.moments // 10, args.moments):
            db = str(Path(tmp) / f'm{count}.db')
            rows = [{'path': f'/videos/v{i // 900:04d}.mp4', 'start_ms': (i % 900) * 4000,
                     'end_ms': (i % 900) * 4000 + 4000, 'labels': [labels[i % len(labels)]],
                     'scores': [float(rng.random())], 'feature': rng.standard_normal(dim).astype(np.float32),
                     'error': None} for i in range(count)]
            with milvus_store.MilvusStore(db, 'moments') as store:
                store.sync(rows, settings, dim, '/bench/out.parquet')
                queries = rng.standard_normal((args.queries, dim)).astype(np.float32)
                moments.search_moments(store, queries[0], 5, 'bench')  # load, warm up
                for name, kw in (('plain', {}), ('label', {'label': 'label3', 'min_score': 0.5})):
                    times = []
                    for q in queries:
                        start = time.perf_counter()
                        hits = moments.search_moments(store, q, 5, 'bench', **kw)
                        times.append(time.perf_counter() - start)
                    assert name != 'plain' or len(hits) == 5
                    times.sort()
                    out[f'{count}_{name}'] = {'median_ms': 1000 * statistics.median(times),
                                              'p95_ms': 1000 * times[int(0.95 * (len(times) - 1))]}
    return out


# ---- driver ------------------------------------------------------------------------------------------------------

def run_child(args, *extra) -> dict:
    command = [sys.executable, __file__, '--model', args.model, '--cache', str(args.cache), '--window',
               str(args.window), '--moments', str(args.moments), '--queries', str(args.queries), *extra]
    if args.stride:
        command += ['--stride', str(args.stride)]
    load = os.getloadavg()[0]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode:
        sys.exit(f'{extra} failed:\n{child.stderr[-4000:]}')
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result['load_before'] = load
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=('tiny', 'full'), default='tiny')
    parser.add_argument('--window', type=float, default=4.0)
    parser.add_argument('--stride', type=float, default=None)
    parser.add_argument('--throughput-minutes', type=int, default=1, help='length of the video indexed both ways')
    parser.add_argument('--repeats', type=int, default=1, help='plain/moments pairs for the throughput')
    parser.add_argument('--rss-minutes', type=int, nargs='*', default=[10])
    parser.add_argument('--moments', type=int, default=10_000, help='moments in the collection searched')
    parser.add_argument('--queries', type=int, default=50)
    parser.add_argument('--skip', nargs='*', default=[], choices=('throughput', 'rss', 'search'))
    parser.add_argument('--cache', type=Path, default=Path(tempfile.gettempdir()) / 'timesformer-moments-bench')
    parser.add_argument('--child', choices=('index', 'search'), default=None, help=argparse.SUPPRESS)
    parser.add_argument('--mode', choices=('plain', 'moments'), default='moments', help=argparse.SUPPRESS)
    parser.add_argument('--videos', nargs='*', default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.child == 'index':
        print(json.dumps(child_index(args)))
        return
    if args.child == 'search':
        print(json.dumps(child_search(args)))
        return

    import long_video

    gop = 2 * long_video.FPS
    spec_for(args, None)  # the weights, made once outside the timed runs
    print(f'{args.model} model (random weights), window {args.window:g} s, stride {args.stride or args.window:g} s, '
          f'{os.cpu_count()} CPUs', flush=True)
    if 'throughput' not in args.skip:
        video = str(long_video.long_video(args.cache, args.throughput_minutes, gop))
        runs = {'plain': [], 'moments': []}
        for _ in range(args.repeats):
            for mode in ('plain', 'moments'):
                result = run_child(args, '--child', 'index', '--mode', mode, '--videos', video)
                runs[mode].append(result)
                print(json.dumps(result), flush=True)
        plain = statistics.median(r['wall_s'] for r in runs['plain']) / args.throughput_minutes
        moment = statistics.median(r['wall_s'] for r in runs['moments']) / args.throughput_minutes
        windows = runs['moments'][0]['windows']
        print(f'| per minute of 720p video | plain (1 row a video) | moments ({windows} windows) | ratio |')
        print('|---|---|---|---|')
        print(f'| wall time | {plain:.1f} s | {moment:.1f} s | {moment / plain:.1f}x |')
        print(f'| moments indexed per minute of wall time | - | {60 * windows / args.throughput_minutes / moment:.1f} '
              f'| |')
    if 'rss' not in args.skip and args.rss_minutes:
        print('| moments index of | windows | wall time | peak RSS | load before |')
        print('|---|---|---|---|---|')
        for minutes in args.rss_minutes:
            video = str(long_video.long_video(args.cache, minutes, gop))
            r = run_child(args, '--child', 'index', '--mode', 'moments', '--videos', video)
            print(f'| {minutes} min 720p | {r["windows"]} | {r["wall_s"]:.0f} s | {r["peak_rss_mb"]:.0f} MB | '
                  f'{r["load_before"]:.1f} |', flush=True)
    if 'search' not in args.skip:
        r = run_child(args, '--child', 'search')
        small = args.moments // 10
        print(f'| search_moments k=5 | {small} moments | {args.moments} moments | ratio |')
        print('|---|---|---|---|')
        for name in ('plain', 'label'):
            a, b = r[f'{small}_{name}'], r[f'{args.moments}_{name}']
            what = 'no filter' if name == 'plain' else 'label + min score filter'
            print(f'| {what}: median (p95) | {a["median_ms"]:.1f} ({a["p95_ms"]:.1f}) ms | '
                  f'{b["median_ms"]:.1f} ({b["p95_ms"]:.1f}) ms | {b["median_ms"] / a["median_ms"]:.2f} |')
        print(f'(load before: {r["load_before"]:.1f})')


if __name__ == '__main__':
    main()
