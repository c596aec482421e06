"""Sliding windows over a long video: which frames each window holds, batches of window clips, a video summary.

A window is `[start, start + window)` ms on the frames' own clock (`timing.py`), the first starting at the first
frame and each next one `stride` later. Windows are made while some of the video is still uncovered, so none lies
wholly inside earlier ones:
- the last window is cut at the end of the video: its `end_ms` shows that it is shorter (its frames are still
  sampled to `num_frames`, repeating frames where it holds fewer);
- a video shorter than one window gives one window over all of it;
- a window that holds no frame (a gap in a variable-rate video, or a window shorter than the frame interval) gives
  no row.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .frames import Video
from .timing import FrameTimes
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
    first: int  # frames[first:stop] are shown in [start_ms, end_ms)
    stop: int


def _milliseconds(name: str, seconds) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.number)) or not math.isfinite(seconds):
        raise ValueError(f'{name} must be a finite number of seconds, got {seconds!r}')
    ms = round(float(seconds) * 1000)
    if ms < 1:
        raise ValueError(f'{name} must be at least 0.001 s (1 ms), got {seconds!r}')
    return ms


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
    clock, end = times.times_ms, times.end_ms
    for k in itertools.count():
        start = clock[0] + k * stride_ms
        if start >= end:
            return
        stop_ms = min(start + window_ms, end)
        first, stop = bisect.bisect_left(clock, start), bisect.bisect_left(clock, stop_ms)
        if stop > first:
            yield Span(start, stop_ms, first, stop)
        if start + window_ms >= end:
            return


def window_batches(frames: Video, spans: Iterable[Span], transform: ClipTransform, fps: float | None,
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
