"""The approximate fast path `VideoDecoder(seek='keyframes')` against exact sampling, on a mixed corpus, in one run.

    python benchmarks/seek_keyframes.py                  # the corpus below, ViT-B (random weights) for the cosine
    python benchmarks/seek_keyframes.py --no-model --json out.json

For each video, the 8 frames the classifier samples (`uniform_indices(len, 8)`) are taken from one `LazyFrames`
(indexed once, not timed) with `seek='exact'` (each frame decoded as a sequential decode gives it: seek to the
keyframe before it, decode forward) and with `seek='keyframes'` (each replaced by the keyframe at or before it, only
that keyframe's packet decoded). Reported per video: the median over `--repeats` of the wall time and the process's
CPU time (all threads: the core-seconds a decode worker spends) of that read (`get_frames_at`, what `take` does),
their ratio, how many of the 8 frames the keyframes replace and how far before them they lie on average, and the
cosine between the classifier's 768-d features from the two samplings (ViT-B `timesformer_k400_8x224` with random
weights from `timesformer_video.jobs.operators.save_random_weights`: a measure of how much the input moved, not of
accuracy).

The corpus (10 s each, written once with the ffmpeg CLI into ~/.cache/timesformer-bench/seek_keyframes/, or
$TIMESFORMER_BENCH_CACHE): FFmpeg's `testsrc2` pattern turning at 0.2 rad/s (so every frame differs from its
keyframe), 1280x720 at 30 fps, as H.264 GOP 60 with B-frames, H.264 GOP 250, HEVC, VP9, MPEG-TS (H.264 GOP 60), and
a phone-like clip (H.264, GOP 30, no B-frames).
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from timesformer_video.decode import VideoDecoder
from timesformer_video.sampling import uniform_indices

CACHE = Path(os.environ.get('TIMESFORMER_BENCH_CACHE', '~/.cache/timesformer-bench')).expanduser() / 'seek_keyframes'
SOURCE = '-f lavfi -i testsrc2=size=1280x720:rate=30:duration={seconds} -vf rotate=0.2*t -pix_fmt yuv420p'
X264 = '-c:v libx264 -preset veryfast -sc_threshold 0'
CORPUS = {  # name -> encoder arguments
    'h264_gop60_bframes.mp4': f'{X264} -g 60 -bf 3',
    'h264_gop250.mp4': f'{X264} -g 250 -bf 3',
    'hevc_gop60.mp4': '-c:v libx265 -preset ultrafast -x265-params log-level=error:keyint=60 -tag:v hvc1',
    'vp9_gop120.webm': '-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 2M -g 120',
    'h264_gop60.ts': f'{X264} -g 60 -bf 2',
    'phone_gop30.mp4': f'{X264} -g 30 -bf 0',
}
NUM_FRAMES = 8
MODEL_NAME = 'timesformer_k400_8x224'


def corpus(seconds):
    """Write the corpus once; name -> path."""
    CACHE.mkdir(parents=True, exist_ok=True)
    ffmpeg = shutil.which('ffmpeg') or 'ffmpeg'
    paths = {}
    for name, encoder in CORPUS.items():
        path = CACHE / f'{seconds}s_{name}'
        if not path.exists():
            print(f'writing {path} (once) ...', flush=True)
            part = path.with_name('part_' + path.name)
            subprocess.run([ffmpeg, '-v', 'error', '-y', *SOURCE.format(seconds=seconds).split(), *encoder.split(),
                            str(part)], check=True)
            part.rename(path)
        paths[name] = path
    return paths


def timed_take(frames, indices, repeats):
    """Median wall and CPU seconds of `frames.take(indices)`, and the `Frame` records it gives."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        got = frames.get_frames_at(indices)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), got


def cosine(a, b):
    return float((a @ b) / (math.sqrt(float(a @ a)) * math.sqrt(float(b @ b))))


def measure(path, repeats, classifier):
    exact = VideoDecoder()(str(path))
    approximate = VideoDecoder(seek='keyframes')(str(path))
    indices = uniform_indices(len(exact), NUM_FRAMES)
    exact_wall, exact_cpu, wanted = timed_take(exact, indices, repeats)
    key_wall, key_cpu, keys = timed_take(approximate, indices, repeats)
    shifts = [float(w.time - k.time) for w, k in zip(wanted, keys)]
    row = {'frames': len(exact), 'index': exact.index_method,
           'exact_s': exact_wall, 'keyframes_s': key_wall, 'speedup': exact_wall / key_wall,
           'exact_cpu_s': exact_cpu, 'keyframes_cpu_s': key_cpu,
           'moved': sum(s > 0 for s in shifts), 'mean_shift_s': statistics.mean(shifts)}
    if classifier is not None:
        features = [classifier([f.data for f in got])[2] for got in (wanted, keys)]
        row['cosine'] = cosine(*features)
    return row


def load_classifier():
    import torch

    from timesformer_video import ActionClassifier
    from timesformer_video.jobs.operators import save_random_weights

    torch.set_num_threads(os.cpu_count() or 1)
    weights = save_random_weights(CACHE / f'{MODEL_NAME}_random.pt', MODEL_NAME)
    return ActionClassifier(model_name=MODEL_NAME, weights=str(weights), device='cpu')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=int, default=10, help='length of each corpus video')
    parser.add_argument('--repeats', type=int, default=3, help='timed takes per video and mode (median reported)')
    parser.add_argument('--no-model', action='store_true', help='skip the feature cosine (no ViT-B forward)')
    parser.add_argument('--json', help='also write the rows to this file')
    args = parser.parse_args()
    paths = corpus(args.seconds)
    classifier = None if args.no_model else load_classifier()
    rows = {}
    print(f'{"video":24} {"frames":>6} {"index":>8} {"exact s":>8} {"keyfr s":>8} {"speed-up":>8} '
          f'{"exact cpu":>9} {"keyfr cpu":>9} {"moved":>5} {"shift s":>7} {"cosine":>8}')
    for name, path in paths.items():
        row = rows[name] = measure(path, args.repeats, classifier)
        print(f'{name:24} {row["frames"]:6d} {row["index"]:>8} {row["exact_s"]:8.3f} {row["keyframes_s"]:8.3f} '
              f'{row["speedup"]:7.1f}x {row["exact_cpu_s"]:9.3f} {row["keyframes_cpu_s"]:9.3f} '
              f'{row["moved"]:3d}/{NUM_FRAMES} {row["mean_shift_s"]:7.3f} {row.get("cosine", float("nan")):8.4f}',
              flush=True)
    total = {mode: sum(r[f'{mode}_s'] for r in rows.values()) for mode in ('exact', 'keyframes')}
    print(f'all: exact {total["exact"]:.3f} s, keyframes {total["keyframes"]:.3f} s, '
          f'speed-up {total["exact"] / total["keyframes"]:.1f}x')
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
