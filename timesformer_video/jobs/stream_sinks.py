"""Where `watch` writes its rows as they come: JSON lines on stdout, an output file, a Milvus collection.

- `json_line(row)`: the row as one JSON line, without the feature (`--json`; the caller prints it, flushed).
- `RowFile(out)`: `--out rows.jsonl` appends one JSON line per row (with the feature) and flushes it, so a killed
  watch keeps every row written; `--out rows.parquet` writes row groups (every `ROWS_PER_GROUP` rows or
  `GROUP_SECONDS`) to `<out>.partial` and renames it over `out` at `close()`, so `out` is a complete Parquet file
  or absent (a kill -9 leaves only the `.partial`, which Parquet readers cannot read: use JSONL where that matters).
- `MilvusRows(store, source)`: upserts each window row into a collection `prepare`d for the stream
  (`milvus_store.MilvusStore`), keyed by the source and the window's start, so `search --moments` finds it at once.

Columns of the output file: `path` (the source), `start_ms`, `end_ms` (the stream clock), `model`, `labels`,
`scores`, `feature`, `wall_time` (UTC ISO-8601 of the window's last frame), `latency_ms`, `error`; a gap is a row
with its span and its `error`, and no labels or feature.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROWS_PER_GROUP = 256
GROUP_SECONDS = 10.0


def json_line(row: dict[str, Any]) -> str:
    """`--json`: the row without its feature, as the contract's one JSON object (`ensure_ascii=False`)."""
    return json.dumps({k: v for k, v in row.items() if k != 'feature'}, ensure_ascii=False)


def _record(row: dict[str, Any], model: str) -> dict[str, Any]:
    """A watch row (or gap) -> the output file's columns."""
    feature = row.get('feature')
    return {'path': row['source'], 'start_ms': row['start_ms'], 'end_ms': row['end_ms'], 'model': model,
            'labels': row.get('labels'), 'scores': row.get('scores'),
            'feature': None if feature is None else np.asarray(feature, np.float32),
            'wall_time': row['wall_time'], 'latency_ms': row.get('latency_ms'), 'error': row.get('error')}


def schema(dim: int):
    import pyarrow as pa

    return pa.schema([
        pa.field('path', pa.string(), nullable=False),
        pa.field('start_ms', pa.int64()),
        pa.field('end_ms', pa.int64()),
        pa.field('model', pa.string()),
        pa.field('labels', pa.list_(pa.string())),
        pa.field('scores', pa.list_(pa.float32())),
        pa.field('feature', pa.list_(pa.float32(), dim)),
        pa.field('wall_time', pa.string()),
        pa.field('latency_ms', pa.float64()),
        pa.field('error', pa.string()),
    ])


class RowFile:
    """`--out`: rows appended as they come (see the module doc). `fmt`: 'parquet' or 'jsonl' (`results.format_for`).
    Use as a context manager; `close()` flushes and, for Parquet, puts the file in place."""

    def __init__(self, out: str | os.PathLike, fmt: str, model: str, dim: int):
        self.out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
        self.fmt, self.model, self.dim = fmt, model, dim
        self._pending: list[dict[str, Any]] = []
        self._last_group = time.monotonic()
        self._file = self._writer = None  # opened by the first row (or by close(), for an empty output)
        self._closed = False

    def _open(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == 'jsonl':
            self._file = open(self.out, 'a', encoding='utf-8')  # noqa: SIM115 - held until close()
        else:
            import pyarrow.parquet as pq

            self._partial = self.out.with_name(self.out.name + '.partial')
            self._writer = pq.ParquetWriter(self._partial, schema(self.dim))

    def __enter__(self) -> RowFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, row: dict[str, Any]) -> None:
        if self._file is None and self._writer is None:
            self._open()
        record = _record(row, self.model)
        if self._writer is None:
            if record['feature'] is not None:
                record['feature'] = record['feature'].tolist()
            self._file.write(json.dumps(record, ensure_ascii=False) + '\n')
            self._file.flush()
            return
        self._pending.append(record)
        if len(self._pending) >= ROWS_PER_GROUP or time.monotonic() - self._last_group >= GROUP_SECONDS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=schema(self.dim)))
            self._pending = []
        self._last_group = time.monotonic()

    def close(self, empty: bool = True) -> None:
        """Flush and put the file in place; with no row written, an empty output when `empty`, else nothing."""
        if self._closed:
            return
        self._closed = True
        if self._file is None and self._writer is None:
            if not empty:
                return
            self._open()
        if self._writer is None:
            self._file.close()
            return
        self._flush()
        self._writer.close()
        os.replace(self._partial, self.out)


class MilvusRows:
    """Window rows of one source into a prepared `MilvusStore` (gaps and failed windows are not vectors)."""

    def __init__(self, store, source: str):
        self.store, self.source = store, source

    def write(self, row: dict[str, Any]) -> None:
        if row.get('gap') or row.get('feature') is None or row.get('error') is not None:
            return
        self.store.upsert([{**row, 'path': self.source}])
