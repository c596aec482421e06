"""Decode time of inputs the lazy index cannot take from packets, against a plain sequential decode, in one run.

For each kind (made with the ffmpeg CLI, 640x360 or DV's 720x576, 25 fps, `--seconds` long), three ways, round robin,
best of `--repeat`:
- sequential: the anchor, a plain PyAV decode of every frame to RGB (what any reader does);
- ours, 8 frames: `timesformer_video.decode.VideoDecoder()(path)` then `take` of 8 uniformly spread frames (what the
  operator does);
- ours, all frames: the same index, then `take(range(n))` (every frame to RGB).
Printed: frames/s of each and the ratio to the anchor's time, the index method and how many seekable keyframes it has.

    python benchmarks/decode_fallback.py [--seconds 10] [--repeat 3]
"""

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from timesformer_video.decode import VideoDecoder, VideoIndex

SRC = '-f lavfi -i testsrc2=size=640x360:rate=25:duration={s}'
KINDS = {  # name -> ffmpeg commands (SOURCE.mp4 is a 640x360 H.264 source with B-frames, GOP 50, and audio)
    'well-formed mp4 (anchor kind)': ['-i SOURCE.mp4 -c copy out.mp4'],
    'stream-copy trim, MP4 edit list': ['-ss 1.3 -i SOURCE.mp4 -c copy out.mp4'],
    'H.264 B-frames in AVI': [f'{SRC} -c:v libx264 -bf 3 -pix_fmt yuv420p out.avi'],
    'MPEG-TS starting mid-GOP': ['-i SOURCE.mp4 -c:v copy -an -f mpegts full.ts', 'CUT full.ts out.ts'],
    'untimed packets (MKV)': ['-i SOURCE.mp4 -c copy -output_ts_offset -1 -avoid_negative_ts disabled out.mkv'],
    'palettized AVI': [f'{SRC} -vf format=pal8 -c:v rawvideo -pix_fmt pal8 out.avi'],
    'DV (raw .dv)': [f'{SRC} -vf scale=720:576 -c:v dvvideo -pix_fmt yuv420p -r 25 out.dv'],
    'MPEG-2 program stream': [f'{SRC} -c:v mpeg2video -bf 2 -g 12 out.mpg'],
}


def ffmpeg(folder, command):
    if command.startswith('CUT'):
        _, name, target = command.split()
        data = (folder / name).read_bytes()
        (folder / target).write_bytes(data[int(len(data) * 0.3) // 188 * 188:])
        return
    subprocess.run(['ffmpeg', '-hide_banner', '-loglevel', 'error', '-y', *command.split()], cwd=folder, check=True)


def sequential(path):
    with av.open(path) as container:
        return sum(1 for f in container.decode(container.streams.best('video')) if f.to_ndarray(format='rgb24').size)


def ours_8(path):
    frames = VideoDecoder()(path)
    frames.take(np.linspace(0, len(frames) - 1, 8).astype(int).tolist())
    return 8


def ours_all(path):
    frames = VideoDecoder()(path)
    return len(frames.take(range(len(frames))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=int, default=10)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix='decode-fallback-'))
    try:
        ffmpeg(folder, f'{SRC.format(s=args.seconds)} -f lavfi -i sine=duration={args.seconds} -c:v libx264 -g 50 '
                       '-bf 2 -pix_fmt yuv420p -c:a aac -shortest SOURCE.mp4')
        print(f'{"kind":34} {"frames":>6} {"index":>8} {"keys":>5} {"seq fps":>8} {"8 frames":>9} {"/seq":>6} '
              f'{"all fps":>8} {"/seq":>6}')
        for name, commands in KINDS.items():
            for command in commands:
                ffmpeg(folder, command.replace('{s}', str(args.seconds)))
            path = str(next(folder.glob('out.*')))
            index = VideoIndex.read(path)
            best = {}
            for _ in range(args.repeat):  # round robin: the three ways see the same machine load
                for way, fn, fn_args in (('seq', sequential, (path,)), ('8', ours_8, (path,)),
                                         ('all', ours_all, (path,))):
                    started = time.perf_counter()
                    fn(*fn_args)
                    best[way] = min(best.get(way, float('inf')), time.perf_counter() - started)
            n = len(index)
            print(f'{name:34} {n:6d} {index.method:>8} {len(index.keyframes):5d} {n / best["seq"]:8.0f} '
                  f'{best["8"]:8.3f}s {best["8"] / best["seq"]:6.2f} {n / best["all"]:8.0f} '
                  f'{best["all"] / best["seq"]:6.2f}')
            for leftover in folder.glob('out.*'):
                leftover.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    main()
