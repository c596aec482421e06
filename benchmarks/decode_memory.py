"""Time and peak memory of getting an 8-frame 224 clip out of a 720p video: our lazy decoder vs the original path.

    python benchmarks/decode_memory.py                 # 10 s and 60 s videos, with the model if it loads
    python benchmarks/decode_memory.py --no-model --json out.json

- ours: `timesformer_video.decode.VideoDecoder` (one demux pass, seek + decode only the GOPs holding the 8 uniformly
  sampled frames), then preprocessing to a (1, 3, 8, 224, 224) float tensor.
- original: the hub operator's way: decode every frame to RGB into a list, `np.stack` all as float32, subsample 8,
  same preprocessing.
- end to end: ours through `timesformer_video.ActionClassifier` (what the `action-classification/timesformer`
  operator at the repo root runs), random weights.

Every measurement runs in a fresh child process, so its peak RSS (`ru_maxrss`) is its own. Videos (1280x720 H.264,
25 fps, GOP 12 with B-frames, from timesformer_video.synthetic) and the random weights are cached in
~/.cache/timesformer-bench/ (or $TIMESFORMER_BENCH_CACHE).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from timesformer_video.synthetic import make_video

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get('TIMESFORMER_BENCH_CACHE', '~/.cache/timesformer-bench')).expanduser()
SIZE, FPS, NUM_FRAMES, CROP = (1280, 720), 25, 8, 224
ORIGINAL_LIMIT_GB = 16.0  # the original path is skipped where its estimated peak exceeds this
MODEL_NAME = 'timesformer_k400_8x224'


def video_path(seconds):
    path = CACHE / f'h264_{SIZE[0]}x{SIZE[1]}_{FPS}fps_{seconds}s.mp4'
    if not path.exists():
        print(f'writing {path} (once) ...', flush=True)
        part = path.with_suffix('.part.mp4')
        make_video(part, seconds=seconds, size=SIZE, fps=FPS)
        part.rename(path)
    return path


def original_estimate_gb(seconds):
    """Every frame as uint8 in the list plus the float32 stack of them all."""
    return seconds * FPS * SIZE[0] * SIZE[1] * 3 * (1 + 4) / 1e9


def to_clip(frames):
    """(T, H, W, 3) RGB -> (1, 3, T, 224, 224): /255, normalize, short side to 224 (bilinear), centre crop."""
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy(np.asarray(frames)).float().div_(255).sub_(0.45).div_(0.225).permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    size = (CROP, int(w / h * CROP)) if h <= w else (int(h / w * CROP), CROP)
    x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    top, left = int(round((size[0] - CROP) / 2)), int(round((size[1] - CROP) / 2))
    return x[:, :, top:top + CROP, left:left + CROP].permute(1, 0, 2, 3).unsqueeze(0)


def uniform(n, k):
    return np.linspace(0, n - 1, k).astype(np.int64).tolist()


# --- what one child process measures ------------------------------------------------------------------------------

def run_ours(path, _weights):
    from timesformer_video.decode import VideoDecoder
    frames = VideoDecoder()(str(path))
    clip = to_clip(np.stack(frames.take(uniform(len(frames), NUM_FRAMES))))
    return {'shape': list(clip.shape), 'frames_in_video': len(frames)}


def run_original(path, _weights):
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'
        frames = [frame.to_ndarray(format='rgb24') for frame in container.decode(stream)]
    stacked = np.stack(frames).astype(np.float32)
    clip = to_clip(stacked[uniform(len(stacked), NUM_FRAMES)])
    return {'shape': list(clip.shape), 'frames_in_video': len(frames)}


_MODEL = {}


def run_end_to_end(path, weights):
    """Decode (ours, lazy) -> the classifier's own preprocessing and forward. Model loading not timed."""
    from timesformer_video import ActionClassifier, VideoDecoder
    if not _MODEL:
        started = time.perf_counter()
        _MODEL['op'] = ActionClassifier(model_name=MODEL_NAME, weights=str(weights), device='cpu')
        _MODEL['load_s'] = round(time.perf_counter() - started, 2)
    op = _MODEL['op']
    measured = time.perf_counter()
    labels, scores, feature = op(VideoDecoder()(str(path)))
    elapsed = time.perf_counter() - measured
    # The anchor: the model forward alone on the same clip, already decoded and preprocessed.
    clip = op.preprocess(VideoDecoder()(str(path))).unsqueeze(0)
    started = time.perf_counter()
    op.forward(clip)
    return {'model_load_s': _MODEL['load_s'], 'elapsed': elapsed, 'forward_s': time.perf_counter() - started,
            'feature': list(feature.shape)}


CASES = {'ours': run_ours, 'original': run_original, 'end_to_end': run_end_to_end}


def child(case, path, weights, repeats):
    import torch  # noqa: F401 - imported before the baseline so every case pays the same import cost
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, forwards = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        info = CASES[case](path, weights)
        times.append(info.pop('elapsed', time.perf_counter() - started))
        if 'forward_s' in info:
            forwards.append(info.pop('forward_s'))
    if forwards:
        info['forward_s'] = min(forwards)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({'time_s': min(times), 'peak_rss_mb': peak_mb, 'baseline_rss_mb': base_mb, **info}))


def make_random_weights():
    """A plain state dict of a randomly initialised model, the format the operator loads without downloading."""
    path = CACHE / f'random_{MODEL_NAME}.pt'
    if not path.exists():
        import torch

        from timesformer_video.build import create_model
        torch.manual_seed(0)
        model = create_model(MODEL_NAME)
        torch.save(model.state_dict(), path.with_suffix('.part'))
        path.with_suffix('.part').rename(path)
    return path


# --- the parent: spawn, collect, report ----------------------------------------------------------------------------

def measure(case, path, weights=None, repeats=1):
    command = [sys.executable, __file__, '--child', case, str(path), str(weights), str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        return {'error': (result.stderr.strip().splitlines() or [f'exit {result.returncode}'])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def model_weights():
    """Random weights for the repo's operator, or None (with the reason printed) when it cannot be loaded."""
    try:
        result = subprocess.run([sys.executable, __file__, '--make-weights'], capture_output=True, text=True,
                                timeout=600)
        if result.returncode == 0:
            return Path(result.stdout.strip().splitlines()[-1])
        print('model part skipped:', (result.stderr.strip().splitlines() or ['?'])[-1])
    except subprocess.TimeoutExpired:
        print('model part skipped: making random weights timed out')
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=int, nargs='+', default=[10, 60])
    parser.add_argument('--json', type=Path, default=CACHE / 'decode_memory.json')
    parser.add_argument('--no-model', action='store_true', help='decode + preprocess only')
    parser.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    parser.add_argument('--make-weights', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, path, weights, repeats = args.child
        return child(case, Path(path), Path(weights), int(repeats))
    if args.make_weights:
        return print(make_random_weights())

    CACHE.mkdir(parents=True, exist_ok=True)
    weights = None if args.no_model else model_weights()
    rows = []
    for seconds in args.seconds:
        path = video_path(seconds)
        rows.append({'video_s': seconds, 'case': 'ours', **measure('ours', path, repeats=5)})
        estimate = original_estimate_gb(seconds)
        if estimate > ORIGINAL_LIMIT_GB:
            rows.append({'video_s': seconds, 'case': 'original',
                         'skipped': f'estimated peak {estimate:.1f} GB > {ORIGINAL_LIMIT_GB:.0f} GB'})
        else:
            rows.append({'video_s': seconds, 'case': 'original', 'estimate_gb': round(estimate, 2),
                         **measure('original', path)})
        if weights is not None:
            rows.append({'video_s': seconds, 'case': 'end_to_end', **measure('end_to_end', path, weights, repeats=3)})
    report(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({'machine': f'{os.cpu_count()} cores', 'rows': rows}, indent=2))
    print(f'\nwrote {args.json}')


def report(rows):
    """A table: time, peak RSS, and what the work added over the process after `import torch` (the baseline)."""
    print(f'\n{"video":>6} {"case":<11} {"time s":>8} {"peak RSS MB":>12} {"added MB":>9}  note')
    for row in rows:
        if 'time_s' in row:
            added = row['peak_rss_mb'] - row['baseline_rss_mb']
            note = (f'{row["time_s"] / row["forward_s"]:.2f}x the model forward alone ({row["forward_s"]:.3f} s)'
                    if 'forward_s' in row else '')
            print(f'{row["video_s"]:>5}s {row["case"]:<11} {row["time_s"]:>8.3f} {row["peak_rss_mb"]:>12.0f} '
                  f'{added:>9.0f}  {note}')
        else:
            print(f'{row["video_s"]:>5}s {row["case"]:<11} {"-":>8} {"-":>12} {"-":>9}  '
                  f'{row.get("skipped") or row.get("error")}')
    ours = {r['video_s']: r for r in rows if r['case'] == 'ours' and 'peak_rss_mb' in r}
    if 10 in ours and 60 in ours:
        peak = ours[60]['peak_rss_mb'] / ours[10]['peak_rss_mb']
        added = [ours[s]['peak_rss_mb'] - ours[s]['baseline_rss_mb'] for s in (60, 10)]
        print(f'ours, 60 s / 10 s: peak RSS x{peak:.3f}, added x{added[0] / added[1]:.3f}')


if __name__ == '__main__':
    main()
