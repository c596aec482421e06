"""Towhee operator `video-decode/ffmpeg`: decode RGB frames with PyAV, lazily, seeking to keyframes.

A first pass reads only packets (no decoding) to learn every frame's pts and which frames are keyframes. Frames are
then decoded on demand: `take` seeks to the keyframe before the first wanted frame and decodes forward, seeking again
only when the next wanted frame lies beyond another keyframe. A clip of 8 frames from a long video therefore costs a
few GOPs of decoding and 8 RGB frames of memory, not the whole video.
"""

import bisect
import collections.abc
import dataclasses
import errno
import fractions
import math
import os
import time

import av
import numpy as np
from towhee.operator import PyOperator
from towhee.types import VideoFrame

SAMPLE_ARGS = {'uniform_temporal_subsample': 'num_samples', 'time_step_sample': 'time_step'}
TIMEOUT_S = 30.0  # seconds without data before an open or read gives up (mostly for URLs)
_CHUNK = 32  # frames decoded per pass when iterating a view that is not in increasing order


class VideoDecodeError(ValueError):
    """The input cannot be decoded as asked."""


class NotAVideoError(VideoDecodeError):
    """FFmpeg cannot open the input as a media file (not a video, unsupported, or its index is missing)."""


class NoVideoStreamError(VideoDecodeError):
    """The file is valid media but has no video stream (e.g. audio only)."""


class UnsupportedVideoError(VideoDecodeError):
    """The video cannot be indexed (e.g. a raw .h264 elementary stream without timestamps)."""


class EmptyVideoError(VideoDecodeError):
    """The video stream holds no frames."""


class TimeRangeError(VideoDecodeError):
    """No frame lies in the requested [start_time, end_time) window."""


class CorruptVideoError(VideoDecodeError):
    """The stream stops being decodable; `frame_index` and `time` (s) say where."""

    def __init__(self, message, frame_index=None, time=None):
        super().__init__(message)
        self.frame_index, self.time = frame_index, time


class TruncatedVideoError(CorruptVideoError, IndexError):
    """A frame past the readable part of a truncated video was requested."""


class VideoDecoder(PyOperator):
    """Decode a video file or http(s) URL into RGB `VideoFrame`s (timestamps in ms).

    `sample_type=None` returns a lazy `LazyFrames` sequence of every frame in [start_time, end_time);
    'uniform_temporal_subsample' (`args={'num_samples': n}`) and 'time_step_sample' (`args={'time_step': s}`)
    return a list. Argument errors raise `ValueError` here, not at the first call.
    """

    def __init__(self, start_time=None, end_time=None, sample_type=None, args=None, timeout=TIMEOUT_S):
        super().__init__()
        self._start = _seconds('start_time', start_time, default=0)
        self._end = _seconds('end_time', end_time, default=None)
        if self._end is not None and self._start >= self._end:
            raise ValueError(f'start_time ({start_time}) must be less than end_time ({end_time})')
        self._sample_type, self._sample_arg = _check_sampling(sample_type, args)
        if not _is_number(timeout) or timeout <= 0:
            raise ValueError(f'timeout must be a positive, finite number of seconds, got {timeout!r}')
        self._timeout = timeout

    def __call__(self, path):
        frames = self.frames(path)
        if self._sample_type is None:
            return frames
        if frames.error is not None:
            raise _fresh(frames.error)  # sampling needs the whole window; lazy views can still read the valid part
        if self._sample_type == 'uniform_temporal_subsample':
            return frames.take(uniform_indices(len(frames), self._sample_arg))
        return frames.take(time_step_indices(frames.times, self._sample_arg, self._start))

    def frames(self, path):
        """All frames of the window as a `LazyFrames` (one demux pass, no decoding yet)."""
        index = VideoIndex.read(path, self._timeout)
        first = bisect.bisect_left(index.pts, math.ceil(index.pts[0] + self._start / index.time_base))
        stop = len(index.pts) if self._end is None else bisect.bisect_left(
            index.pts, math.ceil(index.pts[0] + self._end / index.time_base))
        if first >= stop:
            raise TimeRangeError(
                f'{path}: no frames in [{float(self._start)}, {_fmt_end(self._end)}) s; the video has '
                f'{len(index.pts)} frames spanning {index.duration:.3f} s')
        reaches_end = index.error is not None and stop == len(index.pts)
        return LazyFrames(index, range(first, stop), index.error if reaches_end else None)


class LazyFrames(collections.abc.Sequence):
    """Read-only sequence of RGB `VideoFrame`s decoded on access.

    Thread-safe: every access opens its own container, so views can be read from several threads at once.
    `error` is set when the window runs into the unreadable tail of a truncated video: `len` counts only the
    readable frames, and indexing past them raises it (a `TruncatedVideoError`, also an `IndexError`).
    """

    def __init__(self, index, positions, error=None):
        self._index, self._positions, self.error = index, positions, error

    def __len__(self):
        return len(self._positions)

    def __getitem__(self, item):
        if isinstance(item, slice):
            positions = self._positions[item]
            keeps_tail = item.step in (None, 1) and (item.stop is None or item.stop >= len(self))
            return LazyFrames(self._index, positions, self.error if keeps_tail else None)
        return self.take([item])[0]

    def __iter__(self):
        """Stream frames one by one; memory stays bounded by the decoder, not the video length."""
        if self._positions.step > 0:
            for _, frame in _decode(self._index, self._positions):
                yield frame
        else:
            for start in range(0, len(self), _CHUNK):
                yield from self.take(range(start, min(start + _CHUNK, len(self))))
        if self.error is not None:
            raise _fresh(self.error)

    def __repr__(self):
        return (f'LazyFrames({self._index.source!r}, {len(self)} frames, fps={self.fps:.3f}, '
                f'duration={self.duration:.3f} s)')

    def take(self, indices):
        """Decode several frames in one forward pass (seeking only across keyframes); caller's order kept."""
        positions = [self._position(i) for i in indices]
        decoded = dict(_decode(self._index, sorted(set(positions))))
        return [decoded[p] for p in positions]

    @property
    def times(self):
        """Exact presentation times (`fractions.Fraction` seconds) of the frames."""
        return [self._index.time(p) for p in self._positions]

    @property
    def timestamps(self):
        """Presentation times in ms, as the frames' `timestamp` will carry them."""
        return [self._index.ms(p) for p in self._positions]

    @property
    def fps(self):
        return self._index.fps

    @property
    def duration(self):
        """Seconds from the first frame's start to the last frame's end."""
        if not self._positions:
            return 0.0
        first, last = sorted((self._positions[0], self._positions[-1]))
        return float(self._index.time(last) + self._index.frame_duration(last) - self._index.time(first))

    def _position(self, i):
        try:
            return self._positions[i]
        except IndexError:
            if self.error is not None and i >= len(self):
                raise TruncatedVideoError(f'frame {i} requested, but only {len(self)} are readable: {self.error}',
                                          self.error.frame_index, self.error.time) from None
            raise IndexError(f'frame index {i} out of range for {len(self)} frames') from None
        except TypeError:
            raise TypeError(f'frame indices must be integers, not {type(i).__name__}') from None


@dataclasses.dataclass(frozen=True)
class VideoIndex:
    """Where every frame of the first video stream is: pts in presentation order and keyframe positions."""

    source: str
    pts: tuple
    keyframes: tuple  # positions (indices into pts) of keyframes, increasing
    time_base: fractions.Fraction
    end_pts: int  # pts just after the last frame
    fps: float
    timeout: float
    error: CorruptVideoError = None  # set when demuxing stopped early (truncated / corrupt container)

    @classmethod
    def read(cls, source, timeout=TIMEOUT_S):
        """One demux pass over the packets, no decoding."""
        source = os.fspath(source)
        with _open(source, timeout) as container:
            if not container.streams.video:
                kinds = ', '.join(s.type for s in container.streams) or 'none'
                raise NoVideoStreamError(f'{source}: no video stream (streams found: {kinds})')
            stream = container.streams.video[0]
            packets, problem = _demux(container, stream, timeout)
            time_base, rate = stream.time_base, stream.average_rate or stream.guessed_rate
        if not packets:
            raise EmptyVideoError(f'{source}: the video stream has no readable frames'
                                  + (f' ({problem})' if problem else ''))
        packets.sort(key=lambda p: p[0])
        pts = tuple(p[0] for p in packets)
        if len(set(pts)) != len(pts):
            raise CorruptVideoError(f'{source}: several packets share one pts; cannot index the frames')
        fps = float(rate) if rate else len(pts) / float((pts[-1] - pts[0] + 1) * time_base)
        last_duration = packets[-1][3] or max(round(1 / (fps * time_base)), 1)
        index = cls(source, pts, tuple(i for i, p in enumerate(packets) if p[2]), time_base,
                    pts[-1] + last_duration, fps, timeout)
        if problem is not None:
            end = float(index.time(len(pts) - 1))
            error = CorruptVideoError(f'{source}: the stream stops after frame {len(pts) - 1} ({end:.3f} s) '
                                      f'at {problem}; {len(pts)} frames are readable', len(pts) - 1, end)
            object.__setattr__(index, 'error', error)
        return index

    @property
    def duration(self):
        return float((self.end_pts - self.pts[0]) * self.time_base)

    def time(self, position):
        """Seconds since the first frame (time 0 of the video, whatever the container's start offset)."""
        return (self.pts[position] - self.pts[0]) * self.time_base

    def ms(self, position):
        return round(self.time(position) * 1000)

    def frame_duration(self, position):
        following = self.pts[position + 1] if position + 1 < len(self.pts) else self.end_pts
        return (following - self.pts[position]) * self.time_base

    def position(self, pts):
        """Frame position of a pts, or None when no indexed frame has it."""
        i = bisect.bisect_left(self.pts, pts) if pts is not None else len(self.pts)
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def keyframe_before(self, position):
        """Position of the last keyframe at or before `position` (the stream start when none is marked)."""
        k = bisect.bisect_right(self.keyframes, position) - 1
        return self.keyframes[k] if k >= 0 else 0

    def open(self):
        return _open(self.source, self.timeout)


def _demux(container, stream, timeout):
    """(pts, dts, keyframe, duration) of every readable packet in decode order, and why reading stopped early."""
    packets, bad, problem, untimed = [], None, None, 0
    demuxer = container.demux(stream)
    while problem is None:
        started = time.monotonic()
        try:
            packet = next(demuxer)
        except StopIteration:
            break
        except av.error.FFmpegError as e:
            problem = f'a read error ({e.strerror})'
        else:
            if packet.is_corrupt:
                bad, problem = packet, 'a truncated or corrupt packet'
            elif packet.size and not packet.is_discard:
                if packet.pts is None:
                    untimed += 1
                else:
                    packets.append((packet.pts, packet.dts, packet.is_keyframe, packet.duration))
        if problem and time.monotonic() - started >= timeout:  # a stalled read ends as a short packet
            raise TimeoutError(f'{container.name}: no data within {timeout} s while reading')
    declared = _declared_duration(container, stream)
    if problem is None and declared and packets:
        # Some demuxers (Matroska) end quietly at a cut: compare what was found with what the header declares.
        span = max(p[0] + (p[3] or 0) for p in packets) - min(p[0] for p in packets)
        found = float(span * stream.time_base)
        if found < declared - max(0.5, 0.02 * declared):
            problem = f'the end of the file, though its header declares {declared:.3f} s'
    if untimed and not packets:
        raise UnsupportedVideoError(f'{container.name}: the video packets carry no timestamps (a raw elementary '
                                    'stream?); remux it into a container, e.g. ffmpeg -i IN -c copy OUT.mp4')
    if problem is not None:
        packets = [p for p in packets if p[0] < _first_missing_pts(packets, bad)]
    return packets, problem


def _declared_duration(container, stream):
    """Seconds the header promises for the video (the container's figure only when video is its one stream)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _first_missing_pts(packets, bad):
    """Lowest pts a lost frame can have: unread packets have pts >= dts > the dts of every packet before them."""
    if bad is not None and bad.dts is not None:
        return min(bad.dts + 1, bad.pts if bad.pts is not None else math.inf)
    dts = [p[1] for p in packets if p[1] is not None]
    return max(dts) + 1 if dts else math.inf


def uniform_indices(n_frames, num_samples):
    """floor(linspace(0, n_frames - 1, num_samples)), as pytorchvideo's UniformTemporalSubsample."""
    return np.linspace(0, n_frames - 1, num_samples).astype(np.int64).tolist()


def time_step_indices(times, time_step, start=0):
    """Indices of the first frame at or after each multiple of `time_step` seconds from `start`.

    A frame is picked once even if several multiples fall before it (time_step shorter than a frame gap).
    """
    step, start = _exact(time_step), _exact(start)
    picked, previous = [], None
    for i, t in enumerate(times):
        slot = math.floor((t - start) / step)  # multiples at or before t, minus one
        if previous is None or slot > previous:
            picked.append(i)
        previous = slot
    return picked


def _decode(index, positions):
    """Yield (position, VideoFrame) for increasing, unique `positions`, seeking only when a keyframe lies between.

    Some demuxers (e.g. MPEG-TS) seek by dts and can land past the wanted frame; then the seek is retried from the
    keyframe before, then from the stream start, before giving up.
    """
    if not positions:
        return
    with index.open() as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'
        i, last, retry = 0, None, 0
        while i < len(positions):
            _seek(container, stream, index, positions[i], retry)
            first = i
            try:
                for position, frame in _run(container, stream, index, positions[i:]):
                    if frame.is_corrupt:
                        raise _stopped(index, position, last, 'the decoder marked it corrupt')
                    yield position, _to_video_frame(frame, index.ms(position))
                    last, i = position, i + 1
            except av.error.ExitError as e:
                raise TimeoutError(f'{index.source}: no data within {index.timeout} s while decoding') from e
            except av.error.FFmpegError as e:
                raise _stopped(index, positions[i], last, f'decoding failed: {e.strerror}') from e
            retry = 0 if i > first else retry + 1
            if retry > 2:
                raise _stopped(index, positions[i], last, 'the decoder never produced it')


def _seek(container, stream, index, position, retry):
    k = bisect.bisect_right(index.keyframes, position) - 1 - retry
    if k >= 0:
        container.seek(index.pts[index.keyframes[k]], stream=stream, backward=True)
    else:
        container.seek(0)  # the start of the file (offset in microseconds, no stream)


def _run(container, stream, index, wanted):
    """Decode forward from the current position, yielding the wanted frames until the next one needs a seek.

    Frames are trusted only from the first keyframe on: some demuxers (MPEG-PS) seek to non-key packets, and
    decoding from there gives frames with the right pts but garbage content. Stops early when a frame past the next
    wanted one appears (the seek overshot, or the decoder dropped it).
    """
    i, synced = 0, False
    for frame in _frames(container, stream):
        synced = synced or frame.key_frame  # frames before the first keyframe may lack their references
        position = index.position(frame.pts)
        if position is None or position < wanted[i]:
            continue  # before the wanted frame, or not a presented frame (e.g. a leading frame of an open GOP)
        if position > wanted[i]:
            return
        if not synced:
            continue
        yield position, frame
        i += 1
        if i == len(wanted) or index.keyframe_before(wanted[i]) > position:
            return


def _frames(container, stream):
    """Decoded frames until the end, or until an unreadable packet (then drain what the decoder holds)."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.ExitError:
            raise
        except av.error.FFmpegError:
            break
        if packet.is_corrupt:
            break
        yield from packet.decode()  # the final empty packet drains the decoder
    yield from stream.codec_context.decode(None)


def _fresh(error):
    """A new exception like `error`: re-raising one shared instance would pile up tracebacks across calls."""
    return type(error)(str(error), error.frame_index, error.time)


def _stopped(index, wanted, last, why):
    where = f'after frame {last} ({float(index.time(last)):.3f} s)' if last is not None else 'before any frame'
    return CorruptVideoError(f'{index.source}: cannot decode frame {wanted} ({float(index.time(wanted)):.3f} s): '
                             f'{why}; decoding stopped {where}', wanted, float(index.time(wanted)))


def _to_video_frame(frame, timestamp_ms):
    """RGB uint8 (H, W, 3) at the coded size, turned upright according to the display matrix."""
    rgb = frame.to_ndarray(format='rgb24')
    quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as np.rot90 turns
    if quarter_turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, quarter_turns))
    return VideoFrame(rgb, mode='RGB', timestamp=timestamp_ms, key_frame=bool(frame.key_frame))


def _open(source, timeout):
    """Open with a read timeout; map FFmpeg's errors to ours."""
    is_url = '://' in source
    if not is_url and not os.path.isfile(source):
        raise FileNotFoundError(errno.ENOENT, 'video file not found', source)
    try:
        return av.open(source, timeout=timeout)
    except av.error.HTTPNotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, f'HTTP 404: {e.strerror}', source) from e
    except av.error.ExitError as e:
        raise TimeoutError(f'{source}: no data within {timeout} s') from e
    except ConnectionError:  # PyAV's are also the built-in ConnectionRefusedError etc.: not 'not a video'
        raise
    except av.error.FFmpegError as e:
        hint = 'it is not a video, or a truncated MP4 whose index (moov atom) is missing'
        raise NotAVideoError(f'{source}: FFmpeg cannot open it ({e.strerror}); {hint}') from e


def _check_sampling(sample_type, args):
    if args is not None and not isinstance(args, collections.abc.Mapping):
        raise ValueError(f"args must be a dict such as {{'num_samples': 8}}, got {args!r}")
    args = {} if args is None else dict(args)
    if sample_type is None:
        if args:
            raise ValueError(f'args {sorted(args)} given without a sample_type; choose one of {sorted(SAMPLE_ARGS)}')
        return None, None
    if sample_type not in SAMPLE_ARGS:
        raise ValueError(f'unknown sample_type {sample_type!r}; expected None or one of {sorted(SAMPLE_ARGS)}')
    key = SAMPLE_ARGS[sample_type]
    unknown = sorted(set(args) - {key})
    if unknown or key not in args:
        raise ValueError(f'sample_type {sample_type!r} takes args={{{key!r}: ...}} only; got {args}')
    value = args[key]
    if key == 'num_samples' and not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
        raise ValueError(f'num_samples must be a positive integer, got {value!r}')
    if not _is_number(value) or not value > 0:
        raise ValueError(f'{key} must be positive, got {value!r}')
    return sample_type, int(value) if key == 'num_samples' else value


def _seconds(name, value, default):
    if value is None:
        return default
    if not _is_number(value):
        raise ValueError(f'{name} must be a finite number of seconds, got {value!r}')
    if value < 0:
        raise ValueError(f'{name} must not be negative, got {value}')
    return _exact(value)


def _is_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def _exact(seconds):
    """Decimal value as written (0.1 -> 1/10), so frames exactly on a boundary are not lost to float error."""
    return seconds if isinstance(seconds, fractions.Fraction) else fractions.Fraction(str(seconds))


def _fmt_end(end):
    return 'end' if end is None else float(end)
