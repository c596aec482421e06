"""The live source stage: a stream (RTSP, UDP/TCP MPEG-TS, HLS, HTTP, a file being written, a V4L2 device) ->
decoded frames with their time on one monotonic stream clock, and the breaks and gaps between connections.

`StreamSource(source)` is iterated once and yields, in order:
- `StreamFrame`: one decoded frame (kept as FFmpeg decoded it; `rgb()` converts it, as the file decoder does, only
  for the frames a window samples), its time on the stream clock (exact seconds, the first frame at 0), its
  duration, and when it arrived (`time.monotonic()` and UTC);
- `Break`: the frames before it end a segment (the sender ended the stream, the connection dropped or timed out, or
  the timestamps jumped); `error` says which;
- `Gap`: frames come again after a break; `start_ms`/`end_ms` on the stream clock span what was missed.

The clock: within a segment a frame's time is its pts, times the stream's time base, counted from the segment's
first frame; a new segment (a reconnect, or timestamps that go backwards or leap more than `JUMP_S` ahead: a camera
that rebooted, a new sender) starts at the end of the last frame before it plus the wall-clock time that passed
beyond that frame's duration, rounded to whole ms. So the clock never goes backwards and a gap of 7 s of wall time
is 7 s on the clock.

Reading never hangs: opening and each read give up after `timeout` seconds without data (PyAV's
`timeout=(open, read)`). A lost source is opened again with back-off (0.25 s doubling to 4 s) until
`reconnect_timeout` seconds pass without a frame; then iteration ends. A source that cannot be opened at all (no
such file or device, an unknown protocol, not media, nothing received within `reconnect_timeout` of the start)
raises `errors.StreamOpenError` with what to do.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import av

from . import checks
from .errors import StreamEndedError, StreamOpenError, TimestampJumpError

TIMEOUT_S = 10.0  # seconds without data before an open or a read gives up
RECONNECT_TIMEOUT_S = 30.0  # seconds without a frame after which a lost source is given up
JUMP_S = 10  # a frame more than this many seconds past the last one's end is a timestamp jump
BACKOFF_S = (0.25, 4.0)  # first and longest wait between attempts to open a lost source
RTSP_TRANSPORTS = ('tcp', 'udp')
# Failures that retrying cannot mend when the source has never been opened: a wrong name, not a stream.
_PERMANENT = (av.error.FileNotFoundError, av.error.ProtocolNotFoundError, av.error.DemuxerNotFoundError,
              av.error.InvalidDataError, av.error.PermissionError, av.error.IsADirectoryError,
              av.error.HTTPClientError, av.error.OptionNotFoundError, FileNotFoundError, IsADirectoryError,
              PermissionError)


@dataclasses.dataclass(frozen=True)
class StreamFrame:
    """One decoded frame. `time`, `duration`: exact seconds on the stream clock; `arrival`: `time.monotonic()` when
    it came out of the decoder; `wall_time`: the same moment in UTC."""

    frame: av.VideoFrame
    time: Fraction
    duration: Fraction
    arrival: float
    wall_time: datetime.datetime

    def rgb(self):
        """RGB uint8 `(H, W, 3)`, converted as the file decoder converts (`to_ndarray(format='rgb24')`)."""
        return self.frame.to_ndarray(format='rgb24')


@dataclasses.dataclass(frozen=True)
class Break:
    """The segment ends here: `error` is why (`StreamEndedError`, `TimestampJumpError`, a timeout or network
    error). `end`: the end of its last frame on the stream clock (s)."""

    end: Fraction
    error: BaseException


@dataclasses.dataclass(frozen=True)
class Gap:
    """Frames come again: `[start_ms, end_ms)` on the stream clock was missed, for `error` (the break's)."""

    start_ms: int
    end_ms: int
    wall_time: datetime.datetime
    error: BaseException


def is_device(source: str) -> bool:
    return source.startswith('/dev/video')


def is_local_file(source: str) -> bool:
    return not checks.is_url(source) and not is_device(source)


class StreamSource:
    """Iterate a live source once (see the module doc). `stop`: an event that ends iteration between packets.

    `rtsp_transport`: 'tcp' (default: no loss, through firewalls) or 'udp', for rtsp:// sources. A local file is
    read as it grows (FFmpeg's `follow`) and ends once nothing is appended for `reconnect_timeout` seconds.
    Raises ValueError for arguments out of range and `StreamOpenError` for a file or device that is not there;
    iterating raises `StreamOpenError` for a source that cannot be opened otherwise (the module doc).
    """

    def __init__(self, source: str, timeout: float = TIMEOUT_S, reconnect_timeout: float = RECONNECT_TIMEOUT_S,
                 rtsp_transport: str | None = None, stop: threading.Event | None = None):
        checks.positive('timeout', timeout, ' of seconds')
        checks.positive('reconnect_timeout', reconnect_timeout, ' of seconds')
        if rtsp_transport is not None:
            checks.one_of('rtsp_transport', rtsp_transport, RTSP_TRANSPORTS)
        self.source = os.fspath(source)
        self.timeout, self.reconnect_timeout = float(timeout), float(reconnect_timeout)
        self.rtsp_transport = rtsp_transport
        self.stop = stop or threading.Event()
        self._last: StreamFrame | None = None  # the last frame given, on the stream clock
        self._origin: tuple[Fraction, Fraction] | None = None  # (segment's first pts time, its stream time)
        self._break: Break | None = None  # the break not yet closed by a gap
        self._check_local()

    def _check_local(self) -> None:
        """A file or device that is not there: `StreamOpenError` at once, before any model work."""
        if is_device(self.source) and not os.path.exists(self.source):
            raise StreamOpenError(f'{self.source}: no such device (list the cameras with `ls /dev/video*` or '
                                  f'`v4l2-ctl --list-devices`)')
        if is_local_file(self.source) and (os.path.isdir(self.source) or not os.path.exists(self.source)):
            raise StreamOpenError(f'{self.source}: no such file (a live source is a URL such as rtsp://host/path, '
                                  f'udp://127.0.0.1:5000, tcp://host:port, http://host/live.m3u8, a file being '
                                  f'written, or a device /dev/videoN)')

    @property
    def _read_timeout(self) -> float:
        return self.reconnect_timeout if is_local_file(self.source) else self.timeout

    # -- opening -------------------------------------------------------------------------------------------------
    def _open(self):
        """The container, opened with the timeouts and the options this kind of source needs."""
        options, fmt, timeout = {}, None, (self.timeout, self._read_timeout)
        if self.source.startswith(('rtsp://', 'rtsps://')):
            options['rtsp_transport'] = self.rtsp_transport or 'tcp'
        elif self.source.startswith('udp://'):
            options['overrun_nonfatal'] = '1'  # a slow reader loses packets instead of the connection
        elif is_device(self.source):
            fmt = 'v4l2'
        elif is_local_file(self.source):
            options['follow'] = '1'  # read on as the file grows; the read timeout ends it
        return av.open(self.source, format=fmt, options=options, timeout=timeout)

    def _connect(self, since: float):
        """A container with a video stream, trying again with back-off until `reconnect_timeout` seconds after
        `since` (monotonic); None then, or when stopped."""
        wait = BACKOFF_S[0]
        while not self.stop.is_set():
            try:
                container = self._open()
            except StreamOpenError:
                raise
            except _PERMANENT as e:
                if self._last is None:  # never opened: a wrong name, not a passing fault
                    raise StreamOpenError(f'{self.source}: cannot be opened ({type(e).__name__}: {e}); check the '
                                          f'URL, path or device, and that it sends video') from None
                error = e
            except (av.error.FFmpegError, OSError) as e:  # refused, reset, timed out: the sender may come back
                error = e
            else:
                if container.streams.video and self._last is not None and _has_end(container):
                    container.close()  # it came back as a recording (a VOD playlist): read already
                    return None
                if container.streams.video:
                    return container
                container.close()
                if self._last is None:
                    raise StreamOpenError(f'{self.source}: holds no video stream (audio or data only); point '
                                          f'watch at a source that sends video')
                error = StreamEndedError('the source came back without a video stream')
            if time.monotonic() - since >= self.reconnect_timeout:
                if self._last is None:
                    raise StreamOpenError(f'{self.source}: nothing received within {self.reconnect_timeout:g} s '
                                          f'({type(error).__name__}: {error}); start the sender, check the address '
                                          f'and port, or wait longer with --reconnect-timeout') from None
                return None
            self.stop.wait(min(wait, max(0.0, since + self.reconnect_timeout - time.monotonic())))
            wait = min(wait * 2, BACKOFF_S[1])
        return None

    # -- reading -------------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[StreamFrame | Break | Gap]:
        since = time.monotonic()
        while not self.stop.is_set():
            container = self._connect(since)
            if container is None:
                return
            self._origin = None  # a new connection is a new segment
            ended = _has_end(container)
            try:
                yield from self._read(container)
                error = StreamEndedError(f'{self.source}: the sender ended the stream')
            except av.error.ExitError:  # PyAV's read timeout
                error = TimeoutError(f'{self.source}: no data within {self._read_timeout:g} s')
            except (av.error.FFmpegError, OSError) as e:  # lost: reset, damaged beyond decoding
                error = e
            finally:
                container.close()
            if self.stop.is_set():
                return
            if self._last is not None and self._break is None:
                self._break = Break(self._last.time + self._last.duration, error)
                yield self._break
            if is_local_file(self.source) or ended:  # reading it again would repeat it
                return
            since = self._last.arrival if self._last is not None else since

    def _read(self, container) -> Iterator[StreamFrame | Break | Gap]:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        fallback = 1 / Fraction(rate)  # a frame's duration when the decoder gives none
        try:
            for packet in container.demux(stream):  # ends with an empty packet, which drains the decoder
                if self.stop.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:  # a damaged packet: its frames are lost, the stream goes on
                    continue
                for frame in frames:
                    yield from self._place(frame, stream.time_base, fallback)
        except (av.error.FFmpegError, OSError):  # lost: first the frames the decoder still holds (B-frames)
            try:
                frames = stream.codec_context.decode(None)
            except av.error.FFmpegError:
                frames = []
            for frame in frames:
                yield from self._place(frame, stream.time_base, fallback)
            raise

    def _place(self, frame, time_base, fallback: Fraction) -> Iterator[StreamFrame | Break | Gap]:
        """The frame on the stream clock; a break and a gap first when its timestamps jump."""
        arrival = time.monotonic()
        wall = datetime.datetime.now(datetime.timezone.utc)
        last = self._last
        duration = frame.duration * time_base if frame.duration else fallback
        own = None if frame.pts is None else frame.pts * time_base  # None: untimed, one duration after the last
        if self._origin is not None and last is not None:
            expected = last.time + last.duration
            at = expected if own is None else self._origin[1] + own - self._origin[0]
            if at <= last.time or at > expected + JUMP_S:
                self._break = Break(expected, TimestampJumpError(
                    f'{self.source}: timestamps jumped by {float(at - expected):+.3f} s after {float(last.time):.3f} '
                    f's of stream (a restarted sender or camera); re-based to go on from there'))
                yield self._break
                self._origin = None
        if self._origin is None:  # a new segment
            start = Fraction(0) if last is None else self._resume_time(last, arrival)
            self._origin = (own if own is not None else Fraction(0), start)
            at = start
            if self._break is not None:
                yield Gap(round(self._break.end * 1000), round(start * 1000), wall, self._break.error)
                self._break = None
        elif own is None:
            at = last.time + last.duration
        else:
            at = self._origin[1] + own - self._origin[0]
        self._last = StreamFrame(frame, at, duration, arrival, wall)
        yield self._last

    @staticmethod
    def _resume_time(last: StreamFrame, arrival: float) -> Fraction:
        """A new segment's first frame: the last frame's end plus the wall time that passed beyond it, whole ms."""
        missed = max(0.0, arrival - last.arrival - float(last.duration))
        return Fraction(round((last.time + last.duration + Fraction(missed)) * 1000), 1000)


def _has_end(container) -> bool:
    """Whether an http(s) source is a recording with an end (a file, an HLS playlist that is no longer live): FFmpeg
    knows its duration. Opened again it would play again from its start, so it is read once; a live one has no
    duration. (An RTSP server that plays a file says its duration too, but a camera that reboots is reconnected.)"""
    return container.name.startswith(('http://', 'https://')) and container.duration is not None
