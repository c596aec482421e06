"""Which frames make a clip: the sampling rules shared by the decoder, the clip transform, windows and thumbnails.

Pure index arithmetic on frame counts, times and keyframe positions; nothing here decodes or knows the model.
- `uniform_indices`: `k` frames spread evenly over `n` (pytorchvideo's UniformTemporalSubsample; the seed's rule);
- `clip_indices`: the paper's fixed-rate test clip from the middle of the video (PySlowFast's rule);
- `time_step_indices`: one frame every `s` seconds (the Towhee hub decoder's 'time_step_sample');
- `keyframe_indices`: each wanted frame replaced by the keyframe at or before it (the decoder's approximate
  `seek='keyframes'`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from fractions import Fraction

from .timing import exact

# PySlowFast's DATA.TARGET_FPS: a checkpoint's `sampling_rate` counts frames of a 30 fps video.
TARGET_FPS = 30


def uniform_indices(num_available: int, num_samples: int) -> list[int]:
    """`floor(linspace(0, n - 1, k))` in float32 (`torch.linspace`), exactly as pytorchvideo's
    UniformTemporalSubsample in the seed's transform (repeats frames when k > n); for k = 64 or 96, float32 rounding
    picks a neighbouring frame now and then where float64 would not. The decoder's 'uniform_temporal_subsample'
    uses this function too, so both pick the same frames."""
    import torch  # here, not at the top: importing the decoder must not cost torch's import (decode workers)

    return torch.linspace(0, num_available - 1, num_samples).long().tolist()


def clip_indices(num_available: int, num_frames: int, sampling_rate: int, fps: Fraction | float,
                 target_fps: Fraction | float = TARGET_FPS) -> list[int]:
    """The paper's test clip: `num_frames` over `num_frames * sampling_rate` frames at `target_fps`, centred.

    As PySlowFast's decoder, the span is converted to the video's own frames (`* fps / target_fps`, so an 8x32 clip
    covers 8.53 s at any frame rate) and sampled with `linspace(start, start + span - 1, num_frames)`, truncated.
    The original starts its single test clip at frame 0; here it is centred, `start = (n - span) / 2`. A video
    shorter than the span starts at frame 0 and its last frame repeats (indices clamped, as PySlowFast's
    `temporal_sampling`), which keeps the frame spacing the model was trained with.

    Computed in exact arithmetic (`fps` a `Fraction`, such as the decoder's 30000/1001, or a float taken as the
    decimal it is written as): a frame exactly on a step (index 195.0 of a 12 s 25 fps video) is that frame, not the
    one before, whatever float rounding would say. Raises ValueError for no frames or no positive frame rate.
    """
    if num_available < 1:
        raise ValueError('no frames: the video clip is empty')
    rate, target = exact(fps), exact(target_fps)
    if rate is None or rate <= 0:
        raise ValueError(f'clip sampling needs the frame rate, a positive number; got fps={fps!r} (one frame, or '
                         f'frames all at one time, give none): use sampling=\'uniform\', or frames with an fps')
    span = num_frames * sampling_rate * rate / target
    start = max(num_available - span, 0) / 2
    step = (span - 1) / (num_frames - 1) if num_frames > 1 else 0
    return [min(max(math.floor(start + i * step), 0), num_available - 1) for i in range(num_frames)]


def time_step_indices(times: Sequence[Fraction], time_step, start=0) -> list[int]:
    """Indices of the first frame at or after each multiple of `time_step` seconds from `start`.

    `times`: the frames' exact times in seconds, non-decreasing; `time_step`, `start`: seconds (a float is taken as
    the decimal it prints as: 0.1 is 1/10). A frame is picked once even if several multiples fall before it
    (`time_step` shorter than a frame gap).
    """
    step, start = _decimal(time_step), _decimal(start)
    picked, previous = [], None
    for i, t in enumerate(times):
        slot = math.floor((t - start) / step)  # multiples at or before t, minus one
        if previous is None or slot > previous:
            picked.append(i)
        previous = slot
    return picked


def keyframe_indices(indices: Sequence[int], keyframes: Sequence[int]) -> list[int]:
    """Each of `indices` replaced by the last of `keyframes` (increasing positions) at or before it: the frames an
    approximate, keyframes-only read gives. An index with no keyframe at or before it stays as it is."""
    picked = []
    for i in indices:
        k = bisect.bisect_right(keyframes, i) - 1
        picked.append(keyframes[k] if k >= 0 else i)
    return picked


def _decimal(seconds) -> Fraction:
    """Decimal value as written (0.1 -> 1/10), so frames exactly on a boundary are not lost to float error."""
    return seconds if isinstance(seconds, Fraction) else Fraction(str(seconds))
