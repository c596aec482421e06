"""The staged `index` pipeline against plain PyAV decoding, in one run: is the job decode-bound at the speed of
every core, and does its memory stay flat with the number of videos?

    python benchmarks/pipeline.py                      # 16 x 10 s 720p H.264 (GOP 60, B-frames), tiny model
    python benchmarks/pipeline.py --engines local      # without Ray
    python benchmarks/pipeline.py --engines local --decode-workers 1 2 3   # one local run per worker count
    python benchmarks/pipeline.py --engines local --seek keyframes         # the approximate fast path
    python benchmarks/pipeline.py --engines local --base   # also ViT-B 8x224 (random weights) on the CPU
    python benchmarks/pipeline.py --engines '' --base --batch-size 2    # ViT-B alone: the job against the forward
    python benchmarks/pipeline.py --rss                # also peak RSS of the local engine for 64 videos vs 16

Videos are made with the ffmpeg CLI (testsrc2, a different hue each, libx264 veryfast, `-g 60 -bf 2`) into
~/.cache/timesformer-bench/pipeline_720p (or $TIMESFORMER_BENCH_CACHE), once.

- plain PyAV: one video after another, one container per video; its 8 sampled frames (the model's uniform rule
  over the frame count from a demux pass) each by `seek(pts, backward=True)` and decoding forward to it;
- each engine: the `index` job with the tiny model (2 blocks of 48-d at 64 px, which costs what a fast GPU's
  forward does), steady-state seconds per video (from the first video's row to the last's) and its ratio to
  plain PyAV, timed again after each run (the ratio is to the mean of the plain runs before and after it); Ray's
  start-up (until the first row) is printed apart. Rows of every run are compared with the first run's (labels,
  features);
- `--base`: ViT-B 8x224 on the CPU, model-bound: the job's steady seconds per clip (one clip per video) against
  the model's forward alone on batches of `--batch-size` random clips in this process, before and after the job.
Run it on a quiet machine: the load average is printed with the figures, since a shared one measures neighbours.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
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


class TreeCPU:
    """CPU seconds (user + system) of this process and, apart, of its descendants (the decode workers), sampled
    every 50 ms in a thread while it runs (`with`); `at(t)`: both at `time.perf_counter()` time t."""

    def __init__(self):
        import psutil

        self.me, self.error = psutil.Process(), psutil.Error
        self.seen: dict[int, float] = {}  # a descendant's last CPU seconds, kept after it exits
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for child in self.me.children(recursive=True):
            try:
                times = child.cpu_times()
                self.seen[child.pid] = times.user + times.system
            except self.error:
                pass
        own = self.me.cpu_times()
        self.samples.append((time.perf_counter(), own.user + own.system, sum(self.seen.values())))

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self._sample()

    def __enter__(self):
        self._sample()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def at(self, t: float) -> tuple[float, float]:
        _, own, children = max((s for s in self.samples if s[0] <= t), default=self.samples[0])
        return own, children


def run_engine(paths, spec, engine: str, out: Path, **options):
    from timesformer_video.jobs import runner
    from timesformer_video.jobs.results import read_output

    with TreeCPU() as cpu:
        started = time.perf_counter()
        summary = runner.run_index(runner.IndexJob([str(p) for p in paths], str(out), spec, engine=engine,
                                                   overwrite=True, progress=False, **options))
        wall = time.perf_counter() - started
    arrivals = summary.arrivals
    steady = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    first, last = cpu.at(started + arrivals[0]), cpu.at(started + arrivals[-1])
    return {'wall_s': wall, 'first_row_s': arrivals[0], 'steady_s_per_video': steady,
            'model_cpu_s': (last[0] - first[0]) / (len(arrivals) - 1),
            'decode_cpu_s': (last[1] - first[1]) / (len(arrivals) - 1),
            'decode_cpu_run_s': (cpu.samples[-1][2] - cpu.samples[0][2]) / len(arrivals),  # the whole run's
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


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plain_per_video(paths) -> tuple[float, float]:
    """Plain PyAV's seconds and CPU seconds per video, one video after another."""
    started, started_cpu = time.perf_counter(), cpu_s()
    for path in paths:
        pyav_sampled(path)
    return (time.perf_counter() - started) / len(paths), (cpu_s() - started_cpu) / len(paths)


def forward_per_clip(spec, batch_size: int, repeats: int = 3) -> tuple[float, float]:
    """The anchor of a model-bound job: seconds and CPU seconds per clip of the model's forward alone (`classify` on
    a batch of `batch_size` random clips, already preprocessed), medians of `repeats` after a warm-up, here."""
    import statistics

    import torch

    from timesformer_video.jobs import operators

    op = operators.build_classifier(spec)
    cfg = op.cfg
    views = torch.randn(batch_size, 1, 3, cfg.num_frames, cfg.image_size, cfg.image_size)
    op.classify(views)
    times, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), cpu_s()
        op.classify(views)
        times.append(time.perf_counter() - started)
        cpu.append(cpu_s() - started_cpu)
    return statistics.median(times) / batch_size, statistics.median(cpu) / batch_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--videos', type=int, default=16)
    parser.add_argument('--engines', default='local,ray')
    parser.add_argument('--decode-workers', type=int, nargs='+', default=[None],
                        help='local engine: one run per count (default: the engine\'s default)')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--workers', type=int, default=2, help='Ray model replicas')
    parser.add_argument('--base', action='store_true', help='also ViT-B 8x224 on the CPU (model-bound)')
    parser.add_argument('--base-videos', type=int, default=8, help='videos for the ViT-B run (each one clip)')
    parser.add_argument('--rss', action='store_true', help='also peak RSS for 4x the videos against 1x')
    parser.add_argument('--device', default='cpu', help='the ViT-B run\'s device (--base): cpu, cuda, cuda:1')
    parser.add_argument('--seek', default='exact', choices=['exact', 'keyframes'], help='the job\'s --seek')
    args = parser.parse_args()

    from timesformer_video.jobs import operators
    from timesformer_video.jobs.local_engine import default_decode_workers

    paths = make_videos(CACHE / 'pipeline_720p', args.videos)
    weights = CACHE / 'random_timesformer_tiny_bench.pt'
    if not weights.exists():
        operators.save_random_weights(weights, TINY['name'], TINY)
    spec = operators.OperatorSpec(model_name=TINY['name'], weights=str(weights), model_cfg=TINY, device='cpu')
    print(f'{len(paths)} videos of 10 s 720p H.264 (GOP 60, B-frames); {os.cpu_count()} CPUs; load {load()}; '
          f'default decode workers {default_decode_workers()}', flush=True)

    # Plain PyAV is timed before and after each engine run; the engine's ratio is to the mean of the two around it,
    # so a load that moves during the run moves the anchor too.
    plain, plain_cpu = plain_per_video(paths)
    print(f'plain PyAV, one video after another: {plain:.3f} s per video, CPU {plain_cpu:.3f} s (load {load()})',
          flush=True)
    runs = [(engine, workers) for engine in filter(None, args.engines.split(','))  # --engines '': --base only
            for workers in (args.decode_workers if engine == 'local' else [None])]
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for k, (engine, workers) in enumerate(runs):
            options = {'batch_size': args.batch_size, 'decode_workers': workers, 'seek': args.seek}
            if engine == 'ray':
                options['workers'] = args.workers
            got = run_engine(paths, spec, engine, Path(tmp) / f'{engine}{k}.parquet', **options)
            after, after_cpu = plain_per_video(paths)
            anchor, plain, anchor_cpu, plain_cpu = (plain + after) / 2, after, (plain_cpu + after_cpu) / 2, after_cpu
            reference = reference or got['rows']
            label = f'{engine}, {workers or default_decode_workers()} decode workers' if engine == 'local' else \
                f'ray, {args.workers} replicas'
            print(f'{label}, tiny: steady {got["steady_s_per_video"]:.3f} s per video = '
                  f'{got["steady_s_per_video"] / anchor:.2f}x plain PyAV ({anchor:.3f} s, mean of before and '
                  f'after); first row after {got["first_row_s"]:.1f} s; wall {got["wall_s"]:.1f} s; rows vs the '
                  f'first run: {compare(reference, got["rows"])} (load {load()})', flush=True)
            if engine == 'local':
                cores, workers_used = len(os.sched_getaffinity(0)), workers or default_decode_workers()
                cpu_total = got['model_cpu_s'] + got['decode_cpu_s']
                bound = max(cpu_total / cores, got['decode_cpu_s'] / workers_used)
                print(f'    CPU per video in the steady state: model process {got["model_cpu_s"]:.3f} s, decode '
                      f'workers {got["decode_cpu_s"]:.3f} s, together {cpu_total:.3f} s against plain PyAV\'s '
                      f'{anchor_cpu:.3f} s; on {cores} idle cores at best {bound:.3f} s per video = '
                      f'{bound / anchor_cpu:.2f}x plain PyAV (taking its CPU seconds as its time)', flush=True)
        if args.base:
            base_weights = CACHE / 'random_timesformer_k400_8x224.pt'
            if not base_weights.exists():
                operators.save_random_weights(base_weights)
            base = operators.OperatorSpec(weights=str(base_weights), device=args.device)
            before = forward_per_clip(base, args.batch_size)
            got = run_engine(paths[:args.base_videos], base, 'local', Path(tmp) / 'base.parquet',
                             batch_size=args.batch_size, decode_workers=args.decode_workers[0])
            after = forward_per_clip(base, args.batch_size)
            forward, forward_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            cpu_total = got['model_cpu_s'] + got['decode_cpu_run_s']  # the videos may all be decoded before row 1
            print(f'local ViT-B 8x224 on {args.device}: steady {got["steady_s_per_video"]:.3f} s per clip against the '
                  f'model forward alone {forward:.3f} s per clip (batch {args.batch_size}, mean of before and after) '
                  f'= {got["steady_s_per_video"] / forward:.3f}x; wall {got["wall_s"]:.1f} s (load {load()})\n'
                  f'    CPU per clip: model process {got["model_cpu_s"]:.3f} s = '
                  f'{got["model_cpu_s"] / forward_cpu:.3f}x the forward\'s {forward_cpu:.3f} s; with the decode '
                  f'workers\' {got["decode_cpu_run_s"]:.3f} s {cpu_total:.3f} s = {cpu_total / forward_cpu:.3f}x',
                  flush=True)
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
