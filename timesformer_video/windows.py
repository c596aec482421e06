"""Sliding windows over a long video: which frames each window holds, batches of window clips, a video summary.

A window is `[start_ms, end_ms)` on the frames' own clock (`timing.py`), in whole milliseconds: `window` and `stride`
are rounded to whole ms, the first window starts at the first frame's time rounded down to a whole ms (0 for a
whole video), each next one `stride` later. Which frames a window holds is decided on the frames' exact times
(`timing.frame_range`: `start_ms / 1000 <= t < end_ms / 1000`), so a frame at 1999.6 ms is in the window that ends
at 2000 ms, and asking for `[start_ms, end_ms)` again (`search --start/--end`, the decoder's `start_time/end_time`)
gives exactly the window's frames. Windows are made while some of the video is still uncovered, so none lies wholly
inside earlier ones:
- the last window is cut at the end of the video (the last frame's end, rounded up to a whole ms: no frame is shown
  after it): its `end_ms` shows that it is shorter (its frames are still sampled to `num_frames`, repeating frames
  where it holds fewer);
- a video shorter than one window gives one window over all of it;
- a window that holds no frame (a gap in a variable-rate video, or a window shorter than the frame interval) gives
  no row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import torch

from .frames import Video
from .timing import FrameTimes, exact, frame_range, ms
from .transform import ClipTransform, fetch_frames, stack_frames

# Clips per forward pass: a ViT-B 8x224 clip needs about 0.2 GB of activations in fp32, and on the CPU a larger
# batch is no faster per clip; a GPU needs larger batches to be kept busy.
CLIPS_PER_BATCH = {'cpu': 4, 'cuda': 16}


def windows_per_batch(num_crops: int, device_type: str) -> int:
    """Windows decoded together and run through the model as one batch (each window is `num_crops` clips)."""
    return max(1, CLIPS_PER_BATCH.get(device_type, CLIPS_PER_BATCH['cpu']) // num_crops)


class WindowRow(NamedTuple):
    """One window's result: a tuple, so Towhee's `flat_map` spreads it over five columns."""

    start_ms: int
    end_ms: int
    labels: list[str]
    scores: list[float]
    features: np.ndarray


@dataclass(frozen=True)
class Span:
    start_ms: int
    end_ms: int
    first: int  # frames[first:stop] are shown in [start_ms, end_ms), on their exact times
    stop: int


def _milliseconds(name: str, seconds) -> int:
    """Seconds (at least 0.001) -> whole ms, rounded half up on the decimal value as written (0.0015 -> 2)."""
    value = exact(seconds)
    if value is None:
        raise ValueError(f'{name} must be a finite number of seconds, got {seconds!r}')
    if value < Fraction(1, 1000):
        raise ValueError(f'{name} must be at least 0.001 s (1 ms), got {seconds!r}')
    return math.floor(ms(value) + Fraction(1, 2))


def check_window(window, stride) -> tuple[int | None, int | None]:
    """`window` and `stride` in seconds -> (window_ms, stride_ms); stride defaults to the window (no overlap)."""
    if window is None:
        if stride is not None:
            raise ValueError(f'stride={stride!r} was given without window=; give the window length in seconds too')
        return None, None
    window_ms = _milliseconds('window', window)
    return window_ms, window_ms if stride is None else _milliseconds('stride', stride)


def plan_windows(times: FrameTimes, window_ms: int, stride_ms: int) -> Iterator[Span]:
    """The windows over `times`, lazily: a 10-hour video at a 1 ms stride costs no list of spans."""
    clock = times.times
    origin, end = math.floor(ms(clock[0])), math.ceil(ms(times.end))
    for k in itertools.count():
        start = origin + k * stride_ms
        if start >= end:
            return
        stop_ms = min(start + window_ms, end)
        first, stop = frame_range(clock, Fraction(start, 1000), Fraction(stop_ms, 1000))
        if stop > first:
            yield Span(start, stop_ms, first, stop)
        if start + window_ms >= end:
            return


def window_batches(frames: Video, spans: Iterable[Span], transform: ClipTransform, fps: Fraction | None,
                   batch_size: int) -> Iterator[tuple[list[Span], torch.Tensor]]:
    """Yield (spans, views `(B, V, 3, T, S, S)`) for up to `batch_size` windows at a time.

    `transform` picks each clip's frames among a window's (`transform.indices`, `fps` the frames' rate) and makes
    the clip's views (`transform.views`). A batch's frames are fetched in one call, so a lazy
    decoder decodes them in one forward pass and only the GOPs they fall in; the next batch is decoded on a worker
    thread while the caller runs the model on this one. At most two batches of frames are alive, whatever the length.
    """
    def load(batch: list[Span]) -> tuple[list[Span], torch.Tensor]:
        picks = [[span.first + i for i in transform.indices(span.stop - span.first, fps)] for span in batch]
        by_index = fetch_frames(frames, [i for pick in picks for i in pick])
        return batch, torch.stack([transform.views(stack_frames(by_index, pick)) for pick in picks])

    spans = iter(spans)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix='timesformer-windows') as pool:
        def submit_next():
            batch = list(itertools.islice(spans, batch_size))
            return pool.submit(load, batch) if batch else None

        pending = submit_next()
        while pending is not None:
            ready = pending.result()
            pending = submit_next()
            yield ready


def summarize(rows: Iterable) -> dict:
    """A video-level summary of window rows `(start_ms, end_ms, labels, scores, features)`.

    - 'feature': the windows' features averaged, weighted by window length: one `(D,)` embedding of the video;
    - 'labels': `(label, seconds, best score)` for each top-1 label, most seconds first (seconds of the windows where
      it is top-1: overlapping windows count their overlap twice);
    - 'segments': runs of consecutive windows with the same top-1 label, `(start_ms, end_ms, label, mean score)`.

    Numbers are Python `int` (milliseconds) and `float` (seconds, scores); only 'feature' is a numpy array.
    """
    rows = list(rows)
    if not rows:
        raise ValueError('no window rows to summarize')
    lengths = np.array([end - start for start, end, *_ in rows], dtype=np.float64)
    features = np.stack([np.asarray(row[4], dtype=np.float64) for row in rows])
    feature = (features * lengths[:, None]).sum(0) / lengths.sum()
    seconds, best = {}, {}
    segments = []
    for (start, end, labels, scores, _), length in zip(rows, lengths):
        start, end, label, score = int(start), int(end), str(labels[0]), float(scores[0])
        seconds[label] = seconds.get(label, 0.0) + float(length) / 1000
        best[label] = max(best.get(label, 0.0), score)
        if segments and segments[-1][2] == label:
            first, _, _, total, count = segments[-1]
            segments[-1] = (first, end, label, total + score, count + 1)
        else:
            segments.append((start, end, label, score, 1))
    ranked = sorted(seconds, key=lambda name: (-seconds[name], -best[name]))
    return {
        'feature': feature.astype(np.float32),
        'labels': [(name, seconds[name], best[name]) for name in ranked],
        'segments': [(first, end, label, total / count) for first, end, label, total, count in segments],
    }
