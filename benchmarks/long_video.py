"""Sliding windows over long 720p videos: wall time and peak memory for 1, 10 and 60 minutes.

    python benchmarks/long_video.py                      # smoke: the 1-minute video only
    python benchmarks/long_video.py --minutes 1 10 60    # the full run (20-25 min of CPU with --model full)
    python benchmarks/long_video.py --minutes 10 --videos-only   # just write (or find) the 10-minute video

Measures plumbing, so the weights are random: `--model full` is the ViT-B/16 8x224 architecture (real compute and
memory), `--model tiny` a 2-block 48-d model of the same architecture (isolates decoding and preprocessing). Labels
from random weights mean nothing and are never printed.

Videos: 1280x720 H.264, 30 fps, a keyframe every 2 s (`--gop`), written once into `--cache`. Encoding an hour of
720p here would take about an hour, so one minute is encoded (`timesformer_video.synthetic`, libx264 veryfast) and the
longer videos repeat its packets with shifted timestamps (a stream copy, seconds): the content loops every minute,
the decoding work is that of any 720p H.264 video with that GOP.

Each measurement runs in its own process, so its peak RSS (`ru_maxrss`) is that run's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from timesformer_video.synthetic import make_video

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'timesformer-long-video'
SIZE, FPS = (1280, 720), 30


# ---- inputs (made once, cached) ----------------------------------------------------------------------------------

def base_video(cache: Path, gop: int) -> Path:
    path = cache / f'720p_{FPS}fps_gop{gop}_1min.mp4'
    if not path.exists():
        print(f'encoding {path.name} (about a minute) ...', flush=True)
        tmp = path.with_suffix('.partial.mp4')
        make_video(tmp, seconds=60, size=SIZE, fps=FPS, codec='h264', gop=gop)
        tmp.replace(path)
    return path


def long_video(cache: Path, minutes: int, gop: int) -> Path:
    """`minutes` copies of the 1-minute video, packets copied with shifted timestamps (no re-encoding)."""
    base = base_video(cache, gop)
    if minutes == 1:
        return base
    path = cache / f'720p_{FPS}fps_gop{gop}_{minutes}min.mp4'
    if path.exists():
        return path
    import av

    print(f'writing {path.name} by stream copy ...', flush=True)
    tmp = path.with_suffix('.partial.mp4')
    with av.open(str(base)) as source:
        stream = source.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe, p.duration) for p in source.demux(stream) if p.size]
        pts = [p[1] for p in packets]
        period = max(pts) - min(pts) + (packets[0][4] or 1)  # one minute in the stream's time base
        with av.open(str(tmp), 'w') as out:
            target = out.add_stream_from_template(stream)
            for k in range(minutes):
                for data, p, d, key, duration in packets:
                    packet = av.Packet(data)  # a fresh packet each time: muxing consumes it
                    packet.pts, packet.dts, packet.duration = p + k * period, d + k * period, duration
                    packet.time_base, packet.is_keyframe, packet.stream = stream.time_base, key, target
                    out.mux(packet)
    tmp.replace(path)
    return path


def random_weights(cache: Path, model: str) -> tuple[str, Path]:
    """(model name, checkpoint of random weights); the tiny model is registered in the zoo under its name."""
    import dataclasses

    import torch

    from timesformer_video import zoo
    from timesformer_video.build import create_model

    base = zoo.get_cfg('timesformer_k400_8x224')
    cfg = base if model == 'full' else zoo.register_model(dataclasses.replace(
        base, name='timesformer_tiny_bench', image_size=64, embed_dim=48, depth=2, num_heads=4))
    path = cache / f'random_{cfg.name}.pth'
    if not path.exists():
        torch.manual_seed(0)
        net = create_model(cfg)
        tmp = path.with_suffix('.partial')
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)
    return cfg.name, path


# ---- one measurement (child process) -----------------------------------------------------------------------------

def measure(args) -> dict:
    start = time.perf_counter()
    from timesformer_video import ActionClassifier, VideoDecoder

    name, weights = random_weights(args.cache, args.model)
    op = ActionClassifier(model_name=name, weights=weights, device='cpu', window=args.window, stride=args.stride,
                          num_crops=args.num_crops, sampling=args.sampling)
    model_s = []
    forward = op.forward

    def timed_forward(clips):
        t = time.perf_counter()
        try:
            return forward(clips)
        finally:
            model_s.append(time.perf_counter() - t)

    op.forward = timed_forward
    decoder = VideoDecoder()
    ready = time.perf_counter()
    if args.pipeline:
        from towhee import pipe

        columns = ('start', 'end', 'labels', 'scores', 'features')
        # A lambda, not the operator: Towhee deep-copies an operator instance handed to a pipeline step (its model
        # too), while functions are shared.
        p = (pipe.input('path').map('path', 'frames', decoder)
             .flat_map('frames', columns, lambda frames: op(frames)).output(*columns))
        rows = p(str(args.child)).to_list()
        index_s = None
    else:
        frames = decoder(str(args.child))  # one demux pass: every frame's time, no decoding
        index_s = time.perf_counter() - ready
        rows = op(frames)
    done = time.perf_counter()
    return {
        'video': Path(args.child).name, 'model': args.model, 'pipeline': args.pipeline, 'windows': len(rows),
        'last_window_ms': list(rows[-1][:2]), 'setup_s': ready - start, 'index_s': index_s,
        'run_s': done - ready, 'model_s': sum(model_s), 'forward_calls': len(model_s),
        'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---- driver ------------------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=int, nargs='+', default=[1])
    parser.add_argument('--model', choices=('full', 'tiny'), default='full')
    parser.add_argument('--window', type=float, default=10.0)
    parser.add_argument('--stride', type=float, default=None)
    parser.add_argument('--num-crops', type=int, default=1)
    parser.add_argument('--sampling', default='uniform')
    parser.add_argument('--gop', type=int, default=2 * FPS)
    parser.add_argument('--pipeline', action='store_true', help="through Towhee's flat_map instead of op(frames)")
    parser.add_argument('--cache', type=Path, default=DEFAULT_CACHE)
    parser.add_argument('--json', type=Path, default=None, help='also write the results here')
    parser.add_argument('--videos-only', action='store_true', help='make the cached videos, print their paths, stop')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(measure(args)))
        return

    if args.videos_only:
        for minutes in args.minutes:
            print(long_video(args.cache, minutes, args.gop))
        return
    random_weights(args.cache, args.model)  # made once, outside the timed runs
    results = []
    for minutes in args.minutes:
        video = long_video(args.cache, minutes, args.gop)
        command = [sys.executable, __file__, '--child', str(video), '--model', args.model, '--window',
                   str(args.window), '--num-crops', str(args.num_crops), '--sampling', args.sampling,
                   '--cache', str(args.cache)] + (['--stride', str(args.stride)] if args.stride else []) + \
                  (['--pipeline'] if args.pipeline else [])
        load = os.getloadavg()[0]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode:
            sys.exit(f'{minutes} min run failed:\n{child.stderr[-4000:]}')
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result.update(minutes=minutes, load_before=load, cpus=os.cpu_count())
        results.append(result)
        print(json.dumps(result), flush=True)
    print(f'\nwindow {args.window:g} s, stride {args.stride or args.window:g} s, {args.model} model (random weights), '
          f'{args.num_crops} crop(s), {args.sampling} sampling, {"Towhee flat_map" if args.pipeline else "op(frames)"}')
    print('| video | windows | set-up | wall time | of which in the model | s per video minute | peak RSS |')
    print('|---|---|---|---|---|---|---|')
    for r in results:
        print(f'| {r["minutes"]} min 720p | {r["windows"]} | {r["setup_s"]:.1f} s | {r["run_s"]:.1f} s | '
              f'{r["model_s"]:.1f} s | {r["run_s"] / r["minutes"]:.1f} | {r["peak_rss_mb"]:.0f} MB |')
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
