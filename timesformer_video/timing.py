"""When each frame is shown: the clock that sliding windows and clip sampling are measured on.

Times come from the frames themselves (a lazy decoder's `timestamps`, or each `VideoFrame.timestamp`, in ms, as
Towhee's decoders give them); without them, from the frame index and the sequence's `fps`. A plain array has
neither, and asking for its times is an error that says what to pass: a guessed frame rate would put every window in
the wrong place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .frames import Video


@dataclass(frozen=True)
class FrameTimes:
    times_ms: list[int]  # presentation time of each frame, non-decreasing
    end_ms: int  # when the last frame stops being shown
    fps: float | None  # the sequence's own frame rate, else the mean rate of its timestamps


def _positive(value) -> float | None:
    rate = float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else math.nan
    return rate if math.isfinite(rate) and rate > 0 else None


def _own_timestamps(frames) -> list | None:
    """Timestamps without decoding: the sequence's `timestamps`, or those of frames already in memory."""
    stamps = getattr(frames, 'timestamps', None)
    if stamps is not None:
        return list(stamps)
    if isinstance(frames, (list, tuple)):  # not any Sequence: reading a lazy one frame by frame would decode it all
        stamps = [getattr(f, 'timestamp', None) for f in frames]
        if all(s is not None for s in stamps):
            return stamps
    return None


def frame_times(frames: Video, purpose: str) -> FrameTimes:
    """The frames' presentation times in ms; `purpose` names what needs them, for the error message."""
    count = len(frames)
    if count == 0:
        raise ValueError('no frames: the video is empty or the decoder returned nothing')
    fps = _positive(getattr(frames, 'fps', None))
    stamps = _own_timestamps(frames)
    if stamps is None:
        if fps is None:
            raise ValueError(
                f'{purpose} needs to know when each frame is shown, and these frames carry neither timestamps nor a '
                f'frame rate. Pass towhee VideoFrames with `timestamp` in ms (as video_decode.ffmpeg returns them), '
                f'or a sequence with an `fps` attribute; a plain array has neither.')
        times = [round(i * 1000 / fps) for i in range(count)]
    else:
        times = [round(float(s)) for s in stamps]
        back = next((i for i in range(1, count) if times[i] < times[i - 1]), None)
        if back is not None:
            raise ValueError(f'frame timestamps go backwards at frame {back} ({times[back - 1]} ms, then '
                             f'{times[back]} ms); {purpose} needs frames in presentation order')
        if fps is None and times[-1] > times[0]:
            fps = (count - 1) * 1000 / (times[-1] - times[0])
    duration = _positive(getattr(frames, 'duration', None)) if stamps is not None else None
    if duration is not None:
        end = times[0] + round(duration * 1000)
    else:
        end = times[-1] + (round(1000 / fps) if fps else 1)
    return FrameTimes(times, max(end, times[-1] + 1), fps)


def frame_rate(frames: Video, purpose: str) -> float | None:
    """The sequence's `fps`, else the mean rate of its timestamps (None for a single frame)."""
    return _positive(getattr(frames, 'fps', None)) or frame_times(frames, purpose).fps
