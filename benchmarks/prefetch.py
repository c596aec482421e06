"""Does the batch job stay model-bound on inputs whose index needs a full decode pass? One run, three ways.

A folder of `--videos` stream-copy trims (an MP4 edit list: indexed by decoding, see video_decode/README.md), 720p
H.264, `--seconds` long, through the batch job's `Indexer` (ViT-B 8x224, random weights, CPU):
- model alone: the operator on the videos' already opened lazy frames (the sampled frames' decoding included);
- serial: one video at a time, opening each only when the one before is done (`process_many([path])` per video);
- prefetch: `process_many(paths)`, which opens the next videos in a thread while the model runs.
Printed: wall time of each and its ratio to the model alone.

    python benchmarks/prefetch.py [--videos 6] [--seconds 10]
"""

import argparse
import atexit
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from timesformer_video.jobs import indexer, operators


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--videos', type=int, default=6)
    parser.add_argument('--seconds', type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix='prefetch-bench-'))  # videos and 0.5 GB of weights: removed at exit
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    run = ['ffmpeg', '-hide_banner', '-loglevel', 'error', '-y']
    paths = []
    for i in range(args.videos):
        source = folder / f'source{i}.mp4'
        subprocess.run([*run, '-f', 'lavfi', '-i', f'testsrc2=size=1280x720:rate=25:duration={args.seconds + 1}',
                        '-vf', f'hue=h={40 * i}', '-c:v', 'libx264', '-g', '50', '-bf', '2', '-pix_fmt', 'yuv420p',
                        str(source)], check=True)
        paths.append(str(folder / f'trim{i}.mp4'))
        subprocess.run([*run, '-ss', '1.3', '-i', str(source), '-c', 'copy', paths[-1]], check=True)
    weights = operators.save_random_weights(folder / 'random.pth')
    job = indexer.Indexer(operators.OperatorSpec(model_name='timesformer_k400_8x224', weights=str(weights),
                                                 device='cpu'))
    methods = {job.decoder(p)._index.method for p in paths}
    job(paths[0])  # warm up

    opened = [job.decoder(p) for p in paths]
    started = time.perf_counter()
    for frames in opened:
        job.op(frames)
    model = time.perf_counter() - started
    started = time.perf_counter()
    for p in paths:
        job.process_many([p])
    serial = time.perf_counter() - started
    started = time.perf_counter()
    rows = job.process_many(paths)
    prefetch = time.perf_counter() - started
    assert all(r['error'] is None for r in rows)
    print(f'{args.videos} videos of {args.seconds} s 720p, index method {sorted(methods)}')
    for name, seconds in (('model alone', model), ('serial', serial), ('prefetch', prefetch)):
        print(f'{name:12} {seconds:7.2f} s  {seconds / model:5.2f}x model alone')


if __name__ == '__main__':
    main()
