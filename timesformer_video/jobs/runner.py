"""The `index` job: inputs -> (local or Ray) engine -> atomic chunks -> final output -> optionally Milvus.

Resuming is the default: whatever the output or its sidecar already holds is skipped, so re-running the same
command after a crash or a kill finishes the rest, and re-running it with new videos adds only those.

Everything that can refuse the run (settings of the existing output or of an unfinished job, the Milvus
collection's settings and owner, a database in use) is checked before any state is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .checks import is_url
from .errors import JobError, MilvusInUseError, MilvusSyncError, MilvusUnavailableError, QueryVideoError
from .indexer import Indexer
from .inputs import expand
from .operators import OperatorSpec, build_classifier, build_decoder
from .paths import display, os_path, stored
from .results import ResultStore
from .settings import ENGINES, IndexJob  # noqa: F401 - IndexJob lives in settings; imported from here too

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


def _video_engine(job: IndexJob, op, todo: Sequence[str], stack: contextlib.ExitStack
                  ) -> Iterator[list[dict[str, Any]]]:
    """The engine `job.engine` over `todo`: one list of rows per finished video (its one row, or its windows)."""
    if not todo:
        return iter(())  # nothing to start workers or Ray for
    spec = job.spec
    if job.engine == 'ray':
        from .ray_engine import RayEngine

        ray = stack.enter_context(RayEngine(spec, workers=job.workers, address=job.ray_address,
                                            cpus_per_worker=job.cpus_per_worker, gpus_per_worker=job.gpus_per_worker,
                                            batch_size=clips_per_batch(job), decode_workers=job.decode_workers,
                                            seek=job.seek))
        videos = ray.run(todo)
        stack.callback(videos.close)  # on an early exit too: Ray's pipeline stops before Ray does
        return videos
    from .decoding import Sampler
    from .local_engine import LocalEngine, default_decode_workers

    workers = job.decode_workers if job.decode_workers is not None else default_decode_workers()
    engine = LocalEngine(op, Sampler(spec, job.seek), workers, clips_per_batch(job), spec.model_name)
    videos = engine.run(todo)
    stack.callback(videos.close)  # on an early exit too: the decode workers stop
    return videos


def clips_per_batch(job: IndexJob) -> int:
    """Clips per model forward: `job.batch_size`; the spec's older `clip_batch` (videos per forward) when only it
    is set."""
    return job.batch_size if job.batch_size > 1 else max(1, job.spec.clip_batch)


def _preflight(job: IndexJob, log: Callable[[str], None]) -> tuple[list[str], str | None]:
    """The run's video paths and its resolved Milvus URI; raises for what can be found wrong before any model
    loads (Ray or Milvus missing, a bad Milvus URI, no inputs, the output among the inputs)."""
    if not isinstance(job, IndexJob):
        raise TypeError(f'run_index takes one IndexJob (run_index(IndexJob(inputs, out, spec, ...))), '
                        f'not a {type(job).__name__}')
    milvus = job.milvus
    _require(job.engine == 'ray', 'ray.data', "--engine ray needs Ray Data: pip install 'ray[data]'")
    if milvus is not None:
        from .milvus_store import resolve_uri

        milvus = resolve_uri(milvus)  # a bad URI fails now, not after the whole collection
        _require(not is_url(milvus), 'milvus_lite', 'a Milvus Lite .db needs: pip install pymilvus milvus-lite')
        _require(True, 'pymilvus', '--milvus needs: pip install pymilvus')
    paths = expand(job.inputs, warn=lambda message: log(f'warning: {message}'))
    if not paths:
        raise ValueError('no videos to process: the inputs name no video files')
    out_file = os.path.realpath(os.path.expanduser(os.fspath(job.out)))
    if any(not is_url(path) and os.path.realpath(os_path(path)) == out_file for path in paths):
        raise ValueError(f'the output {job.out} is one of the input videos; choose another output file '
                         f'(results.parquet or .jsonl)')
    return paths, milvus


def _check_milvus(job: IndexJob, milvus: str, collection: str, paths: Sequence[str], op, settings, out) -> None:
    """Refuse, before any video is processed, a run the Milvus collection cannot take (settings, owner, sizes)."""
    from . import milvus_store

    # Every path of this run and every label the model can give must fit the collection's fields.
    need = milvus_store.needed_lengths(paths, op.cfg.labels)
    milvus_store.check_limits(need)
    if milvus_store.exists(milvus):  # opening a missing Milvus Lite file would create it
        with milvus_store.MilvusStore(milvus, collection, job.milvus_token) as index:
            index.check_compatible(settings, op.cfg.embed_dim, stored(str(out)), replace=job.overwrite)
            index.check_capacity(need, stored(str(out)) if job.overwrite else None)


class _Progress:
    """The progress bar on stderr: videos, or for moments seconds of video (`_VideoClock`)."""

    def __init__(self, job: IndexJob, store: ResultStore, paths: Sequence[str], todo: Sequence[str],
                 done: set[str], stack: contextlib.ExitStack):
        from tqdm import tqdm

        self.total, self.skipped, self.clock = len(paths), len(paths) - len(todo), None
        options = dict(disable=not job.progress, dynamic_ncols=True, smoothing=0.1, file=sys.stderr)
        if job.spec.moments:
            done_rows = {row['path']: row['duration'] or 0.0 for row in store.rows() if row['path'] in done}
            expected = {path: _probe_seconds(path) for path in todo} if job.progress else {}
            self.bar = stack.enter_context(tqdm(total=sum(done_rows.values()) + sum(expected.values()),
                                                initial=sum(done_rows.values()), unit=' video s',
                                                bar_format=_MOMENTS_BAR, **options))
            self.clock = _VideoClock(self.bar, expected)
        else:
            self.bar = stack.enter_context(tqdm(total=len(paths), initial=self.skipped, unit=' videos',
                                                bar_format=_BAR, **options))

    def video_done(self, path: str, rows: Sequence[dict[str, Any]], processed: int, failed: int) -> None:
        if self.clock is not None:
            self.clock.video_done(path, rows)
            self.bar.set_postfix(videos=f'{self.skipped + processed}/{self.total}', failed=failed, refresh=False)
        else:
            self.bar.update(1)
            self.bar.set_postfix(failed=failed, refresh=False)


def _write(job: IndexJob, store: ResultStore, videos: Iterator[list[dict[str, Any]]], progress: _Progress,
           summary: IndexSummary, started: float) -> None:
    """Each finished video's rows into the store's atomic chunks, every `chunk_size` videos or `chunk_seconds`;
    what finished is kept on Ctrl-C or an engine failure too. Counts into `summary`."""
    buffer: list[dict[str, Any]] = []
    seen: set[str] = set()
    flushed, buffered = time.monotonic(), 0  # videos in `buffer` (a video is one row, or all its windows)
    try:
        for rows in videos:
            path = rows[0]['path']
            if path in seen:  # a retried Ray task may repeat a video: its first result is kept
                continue
            seen.add(path)
            summary.arrivals.append(time.perf_counter() - started)
            summary.processed += 1
            summary.failed += any(row['error'] is not None for row in rows)
            if summary.windows is not None:
                summary.windows += sum(row['start_ms'] is not None for row in rows)
            buffer.extend(rows)
            buffered += 1
            progress.video_done(path, rows, summary.processed, summary.failed)
            if buffered >= job.chunk_size or time.monotonic() - flushed >= job.chunk_seconds:
                store.write_chunk(buffer)
                buffer, buffered, flushed = [], 0, time.monotonic()
    finally:
        store.write_chunk(buffer)


def _sync_milvus(job: IndexJob, milvus: str, collection: str, rows, settings, op, out) -> tuple[int, int]:
    """Make the collection mirror the finished output; (upserted, deleted). Errors say that the output is complete
    and whether running again helps."""
    from .milvus_store import MilvusStore

    if not is_url(milvus):
        os.makedirs(os.path.dirname(milvus), exist_ok=True)  # as for --out; Milvus Lite creates only the .db
    try:
        with MilvusStore(milvus, collection, job.milvus_token) as index:
            return index.sync(rows, settings, op.cfg.embed_dim, stored(str(out)), replace=job.overwrite,
                              labels=op.cfg.labels)
    except (MilvusInUseError, MilvusUnavailableError) as e:
        raise type(e)(f'{out} is complete ({len(rows)} rows), but Milvus was not updated: {e}. Once that '
                      f'is resolved, run the command again, without --overwrite, to update it (done videos are '
                      f'not processed again).') from None
    except JobError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever Milvus raised: the output is complete, the index is not
        raise _sync_error(e, out, len(rows), collection, milvus) from e


def run_index(job: IndexJob, log: Callable[[str], None] = _stderr) -> IndexSummary:
    """Classify and embed every video of `job.inputs` into `job.out` (see the CLI's `index --help`).

    The stages: the inputs (`inputs.expand`, less what the output already holds) -> decode -> model -> rows
    (the engine: `local_engine` or `ray_engine`) -> atomic chunks (`results.ResultStore`) -> the final output ->
    optionally Milvus. Errors of the job itself (no inputs, weights unavailable, a bad checkpoint, an output held
    by another job) raise; a video that fails is a row with its `error`. A row is a window (`results.COLUMNS`):
    a whole video is one, and with `window`/`stride` in the spec's options (`spec.moments`) a video is one row per
    window; a video counts as done once all its rows are written, and the Milvus collection holds one entity per
    row.
    """
    started = time.perf_counter()
    paths, milvus = _preflight(job, log)
    op = build_classifier(job.spec)  # fails fast, once, on missing weights or bad settings (for Ray too)
    settings = job.spec.signature()
    collection = job.collection or ('moments' if job.spec.moments else 'videos')
    store = ResultStore(job.out, op.cfg.embed_dim, settings, fmt=job.fmt, overwrite=job.overwrite)
    store.check()  # read-only: a refused run changes nothing
    if milvus is not None:
        _check_milvus(job, milvus, collection, paths, op, settings, store.out)
    with store:
        done = store.done(job.retry_failed)
        todo = [p for p in paths if p not in done]
        if len(todo) < len(paths):
            log(f'resuming: {len(paths) - len(todo)} of {len(paths)} videos already done in {store.out} '
                f'or {store.parts}')
        summary = IndexSummary(out=str(store.out), total=len(paths), skipped=len(paths) - len(todo), processed=0,
                               failed=0, wall_s=0.0, arrivals=[], windows=0 if job.spec.moments else None)
        with contextlib.ExitStack() as stack:  # closes the bar, then the engine (Ray, the decode workers)
            videos = _video_engine(job, op, todo, stack)
            progress = _Progress(job, store, paths, todo, done, stack)
            _write(job, store, videos, progress, summary, started)
        rows = store.finish(order=paths)
    if milvus is not None:
        summary.milvus = _sync_milvus(job, milvus, collection, rows, settings, op, store.out)
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
    indexer = Indexer(spec, start=start, end=end)
    if start is not None or end is not None:
        try:
            build_decoder(start, end).frames(os_path(paths[0]))  # reads the index only; the indexer decodes
        except TimeRangeError as e:
            raise QueryRangeError(f'the query has no frames in the range asked for (--start/--end): {e}') from None
        except Exception:  # noqa: BLE001 - any other failure is reported by the indexer's row below
            pass
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', TruncatedVideoWarning)  # said once, by the error below
        row = indexer(paths[0])
    if row['error'] is not None:
        raise QueryVideoError(f'cannot embed the query video {display(paths[0])}: {row["error"]}. Search with a '
                              f'video that decodes to its end.')
    return row
