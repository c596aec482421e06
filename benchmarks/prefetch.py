"""Does the batch job stay model-bound on inputs whose index needs a full decode pass? One run, three ways.

A folder of `--videos` stream-copy trims (an MP4 edit list: indexed by decoding, see video_decode/README.md), 720p
H.264, `--seconds` long, through the batch job's stages (ViT-B 8x224, random weights, CPU):
- model alone: the model stage on the videos' already decoded clips;
- serial: one video at a time in this process, decoding each only when the one before is done (`Indexer.rows`);
- pipeline: the local engine, which decodes the next videos in worker processes while the model runs.
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

from timesformer_video.jobs import indexer, local_engine, operators


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
    spec = operators.OperatorSpec(model_name='timesformer_k400_8x224', weights=str(weights), device='cpu')
    job = indexer.Indexer(spec)
    methods = {job.sampler.decoder(p).index_method for p in paths}
    job(paths[0])  # warm up

    parts = [job.sampler.decode(p) for p in paths]
    started = time.perf_counter()
    for part in parts:
        job.model.run(part.clips)
    model = time.perf_counter() - started
    started = time.perf_counter()
    for p in paths:
        job.rows(p)
    serial = time.perf_counter() - started
    started = time.perf_counter()
    engine = local_engine.LocalEngine(job.op, job.sampler, local_engine.default_decode_workers(), 1,
                                      spec.model_name)
    rows = [row for video in engine.run(paths) for row in video]
    prefetch = time.perf_counter() - started
    assert all(r['error'] is None for r in rows)
    print(f'{args.videos} videos of {args.seconds} s 720p, index method {sorted(methods)}')
    for name, seconds in (('model alone', model), ('serial', serial), ('pipeline', prefetch)):
        print(f'{name:12} {seconds:7.2f} s  {seconds / model:5.2f}x model alone')


if __name__ == '__main__':
    main()
