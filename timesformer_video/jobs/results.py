"""The job's output: one row per window (a whole video is one), written in atomic chunks so that a killed run loses
nothing and redoes nothing.

In-progress state lives in the sidecar directory `<out>.parts/` beside the output file:

    results.parquet.parts/
        job.json              what determines the results (model, weights by SHA-256, top-k, operator options,
                              format, dimension); a resumed run must match it
        lock                  held (flock) by the running job: a second job on the same output is refused
        chunk-000001.parquet  finished rows; each written as .tmp-*, fsynced, renamed, directory fsynced
        .tmp-*                a write cut off by a kill; deleted by the next run

A row is done once it is in the final output or in a chunk. At the end the final file is assembled from the
previous output (if any) and the chunks, written to a temporary name in the sidecar, fsynced and renamed over
`--out`; then the sidecar is removed. A path's rows appear once: a later result for a path replaces all earlier
ones.

A finished output records the settings its rows were made with: in the Parquet file's metadata (`timesformer.job`),
or for JSONL in `<out>.job.json` beside it. A run that would keep rows made with other settings (or with settings
it cannot know) is refused before it writes anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import JobStateError, OutputInUseError, SettingsMismatchError

__all__ = ['JobStateError', 'OutputInUseError', 'SettingsMismatchError', 'ResultStore', 'read_output',
           'read_settings', 'rows_to_table', 'table_to_rows', 'schema', 'format_for', 'COLUMNS', 'FORMATS']

FORMATS = ('parquet', 'jsonl')
# One schema for whole videos and windows: a whole video is one row, the window [start of its first frame, end of
# its last frame); with --window a video is one row per window. `start_ms`/`end_ms` are null on a failed video's
# one row, and on the rows of an output written before windows and videos shared it (read as they are).
COLUMNS = ('path', 'start_ms', 'end_ms', 'model', 'duration', 'labels', 'scores', 'feature', 'decode_s', 'model_s',
           'error')
_META_KEY = b'timesformer.job'


def schema(dim: int) -> pa.Schema:
    """`feature` is a fixed-size list so that every row's embedding has the model's dimension (768 for ViT-B).
    `start_ms` and `end_ms` (int64 ms on the video's clock, `[start, end)`) follow `path`: a whole video's, or a
    window's; a window's `duration`, `decode_s`, `model_s` are the video's (the decoding split equally among its
    windows)."""
    return pa.schema([
        pa.field('path', pa.string(), nullable=False),
        pa.field('start_ms', pa.int64()),
        pa.field('end_ms', pa.int64()),
        pa.field('model', pa.string()),
        pa.field('duration', pa.float64()),  # seconds
        pa.field('labels', pa.list_(pa.string())),  # top-k, best first
        pa.field('scores', pa.list_(pa.float32())),  # softmax probabilities of `labels`
        pa.field('feature', pa.list_(pa.float32(), dim)),
        pa.field('decode_s', pa.float64()),  # open the video + decode the sampled frames (s)
        pa.field('model_s', pa.float64()),  # resize, crop, normalise + forward (a share of it when batched)
        pa.field('error', pa.string()),  # null when the video was processed
    ])


def rows_to_table(rows: Sequence[dict[str, Any]], dim: int, metadata: dict | None = None) -> pa.Table:
    data = {name: [row.get(name) for row in rows] for name in COLUMNS}
    data['feature'] = [None if f is None else np.asarray(f, np.float32) for f in data['feature']]
    sch = schema(dim)
    if metadata:
        sch = sch.with_metadata({_META_KEY: json.dumps(metadata).encode()})
    return pa.Table.from_pydict(data, schema=sch)


def table_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts of every column of `COLUMNS`; a column an older output lacks (`start_ms`, `end_ms`) is None."""
    rows = table.select([name for name in COLUMNS if name in table.column_names]).to_pylist()
    for row in rows:
        for name in COLUMNS:
            row.setdefault(name, None)
        if row['feature'] is not None:
            row['feature'] = np.asarray(row['feature'], np.float32)
    return rows


def format_for(out: str | Path, fmt: str | None = None) -> str:
    """`fmt` when given, else from the extension (`.jsonl`/`.json` -> jsonl), else Parquet."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f'unknown format {fmt!r}; expected one of {FORMATS}')
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix in ('.jsonl', '.json', '.ndjson'):
        return 'jsonl'
    if suffix not in ('', '.parquet', '.pq'):
        raise ValueError(f'{out}: results are written as Parquet (.parquet) or JSON lines (.jsonl), not {suffix}; '
                         f'name the output so, or give the format (--format) to write it under this name')
    return 'parquet'


def _native_file(path: str | Path, mode: str = 'rb') -> pa.OSFile:
    """An Arrow file opened by the path's bytes: pyarrow opens a str path only if it is UTF-8, and the output may be
    in a folder whose name is not (a Latin-1 home folder). Not a Python file object: pyarrow's reader threads
    reading one can abort the interpreter at exit."""
    return pa.OSFile(os.fsencode(path), mode)


def read_table(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """`pq.read_table(path, columns=columns)`, for any file name (`_native_file`)."""
    with _native_file(path) as f:
        return pq.read_table(f, columns=columns)


def _write_table(table: pa.Table, path: Path, **options) -> None:
    with _native_file(path, 'wb') as f:
        pq.write_table(table, f, **options)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def _write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        for row in rows:
            row = dict(row)
            if row['feature'] is not None:
                row['feature'] = np.asarray(row['feature'], np.float32).tolist()
            if row['scores'] is not None:
                row['scores'] = [float(s) for s in row['scores']]
            f.write(json.dumps(row, ensure_ascii=False) + '\n')


def settings_path(out: str | Path) -> Path:
    """Where a JSONL output records its settings (a Parquet output keeps them in its own metadata)."""
    out = Path(out)
    return out.with_name(out.name + '.job.json')


def read_settings(path: str | Path, fmt: str | None = None) -> dict[str, Any] | None:
    """The settings a finished output was made with (`OperatorSpec.signature()`), None when it records none."""
    path = Path(path)
    if format_for(path, fmt) == 'parquet':
        try:
            with _native_file(path) as f:
                metadata = pq.read_schema(f).metadata or {}
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
            raise JobStateError(f'cannot read {path} as Parquet ({e}); is it a results file? Choose another --out, '
                                f'or pass --overwrite to replace it') from e
        raw = metadata.get(_META_KEY)
        return None if raw is None else json.loads(raw)
    sidecar = settings_path(path)
    return json.loads(sidecar.read_text(encoding='utf-8')) if sidecar.exists() else None


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
    from .settings import describe, differences

    return describe(differences(saved, current))


def read_output(path: str | Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """Rows of a finished output file (Parquet or JSONL), features as float32 arrays."""
    path = Path(path)
    if format_for(path, fmt) == 'parquet':
        return table_to_rows(read_table(path))
    rows = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise JobStateError(f'{path} line {number} is not JSON ({e}); is it a results file?') from None
            row = {name: row.get(name) for name in COLUMNS}
            if row['feature'] is not None:
                row['feature'] = np.asarray(row['feature'], np.float32)
            if row['scores'] is not None:
                row['scores'] = [float(np.float32(s)) for s in row['scores']]
            rows.append(row)
    return rows


class ResultStore:
    """The output file plus its sidecar: what is done, atomic chunk writes, and the final assembly.

    Use as a context manager (it holds the lock while open).
    """

    def __init__(self, out: str | Path, dim: int, signature: dict[str, Any], fmt: str | None = None,
                 overwrite: bool = False):
        self.out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
        self.fmt = format_for(self.out, fmt)
        self.parts = self.out.with_name(self.out.name + '.parts')
        self.dim = dim
        self.signature = signature
        self.overwrite = overwrite
        self._lock_file = None
        self._previous: list[dict[str, Any]] = []  # rows of an existing final output
        self._chunks: list[Path] = []

    # -- opening ---------------------------------------------------------------------------------------------
    def _job_record(self) -> dict[str, Any]:
        return json.loads(json.dumps({'signature': self.signature, 'format': self.fmt, 'dim': self.dim}))

    def check(self) -> None:
        """Raise unless this run may use `out` as asked; reads only, writes nothing (also called under the lock).

        Without `overwrite`, an unfinished job in the sidecar and a finished output must both have been made with
        this run's settings (`SettingsMismatchError` says what differs and the ways out).
        """
        if self.out.is_dir():
            raise JobStateError(f'--out {self.out} is a directory; give a file name such as results.parquet')
        if self.overwrite:
            return
        ways_out = ('Re-run with the settings {there} to {goal}; or write elsewhere: choose another --out, or pass '
                    '--overwrite to discard {what}.')
        job = self.parts / 'job.json'
        if job.exists():
            saved = json.loads(job.read_text())
            current = self._job_record()
            if saved != current:
                differences = _differences(saved.get('signature', {}), current['signature'])
                raise SettingsMismatchError(
                    f'{self.parts} holds an unfinished job with other settings:\n'
                    f'{differences or _differences(saved, current)}\n'
                    + ways_out.format(there='shown there', goal='finish it', what=f'it (and {self.out.name})'))
        if self.out.exists():
            recorded = read_settings(self.out, self.fmt)
            if recorded is None:
                raise SettingsMismatchError(
                    f'{self.out} does not record the settings its rows were made with (written by an older '
                    f'version, or its {settings_path(self.out).name} is missing), so adding to it could mix '
                    f'results. Choose another --out, or pass --overwrite to replace it.')
            if recorded != json.loads(json.dumps(self.signature)):
                raise SettingsMismatchError(
                    f'{self.out} holds results made with other settings:\n{_differences(recorded, self.signature)}'
                    f'\n' + ways_out.format(there='shown there', goal='add to it', what='its rows'))

    def __enter__(self) -> ResultStore:
        self.check()  # before anything is written: a refused run leaves everything as it was
        self.out.parent.mkdir(parents=True, exist_ok=True)
        created = not self.parts.exists()
        self.parts.mkdir(exist_ok=True)
        try:
            self._lock()
            if self.overwrite:
                self._clear()
            else:
                self.check()  # again, under the lock: another job may have finished or started meanwhile
            self._chunks = sorted(self.parts.glob('chunk-*.parquet'))
            if self.out.exists():
                self._previous = read_output(self.out, self.fmt)
                self._check_previous()
            # Every check passed: from here on this run writes.
            for stale in self.parts.glob('.tmp-*'):
                stale.unlink()  # a write cut off by a kill: its rows were never done
            job = self.parts / 'job.json'
            if not job.exists():
                self._atomic_write(job, lambda tmp: tmp.write_text(json.dumps(self._job_record(), indent=1)))
        except BaseException:
            self._unlock()
            if created:
                shutil.rmtree(self.parts, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no protection against two jobs on one output
            return
        self._lock_file = open(self.parts / 'lock', 'a+')  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise OutputInUseError(f'another job is writing {self.out} (it holds {self.parts / "lock"}); '
                                   f'wait for it or stop it first') from None

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _clear(self) -> None:
        for child in self.parts.iterdir():
            if child.name != 'lock':
                child.unlink()
        for path in (self.out, settings_path(self.out)):
            if path.exists():
                path.unlink()

    def _check_previous(self) -> None:
        model = self.signature.get('model_name')
        for row in self._previous:
            if row['model'] != model or (row['feature'] is not None and len(row['feature']) != self.dim):
                raise SettingsMismatchError(
                    f'{self.out} holds results of model {row["model"]!r} ({row["path"]}); this run uses {model!r}. '
                    f'Pass --overwrite to replace the file, or choose another --out.')

    # -- state -----------------------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """All results so far, a path once (later results win): previous output, then chunks in write order.

        A path's rows are all its windows (one for a whole video): a chunk holds every window of each video in it,
        and a later chunk's windows of a path replace all earlier ones."""
        by_path: dict[str, list[dict[str, Any]]] = {}
        for row in self._previous:
            by_path.setdefault(row['path'], []).append(row)
        for chunk in self._chunks:
            try:
                table = read_table(chunk)
            except Exception as e:  # noqa: BLE001 - renamed into place complete, so this is outside damage
                raise JobStateError(f'cannot read {chunk} ({e}); delete it to redo its videos') from e
            fresh: dict[str, list[dict[str, Any]]] = {}
            for row in table_to_rows(table):
                fresh.setdefault(row['path'], []).append(row)  # a chunk holds all of each of its videos' rows
            for path, group in fresh.items():
                by_path.pop(path, None)  # re-insert: keeps write order for rows that are replaced
                by_path[path] = group
        return [row for group in by_path.values() for row in group]

    def done(self, retry_failed: bool = False) -> set[str]:
        """Paths whose result is kept: with `retry_failed`, a path with an error on any of its rows is not done."""
        rows = self.rows()
        failed = {row['path'] for row in rows if row['error'] is not None} if retry_failed else set()
        return {row['path'] for row in rows} - failed

    # -- writing ---------------------------------------------------------------------------------------------
    def _atomic_write(self, dst: Path, write) -> None:
        """`write(tmp)` a temporary file in the sidecar, fsync it, rename it to `dst`, fsync the directory."""
        tmp = self.parts / f'.tmp-{uuid.uuid4().hex}'
        try:
            write(tmp)
            _fsync_file(tmp)
            os.replace(tmp, dst)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(dst.parent)

    def write_chunk(self, rows: Sequence[dict[str, Any]]) -> Path | None:
        if not rows:
            return None
        number = int(self._chunks[-1].stem.split('-')[1]) + 1 if self._chunks else 1
        path = self.parts / f'chunk-{number:06d}.parquet'
        table = rows_to_table(rows, self.dim)
        self._atomic_write(path, lambda tmp: _write_table(table, tmp))
        self._chunks.append(path)
        return path

    def finish(self, order: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Write the final output (rows of `order` first, in that order, then any earlier ones) and drop the
        sidecar. Returns the rows written."""
        rows = self.rows()
        rank = {path: i for i, path in enumerate(order)}
        rows.sort(key=lambda row: rank.get(row['path'], len(rank)))  # stable: earlier rows keep their order
        if self._chunks or not self.out.exists():
            if self.fmt == 'parquet':
                table = rows_to_table(rows, self.dim, metadata=self.signature)
                self._atomic_write(self.out, lambda tmp: _write_table(table, tmp, row_group_size=4096))
            else:
                record = json.dumps(self.signature, indent=1)
                self._atomic_write(settings_path(self.out), lambda tmp: tmp.write_text(record, encoding='utf-8'))
                self._atomic_write(self.out, lambda tmp: _write_jsonl(rows, tmp))
        self._unlock()
        shutil.rmtree(self.parts, ignore_errors=True)
        return rows
