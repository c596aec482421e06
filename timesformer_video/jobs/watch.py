"""Watch a live source: its windows classified as they complete, with bounded latency.

    for row in watch('udp://127.0.0.1:5000', classifier, window_s=2):
        print(row['start_ms'], row['labels'][0], row['latency_ms'])

The stages of the batch job, on a stream: source (`stream_source`: decoded frames on one monotonic stream clock,
reconnecting) -> windows (`stream_windows`: the same windows and sampled frames as `index --window`) -> model
(`model_stage.ClipModel`, the batch job's) -> rows. Decoding and windowing run in their own thread; the model runs
in the thread that iterates. Between them waits at most `waiting` complete windows: when the model is slower than
the stream, a new window pushes out the oldest waiting one, which is skipped (counted), so latency stays bounded
and nothing queues without end.

A row is a dict: `source`, `start_ms`, `end_ms` (the window on the stream clock), `wall_time` (UTC ISO-8601 of the
arrival of the window's last frame), `latency_ms` (from that arrival to the row), `labels`, `scores` (top-k),
`feature` (`(D,)` float32), `error` (None, or `TypeName: message` when the model failed on this window). A gap (the
sender lost, timestamps that jumped) is a row `{'source', 'gap': True, 'start_ms', 'end_ms', 'wall_time', 'error'}`.

Stopping: `stop()` (from any thread or a signal handler), the `duration` passing, or the source ending for good
(no frame for `reconnect_timeout` seconds) ends the iteration once the windows already waiting have their rows;
the windows not yet complete are dropped. Closing the iterator (`break` out of a for loop) stops it too.
"""

from __future__ import annotations

import array
import atexit
import dataclasses
import statistics
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from .decoding import Clip
from .handoff import WAITING, Handoff
from .model_stage import ClipModel
from .stream_source import RECONNECT_TIMEOUT_S, TIMEOUT_S, Break, Gap, StreamFrame, StreamSource
from .stream_windows import StreamWindow, StreamWindows


@dataclasses.dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()  # the decoding thread has finished
_LIVE: weakref.WeakSet = weakref.WeakSet()  # watches whose decoding thread was started


@atexit.register
def _close_all() -> None:
    """At exit, before the interpreter is torn down: a decoding thread still inside FFmpeg would call back into a
    finalising Python (PyAV's read-timeout callback) and abort the process."""
    for watch in list(_LIVE):
        watch.close()


class Watch:
    """The iterator `watch()` returns; its counters say how it went (see `summary`)."""

    def __init__(self, source: str, classifier, window_s: float, stride_s: float | None = None, *,
                 timeout: float = TIMEOUT_S, reconnect_timeout: float = RECONNECT_TIMEOUT_S,
                 rtsp_transport: str | None = None, duration: float | None = None, waiting: int = WAITING):
        from ..windows import check_window
        from . import checks

        window_ms, stride_ms = check_window(window_s, stride_s)
        if duration is not None:
            checks.positive('duration', duration, ' of seconds')
        self.source = source
        self.done = self.gaps = 0
        self.latencies_ms = array.array('d')  # one per row: 8 bytes a window
        self._stop = threading.Event()
        self._stream = StreamSource(source, timeout, reconnect_timeout, rtsp_transport, self._stop)
        self._windows = StreamWindows(classifier.transform, window_ms, stride_ms)
        self._model = ClipModel(classifier)
        self._handoff = Handoff(checks.count('waiting', waiting))
        self._duration = duration
        self._thread: threading.Thread | None = None
        self._rows = self._run()

    @property
    def skipped(self) -> int:
        return self._handoff.skipped

    def stop(self) -> None:
        """End the watch: the windows already waiting get their rows, then iteration stops."""
        self._stop.set()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._rows)

    def close(self) -> None:
        """Stop, and wait (at most the read timeout) for the decoding thread to leave FFmpeg."""
        self.stop()
        self._rows.close()
        if self._thread is not None:
            self._thread.join(self._stream.timeout + 1)

    def summary(self) -> str:
        """`watch: N windows done, K skipped, G gaps; latency p50 X ms, p95 Y ms` (`n/a` with no window)."""
        if len(self.latencies_ms) >= 2:
            cuts = statistics.quantiles(self.latencies_ms, n=100, method='inclusive')
            p50, p95 = f'{round(cuts[49])} ms', f'{round(cuts[94])} ms'
        elif self.latencies_ms:
            p50 = p95 = f'{round(self.latencies_ms[0])} ms'
        else:
            p50 = p95 = 'n/a'
        return (f'watch: {self.done} windows done, {self.skipped} skipped, {self.gaps} gaps; '
                f'latency p50 {p50}, p95 {p95}')

    # -- the two threads -----------------------------------------------------------------------------------------
    def _decode(self) -> None:
        """The decoding thread: frames -> complete windows and gaps -> the hand-off."""
        try:
            for item in self._stream:
                if isinstance(item, StreamFrame):
                    out = self._windows.add(item)
                elif isinstance(item, Break):
                    out = self._windows.end_segment(item.end)
                else:
                    out = [item]
                for ready in out:
                    self._handoff.put(ready, skippable=isinstance(ready, StreamWindow))
        except BaseException as e:  # noqa: BLE001 - handed to the iterating thread, which raises it
            self._handoff.put(_Failed(e))
        finally:
            self._handoff.put(_END)

    def _warm_up(self) -> None:
        """A forward on a black clip before the source opens: a model's first call is slow (memory, kernels
        chosen), and would make the first window late."""
        cfg = self._model.op.cfg
        black = np.zeros((cfg.num_frames, cfg.image_size, cfg.image_size, 3), np.uint8)
        self._model.run([Clip(black, [0.0] * cfg.num_frames)])

    def _run(self) -> Iterator[dict[str, Any]]:
        self._warm_up()
        self._thread = threading.Thread(target=self._decode, name='timesformer-watch-decode', daemon=True)
        self._thread.start()  # a daemon: a read blocked in FFmpeg (at most `timeout` s) never holds up the rows
        _LIVE.add(self)
        timer = threading.Timer(self._duration or 0, self._stop.set)
        timer.daemon = True
        if self._duration is not None:
            timer.start()
        try:
            while True:
                items = self._handoff.take(timeout=0.1)
                yield from self._rows_of(items)  # the windows in hand first, whatever comes after them
                failed = next((item.error for item in items if isinstance(item, _Failed)), None)
                if failed is not None:
                    raise failed
                if _END in items or (not items and self._stop.is_set()):
                    return
        finally:
            timer.cancel()
            self._stop.set()

    def _rows_of(self, items: list) -> Iterator[dict[str, Any]]:
        """Rows for the items taken, in order: each run of windows through the model as one batch."""
        batch: list[StreamWindow] = []
        for item in [*items, None]:
            if isinstance(item, StreamWindow):
                batch.append(item)
                continue
            if batch:
                results = self._model.run([window.clip for window in batch])
                now = time.monotonic()
                for window, result in zip(batch, results):
                    yield self._row(window, result, now)
                batch = []
            if isinstance(item, Gap):
                self.gaps += 1
                yield {'source': self.source, 'gap': True, 'start_ms': item.start_ms, 'end_ms': item.end_ms,
                       'wall_time': item.wall_time.isoformat(timespec='milliseconds'),
                       'error': f'{type(item.error).__name__}: {item.error}'}

    def _row(self, window: StreamWindow, result, now: float) -> dict[str, Any]:
        latency = round((now - window.arrival) * 1000, 1)
        self.done += 1
        self.latencies_ms.append(latency)
        return {'source': self.source, 'start_ms': window.clip.start_ms, 'end_ms': window.clip.end_ms,
                'wall_time': window.wall_time.isoformat(timespec='milliseconds'), 'latency_ms': latency,
                'labels': result.labels, 'scores': result.scores, 'feature': result.feature, 'error': result.error}


def watch(source: str, classifier, window_s: float, stride_s: float | None = None, **options) -> Watch:
    """Classify the windows of a live `source` as they complete: an iterator of row dicts (see the module doc).

    `classifier`: an `ActionClassifier` (its transform samples each window's frames, its model runs them);
    `window_s`, `stride_s`: seconds, whole ms (stride defaults to the window). Options: `timeout` (s without data
    before an open or a read gives up, default 10), `reconnect_timeout` (s without a frame before a lost source is
    given up, default 30), `rtsp_transport` ('tcp', the default, or 'udp'), `duration` (s of watching, default
    until the source ends), `waiting` (complete windows that may wait for the model, default 1).

    `classifier` may also be an `operators.OperatorSpec` (the batch job's recipe), built here.

    Raises ValueError for arguments out of range and `errors.StreamOpenError` for a file or device that is not
    there; iterating raises `StreamOpenError` when the source cannot be opened otherwise.
    """
    from .operators import OperatorSpec, build_classifier

    if isinstance(classifier, OperatorSpec):
        classifier = build_classifier(classifier)
    return Watch(source, classifier, window_s, stride_s, **options)
