"""Video decoding: the frames a sequential decode gives, decoded lazily with checked seeks; no model, no Towhee.

Frames are RGB uint8 `(H, W, 3)` numpy arrays; their times travel beside them (`LazyFrames.times`/`timestamps`,
or a `Frame` record from `get_frames_at`). Which frames a sampled call takes is `sampling.py`'s rule. The Towhee
operator `video-decode/ffmpeg` (`video_decode/`) wraps these frames as `towhee.types.VideoFrame`s.

One pass indexes the video: from packets, without decoding, where packets are known to map one to one onto frames
(MP4/MOV/MKV/WebM with H.264/HEVC/VP8/VP9/AV1/MPEG-4, confirmed on the first frames), else by decoding once and
counting the frames the decoder really produces. Frames are then decoded on demand: `take` seeks to the keyframe
before the first wanted frame and decodes forward, checking each frame's pts against the index, seeking again only
when the next wanted frame lies beyond another keyframe, and decoding from the start when a seek does not line up. A
clip of 8 frames from a long MP4 therefore costs a few GOPs of decoding and 8 RGB frames of memory, not the video.
"""

import bisect
import collections.abc
import concurrent.futures
import dataclasses
import errno
import fractions
import math
import os
import re
import statistics
import struct
import time
import urllib.request
from typing import NamedTuple

import av
import numpy as np

from .errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    NotSeekableError,
    NoVideoStreamError,
    PacketIndexError,
    TimeRangeError,
    TruncatedVideoError,
)
from .sampling import keyframe_indices, time_step_indices, uniform_indices  # the rules of which frames make a clip

SAMPLE_ARGS = {'uniform_temporal_subsample': 'num_samples', 'time_step_sample': 'time_step'}
INDEX_METHODS = ('auto', 'packets', 'decoded')  # how the index is built (`VideoIndex.read`)
SEEK_MODES = ('exact', 'keyframes')  # what `LazyFrames.take` gives: the frames asked for, or the keyframes before them
TIMEOUT_S = 30.0  # seconds without data before an open or read gives up (mostly for URLs)
_CHUNK = 32  # frames decoded per pass when iterating a view that is not in increasing order


class Frame(NamedTuple):
    """One decoded frame and its times (what `LazyFrames.get_frames_at` and `VideoDecoder.sample` give)."""

    data: np.ndarray  # RGB uint8 (H, W, 3), at the displayed orientation, the coded size
    time: fractions.Fraction  # exact presentation time, seconds since the video's first frame
    timestamp: int  # the same in ms, rounded
    key_frame: bool  # the decoder's own flag for this frame
    pts: int | None  # the decoder's pts, in the stream's time base (None where it gives none)


class VideoDecoder:
    """Decode a video file, an image-sequence pattern or an http(s) URL into RGB uint8 `(H, W, 3)` arrays.

    Args:
        start_time, end_time: seconds on the video's own clock (from its first frame); only the frames shown in
            `[start_time, end_time)` are returned, or `[start_time, end_time]` with `include_end=True`. None: from
            the start, to the end.
        sample_type: None (every frame, lazily); 'uniform_temporal_subsample' with `args={'num_samples': n}`
            (n frames spread evenly, `floor(linspace(0, count - 1, n))`); 'time_step_sample' with
            `args={'time_step': s}` (one frame every s seconds). Case does not matter, as in the Towhee hub.
        timeout: seconds without data before opening or reading a URL gives up (`TimeoutError`).
        include_end: keep a frame shown at exactly `end_time` (the Towhee hub operator's rule; the operator
            `video-decode/ffmpeg` sets it). False (the default): the half-open windows of the batch job and moments.
        index: how the frames are indexed when a video is opened (`LazyFrames.index_method` says which was used):
            'auto' (packets where they are known to stand for the frames one to one, else one decode pass);
            'packets' (one demux pass, nothing decoded; `PacketIndexError` saying why when the video's packets
            cannot stand for its frames); 'decoded' (one sequential decode pass, always).
        seek: 'exact' (the frames asked for) or 'keyframes' (an approximate fast path: `take` and the sampled calls
            give, for each frame asked for, the keyframe at or before it, decoding only keyframes; a frame with no
            seekable keyframe at or before it is read exactly).
        threads: how many threads one `take` may decode with (None: every core this process may use): the seeks it
            needs are split into runs of whole GOPs, each decoded in its own container, so 8 frames spread over a
            video decode on several cores at once; the frames are the same. 1 for a process that is itself one of
            several decoding side by side (the batch job's decode workers).

    Argument errors raise `ValueError` here, not at the first call. A frame is an RGB uint8 `(H, W, 3)` array at the
    displayed orientation; its times are the `LazyFrames`' `times` (exact seconds) and `timestamps` (ms since the
    first frame), or come with it from `get_frames_at`/`sample`. The Towhee operator `video-decode/ffmpeg`
    (`video_decode/` at the repository root) is this class, with frames as `towhee.types.VideoFrame`s.
    """

    def __init__(self, start_time=None, end_time=None, sample_type=None, args=None, timeout=TIMEOUT_S, *,
                 include_end=False, index='auto', seek='exact', threads=None):
        self._start = _seconds('start_time', start_time, default=0)
        self._end = _seconds('end_time', end_time, default=None)
        self._include_end = bool(include_end)
        if self._end is not None and (self._start > self._end or self._start == self._end and not include_end):
            relation = 'at most' if include_end else 'less than'
            raise ValueError(f'start_time ({start_time}) must be {relation} end_time ({end_time})')
        self._sample_type, self._sample_arg = _check_sampling(sample_type, args)
        if not _is_number(timeout) or timeout <= 0:
            raise ValueError(f'timeout must be a positive, finite number of seconds, got {timeout!r}')
        self._timeout = timeout
        if index not in INDEX_METHODS:
            raise ValueError(f'index must be one of {INDEX_METHODS}, got {index!r}')
        if seek not in SEEK_MODES:
            raise ValueError(f'seek must be one of {SEEK_MODES}, got {seek!r}')
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f'threads must be None (every usable core) or an integer of at least 1, got {threads!r}')
        self._index_method, self._seek, self._threads = index, seek, threads

    def __call__(self, path):
        """A video file path, image-sequence pattern or http(s) URL -> its frames: a `LazyFrames`
        (sample_type=None), else a list of RGB uint8 `(H, W, 3)` arrays (`sample` gives them with their times).
        A time range that holds no frame (e.g. `start_time` past the end) gives no frames: an empty `LazyFrames`,
        or an empty list.

        Raises FileNotFoundError (no such file; no file matching a pattern; HTTP 404), IsADirectoryError,
        `NotAVideoError`, `NoVideoStreamError`, `EmptyVideoError`, `NotSeekableError`, `CorruptVideoError` (a sampled
        window reaching the unreadable tail of a truncated file), TimeoutError, ConnectionError; the `*VideoError`
        ones are in `errors.py`; `PacketIndexError` with `index='packets'`. Details: video_decode/README.md.
        """
        if self._sample_type is None:
            return self._window(path)
        return [frame.data for frame in self.sample(path)]

    def sample(self, path):
        """The frames `__call__` gives, as a list of `Frame` records (data, time, timestamp, key_frame, pts), decoded
        now; with sample_type=None every frame of the window. Raises what `__call__` raises, and, as the sampled
        calls do, `CorruptVideoError` for a window reaching the unreadable tail of a truncated video."""
        frames = self._window(path)
        if self._sample_type is None:
            return list(frames.iter_frames())
        if frames.error is not None:
            raise _fresh(frames.error)  # sampling needs the whole window; lazy views can still read the valid part
        if not frames:
            return []
        if self._sample_type == 'uniform_temporal_subsample':
            return frames.get_frames_at(uniform_indices(len(frames), self._sample_arg))
        return frames.get_frames_at(time_step_indices(frames.times, self._sample_arg, self._start))

    def frames(self, path):
        """All frames of the window as a `LazyFrames` (one index pass; frames are decoded when read).

        Raises what `__call__` raises (except `CorruptVideoError`: a truncated video's frames carry it as `error`),
        and `TimeRangeError` when the window holds no frame (the call gives no frames instead).
        """
        frames = self._window(path)
        if not frames:
            index, closing = frames._index, ']' if self._include_end and self._end is not None else ')'
            raise TimeRangeError(
                f'{path}: no frames in [{float(self._start)}, {_fmt_end(self._end)}{closing} s; the video has '
                f'{len(index)} frames spanning {index.duration:.3f} s; choose a range that holds a frame')
        return frames

    def _window(self, path):
        """The frames of `[start_time, end_time)` (or `]`) as a `LazyFrames`, empty when there are none."""
        index = VideoIndex.read(path, self._timeout, self._index_method)
        ticks = index.ticks
        first = bisect.bisect_left(ticks, math.ceil(ticks[0] + self._start / index.time_base))
        if self._end is None:
            stop = len(ticks)
        elif self._include_end:
            stop = bisect.bisect_right(ticks, math.floor(ticks[0] + self._end / index.time_base))
        else:
            stop = bisect.bisect_left(ticks, math.ceil(ticks[0] + self._end / index.time_base))
        stop = max(first, stop)
        reaches_end = index.error is not None and stop == len(ticks)
        return LazyFrames(index, range(first, stop), index.error if reaches_end else None, self._seek, self._threads)


class LazyFrames(collections.abc.Sequence):
    """Read-only sequence of a video's frames, RGB uint8 `(H, W, 3)` arrays decoded on access, with their times.

    Thread-safe: every access opens its own container, so views can be read from several threads at once.
    `error` is set when the window runs into the unreadable tail of a truncated video: `len` counts only the
    readable frames, and indexing past them raises it (a `TruncatedVideoError`, also an `IndexError`).
    `seek` ('exact' or 'keyframes') is what `take` gives (`VideoDecoder`); indexing and iterating are always exact.
    `threads`: how many threads a `take` may decode with (`VideoDecoder`).
    """

    def __init__(self, index, positions, error=None, seek='exact', threads=None):
        self._index, self._positions, self.error, self.seek, self.threads = index, positions, error, seek, threads

    def __len__(self):
        return len(self._positions)

    def __getitem__(self, item):
        if isinstance(item, slice):
            positions = self._positions[item]
            keeps_tail = item.step in (None, 1) and (item.stop is None or item.stop >= len(self))
            return LazyFrames(self._index, positions, self.error if keeps_tail else None, self.seek, self.threads)
        return self.get_frame_at(item).data

    def __iter__(self):
        """Stream frames (arrays) one by one; memory stays bounded by the decoder, not the video length."""
        for frame in self.iter_frames():
            yield frame.data

    def iter_frames(self):
        """Stream every frame of the view as a `Frame` (with its times and key flag), in order, exactly; after the
        last readable one, raises `error` when it is set."""
        if self._positions.step > 0:
            for _, frame in _decode(self._index, self._positions):
                yield frame
        else:
            for start in range(0, len(self), _CHUNK):
                yield from self._exact_frames([self._position(i) for i in range(start, min(start + _CHUNK, len(self)))])
        if self.error is not None:
            raise _fresh(self.error)

    def __repr__(self):
        return (f'LazyFrames({self._index.source!r}, {len(self)} frames, fps={float(self.fps):.3f}, '
                f'duration={self.duration:.3f} s)')

    def _repr_html_(self):
        """Jupyter's view: a few thumbnails spread over the frames, over the repr (`display.frames_html`)."""
        from .display import frames_html

        return frames_html(self)

    def take(self, indices):
        """The frames at `indices` (ints, negative from the end) as RGB uint8 `(H, W, 3)` arrays, in the caller's
        order, decoded in one forward pass (seeking only across keyframes). With `seek='keyframes'`, each is the
        keyframe at or before the frame asked for (`get_frames_at` says which). Raises IndexError (out of range;
        `TruncatedVideoError` past a truncated video's readable part), `CorruptVideoError`."""
        return [frame.data for frame in self.get_frames_at(indices)]

    def get_frames_at(self, indices):
        """`take`'s frames as `Frame` records: data with its time, timestamp, key flag and pts (with
        `seek='keyframes'`, those of the keyframe given)."""
        positions = [self._position(i) for i in indices]
        index = self._index
        if self.seek == 'exact' or index.sequential:  # sequential: the packets proved not to be the frames
            return self._exact_frames(positions)
        wanted = keyframe_indices(positions, index.keyframes)
        keys = set(wanted).intersection(index.keyframes)
        decoded = dict(_decode_keyframes(index, sorted(keys)))
        decoded.update(_decode(index, sorted(set(wanted) - keys)))  # frames with no seekable keyframe before them
        return [decoded[p] for p in wanted]

    def get_frame_at(self, i):
        """Frame `i` as a `Frame` record, exactly (whatever `seek`)."""
        return self._exact_frames([self._position(i)])[0]

    def _exact_frames(self, positions):
        decoded = dict(_decode_spread(self._index, sorted(set(positions)), self.threads))
        return [decoded[p] for p in positions]

    @property
    def index_method(self):
        """How the video was indexed: 'packets' (from its packets, nothing decoded) or 'decoded' (one decode pass)."""
        return self._index.method

    @property
    def pts(self):
        """The decoder's pts of each frame, in the stream's time base (None where it gives none)."""
        return [self._index.pts[p] for p in self._positions]

    @property
    def times(self):
        """Exact presentation times (`fractions.Fraction` seconds) of the frames."""
        return [self._index.time(p) for p in self._positions]

    @property
    def timestamps(self):
        """Presentation times in ms since the first frame (`times` rounded)."""
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
    """Every frame a sequential decode of the video stream produces, in presentation order, and where to seek.

    Built one of two ways (`method`; `read(..., method=)` can force either):
    - 'packets': one demux pass, no decoding, for the inputs where packets and frames are known to correspond one to
      one (MP4/MOV/MKV/WebM holding H.264/HEVC/VP8/VP9/AV1/MPEG-4 with a timestamp on every packet, no edit-list
      discards, a keyframe first), confirmed by decoding the first frames;
    - 'decoded': one sequential decode pass (no RGB conversion) for everything else: edit lists, streams that start
      mid-GOP, missing or out-of-order timestamps, AVI, MPEG-TS/PS, DV, palettized video. The decoder is the truth.

    `pts` holds the decoder's own pts per frame (None where it gives none) and is what a seek is checked against;
    `ticks` are the frames' times in `time_base` units, increasing (see `_ticks`; the same tuple as `pts` when the
    pts increase); `keyframes` are the positions a seek may start from (empty: every read decodes forward from the
    start of the file).
    """

    source: str
    stream_index: int
    pts: tuple
    ticks: tuple
    keyframes: tuple
    time_base: fractions.Fraction
    end_tick: int  # tick just after the last frame
    fps: fractions.Fraction  # frames per second, exact (`_fps`)
    timeout: float
    method: str
    orientation: tuple = (False, 0)  # (mirror, counter-clockwise quarter turns) from the display matrix
    seek_lead: int = 0  # how far before a keyframe's pts to seek (ticks): demuxers that seek by dts land late
    error: CorruptVideoError = None  # set when reading stopped early (truncated / corrupt input)
    # The index a sequential decode gives, made by `decoded` once a read finds that the packets were not the frames
    # (damage inside them); one holder, shared by the copies `dataclasses.replace` makes.
    sequential: list = dataclasses.field(default_factory=list, compare=False, repr=False)

    @classmethod
    def read(cls, source, timeout=TIMEOUT_S, method='auto'):
        """Index `source` (path or URL): `method` 'auto' (a demux pass, or a decode pass where packets cannot stand
        for frames), 'packets' (a demux pass only) or 'decoded' (a decode pass only).

        Raises the errors listed in video_decode/README.md; `NotSeekableError` when an http(s) server without byte
        ranges serves a file that cannot be read front to back; `PacketIndexError` (method='packets') saying why the
        packets cannot stand for the frames.
        """
        source = os.fspath(source)
        try:
            index = cls._read(source, timeout, method)
        except (NotAVideoError, EmptyVideoError) as e:
            if source.startswith(('http://', 'https://')) and _needs_seeking_but_cannot(source, timeout):
                raise NotSeekableError(
                    f'{source}: the server does not answer byte-range requests, so the file can only be read front '
                    'to back, and this one cannot be read that way (an MP4/MOV whose index, the moov atom, is at '
                    'the end); download it first, serve it from a server that supports Range requests, or remux it '
                    'with the index first: ffmpeg -i IN -c copy -movflags +faststart OUT.mp4') from e
            raise
        return dataclasses.replace(index, orientation=_display_orientation(index))

    @classmethod
    def _read(cls, source, timeout, method):
        with _open(source, timeout) as container:  # stream fields are read while the container is open
            stream = _video_stream(container, source)
            if method != 'decoded':
                packets, problem, reach, _ = _scan(container, stream, timeout, decode=False)
                why = _why_packets_are_not_frames(container, stream, packets, problem)
                index, why = (None, why) if why else cls._from_packets(source, stream, packets, timeout)
                if index is not None:
                    return index._stopped_at(_short_of_header(reach, container, stream))
                if method == 'packets':
                    raise PacketIndexError(
                        f"{source}: cannot be indexed from its packets (index='packets'): {why}, so its packets "
                        "may not be its frames one to one; use index='auto' or index='decoded', which count the "
                        "frames by decoding the video once")
            chosen = stream.index
        return cls._by_decoding(source, chosen, timeout)

    @classmethod
    def _by_decoding(cls, source, stream_index, timeout):
        """The index of one sequential decode pass over stream `stream_index` (no RGB conversion)."""
        with _open(source, timeout) as container:
            stream = next(s for s in container.streams if s.index == stream_index)
            frames, problem, reach, lead = _scan(container, stream, timeout, decode=True)
            index = dataclasses.replace(cls._from_frames(source, stream, frames, problem, timeout), seek_lead=lead)
            return index._stopped_at(problem or _short_of_header(reach, container, stream))

    def decoded(self):
        """The index a sequential decode gives: this one when it was made by decoding; for one made from packets,
        one decode pass, made once (reads call it when the packets turn out not to be the frames: damage inside
        them). It has no seek points: FFmpeg's H.264 decoder with slice threads (PyAV's default) leaves damaged
        macroblocks unconcealed and unflagged, showing a reused buffer's old content, which depends on everything
        decoded before; only a decode from the start gives them as a sequential decode does."""
        if self.method == 'decoded':
            return self
        if not self.sequential:
            index = VideoIndex._by_decoding(self.source, self.stream_index, self.timeout)
            self.sequential.append(dataclasses.replace(index, keyframes=(), orientation=self.orientation))
        return self.sequential[0]

    @classmethod
    def _from_packets(cls, source, stream, packets, timeout):
        """(the index from packets, None), or (None, why not) when two packets share a pts or decoding the first
        frames shows they do not match."""
        order = sorted(range(len(packets)), key=lambda i: packets[i].pts)
        pts = tuple(packets[i].pts for i in order)
        if len(set(pts)) != len(pts):
            return None, 'two packets carry the same pts'
        keyframes = tuple(p for p, i in enumerate(order) if packets[i].key)
        fps = _fps(stream, pts, stream.time_base)
        last = packets[order[-1]].duration or max(round(1 / (fps * stream.time_base)), 1)
        index = cls(source, stream.index, pts, pts, keyframes, stream.time_base, pts[-1] + last, fps, timeout,
                    'packets')
        if not _first_frames_match(index):
            return None, f'decoding its first {_CHECKED_FRAMES} frames does not give the pts of its first packets'
        return index, None

    @classmethod
    def _from_frames(cls, source, stream, frames, problem, timeout):
        if not frames:
            raise EmptyVideoError(f'{source}: the video stream has no readable frames'
                                  + (f' ({problem})' if problem else ''))
        time_base = stream.time_base
        pts = tuple(f.pts for f in frames)
        ticks = _ticks(frames, pts, stream, time_base)
        fps = _fps(stream, ticks, time_base)
        # A seek is checked by pts, so they must tell frames apart; they need not increase (AVI with B-frames).
        seekable = None not in pts and len(set(pts)) == len(pts) and not _stateful_format(stream)
        # A damaged keyframe decodes differently after a seek than in sequence (concealed from the frame before).
        keyframes = tuple(p for p, f in enumerate(frames) if f.key and not f.corrupt) if seekable else ()
        end_tick = ticks[-1] + (frames[-1].duration or max(round(1 / (fps * time_base)), 1))
        return cls(source, stream.index, pts, ticks, keyframes, time_base, end_tick, fps, timeout, 'decoded')

    def _stopped_at(self, problem):
        """This index, with `error` saying where and why reading stopped (`problem`), when it did."""
        if problem is None:
            return self
        last = len(self) - 1
        end = float(self.time(last))
        return dataclasses.replace(self, error=CorruptVideoError(
            f'{self.source}: the stream stops after frame {last} ({end:.3f} s) at {problem}; {len(self)} frames are '
            'readable', last, end))

    def __len__(self):
        return len(self.ticks)

    @property
    def duration(self):
        return float((self.end_tick - self.ticks[0]) * self.time_base)

    def time(self, position):
        """Seconds since the first frame (time 0 of the video, whatever the container's start offset)."""
        return (self.ticks[position] - self.ticks[0]) * self.time_base

    def ms(self, position):
        return round(self.time(position) * 1000)

    def frame_duration(self, position):
        following = self.ticks[position + 1] if position + 1 < len(self.ticks) else self.end_tick
        return (following - self.ticks[position]) * self.time_base

    def keyframe_before(self, position, earlier=0):
        """The `earlier`-th seekable keyframe at or before `position`, or None (then decode from the start)."""
        k = bisect.bisect_right(self.keyframes, position) - 1 - earlier
        return self.keyframes[k] if k >= 0 and self.keyframes[k] > 0 else None

    def open(self):
        return _open(self.source, self.timeout)


# What the index keeps of each packet and each decoded frame: pts/dts in the stream's time base, keyframe flag,
# duration; a packet's `discard` marks one an edit list hides, a frame's `corrupt` one the decoder flags as damaged.
_Packet = collections.namedtuple('_Packet', 'pts dts key duration discard')
_Frame = collections.namedtuple('_Frame', 'pts dts key duration corrupt')
# How far reading got: the whole video packets read (edit-list discards and empty ones too; not a cut one) and the
# tick the last of them ends at (None: none timed).
_Reach = collections.namedtuple('_Reach', 'packets end')
# Container and codec families whose packets map one to one onto frames and whose seeks land on indexed keyframes.
_PACKET_FORMATS = {'mov', 'mp4', 'matroska', 'webm'}
_PACKET_CODECS = {'h264', 'hevc', 'vp8', 'vp9', 'av1', 'mpeg4'}
_CHECKED_FRAMES = 8  # frames decoded from the start to confirm a packet index


def _video_stream(container, source):
    """The stream FFmpeg's best-stream rule picks (a cover picture or thumbnail track loses to the real video)."""
    candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not candidates:
        raise NoVideoStreamError(f'{source}: no video stream {_holds(container)}')
    try:
        best = container.streams.best('video')
    except (av.error.FFmpegError, ValueError):
        best = None
    return best if best in candidates else candidates[0]


def _holds(container):
    """What a file without a video stream holds, for the error: its stream kinds, or that its one picture is a cover
    picture (an `attached_pic` video stream: the album art of an MP3/M4A), which is a still image, not a video."""
    def is_picture(stream):
        return stream.type == 'video' and bool(stream.disposition & av.stream.Disposition.attached_pic)

    pictures = sum(map(is_picture, container.streams))
    kinds = ', '.join(dict.fromkeys(s.type for s in container.streams if not is_picture(s)))  # each kind once
    if not pictures:
        return f'(streams found: {kinds or "none"})'
    picture = 'a cover picture' if pictures == 1 else f'{pictures} cover pictures'
    return (f'(it holds {kinds + " and " if kinds else ""}{picture}: an attached picture such as album art is one '
            f'still image, not a video); give a file with a video track')


def _stream(container, index):
    return next(s for s in container.streams if s.index == index.stream_index)


def _why_packets_are_not_frames(container, stream, packets, problem):
    """Why the packets read (`_Packet`s; `problem`: why reading them stopped early, or None) are not known to be the
    frames one to one, or None when they are."""
    if not set(container.format.name.split(',')) & _PACKET_FORMATS:
        return f'the container ({container.format.name}) is not MP4/MOV/MKV/WebM'
    if stream.codec_context.name not in _PACKET_CODECS:
        return f'the codec ({stream.codec_context.name}) is not one of {", ".join(sorted(_PACKET_CODECS))}'
    if _stateful_format(stream):
        return 'the video is palettized (its palette is sent once, at the start)'
    if problem is not None:
        return f'reading its packets found {problem}'
    if not packets:
        return 'it has no video packets'
    if not packets[0].key:
        return 'its first packet is not a keyframe (the stream starts mid-GOP)'
    if any(p.pts is None for p in packets):
        return 'some packets carry no pts'
    if any(p.discard for p in packets):
        return 'an edit list hides some of its packets'
    return None


def _stateful_format(stream):
    """Palettized video: the palette travels once, at the start, so frames decoded after a seek come out black."""
    return stream.codec_context.pix_fmt in ('pal8',)


def _first_frames_match(index):
    """Decode the first frames from the start; the packet index holds only if the decoder shows exactly those pts."""
    want = index.pts[:_CHECKED_FRAMES]
    seen = []
    try:
        with index.open() as container:
            stream = _stream(container, index)
            for frame in _frames(container, stream):
                seen.append(frame.pts)
                if len(seen) == len(want):
                    break
    except av.error.FFmpegError:
        return False
    return tuple(seen) == want


def _scan(container, stream, timeout, decode):
    """Every packet (decode=False, `_Packet`s) or decoded frame (decode=True, `_Frame`s); why reading stopped early
    (or None); how far the whole packets read reach (`_Reach`, for `_short_of_header`); the largest pts - dts of a
    packet (ticks: how far before a keyframe's pts a demuxer that seeks by dts must be sent).

    Decoding reads exactly as a plain sequential decode does (`container.decode(stream)`): every packet is decoded,
    including those the demuxer flags corrupt (MPEG-TS flags a continuity jump, as in TS files joined with `cat`), and
    a read or decoding error ends it, with the frames decoded before it. The packet pass ends at the first flagged or
    unreadable packet: then the decode pass decides what is readable.
    """
    units, problem, untimed, lead, count, end = [], None, 0, 0, 0, None
    rate = stream.guessed_rate or stream.average_rate or 25
    period = max(round(1 / (rate * stream.time_base)), 1)  # ticks a packet without a duration is taken to last
    demuxer = container.demux(stream)
    while problem is None:
        started = time.monotonic()
        try:
            packet = next(demuxer)
        except StopIteration:
            break
        except av.error.ExitError as e:
            raise TimeoutError(f'{container.name}: no data within {timeout} s while reading') from e
        except av.error.FFmpegError as e:
            problem = f'a read error ({e.strerror})'
        else:
            pts, dts, duration, size, corrupt = packet.pts, packet.dts, packet.duration, packet.size, packet.is_corrupt
            if corrupt and time.monotonic() - started >= timeout:  # a stalled read ends as a short packet
                raise TimeoutError(f'{container.name}: no data within {timeout} s while reading')
            if pts is not None and size:
                lead = max(lead, pts - dts if dts is not None else 0)
            at = pts if pts is not None else dts  # None: PyAV's final empty packet
            if at is not None and not corrupt:  # a whole packet (a cut one is flagged corrupt)
                count += 1
                end = max(end if end is not None else -math.inf, at + (duration or period))
            if decode:
                try:
                    units.extend(_unit(f) for f in packet.decode())  # the final empty packet drains the decoder
                except av.error.FFmpegError as e:
                    problem = f'a decoding error ({e.strerror})'
            elif corrupt:
                problem = 'a truncated or corrupt packet'
            elif size and pts is None:
                untimed += 1
            elif size:
                units.append(_Packet(pts, dts, packet.is_keyframe, duration, packet.is_discard))
        if problem and time.monotonic() - started >= timeout:
            raise TimeoutError(f'{container.name}: no data within {timeout} s while reading')
    if untimed and not decode:
        problem = problem or 'packets without timestamps'  # not an index from packets: the decode pass decides
    return units, problem, _Reach(count, end), lead


def _unit(frame):
    return _Frame(frame.pts, frame.dts, bool(frame.key_frame), frame.duration, bool(frame.is_corrupt))


def _ticks(frames, pts, stream, time_base):
    """Frame times in `time_base` units: the decoder's pts when every frame has one and they increase; else the
    packet dts they came from, when those do; else the frames' durations added up (1/fps where a frame has none).

    Made once per stream, in the spirit of FFmpeg's best-effort timestamp (which counts faulty pts and dts frame by
    frame): AVI with B-frames carries decode-order pts, and an untimed stream carries none.
    """
    if _increasing(pts):
        return pts
    dts = tuple(f.dts for f in frames)
    if _increasing(dts):
        return dts
    rate = stream.average_rate or stream.guessed_rate or 25
    fallback = max(round(1 / (rate * time_base)), 1)
    ticks, t = [], 0
    for f in frames:
        ticks.append(t)
        t += f.duration or fallback
    return tuple(ticks)


def _increasing(values):
    return all(v is not None for v in values) and all(a < b for a, b in zip(values, values[1:]))


def _fps(stream, ticks, time_base):
    """The header's frame rate unless the timestamps contradict it, else the mean rate the timestamps show.

    Contradict: more than 10 % away from both the mean and the median frame interval's rate (the median is not moved
    by one long gap, such as a stream-copy trim's last frame; the mean is what a variable frame rate averages to).
    Some headers are plainly wrong: raw DV's says 60000 fps for 25 fps video.
    Exact (`fractions.Fraction`): the header's rate as it is (30000/1001), or the ticks' mean rate (a DV file's
    299 frames over 299 * 2400/60000 s: 25, not 24.999999999999996), so clip sampling never moves by float error.
    """
    header = stream.average_rate or stream.guessed_rate
    header = fractions.Fraction(header) if header else None
    if len(ticks) < 2 or ticks[-1] <= ticks[0]:
        return header or fractions.Fraction(25)
    mean = (len(ticks) - 1) / ((ticks[-1] - ticks[0]) * time_base)
    # The median of the int intervals, made exact after: over Fractions, statistics.median costs 30 ms per 1800 frames.
    median = 1 / (fractions.Fraction(statistics.median(b - a for a, b in zip(ticks, ticks[1:]))) * time_base)
    if header and min(abs(header / rate - 1) for rate in (mean, median)) <= fractions.Fraction(1, 10):
        return header
    return mean


def _short_of_header(reach, container, stream):
    """Why the video's packets stop short of what the container declares for it (a download cut short), or None.

    Demuxers end quietly at a cut that falls between video packets (inside an audio packet, say), so what was read
    (`reach`, a `_Reach`) is compared with the header, whatever other streams are interleaved: MP4/MOV declare every
    sample in their sample tables (`stream.frames`, edit-list-hidden ones too); AVI its length in chunks (its video
    time base counts chunks, empty ones too, so the end tick is compared); Matroska/WebM the track's frame count or
    duration (the NUMBER_OF_FRAMES and DURATION tags mkvmerge and FFmpeg write), or the segment's duration when the
    video is its one stream (counted from time 0, as Matroska counts it). Other containers declare nothing usable.
    """
    names = set(container.format.name.split(','))
    if names & {'mov', 'mp4'} and stream.frames and reach.packets < stream.frames:
        return f'the end of the file, though its header declares {stream.frames} frames ({reach.packets} read)'
    if 'avi' in names and stream.frames not in (0, _AVI_UNKNOWN_LENGTH) and (reach.end or 0) < stream.frames:
        return (f'the end of the file, though its header declares {stream.frames} frames ({reach.end or 0} reached, '
                'counting empty chunks)')
    if not names & {'matroska', 'webm'}:
        return None
    frames = _tag(stream, 'NUMBER_OF_FRAMES')
    if frames and frames.isdigit() and reach.packets < int(frames):
        return f'the end of the file, though its header declares {frames} frames ({reach.packets} read)'
    declared = _declared_duration(container, stream)
    rate = stream.guessed_rate or stream.average_rate or 25
    if declared and (reach.end is None or reach.end * stream.time_base < declared - 1 / (2 * rate)):
        return f'the end of the file, though its header declares {float(declared):.3f} s'
    return None


# The length FFmpeg's AVI muxer leaves in the header when it cannot seek back to write the real one (output to a
# pipe: AVI_MAX_RIFF_SIZE, libavformat/avienc.c): a placeholder, not a declaration.
_AVI_UNKNOWN_LENGTH = 1 << 30


def _declared_duration(container, stream):
    """Seconds (exact) a Matroska header promises for the video: the track's DURATION tag (`HH:MM:SS.nnnnnnnnn`),
    else the segment's duration when the video is its one stream; None when it promises nothing."""
    tag = _tag(stream, 'DURATION')
    if tag and tag.count(':') == 2:
        hours, minutes, seconds = tag.split(':')
        try:
            return (int(hours) * 60 + int(minutes)) * 60 + fractions.Fraction(seconds)
        except ValueError:
            pass  # not a duration as the specification writes it: fall back to the segment's
    if container.duration and len(container.streams) == 1:
        return fractions.Fraction(container.duration, av.time_base)
    return None


def _tag(stream, name):
    """A stream's metadata tag, whatever the case of its key (mkvmerge and FFmpeg write them in capitals)."""
    return next((value for key, value in stream.metadata.items() if key.upper() == name), None)


class _OffTrack(Exception):
    """Internal: what a seek produced does not line up with the index; decode forward from earlier instead."""


def _decode(index, positions):
    """Yield (position, `Frame`) for increasing, unique `positions`: frame for frame what a sequential decode gives.

    Seeking is a shortcut, checked: after a seek to a keyframe, decoded frames count only from the frame whose pts is
    that keyframe's, and every following frame must carry the pts the index holds for its position. When a seek
    overshoots (demuxers that seek by dts), fails (servers without byte ranges) or its frames do not line up, it is
    tried from an earlier keyframe, then the rest is decoded forward from the start of the file. An index made from
    packets whose frames do not line up even then (damage inside the packets) gives way, for this read and every
    later one, to the index a sequential decode gives (`_as_decoded`).
    """
    positions = list(positions)
    done, failures = 0, 0
    if index.keyframes and positions and not index.sequential:
        with index.open() as container:
            stream = _stream(container, index)  # PyAV's default threads, as a plain sequential decode
            while done < len(positions) and failures < _SEEK_TRIES and not index.sequential:
                group = _seek_group(index, positions, done)
                start = index.keyframe_before(positions[done], earlier=failures)
                if start is None:  # no keyframe to seek to before these: the start of the file is the truth
                    yield from _decode_from_start(index, group)
                    done, failures = done + len(group), 0
                    continue
                try:
                    container.seek(index.pts[start] - index.seek_lead, stream=stream, backward=True)
                    for position, frame in _walk(index, _frames(container, stream), start, group, synced=False):
                        yield position, _frame(index, position, frame)
                        done += 1
                    failures = 0
                except av.error.ExitError as e:
                    raise TimeoutError(f'{index.source}: no data within {index.timeout} s while decoding') from e
                except (_OffTrack, av.error.FFmpegError):
                    failures += 1
    if done < len(positions):
        rest = positions[done:]
        yield from _as_decoded(index, rest) if index.sequential else _decode_from_start(index, rest)


def _decode_spread(index, positions, threads):
    """`_decode`'s (position, `Frame`) pairs for increasing `positions`, as a list, the seeks spread over up to
    `threads` threads (None: every usable core). Each thread decodes one run of whole seek groups (`_runs`) in a
    container of its own; a group starts with the seek the one-thread walk would make there, so the frames are the
    same, and a run's error is raised after the frames of the runs before it, where that walk would raise it. FFmpeg
    releases the GIL while it decodes and converts, so the runs use as many cores."""
    runs = _runs(index, positions, threads or _usable_cores())
    if len(runs) < 2:
        return list(_decode(index, positions))
    with concurrent.futures.ThreadPoolExecutor(len(runs), thread_name_prefix='take') as pool:
        futures = [pool.submit(lambda run=run: list(_decode(index, run))) for run in runs]
        return [pair for future in futures for pair in future.result()]


def _runs(index, positions, count):
    """`positions` cut into at most `count` runs of whole seek groups (`_seek_group`), each run decoding about the
    same number of frames (a group decodes from the keyframe before its first frame to its last)."""
    if count < 2 or len(positions) < 2 or not index.keyframes or index.sequential:
        return [positions]
    groups, done = [], 0
    while done < len(positions):
        groups.append(_seek_group(index, positions, done))
        done += len(groups[-1])
    costs = [group[-1] - (index.keyframe_before(group[0]) or 0) + 1 for group in groups]
    share = sum(costs) / min(count, len(groups))
    runs, run, spent = [], [], 0
    for group, cost in zip(groups, costs):
        if run and spent + cost / 2 > share * (len(runs) + 1):  # this group lies mostly past the run's share
            runs.append(run)
            run = []
        run, spent = run + group, spent + cost
    return runs + [run]


def _usable_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_SEEK_TRIES = 3  # seeks tried (each from an earlier keyframe) before decoding forward from the start


def _seek_group(index, positions, i):
    """positions[i:j]: the wanted frames one seek serves (no keyframe to jump to past the frame after the last one
    decoded, so reading on costs no more than seeking)."""
    j = i + 1
    while j < len(positions) and (index.keyframe_before(positions[j]) or 0) <= positions[j - 1] + 1:
        j += 1
    return positions[i:j]


def _decode_from_start(index, positions):
    """Yield (position, `Frame`) for `positions`, decoding forward from the start of the file. Where the frames
    stop lining up with an index made from packets (damage inside them), the rest comes from `_as_decoded`."""
    done = 0
    with index.open() as container:
        stream = _stream(container, index)
        try:
            for position, frame in _walk(index, _frames(container, stream), 0, positions, synced=True):
                yield position, _frame(index, position, frame)
                done += 1
        except av.error.ExitError as e:
            raise TimeoutError(f'{index.source}: no data within {index.timeout} s while decoding') from e
        except (av.error.FFmpegError, _OffTrack) as e:
            if index.method != 'packets':
                last = positions[done - 1] if done else None
                raise _stopped(index, positions[done], last, _what_failed(e)) from e
        else:
            return
    yield from _as_decoded(index, positions[done:])


def _what_failed(error):
    if isinstance(error, _OffTrack):
        return (f'the decoder does not give the frames the index holds ({error}): the file is damaged there, or '
                'changed since it was opened')
    return f'decoding failed: {error.strerror}'


def _as_decoded(index, positions):
    """Yield (position, `Frame`) for the `positions` of a packet index whose packets proved not to be the frames,
    from the index a sequential decode gives (`VideoIndex.decoded`): each frame where the two agree on its pts,
    stamped as the packet index stamped it (what `LazyFrames.timestamps` said); `_misread` at the first where they do
    not (the sequential decode stops before it, drops frames or gives them in another order)."""
    truth = index.decoded()
    agree = 0
    while agree < len(positions) and _same_frame(index, truth, positions[agree]):
        agree += 1
    for position, frame in _decode(truth, positions[:agree]):
        yield position, frame._replace(time=index.time(position), timestamp=index.ms(position))
    if agree < len(positions):
        raise _misread(index, truth, positions[agree])


def _same_frame(index, truth, position):
    return position < len(truth) and truth.pts[position] == index.pts[position]


def _misread(index, truth, position):
    """The error for a frame of a packet index that a sequential decode does not give as the packets said."""
    if position >= len(truth):
        detail = f'a sequential decode gives only {len(truth)} frames' + (
            f' (decoding stopped after frame {len(truth) - 1}, at an error)' if truth.error is not None else '')
    else:
        detail = (f'a sequential decode gives its frame {position} with pts {truth.pts[position]}, not '
                  f'{index.pts[position]} (frames dropped or out of order)')
    return CorruptVideoError(
        f'{index.source}: cannot decode frame {position} ({float(index.time(position)):.3f} s) as a sequential '
        f'decode gives it: {detail}. The file is damaged inside its packets (or changed since it was opened): it was '
        f'indexed from its packets without decoding, as every MP4/MOV/MKV/WebM that looks intact is, which count '
        f'{len(index)} frames, and the damage showed only when this read decoded through it. The frames a '
        'sequential decode gives where the packets said are still read; for the rest, repair the file by '
        're-encoding it (ffmpeg -i IN -c:v libx264 OUT.mp4)', position, float(index.time(position)))


def _walk(index, frames, position, wanted, synced):
    """Number decoded `frames` from `position` and yield (position, frame) for each of `wanted` (increasing).

    Unsynced (after a seek), frames are skipped until the one with the pts of the keyframe at `position`.
    Raises `_OffTrack` when a frame's pts is not the one indexed for its position, or the frames run out.
    """
    j, seeking = 0, not synced
    for frame in frames:
        if not synced:
            target = index.pts[position]
            if frame.pts == target and frame.key_frame:
                synced = True
            elif index.ticks is index.pts and frame.pts is not None and frame.pts > target:  # pts in order
                raise _OffTrack(f'the seek landed after the keyframe at pts {target}')
            else:
                continue  # decoded on the way to the keyframe, or a leading frame of an open GOP
        elif position >= len(index) or frame.pts != index.pts[position]:
            raise _OffTrack(f'frame {position} has pts {frame.pts}')
        if seeking and frame.is_corrupt:
            raise _OffTrack(f'frame {position} is damaged: decoded after a seek it is concealed differently')
        if position == wanted[j]:
            yield position, frame
            j += 1
            if j == len(wanted):
                return
        position += 1
    raise _OffTrack(f'decoding ended before frame {wanted[j]}')


def _frames(container, stream):
    """Decoded frames exactly as a plain sequential decode gives them; a read or decoding error propagates."""
    for packet in container.demux(stream):
        yield from packet.decode()  # the demuxer's final empty packet drains the decoder


def _fresh(error):
    """A new exception like `error`: re-raising one shared instance would pile up tracebacks across calls."""
    return type(error)(str(error), error.frame_index, error.time)


def _stopped(index, wanted, last, why):
    where = (f'after frame {last} ({float(index.time(last)):.3f} s)' if last is not None
             else 'before any frame this read wanted')
    return CorruptVideoError(f'{index.source}: cannot decode frame {wanted} ({float(index.time(wanted)):.3f} s): '
                             f'{why}; decoding stopped {where}', wanted, float(index.time(wanted)))


def _decode_keyframes(index, positions):
    """Yield (position, `Frame`) for increasing, unique keyframe `positions` (of `index.keyframes`), decoding each
    keyframe's packet alone: seek to it, decode that packet, drain the decoder; no other frame is decoded. A seek that
    does not land on the keyframe's packet, or a packet that does not decode to it, reads that frame exactly
    (`_decode`) instead."""
    missed = []
    with index.open() as container:
        stream = _stream(container, index)
        for position in positions:
            frame = _keyframe_alone(index, container, stream, position)
            if frame is None:
                missed.append(position)
            else:
                yield position, _frame(index, position, frame)
    yield from _decode(index, missed)


def _keyframe_alone(index, container, stream, position):
    """The decoded keyframe at `position`, from its packet alone, or None when the seek or the packet disagrees."""
    target = index.pts[position]
    codec = stream.codec_context
    try:
        container.seek(target - index.seek_lead, stream=stream, backward=True)
        packet = next((p for p in container.demux(stream) if p.pts is None or p.pts >= target), None)
        if packet is None or packet.pts != target or not packet.is_keyframe:
            return None
        frames = _decode_packet(codec, packet) + _decode_packet(codec, None)  # None drains the decoder
    except av.error.ExitError as e:
        raise TimeoutError(f'{index.source}: no data within {index.timeout} s while decoding') from e
    except av.error.FFmpegError:
        return None
    finally:
        codec.flush_buffers()  # ready for the next packet after a drain or an error
    frame = frames[0] if len(frames) == 1 else None
    return frame if frame is not None and frame.pts == target and frame.key_frame and not frame.is_corrupt else None


def _decode_packet(codec, packet):
    """The frames `packet` (None: drain) decodes to; the one place the keyframes path decodes anything."""
    return codec.decode(packet)


def _frame(index, position, frame):
    """The `Frame` record of the decoded PyAV `frame` at `position` of `index`."""
    return Frame(_rgb(frame, index.orientation), index.time(position), index.ms(position), bool(frame.key_frame),
                 index.pts[position])


def _rgb(frame, orientation):
    """RGB uint8 (H, W, 3) at the coded size, shown as the display matrix says (`orientation`): mirrored, turned."""
    rgb = frame.to_ndarray(format='rgb24')
    mirror, quarter_turns = orientation
    if mirror:
        rgb = rgb[:, ::-1]
    if quarter_turns:
        rgb = np.rot90(rgb, quarter_turns)
    if mirror or quarter_turns:
        rgb = np.ascontiguousarray(rgb)
    return rgb


def _display_orientation(index):
    """(mirror, counter-clockwise quarter turns) of the stream's display matrix, read from its first frame in a
    container of its own: PyAV's `frame.side_data` makes the frame's buffers writable, which changes how a decoder
    conceals damage in the frames after it, so frames that are returned are never asked for it.

    The matrix (FFmpeg's libavutil/display.h: 3x3, row-major, 16.16 fixed point) maps a coded pixel (x, y) to
    (a*x + c*y + u, b*x + d*y + v). A negative determinant ad - bc means a mirror: undoing a horizontal flip first
    (negating a and b) leaves a pure rotation, counter-clockwise by -atan2(b, a) as av_display_rotation_get reads it.
    So a mirrored matrix is shown mirrored, not turned by 180 degrees. (False, 0) when there is none.
    """
    try:
        with index.open() as container:
            frame = next(_frames(container, _stream(container, index)), None)
            data = None if frame is None else next(
                (bytes(memoryview(d)) for d in frame.side_data if d.type == av.sidedata.sidedata.Type.DISPLAYMATRIX),
                None)
    except av.error.FFmpegError:
        return False, 0
    if data is None or len(data) != 36:
        return False, 0
    a, b, _, c, d = struct.unpack('<5i', data[:20])
    mirror = a * d - b * c < 0
    if mirror:
        a, b = -a, -b
    return mirror, round(-math.degrees(math.atan2(b, a)) / 90) % 4


def _needs_seeking_but_cannot(url, timeout):
    """Whether an http(s) server ignores byte ranges (no 206 to a Range request) and serves an ISO media file
    (MP4/MOV: an `ftyp` box first), whose index may be at its end: then only seeking can read it."""
    request = urllib.request.Request(url, headers={'Range': 'bytes=0-11'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status != 206 and response.read(12)[4:8] == b'ftyp'
    except (OSError, ValueError):  # urllib's errors are OSErrors; the error already raised says more
        return False


def _open(source, timeout):
    """Open with a read timeout; map FFmpeg's errors to ours. A path that is no file but holds a frame-number field
    (`frame%03d.png`) is an image sequence, opened with FFmpeg's image2 demuxer as `ffmpeg -i` opens it."""
    is_url = '://' in source
    if not is_url and os.path.isdir(source):
        raise IsADirectoryError(errno.EISDIR, 'a folder, not a video file (the batch job takes folders: '
                                'timesformer-videos index FOLDER)', source)
    sequence = not is_url and not os.path.isfile(source) and is_sequence_pattern(source)
    if not is_url and not sequence and not os.path.isfile(source):
        raise FileNotFoundError(errno.ENOENT, 'video file not found', source)
    try:  # a local path made absolute, so FFmpeg never reads a name such as 'file:clip.mp4' as a protocol
        return av.open(source if is_url else os.path.abspath(source), format='image2' if sequence else None,
                       timeout=timeout)
    except av.error.HTTPNotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, f'HTTP 404: {e.strerror}', source) from e
    except FileNotFoundError as e:  # PyAV's for ENOENT: a pattern's files, or a file removed since the check above
        if not sequence:
            raise
        raise FileNotFoundError(errno.ENOENT, 'no image matches this image-sequence pattern (FFmpeg numbers the '
                                'files from the first of 0..4 that exists, with no gaps: frame%03d.png is '
                                'frame000.png or frame001.png, ...)', source) from e
    except av.error.ExitError as e:
        raise TimeoutError(f'{source}: no data within {timeout} s') from e
    except ConnectionError:  # PyAV's are also the built-in ConnectionRefusedError etc.: not 'not a video'
        raise
    except av.error.FFmpegError as e:
        hint = 'it is not a video, or a truncated MP4 whose index (moov atom) is missing'
        raise NotAVideoError(f'{source}: FFmpeg cannot open it ({e.strerror}); {hint}') from e


def is_sequence_pattern(path):
    """Whether the file name holds a frame-number field as FFmpeg's image2 demuxer reads it (`%d`, `%03d`; `%%` is
    a literal percent sign)."""
    return re.search(r'%[0-9]*d', os.path.basename(path).replace('%%', '')) is not None


def _check_sampling(sample_type, args):
    if args is not None and not isinstance(args, collections.abc.Mapping):
        raise ValueError(f"args must be a dict such as {{'num_samples': 8}}, got {args!r}")
    args = {} if args is None else dict(args)
    if sample_type is None:
        if args:
            raise ValueError(f'args {sorted(args)} given without a sample_type; choose one of {sorted(SAMPLE_ARGS)}')
        return None, None
    if isinstance(sample_type, str):
        sample_type = sample_type.lower()  # the hub operator lowercases it: 'Time_Step_Sample' works there
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
