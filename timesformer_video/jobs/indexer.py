"""One video in, one result row out: decode lazily, classify, embed; a failure becomes the row's `error`.

Shared by the local engine and every Ray replica, so both produce the same rows for the same video. The operator
is used through its public calls only: `op(frames)` per video, or `op.batch(videos)` for `clip_batch > 1`.

Moments (an operator made with `window=`): one video in, one row per window out (`op.iter_windows(frames)`,
which decodes and runs the windows in batches, so memory does not grow with the video's length). A video that
fails gives one row with its `error` and no window; a failure after some windows drops them (the video is redone
by `--retry-failed`, never kept half done).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from typing import Any

from ..frames import Frames
from .operators import OperatorSpec, build_classifier, build_decoder
from .paths import os_path, readable


def error_text(error: BaseException) -> str:
    """How the `error` column records an exception: `TypeName: message`, a file name that is not UTF-8 in it shown
    with `\\xNN` escapes (`paths.readable`), so that every output format can hold it."""
    return readable(f'{type(error).__name__}: {error}')


def stopped_early(frames: Frames) -> str | None:
    """The `error` of a video whose frames stop early (the decoder's `frames.error`: truncated), else None."""
    stopped = getattr(frames, 'error', None)
    return None if stopped is None else error_text(stopped)


def error_row(path: str, model: str, error: BaseException | str, decode_s: float = 0.0,
              moments: bool = False) -> dict[str, Any]:
    message = readable(error) if isinstance(error, str) else error_text(error)
    window = {'start_ms': None, 'end_ms': None} if moments else {}
    return {'path': path, **window, 'model': model, 'duration': None, 'labels': None, 'scores': None,
            'feature': None, 'decode_s': decode_s, 'model_s': 0.0, 'error': message}


class TimedFrames(Sequence):
    """The decoder's lazy frames, adding up the time spent decoding them (which happens inside the operator,
    when it fetches the frames it samples). Everything else (`fps`, `timestamps`, `duration`) is passed through."""

    def __init__(self, frames):
        self._frames = frames
        self.decode_s = 0.0

    def __len__(self) -> int:
        return len(self._frames)

    def _timed(self, fetch):
        start = time.perf_counter()
        try:
            return fetch()
        finally:
            self.decode_s += time.perf_counter() - start

    def __getitem__(self, item):
        return self._timed(lambda: self._frames[item])

    def take(self, indices):
        return self._timed(lambda: self._frames.take(indices))

    def __iter__(self):
        iterator = iter(self._frames)
        while True:
            try:
                yield self._timed(lambda: next(iterator))
            except StopIteration:
                return

    def __getattr__(self, name):
        return getattr(self._frames, name)


class Indexer:
    """The operator and the decoder, built once per process (or per Ray replica) from an `OperatorSpec`.

    Row timings: `decode_s` is opening the video plus decoding the frames the operator samples; `model_s` is the
    rest of the operator's work (resize, crop, normalize, forward; its share of the batch with `clip_batch > 1`).
    """

    def __init__(self, spec: OperatorSpec, op=None):
        self.spec = spec
        self.op = op if op is not None else build_classifier(spec)
        self.decoder = build_decoder()
        self.moments = spec.moments
        # Moments only: called with (path, end_ms of the window just done) as windows finish (progress bars).
        self.on_window = None

    @property
    def dim(self) -> int:
        return self.op.cfg.embed_dim

    def __call__(self, path: str) -> dict[str, Any]:
        return self.process_many([path])[0]

    def process_many(self, paths: Sequence[str]) -> list[dict[str, Any]]:
        """Rows for `paths`, in order.

        Videos are opened (indexed) one after another in a background thread while the model runs on the ones
        before, so inputs whose index needs a full decode pass (see video_decode/README.md) do not leave it idle.
        """
        rows: list[Any] = [None] * len(paths)
        size = 1 if self.moments else max(1, self.spec.clip_batch)  # the operator batches a video's windows
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='open-video') as pool:
            pending = [pool.submit(self._open, path) for path in paths]
            opened = []  # (index, lazy frames, duration, seconds to open)
            for i, future in enumerate(pending):
                frames, duration, open_s, error = future.result()
                if error is not None:
                    rows[i] = error_row(paths[i], self.spec.model_name, error, open_s, self.moments)
                else:
                    opened.append((i, frames, duration, open_s))
                if len(opened) == size or (i == len(paths) - 1 and opened):
                    done = self._batch(paths, opened) if len(opened) > 1 else None
                    if done is None:
                        one = self._windows if self.moments else self._one
                        done = [(j, one(paths[j], *rest)) for j, *rest in opened]
                    for j, row in done:
                        rows[j] = row
                    opened = []
        if self.moments:  # each entry is a video's list of window rows, or its one error row
            return [row for entry in rows for row in (entry if isinstance(entry, list) else [entry])]
        return rows

    def _open(self, path: str):
        """(lazy frames, duration s, seconds taken, None) or (None, None, seconds taken, the exception) of the video
        at a stored path (`paths.stored`)."""
        start = time.perf_counter()
        try:
            frames = self.decoder(os_path(path))  # reads the container's index; decodes only where it must
            return frames, float(frames.duration), time.perf_counter() - start, None
        except Exception as e:  # noqa: BLE001 - any failure of one video is that video's result
            return None, None, time.perf_counter() - start, e

    def _row(self, path, result, frames, duration, decode_s, model_s) -> dict[str, Any]:
        """A result row; a video that stops early (truncated) keeps the result of its readable part, and its `error`
        says where it stops (the decoder's `CorruptVideoError` message), so it is not taken for a complete video."""
        labels, scores, feature = result
        return {'path': path, 'model': self.spec.model_name, 'duration': duration, 'labels': list(labels),
                'scores': [float(s) for s in scores], 'feature': feature, 'decode_s': decode_s,
                'model_s': model_s, 'error': stopped_early(frames)}

    def _one(self, path, frames, duration, open_s) -> dict[str, Any]:
        timed = TimedFrames(frames)
        start = time.perf_counter()
        try:
            result = self.op(timed)
        except Exception as e:  # noqa: BLE001
            return error_row(path, self.spec.model_name, e, open_s + timed.decode_s)
        model_s = time.perf_counter() - start - timed.decode_s
        return self._row(path, result, frames, duration, open_s + timed.decode_s, model_s)

    def _windows(self, path, frames, duration, open_s) -> list[dict[str, Any]]:
        """Every window's row of one video, in time order; `[error row]` when the video fails."""
        timed = TimedFrames(frames)
        start = time.perf_counter()
        found = []
        try:
            for window in self.op.iter_windows(timed):
                found.append(window)
                if self.on_window is not None:
                    self.on_window(path, window.end_ms)
        except Exception as e:  # noqa: BLE001
            return [error_row(path, self.spec.model_name, e, open_s + timed.decode_s, moments=True)]
        decode_s = open_s + timed.decode_s
        model_s = max(0.0, time.perf_counter() - start - timed.decode_s)  # decoding overlaps the model
        error = stopped_early(frames)
        share = 1 / len(found)
        return [{'path': path, 'start_ms': int(w.start_ms), 'end_ms': int(w.end_ms), 'model': self.spec.model_name,
                 'duration': duration, 'labels': list(w.labels), 'scores': [float(s) for s in w.scores],
                 'feature': w.features, 'decode_s': decode_s * share, 'model_s': model_s * share, 'error': error}
                for w in found]

    def _batch(self, paths, group) -> list[tuple[int, dict[str, Any]]] | None:
        """One forward for the group; None when any video fails, so that each is then run (and blamed) alone."""
        timed = [TimedFrames(frames) for _, frames, _, _ in group]
        start = time.perf_counter()
        try:
            results = self.op.batch(timed)
        except Exception:  # noqa: BLE001 - redone per video, which records the right video's error
            return None
        model_s = (time.perf_counter() - start - sum(t.decode_s for t in timed)) / len(group)
        return [(i, self._row(paths[i], result, frames, duration, open_s + t.decode_s, model_s))
                for (i, frames, duration, open_s), t, result in zip(group, timed, results)]
