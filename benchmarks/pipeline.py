"""The staged `index` pipeline against plain PyAV decoding, in one run: is the job decode-bound at the speed of
every core, and does its memory stay flat with the number of videos?

    python benchmarks/pipeline.py                      # 16 x 10 s 720p H.264 (GOP 60, B-frames), tiny model
    python benchmarks/pipeline.py --engines local      # without Ray
    python benchmarks/pipeline.py --base               # also ViT-B 8x224 (random weights) on the CPU
    python benchmarks/pipeline.py --rss                # also peak RSS of the local engine for 64 videos vs 16

Videos are made with the ffmpeg CLI (testsrc2, a different hue each, libx264 veryfast, `-g 60 -bf 2`) into
~/.cache/timesformer-bench/pipeline_720p (or $TIMESFORMER_BENCH_CACHE), once.

- plain PyAV: one video after another, one container per video; its 8 sampled frames (the model's uniform rule
  over the frame count from a demux pass) each by `seek(pts, backward=True)` and decoding forward to it;
- each engine: the `index` job with the tiny model (2 blocks of 48-d at 64 px, which costs what a fast GPU's
  forward does), steady-state seconds per video (from the first video's row to the last's) and its ratio to
  plain PyAV; Ray's start-up (until the first row) is printed apart. Rows of every engine are compared with
  the local engine's (labels, features).
Run it on a quiet machine: the load average is printed with the figures, since a shared one measures neighbours.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

CACHE = Path(os.environ.get('TIMESFORMER_BENCH_CACHE', '~/.cache/timesformer-bench')).expanduser()
TINY = {'name': 'timesformer_tiny_bench', 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48,
        'depth': 2, 'num_heads': 4}


def make_videos(directory: Path, count: int, seconds: int = 10) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f'video{i:03d}.mp4'
        if not path.exists():
            tmp = path.with_suffix('.tmp.mp4')
            subprocess.run(['ffmpeg', '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i',
                            f'testsrc2=size=1280x720:rate=30:duration={seconds}', '-vf', f'hue=h={i * 23 % 360}',
                            '-c:v', 'libx264', '-preset', 'veryfast', '-g', '60', '-bf', '2', '-pix_fmt', 'yuv420p',
                            str(tmp)], check=True)
            tmp.rename(path)
        paths.append(path)
    return paths


def pyav_sampled(path: Path, num_frames: int = 8) -> list[np.ndarray]:
    """The 8 uniformly sampled frames, decoded the plain way: seek backward to each one's pts, decode forward."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        picks = [pts[int(i)] for i in np.floor(np.linspace(0, len(pts) - 1, num_frames))]
        frames = []
        for target in picks:
            container.seek(target, backward=True, stream=stream)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    frames.append(frame.to_ndarray(format='rgb24'))
                    break
        return frames


def load() -> str:
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())


def run_engine(paths, spec, engine: str, out: Path, **options):
    from timesformer_video.jobs import runner
    from timesformer_video.jobs.results import read_output

    started = time.perf_counter()
    summary = runner.run_index(runner.IndexJob([str(p) for p in paths], str(out), spec, engine=engine,
                                               overwrite=True, progress=False, **options))
    wall = time.perf_counter() - started
    arrivals = summary.arrivals
    steady = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    return {'wall_s': wall, 'first_row_s': arrivals[0], 'steady_s_per_video': steady,
            'rows': {r['path']: r for r in read_output(out)}}


def peak_rss(paths, spec_args: list[str]) -> float:
    """Peak RSS (MiB) of a job's process tree (the job and its decode workers), sampled every 50 ms."""
    import psutil

    code = ('import sys, json; from timesformer_video.jobs import runner, operators\n'
            'if __name__ == "__main__":\n'
            '    a = json.loads(sys.argv[1])\n'
            '    spec = operators.OperatorSpec(**a["spec"])\n'
            '    runner.run_index(runner.IndexJob(a["paths"], a["out"], spec, overwrite=True, progress=False))\n')
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / 'job.py'
        script.write_text(code)
        arg = json.dumps({'paths': [str(p) for p in paths], 'out': str(Path(tmp) / 'out.parquet'),
                          'spec': spec_args})
        process = subprocess.Popen([sys.executable, str(script), arg])
        parent, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)
        if process.returncode:
            raise RuntimeError(f'the job failed ({process.returncode})')
    return peak / 2**20


def compare(reference: dict, rows: dict) -> str:
    same = reference.keys() == rows.keys() and all(
        reference[p]['labels'] == rows[p]['labels'] and reference[p]['error'] == rows[p]['error'] for p in reference)
    diff = max((float(np.abs(reference[p]['feature'] - rows[p]['feature']).max())
                for p in reference if reference[p]['feature'] is not None), default=0.0)
    return f'labels/errors {"equal" if same else "DIFFER"}, max |feature difference| {diff:.2g}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--videos', type=int, default=16)
    parser.add_argument('--engines', default='local,ray')
    parser.add_argument('--decode-workers', type=int, default=None)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--workers', type=int, default=2, help='Ray model replicas')
    parser.add_argument('--base', action='store_true', help='also ViT-B 8x224 on the CPU (model-bound)')
    parser.add_argument('--rss', action='store_true', help='also peak RSS for 4x the videos against 1x')
    args = parser.parse_args()

    from timesformer_video.jobs import operators

    paths = make_videos(CACHE / 'pipeline_720p', args.videos)
    weights = CACHE / 'random_timesformer_tiny_bench.pt'
    if not weights.exists():
        operators.save_random_weights(weights, TINY['name'], TINY)
    spec = operators.OperatorSpec(model_name=TINY['name'], weights=str(weights), model_cfg=TINY, device='cpu')
    print(f'{len(paths)} videos of 10 s 720p H.264 (GOP 60, B-frames); {os.cpu_count()} CPUs; load {load()}',
          flush=True)

    started = time.perf_counter()
    for path in paths:
        pyav_sampled(path)
    plain = (time.perf_counter() - started) / len(paths)
    print(f'plain PyAV, one video after another: {plain:.3f} s per video (load {load()})', flush=True)

    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(','):
            options = {'batch_size': args.batch_size, 'decode_workers': args.decode_workers}
            if engine == 'ray':
                options['workers'] = args.workers
            got = run_engine(paths, spec, engine, Path(tmp) / f'{engine}.parquet', **options)
            reference = reference or got['rows']
            print(f'{engine:5} tiny: steady {got["steady_s_per_video"]:.3f} s per video = '
                  f'{got["steady_s_per_video"] / plain:.2f}x plain PyAV; first row after {got["first_row_s"]:.1f} s; '
                  f'wall {got["wall_s"]:.1f} s; rows vs local: {compare(reference, got["rows"])} (load {load()})',
                  flush=True)
        if args.base:
            base_weights = CACHE / 'random_timesformer_k400_8x224.pt'
            if not base_weights.exists():
                operators.save_random_weights(base_weights)
            base = operators.OperatorSpec(weights=str(base_weights), device='cpu')
            got = run_engine(paths, base, 'local', Path(tmp) / 'base.parquet', batch_size=args.batch_size,
                             decode_workers=args.decode_workers)
            print(f'local ViT-B 8x224 on the CPU: steady {got["steady_s_per_video"]:.3f} s per video, wall '
                  f'{got["wall_s"]:.1f} s (load {load()})', flush=True)
    if args.rss:
        copies = Path(tempfile.mkdtemp(prefix='pipeline-rss-'))
        many = []
        for k in range(4):  # the same files under 4 names each: 4x the videos, same content
            for path in paths:
                many.append(copies / f'{k}_{path.name}')
                many[-1].symlink_to(path)
        spec_args = {'model_name': TINY['name'], 'weights': str(weights), 'model_cfg': TINY, 'device': 'cpu'}
        one, four = peak_rss(paths, spec_args), peak_rss(many, spec_args)
        print(f'peak RSS of the job and its workers: {len(paths)} videos {one:.0f} MiB, {len(many)} videos '
              f'{four:.0f} MiB: {four / one:.2f}x (load {load()})', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
