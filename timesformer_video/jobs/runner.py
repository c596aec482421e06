"""The `index` job: inputs -> (local or Ray) engine -> atomic chunks -> final output -> optionally Milvus.

Resuming is the default: whatever the output or its sidecar already holds is skipped, so re-running the same
command after a crash or a kill finishes the rest, and re-running it with new videos adds only those.

Everything that can refuse the run (settings of the existing output or of an unfinished job, the Milvus
collection's settings and owner, a database in use) is checked before any state is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import JobError, MilvusInUseError, MilvusSyncError, MilvusUnavailableError, QueryVideoError
from .indexer import Indexer
from .inputs import expand, is_url
from .operators import OperatorSpec, build_classifier, build_decoder
from .paths import display, os_path, stored
from .results import ResultStore

ENGINES = ('local', 'ray')
# tqdm's default turns a rate under 1/s into s/video; videos/s reads the same at every speed.
_BAR = '{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]'
_MOMENTS_BAR = '{l_bar}{bar}| {n:.0f}/{total:.0f} s of video [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]'


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class IndexSummary:
    out: str
    total: int  # inputs of this run
    skipped: int  # already done before this run
    processed: int  # done by this run
    failed: int  # of those, recorded with an error
    wall_s: float  # whole run: model load, engine start, processing, final write, Milvus
    arrivals: list[float]  # seconds from the start at which each result reached the driver
    milvus: tuple[int, int] | None = None  # (upserted, deleted: entities that existed and were removed)
    windows: int | None = None  # moments (--window): window rows made by this run; None for per-video rows

    @property
    def videos_per_s(self) -> float:
        """Throughput over the whole run."""
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def first_result_s(self) -> float | None:
        """Start-up cost: from the start until the first result arrived."""
        return self.arrivals[0] if self.arrivals else None

    def steady_videos_per_s(self, replicas: int = 1) -> float | None:
        """Throughput once every replica is busy: results after the first `replicas` ones, per second after it."""
        if len(self.arrivals) <= replicas:
            return None
        elapsed = self.arrivals[-1] - self.arrivals[replicas - 1]
        return (len(self.arrivals) - replicas) / elapsed if elapsed > 0 else None


def _require(needed: bool, module: str, message: str) -> None:
    import importlib.util

    if needed and importlib.util.find_spec(module.split('.')[0]) is None:
        raise ValueError(message)


def _probe_seconds(path: str) -> float:
    """A video's duration from its container header (no decoding), 0.0 when it has none or cannot be opened."""
    import av

    try:
        with av.open(os_path(path), timeout=5) as container:
            return max(0.0, float(container.duration or 0) / av.time_base)
    except Exception:  # noqa: BLE001 - only a progress estimate; the video's own row says what is wrong
        return 0.0


class _VideoClock:
    """The progress bar of a moments run, in seconds of video: each video counts its header duration up front,
    windows move the bar while a video is in progress (local engine; Ray reports whole videos), and a finished
    video counts its decoded duration."""

    def __init__(self, bar, expected: dict[str, float]):
        self.bar, self.expected = bar, expected
        self.reported: dict[str, float] = {}

    def on_window(self, path: str, end_ms: int) -> None:
        seconds = end_ms / 1000  # on the video's clock; it may start after 0, so capped at the header's duration
        if self.expected.get(path, 0.0) > 0:
            seconds = min(seconds, self.expected[path])
        delta = seconds - self.reported.get(path, 0.0)
        if delta > 0:
            self.reported[path] = seconds
            self.bar.update(delta)

    def video_done(self, path: str, rows: Sequence[dict[str, Any]]) -> None:
        expected = self.expected.get(path, 0.0)
        seconds = rows[0]['duration'] if rows[0]['duration'] is not None else expected
        if seconds != expected:
            self.bar.total += seconds - expected
        self.bar.update(seconds - self.reported.pop(path, 0.0))


def _by_video(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows grouped by path, in order (a video's rows arrive together: its one row, or all its windows)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row['path'], []).append(row)
    return list(groups.items())


def _local(indexer: Indexer, paths: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
    size = max(1, indexer.spec.clip_batch)
    for start in range(0, len(paths), size):
        yield indexer.process_many(paths[start:start + size])


@dataclasses.dataclass(frozen=True)
class IndexJob:
    """One `index` run: what to read, where to write, which model, which engine, which Milvus collection.

    inputs: files, folders, globs, list files (`@list.txt` or `.txt`/`.lst`) and http(s) URLs (`inputs.expand`).
    out: the output file (`.parquet`, or `.jsonl`; `fmt` overrides the extension). spec: the model and its options.
    engine: 'local' (this process) or 'ray' (`workers` replicas of `cpus_per_worker` cores and `gpus_per_worker`
    GPUs, None: 1 where the cluster has GPUs; `batch_size` videos per Ray task; `ray_address` an existing cluster).
    chunk_size / chunk_seconds: finished rows are saved (and survive a kill) every `chunk_size` videos or
    `chunk_seconds` s. milvus: a Milvus Lite `.db` path or a server URI (`collection` default 'videos', or
    'moments' for windows; `milvus_token` for a server). retry_failed: process again the videos whose row has an
    error. overwrite: start again instead of resuming. progress: show a progress bar on stderr.
    Raises ValueError for a setting out of its range.
    """

    inputs: Sequence[str | os.PathLike] | str | os.PathLike  # one path alone is one input
    out: str | os.PathLike
    spec: OperatorSpec = dataclasses.field(default_factory=OperatorSpec)
    fmt: str | None = None
    engine: str = 'local'
    workers: int = 2
    ray_address: str | None = None
    cpus_per_worker: float = 1
    gpus_per_worker: float | None = None
    batch_size: int = 1
    chunk_size: int = 32
    chunk_seconds: float = 60.0
    milvus: str | None = None
    collection: str | None = None
    milvus_token: str | None = None
    retry_failed: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        inputs = self.inputs
        if isinstance(inputs, (str, bytes, os.PathLike)):
            inputs = [inputs]  # one input, not a sequence of characters
        object.__setattr__(self, 'inputs', tuple(os.fspath(item) for item in inputs))
        if not isinstance(self.spec, OperatorSpec):
            raise TypeError(f'spec must be an OperatorSpec (jobs.operators), not a {type(self.spec).__name__}')
        if self.engine not in ENGINES:
            raise ValueError(f'unknown engine {self.engine!r}; expected one of {ENGINES}')
        if self.fmt not in (None, 'parquet', 'jsonl'):
            raise ValueError(f"fmt must be 'parquet', 'jsonl' or None (from the extension of out), got {self.fmt!r}")
        for name in ('workers', 'batch_size', 'chunk_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be an integer of at least 1, got {value!r}')
        if not (isinstance(self.chunk_seconds, (int, float)) and math.isfinite(self.chunk_seconds)
                and self.chunk_seconds > 0):
            raise ValueError(f'chunk_seconds must be a positive number of seconds, got {self.chunk_seconds!r}')


def run_index(job: IndexJob, log: Callable[[str], None] = _stderr) -> IndexSummary:
    """Classify and embed every video of `job.inputs` into `job.out` (see the CLI's `index --help`).

    Errors of the job itself (no inputs, weights unavailable, a bad checkpoint, an output held by another job)
    raise; a video that fails is a row with its `error`. With `spec.moments` (`window`/`stride` in its options)
    the rows are windows (`results.MOMENT_COLUMNS`), a video counts as done once all its windows are written,
    and the Milvus collection holds one entity per window.
    """
    if not isinstance(job, IndexJob):
        raise TypeError(f'run_index takes one IndexJob (run_index(IndexJob(inputs, out, spec, ...))), '
                        f'not a {type(job).__name__}')
    spec, engine, milvus, collection = job.spec, job.engine, job.milvus, job.collection
    _require(engine == 'ray', 'ray.data', "--engine ray needs Ray Data: pip install 'ray[data]'")
    if milvus is not None:
        from .milvus_store import resolve_uri

        milvus = resolve_uri(milvus)  # a bad URI fails now, not after the whole collection
        _require('://' not in milvus, 'milvus_lite', 'a Milvus Lite .db needs: pip install pymilvus milvus-lite')
        _require(True, 'pymilvus', '--milvus needs: pip install pymilvus')
    started = time.perf_counter()
    paths = expand(job.inputs, warn=lambda message: log(f'warning: {message}'))
    if not paths:
        raise ValueError('no videos to process: the inputs name no video files')
    out_file = os.path.realpath(os.path.expanduser(os.fspath(job.out)))
    if any(not is_url(path) and os.path.realpath(os_path(path)) == out_file for path in paths):
        raise ValueError(f'the output {job.out} is one of the input videos; choose another output file '
                         f'(results.parquet or .jsonl)')
    op = build_classifier(spec)  # fails fast, once, on missing weights or bad settings (for Ray too)
    dim, labels = op.cfg.embed_dim, op.cfg.labels
    settings = spec.signature()
    moments = spec.moments
    if collection is None:
        collection = 'moments' if moments else 'videos'
    store = ResultStore(job.out, dim, settings, fmt=job.fmt, overwrite=job.overwrite, moments=moments)
    store.check()  # read-only: a refused run changes nothing
    if milvus is not None:
        from . import milvus_store

        # Every path of this run and every label the model can give must fit the collection's fields.
        need = milvus_store.needed_lengths(paths, labels, moments)
        milvus_store.check_limits(need)
        if milvus_store.exists(milvus):  # opening a missing Milvus Lite file would create it
            with milvus_store.MilvusStore(milvus, collection, job.milvus_token, moments=moments) as index:
                index.check_compatible(settings, dim, stored(str(store.out)), replace=job.overwrite)
                index.check_capacity(need, stored(str(store.out)) if job.overwrite else None)
    arrivals: list[float] = []
    processed = failed = windows = 0
    with store:
        done = store.done(job.retry_failed)
        todo = [p for p in paths if p not in done]
        if len(todo) < len(paths):
            log(f'resuming: {len(paths) - len(todo)} of {len(paths)} videos already done in {store.out} '
                f'or {store.parts}')
        buffer: list[dict[str, Any]] = []
        seen: set[str] = set()
        with contextlib.ExitStack() as stack:  # closes the bar, then Ray
            if not todo:
                batches = iter(())  # nothing to start Ray for
            elif engine == 'ray':
                from .ray_engine import RayEngine

                del op  # the replicas load their own
                ray = stack.enter_context(RayEngine(spec, workers=job.workers, address=job.ray_address,
                                                    cpus_per_worker=job.cpus_per_worker,
                                                    gpus_per_worker=job.gpus_per_worker, batch_size=job.batch_size))
                batches = ray.run(todo)
            else:
                indexer = Indexer(spec, op)
                batches = _local(indexer, todo)
            from tqdm import tqdm

            clock = None
            if moments:
                done_rows = {row['path']: row['duration'] or 0.0 for row in store.rows() if row['path'] in done}
                expected = {path: _probe_seconds(path) for path in todo} if job.progress else {}
                bar = stack.enter_context(tqdm(total=sum(done_rows.values()) + sum(expected.values()),
                                               initial=sum(done_rows.values()), unit=' video s',
                                               disable=not job.progress, dynamic_ncols=True, smoothing=0.1,
                                               file=sys.stderr, bar_format=_MOMENTS_BAR))
                clock = _VideoClock(bar, expected)
                if todo and engine != 'ray':
                    indexer.on_window = clock.on_window
            else:
                bar = stack.enter_context(tqdm(total=len(paths), initial=len(paths) - len(todo), unit=' videos',
                                               disable=not job.progress, dynamic_ncols=True, smoothing=0.1,
                                               file=sys.stderr, bar_format=_BAR))
            flushed = time.monotonic()
            buffered = 0  # videos in `buffer` (a video is one row, or all its windows)
            try:
                for rows in batches:
                    # A retried Ray task may repeat a video: its first result is kept.
                    videos = [(path, group) for path, group in _by_video(rows) if path not in seen]
                    for path, group in videos:
                        seen.add(path)
                        arrivals.append(time.perf_counter() - started)
                        processed += 1
                        failed += any(row['error'] is not None for row in group)
                        buffer.extend(group)
                        buffered += 1
                        if clock is not None:
                            windows += sum(row['start_ms'] is not None for row in group)
                            clock.video_done(path, group)
                        else:
                            bar.update(1)
                    if clock is not None:
                        bar.set_postfix(videos=f'{len(paths) - len(todo) + processed}/{len(paths)}',
                                        failed=failed, refresh=False)
                    else:
                        bar.set_postfix(failed=failed, refresh=False)
                    if buffered >= job.chunk_size or time.monotonic() - flushed >= job.chunk_seconds:
                        store.write_chunk(buffer)
                        buffer, buffered, flushed = [], 0, time.monotonic()
            finally:
                store.write_chunk(buffer)  # keep what finished, also on Ctrl-C or an engine failure
        rows = store.finish(order=paths)
    summary = IndexSummary(out=str(store.out), total=len(paths), skipped=len(paths) - len(todo),
                           processed=processed, failed=failed, wall_s=0.0, arrivals=arrivals,
                           windows=windows if moments else None)
    if milvus is not None:
        from .milvus_store import MilvusStore

        if '://' not in milvus:
            os.makedirs(os.path.dirname(milvus), exist_ok=True)  # as for --out; Milvus Lite creates only the .db
        try:
            with MilvusStore(milvus, collection, job.milvus_token, moments=moments) as index:
                summary.milvus = index.sync(rows, settings, dim, stored(str(store.out)), replace=job.overwrite,
                                            labels=labels)
        except (MilvusInUseError, MilvusUnavailableError) as e:
            raise type(e)(f'{store.out} is complete ({len(rows)} rows), but Milvus was not updated: {e}. Once that '
                          f'is resolved, run the command again, without --overwrite, to update it (done videos are '
                          f'not processed again).') from None
        except JobError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever Milvus raised: the output is complete, the index is not
            raise _sync_error(e, store.out, len(rows), collection, milvus) from e
    summary.wall_s = time.perf_counter() - started
    return summary


def _sync_error(error: Exception, out, rows: int, collection: str, milvus: str) -> MilvusSyncError:
    """What to say when Milvus failed during the sync: a retry only where the failure may pass."""
    from .milvus_store import is_transient

    transient = is_transient(error)
    what_now = ('This failure may pass (Milvus unreachable, busy or slow): run the command again, without '
                '--overwrite, to retry the update (done videos are not processed again).' if transient else
                'Milvus refused the update, and running the command again would fail the same way: fix the cause '
                'above, or index into another --collection; the output needs no re-run.')
    return MilvusSyncError(f'{out} is complete ({rows} rows), but updating Milvus collection {collection!r} at '
                           f'{milvus} failed ({type(error).__name__}: {error}); the collection may hold part of '
                           f'this update. {what_now}', transient=transient)


def embed(video: str, spec: OperatorSpec | None = None, start: float | None = None,
          end: float | None = None) -> dict[str, Any]:
    """The result row of one video (for a search query), or of its part shown in `[start, end)` seconds.

    Embedded as one clip (the operator's options without `window`), the way each window of a moments index is.
    Raises `QueryRangeError` when that part holds no frame, `QueryVideoError` when the video cannot be processed or
    stops early (a truncated query is refused, with no warning before: its embedding would be of part of it).
    """
    import warnings

    from ..errors import TimeRangeError, TruncatedVideoWarning
    from .errors import QueryRangeError

    spec = spec or OperatorSpec()
    if spec.moments:
        options = {k: v for k, v in spec.options.items() if k not in ('window', 'stride')}
        spec = dataclasses.replace(spec, options=options)
    paths = expand([video])
    if len(paths) != 1:
        raise ValueError(f'the query must be one video; {video} names {len(paths)}')
    indexer = Indexer(spec)
    if start is not None or end is not None:
        indexer.decoder = build_decoder(start, end)
        try:
            indexer.decoder.frames(os_path(paths[0]))  # reads the index only; the indexer decodes the frames
        except TimeRangeError as e:
            raise QueryRangeError(f'the query has no frames in the range asked for: {e}. Choose --start/--end '
                                  f'inside the video.') from None
        except Exception:  # noqa: BLE001 - any other failure is reported by the indexer's row below
            pass
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', TruncatedVideoWarning)  # said once, by the error below
        row = indexer(paths[0])
    if row['error'] is not None:
        raise QueryVideoError(f'cannot embed the query video {display(paths[0])}: {row["error"]}. Search with a '
                              f'video that decodes to its end.')
    return row
