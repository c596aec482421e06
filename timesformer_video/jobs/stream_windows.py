"""Windows over a live stream: frames, as they arrive -> each window's sampled clip, as soon as it is complete.

The windows and the frames they sample are those of `index FILE --window S --stride S` on the same frames
(`windows.py`): window k of a segment is `[origin + k * stride_ms, ... + window_ms)`, `origin` the segment's first
frame's time rounded down to a whole ms; it holds the frames shown in it, compared on their exact times
(`timing.frame_range`); its clip's frames are picked among them by the model record's rule
(`ClipTransform.indices`); a window that holds no frame gives none. A window is complete, and handed on, when the
frame that ends it has arrived: a frame whose end (its time plus its duration) reaches the window's end. So a
window waits for no frame after its own.

A segment ends at a break (the sender ended, the connection dropped, the timestamps jumped: `stream_source`); its
last windows are cut there, as a file's are cut at its end (the end of its last frame, rounded up to a whole ms;
none after a window that already reached it). The next segment starts a new grid at its first frame.

Memory: only the frames from the start of the oldest window not yet complete are kept, as FFmpeg decoded them
(YUV 4:2:0 is half the bytes of RGB); only the sampled frames are converted to RGB. For 10 s windows of a 720p
30 fps stream that is 300 frames, about 0.4 GB, whatever the stream's length.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
from fractions import Fraction

from ..timing import frame_range, ms
from ..transform import ClipTransform, stack_frames
from .decoding import Clip, _clip
from .stream_source import StreamFrame


@dataclasses.dataclass
class StreamWindow:
    """A complete window: `clip` (its sampled frames, uint8, and `start_ms`/`end_ms` on the stream clock),
    `arrival` (`time.monotonic()` when its last frame arrived) and `wall_time` (that moment in UTC)."""

    clip: Clip
    arrival: float
    wall_time: datetime.datetime


class StreamWindows:
    """Cuts one stream into windows: `add(frame)` for each frame in order, `end_segment(end)` at each break; both
    return the windows they complete, in time order. `window_ms`, `stride_ms`: whole ms (`windows.check_window`)."""

    def __init__(self, transform: ClipTransform, window_ms: int, stride_ms: int):
        self.transform, self.window_ms, self.stride_ms = transform, window_ms, stride_ms
        self._frames: collections.deque[StreamFrame] = collections.deque()  # of the windows in flight
        self._origin: int | None = None  # this segment's first window's start, ms
        self._next = 0  # the segment's next window to complete

    def _start(self, k: int) -> int:
        return self._origin + k * self.stride_ms

    def add(self, frame: StreamFrame) -> list[StreamWindow]:
        if self._origin is None:
            self._origin, self._next = math.floor(ms(frame.time)), 0
        self._frames.append(frame)
        reach = frame.time + frame.duration  # no frame of this segment is shown before it
        done = []
        while Fraction(self._start(self._next) + self.window_ms, 1000) <= reach:
            start = self._start(self._next)
            done += self._cut(start, start + self.window_ms)
            self._next += 1
            self._forget()
        return done

    def end_segment(self, end: Fraction) -> list[StreamWindow]:
        """The windows of the segment that ends at `end` (s, the end of its last frame) not yet given, cut there;
        then the next frame starts a new segment."""
        done = []
        if self._origin is not None:
            end_ms = math.ceil(ms(end))
            k = self._next
            reached = k > 0 and self._start(k - 1) + self.window_ms >= end_ms  # the last window came already
            while not reached and self._start(k) < end_ms:
                start = self._start(k)
                done += self._cut(start, min(start + self.window_ms, end_ms))
                reached = start + self.window_ms >= end_ms
                k += 1
        self._frames.clear()
        self._origin = None
        return done

    def _cut(self, start_ms: int, end_ms: int) -> list[StreamWindow]:
        """The window `[start_ms, end_ms)`: its sampled clip, or nothing when it holds no frame."""
        frames = list(self._frames)
        first, stop = frame_range([f.time for f in frames], Fraction(start_ms, 1000), Fraction(end_ms, 1000))
        if stop == first:
            return []
        shown = frames[first:stop]
        pick = self.transform.indices(len(shown), 1 / shown[-1].duration)
        by_index = {i: shown[i].rgb() for i in set(pick)}
        clip = _clip(stack_frames(by_index, pick), [float(shown[i].time) for i in pick], start_ms, end_ms)
        return [StreamWindow(clip, shown[-1].arrival, shown[-1].wall_time)]

    def _forget(self) -> None:
        """Drop the frames shown before the next window's start: no window in flight needs them."""
        keep_from = Fraction(self._start(self._next), 1000)
        while self._frames and self._frames[0].time < keep_from:
            self._frames.popleft()
