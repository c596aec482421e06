"""What the seed pipeline costs beyond the model forward, and where it goes, on one 10 s 720p video, in one run.

    python benchmarks/seed_overhead.py                  # ViT-B 8x224 (random weights), CPU
    python benchmarks/seed_overhead.py --repeats 5

The video is `pipeline.py`'s first (10 s 1280x720 H.264 at 30 fps, GOP 60, 2 B-frames, made with the ffmpeg CLI).
In one process, timed round-robin (each of `--repeats` rounds runs every case once, so load from other processes
falls on all alike; the median is reported):

- forward: the model alone on the clip, already decoded and preprocessed (`op.forward`), the anchor;
- seed pipeline: the README's Towhee pipeline, `video_decode.ffmpeg()` -> `action_classification.timesformer`
  (the operators Towhee finds in its cache; `scripts/setup.sh` puts them there), one path in, labels out;
- classifier: the same without Towhee, `op(VideoDecoder()(path))`;
- the seed pipeline with the decoder on one thread (`ffmpeg(threads=1)`: each `take` decodes its GOPs one after
  another, as before `threads` existed) against the default (the GOPs spread over every core);
- its parts: the index (`VideoDecoder()(path)`: open, demux pass, first frames decoded to confirm it), `take` of
  the 8 sampled frames (default threads, and one thread), the transform (`op.preprocess` on those 8 arrays), and
  plain PyAV decoding the same 8 frames (one container; per frame `seek(pts, backward=True)`, decode forward to
  it) for scale.

Printed: each case's median seconds (and CPU seconds of the process), the pipeline's and the classifier's ratio to
the forward, and their overhead (their time minus the forward) against plain PyAV's decode. The model is loaded
before timing; Towhee's operator is built by the first pipeline call, which is a warm-up round.
"""

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # noqa: E402 - the videos and plain PyAV's sampled decode

MODEL = 'timesformer_k400_8x224'


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()

    from towhee import ops, pipe

    from timesformer_video import ActionClassifier, VideoDecoder
    from timesformer_video.jobs import operators
    from timesformer_video.sampling import uniform_indices

    video = str(pipeline.make_videos(pipeline.CACHE / 'pipeline_720p', 1)[0])
    weights = pipeline.CACHE / f'random_{MODEL}.pt'
    if not weights.exists():
        operators.save_random_weights(weights)
    op = ActionClassifier(MODEL, weights=str(weights), device='cpu')

    def seed(**decoder):
        return (pipe.input('path')
                .map('path', 'frames', ops.video_decode.ffmpeg(**decoder))
                .map('frames', ('labels', 'scores', 'features'),
                     ops.action_classification.timesformer(model_name=MODEL, weights=str(weights), device=-1))
                .output('labels', 'features'))

    seed_default, seed_one = seed(), seed(threads=1)
    frames, one = VideoDecoder()(video), VideoDecoder(threads=1)(video)
    picks = uniform_indices(len(frames), 8)
    arrays = frames.take(picks)
    clip = op.preprocess(arrays)[None]

    cases = {
        'forward': lambda: op.forward(clip),
        'seed pipeline': lambda: seed_default(video).get(),
        'seed, 1 thread': lambda: seed_one(video).get(),
        'classifier': lambda: op(VideoDecoder()(video)),
        'index': lambda: VideoDecoder()(video),
        'take 8': lambda: frames.take(picks),
        'take 8, 1 thread': lambda: one.take(picks),
        'transform': lambda: op.preprocess(arrays),
        'plain PyAV 8': lambda: pipeline.pyav_sampled(Path(video)),
    }
    wall = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    print(f'{video}: {len(frames)} frames; {os.cpu_count()} CPUs; load {pipeline.load()}', flush=True)
    for round_ in range(args.repeats + 1):  # round 0 warms up
        for name, case in cases.items():
            started, started_cpu = time.perf_counter(), cpu_s()
            case()
            if round_:
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(cpu_s() - started_cpu)
    median = {name: statistics.median(times) for name, times in wall.items()}
    for name in cases:
        print(f'{name:16} {median[name]:7.3f} s  (CPU {statistics.median(cpu[name]):6.3f} s)')
    forward, decode = median['forward'], median['plain PyAV 8']
    for name in ('seed pipeline', 'seed, 1 thread', 'classifier'):
        print(f'{name}: {median[name] / forward:.2f}x the forward; overhead {median[name] - forward:.3f} s against '
              f'{decode:.3f} s of plain PyAV decoding (load {pipeline.load()})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
