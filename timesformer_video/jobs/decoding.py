"""The decode stage: a video's path -> the uint8 frames each of its clips needs, in parts of bounded size.

A clip is a whole video (`[0, duration)`, no window asked) or one window of it (`window`/`stride` in the operator's
options). For each clip only its sampled frames are decoded (`LazyFrames.take`: one forward pass from the keyframe
before them), with the model record's sampling rule (`ClipTransform.indices`); the model stage later scales, crops
and normalises them (`Sampler.views`: in the decode worker, so the model process only stacks them and runs the
forward). A long video is cut into parts of `CLIPS_PER_PART` windows, each decoded by its own task, so a
task's memory does not grow with the video's length.

Runs where the decoding runs: in a worker process of the local engine, in a Ray CPU task, or in the calling
process. Nothing here loads the model; a `Sampler` is small and picklable.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import numpy as np

from .operators import OperatorSpec, register_model_cfg
from .paths import os_path, readable

CLIPS_PER_PART = 16  # windows decoded by one task: 16 clips of 8 720p frames are about 350 MB of uint8


def error_text(error: BaseException) -> str:
    """How the `error` column records an exception: `TypeName: message`, a file name that is not UTF-8 in it shown
    with `\\xNN` escapes (`paths.readable`), so that every output format can hold it."""
    return readable(f'{type(error).__name__}: {error}')


@dataclasses.dataclass
class Clip:
    """One clip's decoded frames: uint8 RGB `(T, H, W, 3)`, or a list of T `(H, W, 3)` arrays when the video
    changes size inside the clip. `start_ms`/`end_ms`: the window on the video's clock (a whole video is one).
    `times`: the sampled frames' presentation times (s). `views`: the model's input made from the frames
    (`Sampler.views`: float32 `(num_crops, 3, T, S, S)`), which then replaces them (`frames` None)."""

    frames: np.ndarray | list[np.ndarray] | None
    times: list[float]
    start_ms: int | None = None
    end_ms: int | None = None
    views: np.ndarray | None = None


@dataclasses.dataclass
class VideoPart:
    """What one decode task made of a video: its clips number `first`, `first + 1`, ... (`len(clips)` of them).

    `last`: no clip comes after these. `error`: the video failed (`TypeName: message`); then `clips` is empty and
    the video is one error row. `stopped`: the video stops early (truncated) and every row says so. `decode_s`:
    seconds this task spent opening the video and decoding."""

    path: str
    part: int
    first: int
    clips: list[Clip]
    last: bool
    duration: float | None = None
    decode_s: float = 0.0
    error: str | None = None
    stopped: str | None = None


class Sampler:
    """Which frames each clip of a video needs, and decoding them (`decode(path, part)`).

    `spec`: the operator's recipe (its record's `num_frames`, `sampling`, `window`, `stride`); `seek`: 'exact' or
    'keyframes', `threads`: threads one video's read may decode with (`VideoDecoder`; 1 in a decode worker, one of
    several side by side). Raises ValueError for options out of range (as the operator would)."""

    def __init__(self, spec: OperatorSpec, seek: str = 'exact', start: float | None = None,
                 end: float | None = None, threads: int | None = None):
        from ..decode import VideoDecoder
        from ..transform import ClipTransform
        from ..windows import check_window
        from ..zoo import get_cfg

        if spec.model_cfg is not None:
            register_model_cfg(spec.model_cfg)
        options = spec.options
        self.transform = ClipTransform(get_cfg(spec.model_name), options.get('num_crops', 1),
                                       options.get('sampling', 'uniform'))
        self.window_ms, self.stride_ms = check_window(options.get('window'), options.get('stride'))
        self.decoder = VideoDecoder(start_time=start, end_time=end, seek=seek, threads=threads)
        self.spec, self.seek, self.start, self.end, self.threads = spec, seek, start, end, threads

    def __reduce__(self):  # rebuilt where it is unpickled: the decoder and transform are cheap to make
        return Sampler, (self.spec, self.seek, self.start, self.end, self.threads)

    def single_threaded(self) -> Sampler:
        """This sampler decoding each video on one thread: for a decode worker, one of several side by side."""
        return Sampler(self.spec, self.seek, self.start, self.end, threads=1)

    def decode(self, path: str, part: int = 0) -> VideoPart:
        """The clips of part `part` of the video at a stored path (`paths.stored`); never raises for the video's
        own failures: they are the part's `error`."""
        started = time.perf_counter()
        try:
            frames = self.decoder(os_path(path))  # reads the container's index; decodes only where it must
            if self.window_ms is None:
                clips, first, last = [self._whole(frames)], 0, True
            else:
                clips, first, last = self._windows(frames, part)
        except Exception as e:  # noqa: BLE001 - any failure of one video is that video's result
            return VideoPart(path, part, part * CLIPS_PER_PART, [], True, decode_s=time.perf_counter() - started,
                             error=error_text(e))
        stopped = getattr(frames, 'error', None)
        return VideoPart(path, part, first, clips, last, float(frames.duration), time.perf_counter() - started,
                         stopped=None if stopped is None else error_text(stopped))

    def views(self, part: VideoPart) -> VideoPart:
        """`part` with each clip's frames replaced by the model's views (`ClipTransform.views`, the numbers the
        model stage would make), in place: the decode workers make them, so the model process gets 4.8 MB of views
        per ViT-B clip instead of 22 MB of 720p frames, and no transform to run. A clip whose frames the transform
        refuses keeps them: the model stage then records its error against it."""
        for clip in part.clips:
            try:
                clip.views = self.transform.views(frames_tensor(clip.frames)).numpy()
            except Exception:  # noqa: BLE001 - the model stage raises it again and records it against the clip
                continue
            clip.frames = None
        return part

    def _whole(self, frames) -> Clip:
        """The video as one window: from its first frame's time (rounded down to a ms) to the end of its last
        frame (rounded up), as `windows.plan_windows` bounds windows."""
        from ..timing import frame_times, ms
        from ..transform import stack_frames

        indices, by_index = self.transform.sample(frames)
        times = frame_times(frames, 'the video\'s window')
        return _clip(stack_frames(by_index, indices), [float(times.times[i]) for i in indices],
                     math.floor(ms(times.times[0])), math.ceil(ms(times.end)))

    def _windows(self, frames, part: int) -> tuple[list[Clip], int, bool]:
        from ..timing import frame_times
        from ..transform import fetch_frames, stack_frames
        from ..windows import plan_windows

        times = frame_times(frames, 'window=')
        first = part * CLIPS_PER_PART
        spans = list(itertools.islice(plan_windows(times, self.window_ms, self.stride_ms), first,
                                      first + CLIPS_PER_PART + 1))  # one more: is there a next part?
        last = len(spans) <= CLIPS_PER_PART
        spans = spans[:CLIPS_PER_PART]
        picks = [[span.first + i for i in self.transform.indices(span.stop - span.first, times.fps)]
                 for span in spans]
        by_index = fetch_frames(frames, [i for pick in picks for i in pick])  # one pass for the whole part
        clips = [_clip(stack_frames(by_index, pick), [float(times.times[i]) for i in pick], span.start_ms,
                       span.end_ms) for span, pick in zip(spans, picks)]
        return clips, first, last


def frames_tensor(frames: np.ndarray | list[np.ndarray]):
    """A clip's uint8 frames as what `ClipTransform.views` takes: one `(T, H, W, 3)` tensor, or a list of T."""
    import torch

    if isinstance(frames, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(frames))
    return [torch.from_numpy(np.ascontiguousarray(frame)) for frame in frames]


def _clip(stacked, times, start_ms=None, end_ms=None) -> Clip:
    frames = stacked.numpy() if hasattr(stacked, 'numpy') else [frame.numpy() for frame in stacked]
    return Clip(frames, times, start_ms, end_ms)
