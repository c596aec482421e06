"""When each frame is shown, and which frames a time range holds: the one clock of windows, query ranges, clip
sampling and the moments page.

Times are exact: `fractions.Fraction` seconds from the video's first frame. They come from the frames themselves:
the lazy decoder's `times` (its pts times the stream's time base, so a 90 kHz frame at 1999.6 ms stays at 1999.6 ms);
else each frame's `timestamp` in ms (all a plain list of Towhee `VideoFrame`s carries); else the frame index over
the sequence's `fps`. A plain array has none of them, and asking for its times is an error that says what to pass: a
guessed frame rate would put every window in the wrong place.

The rule (`frame_range`): a time range `[start, end)` holds the frames shown at `start <= t < end`, compared exactly.
The decoder's `start_time`/`end_time` apply the same rule to its ticks (`decode.VideoDecoder.frames`).
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .frames import Video


@dataclass(frozen=True)
class FrameTimes:
    times: list[Fraction]  # presentation time of each frame, seconds, non-decreasing
    end: Fraction  # when the last frame stops being shown, seconds
    fps: Fraction | None  # the sequence's own frame rate, else the mean rate of its times


def exact(value) -> Fraction | None:
    """A number of seconds (or a rate) as an exact `Fraction`, None when it is not a finite real number.

    A float is taken as the decimal it is written as (0.1 -> 1/10, as the decoder reads `start_time`), not as its
    binary value; `int` and `Fraction` are exact already."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        return None
    if isinstance(value, (numbers.Rational, np.integer)):
        return Fraction(int(value)) if isinstance(value, np.integer) else Fraction(value)
    value = float(value)
    return Fraction(repr(value)) if math.isfinite(value) else None


def ms(seconds: Fraction) -> Fraction:
    """Exact seconds -> exact milliseconds."""
    return seconds * 1000


def frame_range(times: Sequence[Fraction], start: Fraction, end: Fraction | None = None) -> tuple[int, int]:
    """(first, stop): `times[first:stop]` are the frames shown in `[start, end)` seconds (`end` None: to the last).

    `times` in seconds, non-decreasing, as `FrameTimes.times`; `start`/`end` exact (`Fraction` or int)."""
    first = bisect.bisect_left(times, start)
    stop = len(times) if end is None else bisect.bisect_left(times, end)
    return first, max(first, stop)


def _rate(value) -> Fraction | None:
    rate = exact(value)
    return rate if rate is not None and rate > 0 else None


def _ms_stamp(stamp) -> Fraction:
    """A frame's `timestamp` (ms) as exact seconds."""
    value = exact(stamp)
    if value is None:
        raise ValueError(f'a frame timestamp must be a finite number of ms, got {stamp!r}')
    return value / 1000


def _own_times(frames) -> list[Fraction] | None:
    """Exact times without decoding: the sequence's `times`, its `timestamps` (ms), or those of frames already in
    memory."""
    times = getattr(frames, 'times', None)
    if times is not None:
        return [t if type(t) is Fraction else exact(t) for t in times]
    stamps = getattr(frames, 'timestamps', None)
    if stamps is None and isinstance(frames, (list, tuple)):  # not any Sequence: reading a lazy one would decode it
        stamps = [getattr(f, 'timestamp', None) for f in frames]
        if any(s is None for s in stamps):
            stamps = None
    return None if stamps is None else [_ms_stamp(s) for s in stamps]


def frame_times(frames: Video, purpose: str) -> FrameTimes:
    """The frames' presentation times, exact; `purpose` names what needs them, for the error message.

    Raises ValueError when there are no frames, when the frames carry neither times nor a frame rate, and when the
    times go backwards."""
    count = len(frames)
    if count == 0:
        raise ValueError('no frames: the video is empty or the decoder returned nothing')
    fps = _rate(getattr(frames, 'fps', None))
    times = _own_times(frames)
    duration = _rate(getattr(frames, 'duration', None)) if times is not None else None
    if times is None:
        if fps is None:
            raise ValueError(
                f'{purpose} needs to know when each frame is shown, and these frames carry neither timestamps nor a '
                f'frame rate. Pass towhee VideoFrames with `timestamp` in ms (as video_decode.ffmpeg returns them), '
                f'or a sequence with an `fps` attribute; a plain array has neither.')
        times = [i / fps for i in range(count)]
    else:
        back = next((i for i in range(1, count) if times[i] < times[i - 1]), None)
        if back is not None:
            raise ValueError(f'frame timestamps go backwards at frame {back} ({float(ms(times[back - 1])):g} ms, '
                             f'then {float(ms(times[back])):g} ms); {purpose} needs frames in presentation order')
        if fps is None and times[-1] > times[0]:
            fps = (count - 1) / (times[-1] - times[0])
    if duration is not None:
        end = times[0] + duration  # the sequence's own: the last frame's real duration
    else:
        end = times[-1] + (1 / fps if fps else Fraction(1, 1000))
    return FrameTimes(times, max(end, times[-1] + Fraction(1, 1000)), fps)


def frame_rate(frames: Video, purpose: str) -> Fraction | None:
    """The sequence's `fps`, else the mean rate of its times (None for a single frame); exact."""
    return _rate(getattr(frames, 'fps', None)) or frame_times(frames, purpose).fps
