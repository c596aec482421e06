"""Live streams: `watch` latency with the tiny model and with ViT-B, the share of a core that decoding a 720p30 stream
takes, and the watch's memory after 1 and 10 minutes of stream.

    python benchmarks/streams.py                       # all four figures, about 6 minutes on 2 cores
    python benchmarks/streams.py --seconds 30 --skip-rss --skip-decode --models vitb --waiting 1 2

The stream: a 1280x720 30 fps H.264 video (ffmpeg's testsrc2, libx264 veryfast, a keyframe every 2 s, 20 s, made
once in --cache), sent as MPEG-TS over TCP on 127.0.0.1 by the ffmpeg CLI (`-re`: at real time, looped), as
`timesformer-videos watch tcp://127.0.0.1:PORT` reads it. Weights are random (`timesformer-videos random-weights`):
ViT-B/16 8x224 (the real compute) and the 2-block 48-d tiny model (decoding and plumbing).

1. Latency: `watch --window W --waiting N` for --seconds of real-time stream; its summary line (windows done and
   skipped, latency p50/p95 from a window's last frame arriving to its row).
2. Decoding: the watch's own source stage (`StreamSource`, PyAV/FFmpeg as `watch` decodes) over --seconds of the
   real-time 720p30 stream, no model: process CPU time (user + system, all threads) / wall time = the share of one
   core decoding takes.
3. RSS of the watch (tiny model, --window W) after 1 and after 10 minutes of stream, from /proc/PID/status as its
   rows come. The stream is sent as fast as the watch reads it (no `-re`): memory depends on the frames of the
   windows in flight and the rows in hand, not on the pace, so 10 minutes of stream take about a minute or two.
The load average is printed with each figure: on a shared machine every figure measures the neighbours too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEOS_PY = ROOT / 'scripts' / 'videos.py'
DEFAULT_CACHE = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'timesformer-streams'
TINY = {'name': 'timesformer_tiny_bench', 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48,
        'depth': 2, 'num_heads': 4}
SUMMARY = re.compile(r'watch: (\d+) windows done, (\d+) skipped, (\d+) gaps; latency p50 (\S+ ms|n/a), '
                     r'p95 (\S+ ms|n/a)')
FFMPEG = ['ffmpeg', '-nostdin', '-hide_banner', '-loglevel', 'error']


def load() -> str:
    return '/'.join(f'{x:.1f}' for x in os.getloadavg())


def video_720p30(cache: Path) -> Path:
    path = cache / '720p30_gop60_20s.mp4'
    if not path.exists():
        print(f'encoding {path.name} ...', flush=True)
        tmp = path.with_suffix('.partial.mp4')
        subprocess.run([*FFMPEG, '-y', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-t', '20',
                        '-c:v', 'libx264', '-preset', 'veryfast', '-bf', '0', '-g', '60', '-pix_fmt', 'yuv420p',
                        str(tmp)], check=True)
        tmp.replace(path)
    return path


def weights(cache: Path, model: str) -> list[str]:
    """The watch's model options for `model` ('tiny' or 'vitb'), random weights written once into `cache`."""
    path = cache / f'random_{model}.pth'
    options = []
    if model == 'tiny':
        cfg = cache / 'tiny.json'
        cfg.write_text(json.dumps(TINY))
        options = ['--model-cfg', str(cfg)]
    if not path.exists():
        subprocess.run([sys.executable, str(VIDEOS_PY), 'random-weights', str(path.with_suffix('.partial')),
                        *options], check=True, stdout=subprocess.DEVNULL)
        path.with_suffix('.partial').replace(path)
    return [*options, '--weights', str(path)]


class Sender:
    """ffmpeg sending `video` (looped `loops` times) as MPEG-TS to the first client of tcp://127.0.0.1:PORT."""

    def __init__(self, video: Path, loops: int, realtime: bool):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.url = f'tcp://127.0.0.1:{self.port}'
        self.process = subprocess.Popen([*FFMPEG, *(['-re'] if realtime else []), '-stream_loop', str(loops - 1),
                                         '-i', str(video), '-c', 'copy', '-f', 'mpegts', f'{self.url}?listen=1'],
                                        stderr=subprocess.DEVNULL)  # 'connection reset' when the watch ends
        time.sleep(0.5)  # listening

    def stop(self):
        self.process.kill()
        self.process.wait()


def watch(source: str, model_args: list[str], window: float, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(VIDEOS_PY), 'watch', source, '--window', str(window), '--json',
                             *map(str, args), *model_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})


def summary_of(stderr: str) -> dict:
    match = SUMMARY.search(stderr)
    if not match:
        raise RuntimeError(f'watch printed no summary:\n{stderr}')
    done, skipped, gaps, p50, p95 = match.groups()
    return {'done': int(done), 'skipped': int(skipped), 'gaps': int(gaps), 'p50': p50, 'p95': p95}


def latency(video: Path, cache: Path, model: str, window: float, seconds: float, waiting: int) -> dict:
    sender = Sender(video, loops=100, realtime=True)
    try:
        before = load()
        # --duration counts from the model's warm-up; the stream waits for the watch (ffmpeg listens).
        process = watch(sender.url, weights(cache, model), window, '--duration', seconds, '--waiting', waiting)
        _, stderr = process.communicate()
    finally:
        sender.stop()
    return {'model': model, 'window_s': window, 'waiting': waiting, 'stream_s': seconds, 'load': before,
            **summary_of(stderr)}


def decode_share(video: Path, seconds: float) -> dict:
    """Runs in a child (`--child-decode URL SECONDS`) so that its CPU time is decoding alone."""
    sender = Sender(video, loops=100, realtime=True)
    try:
        before = load()
        out = subprocess.run([sys.executable, __file__, '--child-decode', sender.url, str(seconds)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        sender.stop()
    return {**json.loads(out), 'load': before}


def child_decode(url: str, seconds: float) -> dict:
    from timesformer_video.jobs.stream_source import StreamFrame, StreamSource

    frames, began, cpu0 = 0, None, None
    for item in StreamSource(url):
        if not isinstance(item, StreamFrame):
            continue
        if began is None:  # from the first frame: opening and probing are not the steady state
            usage = resource.getrusage(resource.RUSAGE_SELF)
            began, cpu0 = time.monotonic(), usage.ru_utime + usage.ru_stime
            continue
        frames += 1
        if time.monotonic() - began >= seconds:
            break
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - began
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    return {'frames': frames, 'wall_s': round(wall, 2), 'cpu_s': round(cpu, 2), 'fps': round(frames / wall, 1),
            'core_share': round(cpu / wall, 3)}


def rss(video: Path, cache: Path, window: float, minutes: tuple[int, ...]) -> dict:
    loops = -(-max(minutes) * 60 // 20)  # 20 s video
    sender = Sender(video, loops=loops, realtime=False)
    before = load()
    began = time.monotonic()
    try:
        process = watch(sender.url, weights(cache, 'tiny'), window, '--timeout', 5, '--reconnect-timeout', 2)
        marks, found = {}, {}
        for line in process.stdout:
            row = json.loads(line)
            if row.get('gap'):
                continue
            with open(f'/proc/{process.pid}/status') as status:
                kib = next(int(x.split()[1]) for x in status if x.startswith('VmRSS:'))
            for m in minutes:
                if m not in found and row['end_ms'] >= m * 60_000:
                    found[m] = kib
            marks['last_end_ms'] = row['end_ms']
        stderr = process.stderr.read()
        process.wait()
    finally:
        sender.stop()
    return {'window_s': window, 'load': before, 'wall_s': round(time.monotonic() - began, 1),
            'stream_s': marks.get('last_end_ms', 0) / 1000, 'rss_mib': {f'{m} min': round(kib / 1024) for m, kib
                                                                         in found.items()},
            **summary_of(stderr)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cache', type=Path, default=DEFAULT_CACHE)
    parser.add_argument('--seconds', type=float, default=30, help='seconds of real-time stream per latency figure')
    parser.add_argument('--window', type=float, default=2, help='watch --window (s)')
    parser.add_argument('--waiting', type=int, nargs='+', default=[2],
                        help='watch --waiting values to measure latency with (windows that may wait for the model)')
    parser.add_argument('--models', nargs='+', default=['tiny', 'vitb'], choices=['tiny', 'vitb'])
    parser.add_argument('--skip-decode', action='store_true')
    parser.add_argument('--rss-minutes', type=int, nargs='+', default=[1, 10])
    parser.add_argument('--skip-rss', action='store_true')
    parser.add_argument('--child-decode', nargs=2, metavar=('URL', 'SECONDS'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_decode:
        print(json.dumps(child_decode(args.child_decode[0], float(args.child_decode[1]))))
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    video = video_720p30(args.cache)
    print(f'machine: {os.cpu_count()} cores; stream: {video.name} over tcp, --window {args.window:g}', flush=True)
    if not args.skip_decode:
        print('decoding 720p30:', json.dumps(decode_share(video, args.seconds / 2)), flush=True)
    for model in args.models:
        for waiting in args.waiting:
            figures = latency(video, args.cache, model, args.window, args.seconds, waiting)
            print('latency:', json.dumps(figures), flush=True)
    if not args.skip_rss:
        print('rss:', json.dumps(rss(video, args.cache, args.window, tuple(args.rss_minutes))), flush=True)


if __name__ == '__main__':
    main()
