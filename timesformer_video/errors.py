"""Every error and warning of the decoder, the checkpoints and the classifier: one class per kind of failure.

Catch them by type (`except NotAVideoError`); each message says what was wrong, what was expected and what to do.
Every class here is a `TimesformerVideoError` (catch that for the failures of videos, checkpoints and jobs), and also
the built-in type it is a kind of (`ValueError`, `RuntimeError`, `TimeoutError`, `IndexError`), so code written
against those still works. The batch job's own failures (a job that cannot run as asked) are in `jobs/errors.py`,
under `JobError`. A call given a bad argument (an unknown model name, a device that is not there, frames that are
not a video) raises the plain built-in `ValueError` or `TypeError`, as Python functions do; missing files are
`FileNotFoundError`, unreachable servers `TimeoutError` / `ConnectionError`.
"""

from __future__ import annotations


class TimesformerVideoError(Exception):
    """Base of every error this package raises on purpose."""

# Decoding (decode.py)

class VideoDecodeError(TimesformerVideoError, ValueError):
    """The input cannot be decoded as asked."""


class NotAVideoError(VideoDecodeError):
    """FFmpeg cannot open the input as a media file (not a video, unsupported, or its index is missing)."""


class NoVideoStreamError(VideoDecodeError):
    """The file is valid media but has no video stream (e.g. audio only)."""


class NotSeekableError(VideoDecodeError):
    """The input can only be read front to back (a server without byte ranges) and this file needs seeking to be
    read at all (an MP4/MOV whose index, the moov atom, is at the end)."""


class EmptyVideoError(VideoDecodeError):
    """The video stream holds no frames."""


class TimeRangeError(VideoDecodeError):
    """No frame lies in the requested time range (`VideoDecoder.frames`; a call gives no frames instead)."""


class PacketIndexError(VideoDecodeError):
    """`VideoDecoder(index='packets')` was asked of a video whose packets do not stand for its frames one to one
    (the message says why); `index='auto'` or `'decoded'` reads it by decoding."""


class CorruptVideoError(VideoDecodeError):
    """The stream stops being decodable; `frame_index` and `time` (s) say where."""

    def __init__(self, message, frame_index=None, time=None):
        super().__init__(message)
        self.frame_index, self.time = frame_index, time


class TruncatedVideoError(CorruptVideoError, IndexError):
    """A frame past the readable part of a truncated video was requested."""


# Checkpoints (checkpoints.py)

class CheckpointError(TimesformerVideoError, ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class WeightsUnavailableError(TimesformerVideoError, RuntimeError):
    """Pretrained weights are not cached and could not be downloaded."""


class DownloadStalledError(TimesformerVideoError, TimeoutError):
    """The server sent nothing for the read timeout (a stalled connection or a server that never answers)."""


class DownloadHashError(TimesformerVideoError, ValueError):
    """A downloaded file whose SHA-256 does not start with the recorded hash."""


# Classification (classifier.py)

class SaturatedSimilarityWarning(UserWarning):
    """`explain(frames, target=embedding)` for a clip whose feature points the embedding's way (or exactly against
    it: the similarity is +-1, e.g. a search hit that is the query itself): the similarity's gradient vanishes there,
    so the map is attention rollout (target-independent) instead of gradient noise."""


class TruncatedVideoWarning(UserWarning):
    """The frames given stop early (the decoder's `frames.error`, e.g. a half-downloaded video): the result is of
    the readable part only."""
