"""Video embeddings in Milvus: one entity per window, keyed by its video and start, for whole videos and windows alike.

A whole video is one window, `[start_ms, end_ms)` from its first frame to the end of its last (`index` without
`--window`); with `--window` a video is one entity per window. Every collection has one schema: `id` (primary key,
`moment_id`: `<path>#<start_ms>`), `path`, `start_ms`, `end_ms` (int64, ms on the video's clock), `label` and
`score` (the window's top-1), and `vector` (the model's feature, COSINE index). Paths are stored as `paths.stored`
writes them. Re-indexing a video replaces all its windows; windows that no longer exist are deleted. `search`
returns windows, or with `per_video` the best window of each video (Milvus's grouping search on `path`): of a
collection of whole videos, the nearest videos.

`uri` is a Milvus Lite file (`./videos.db`, embedded, in-process; the `.db` is a directory) or a server URI
(`http://host:19530`).

A VARCHAR field holds at most its `max_length` characters (code points, as Milvus counts them). A new collection's
`path` and `label` fields are sized for the run's paths and the model's labels (at least 4096 and 512 characters,
`id` 21 more than `path`); before any video is processed, `check_capacity` refuses a run whose paths or labels the
collection cannot hold (an existing collection made with smaller fields, or a value beyond Milvus's largest
VARCHAR, 65,535 characters), so a sync never fails on them.

A collection mirrors one output file: collection properties record the settings its vectors were made with
(`OperatorSpec.signature()`: model, weights by SHA-256, top-k, options) and the output file, and after each run it
holds exactly the output's processed rows. Indexing other settings or another output into it is refused; a search
with another model is refused instead of returning nonsense. A live stream (`prepare`, then `upsert` as windows
complete) records its output the same way and only adds windows.

Collections written by earlier versions: a moments collection (`index --window`; it also has a `timesformer.kind`
property, ignored now) has this schema and is read and written as it is. A per-video collection (primary key
`path`, one entity per video) is refused with `LegacyCollectionError`, which says how to make it again.

Paths are strings of any characters (quotes, backslashes, newlines). pymilvus's delete-by-ids pastes them into a
filter expression unescaped, so deletions here build the expression themselves with `string_literal`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from .checks import is_url
from .errors import (
    LegacyCollectionError,
    MilvusCapacityError,
    MilvusCollectionError,
    MilvusInUseError,
    MilvusUnavailableError,
)
from .paths import readable, stored

# VARCHAR sizes (max_length) are in characters, as Milvus counts them.
PATH_LENGTH = 4096  # the path field's least size (Linux PATH_MAX); more when a run's paths need it
LABEL_LENGTH = 512  # the label field's least size; more when the model's labels need it
VARCHAR_LIMIT = 65_535  # the largest max_length Milvus allows a VARCHAR field
_KEY_SUFFIX = 21  # an id's '#' and start_ms (up to 20 digits)
_MODEL_PROPERTY = 'timesformer.model'  # collection properties (Milvus Lite does not keep descriptions)
_SETTINGS_PROPERTY = 'timesformer.settings'
_OUTPUT_PROPERTY = 'timesformer.output'
KEY_LENGTH = PATH_LENGTH + _KEY_SUFFIX  # the id field's least size: path, '#', start_ms
_OUTPUT_FIELDS = ['path', 'start_ms', 'end_ms', 'label', 'score']  # what a search returns of each window
_BATCH = 500  # entities per upsert call
_FILTER_CHARS = 1 << 16  # characters of paths per delete expression
# The escapes both Milvus's expression grammar and Milvus Lite's parser read; every other character stands for itself.
_ESCAPES = {'\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t'}


def string_literal(value: str) -> str:
    """`value` as a double-quoted Milvus expression string literal that reads back as exactly `value`."""
    return '"' + ''.join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def in_filter(field: str, values: Sequence[str]) -> str:
    """The expression `field in ["v1", "v2", ...]`, every value escaped."""
    return f'{field} in [{", ".join(string_literal(v) for v in values)}]'


def moment_id(path: str, start_ms: int) -> str:
    """A window's primary key (a whole video's too): its video's path and start in ms (the part after the last '#'
    is the start)."""
    return f'{path}#{int(start_ms)}'


def window(row: dict[str, Any]) -> tuple[int, int]:
    """A processed row's window `(start_ms, end_ms)`. A row without one (of an output written before whole videos
    had windows: `start_ms` null) is its video's one window, `[0, duration)`, its end rounded up to a ms."""
    if row.get('start_ms') is not None:
        return int(row['start_ms']), int(row['end_ms'])
    return 0, math.ceil(float(row['duration']) * 1000)


def needed_lengths(paths: Iterable[str], labels: Iterable[str]) -> dict[str, tuple[int, str]]:
    """The VARCHAR lengths (characters) that `paths` (stored, `paths.stored`) and `labels` need: {field: (length,
    the longest value)}, for `path`, `label` and `id` (the path, '#', start_ms)."""
    longest_path = max(paths, key=len, default='')
    longest_label = max(labels, key=len, default='')
    return {'path': (len(longest_path), longest_path), 'label': (len(longest_label), longest_label),
            'id': (len(longest_path) + _KEY_SUFFIX, longest_path)}


def check_limits(need: dict[str, tuple[int, str]]) -> None:
    """Raise `MilvusCapacityError` when a value of `need` (`needed_lengths`) is longer than any Milvus VARCHAR field
    can be (VARCHAR_LIMIT characters), whatever the collection."""
    for field, (size, value) in need.items():
        if size > VARCHAR_LIMIT:
            what = ('a label of the model: shorten it in the labels_file of --model-cfg' if field == 'label' else
                    'a video path or URL: rename or move the file, or leave it out')
            raise MilvusCapacityError(f'{_short(value)} is {size} characters, more than any Milvus VARCHAR field '
                                      f'holds ({VARCHAR_LIMIT}), for the collection\'s {field!r}; it is {what}')


def _field_sizes(need: dict[str, tuple[int, str]]) -> dict[str, int]:
    """max_length of each VARCHAR field of a new collection: at least the defaults, at least what `need` says."""
    least = {'id': KEY_LENGTH, 'path': PATH_LENGTH, 'label': LABEL_LENGTH}
    return {field: max(size, need.get(field, (0, ''))[0]) for field, size in least.items()}


def _short(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + '...')


def is_transient(error: BaseException) -> bool:
    """Whether running the same request again may succeed: Milvus unreachable or timing out, a Milvus Lite `.db`
    in use, or an error Milvus itself marks retriable. By type (and Milvus's own `retriable` flag), never by text."""
    from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException

    if isinstance(error, (MilvusInUseError, MilvusUnavailableError, MilvusUnavailableException, ConnectError,
                          ConnectionError, TimeoutError)):
        return True
    return isinstance(error, MilvusException) and bool(getattr(error, 'retriable', False))


def _without_window(settings: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in (settings.get('options') or {}).items() if k not in ('window', 'stride')}
    return {**settings, 'options': options}


def exists(uri: str) -> bool:
    """False for a Milvus Lite file that does not exist yet (opening it would create it); True otherwise."""
    uri = resolve_uri(uri)
    return is_url(uri) or os.path.exists(uri)


def _lite_locked(path: str) -> bool:
    """Whether another process holds the Milvus Lite database at `path` (its advisory lock file)."""
    try:
        import fcntl

        from milvus_lite.db import LOCK_FILENAME
    except ImportError:
        return False
    lock = os.path.join(path, LOCK_FILENAME)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def resolve_uri(uri: str) -> str:
    """Server URIs verbatim; a local Milvus Lite path made absolute (cwd-independent), and it must end in `.db`."""
    if is_url(uri):
        return uri
    if not uri.endswith('.db'):
        raise ValueError(f'--milvus {uri!r}: a Milvus Lite database is a path ending in .db (e.g. ./videos.db); '
                         f'a Milvus server is a URI such as http://localhost:19530')
    path = os.path.abspath(os.path.expanduser(uri))
    if stored(path) != path:
        raise ValueError(f'--milvus {readable(path)}: Milvus Lite cannot keep a database under a name that is not '
                         f'UTF-8; choose a .db path whose folder names are UTF-8 (the videos\' names may be anything)')
    return path


@contextlib.contextmanager
def _quiet_logger(uri: str, name: str):
    logger = logging.getLogger(name)
    level = logger.level
    if not is_url(uri):
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _quiet_lite_server(uri: str):
    """pymilvus waits for a new index with an AllocTimestamp call that Milvus Lite does not implement: the
    in-process server logs a traceback, pymilvus carries on and the index is built. Hide only that log."""
    return _quiet_logger(uri, 'grpc._server')


class MilvusStore:
    """One collection. Raises `MilvusInUseError` when a Milvus Lite `.db` is open in another process,
    `MilvusUnavailableError` when Milvus cannot be opened otherwise.

    A batch job calls `sync` once its output is complete; a live stream calls `prepare` once, then `upsert` as its
    windows complete."""

    key = 'id'  # the primary key field: `moment_id(path, start_ms)`

    def __init__(self, uri: str, collection: str = 'videos', token: str | None = None):
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self.uri = resolve_uri(uri)
        self.collection = collection
        self._lengths: dict[str, int] | None = None  # the VARCHAR sizes of the collection `prepare` checked
        try:
            # Milvus Lite logs a traceback of its own when it cannot start; the error below says it in one line.
            with _quiet_logger(self.uri, 'milvus_lite'):
                self.client = MilvusClient(self.uri, token=token or os.environ.get('MILVUS_TOKEN', ''))
        except MilvusException as e:
            if not is_url(self.uri) and _lite_locked(self.uri):
                raise MilvusInUseError(
                    f'Milvus Lite database {self.uri} is in use by another process (Milvus Lite opens a .db in one '
                    f'process at a time); wait for that process to finish or stop it, then run again') from None
            raise MilvusUnavailableError(f'cannot open Milvus at {self.uri}: {type(e).__name__}: {e}') from e

    def close(self) -> None:
        self.client.close()
        if not is_url(self.uri):
            # Milvus Lite keeps the file open (and locked) until the process exits; let other processes in now.
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _info(self) -> dict[str, Any] | None:
        if not self.client.has_collection(self.collection):
            return None
        description = self.client.describe_collection(self.collection)
        properties = description.get('properties') or {}
        dims = [f['params'].get('dim') for f in description['fields'] if f['name'] == 'vector']
        settings = properties.get(_SETTINGS_PROPERTY)
        lengths = {f['name']: int(f['params']['max_length']) for f in description['fields']
                   if 'max_length' in (f.get('params') or {})}
        keys = [f['name'] for f in description['fields'] if f.get('is_primary')]
        return {'model': properties.get(_MODEL_PROPERTY), 'dim': int(dims[0]) if dims else None,
                'settings': None if settings is None else json.loads(settings),
                'output': properties.get(_OUTPUT_PROPERTY), 'key': keys[0] if keys else None, 'lengths': lengths}

    def _legacy(self, info: dict[str, Any]) -> LegacyCollectionError | None:
        """The error for a collection of an earlier version's per-video schema (keyed by path); None otherwise."""
        if info['key'] == self.key:
            return None
        return LegacyCollectionError(
            f'Milvus collection {self.collection!r} at {self.uri} was written by an older timesformer-videos (one '
            f'entity per video, keyed by {info["key"]!r}; now every entity is a window, keyed by {self.key!r}); '
            f'run the index command that made it with a new --collection (its output\'s rows are copied in, no '
            f'video is processed again) and search that, or pass --overwrite to index again into this one')

    def _check_model(self, info: dict[str, Any], model: str, dim: int) -> None:
        if info.get('dim') != dim or info.get('model', model) != model:
            raise MilvusCollectionError(
                f'Milvus collection {self.collection!r} at {self.uri} holds {info.get("dim")}-d vectors of model '
                f'{info.get("model")!r}; this run makes {dim}-d vectors with {model!r}. Use the same model, or '
                f'another --collection.')

    def _problem(self, info: dict[str, Any], settings: dict[str, Any], dim: int, output: str) -> str | None:
        """Why this collection cannot mirror `output` made with `settings`; None when it can."""
        if info['settings'] is None or info['output'] is None:
            return (f'Milvus collection {self.collection!r} at {self.uri} does not record the settings and output '
                    f'file its vectors belong to (made by an older version)')
        if info['output'] != output:
            return (f'Milvus collection {self.collection!r} at {self.uri} mirrors another output file, '
                    f'{info["output"]}; a collection holds the rows of one output')
        current = json.loads(json.dumps(settings))
        if info['settings'] != current or info['dim'] != dim:
            from .settings import describe, differences

            changed = differences(info['settings'], current) or {'dim': (info['dim'], dim)}
            return (f'Milvus collection {self.collection!r} at {self.uri} holds vectors made with other settings:\n'
                    + describe(changed))
        return None

    def _too_small(self, lengths: dict[str, int], need: dict[str, tuple[int, str]]) -> str | None:
        """Why VARCHAR fields of these `lengths` cannot hold the values of `need`; None when they can."""
        short = [(field, lengths[field], *need[field]) for field in need
                 if field in lengths and need[field][0] > lengths[field]]
        if not short:
            return None
        return (f'Milvus collection {self.collection!r} at {self.uri} cannot hold this run\'s values: '
                + '; '.join(f'its VARCHAR field {field!r} holds {size} characters, and {length} are needed for '
                            f'{_short(value)}' for field, size, length, value in short))

    def check_capacity(self, need: dict[str, tuple[int, str]], replace_output: str | None = None) -> None:
        """Raise `MilvusCapacityError` unless this collection (or a new one) can hold values of the lengths `need`
        (`needed_lengths`). `replace_output`: with --overwrite, the output whose collection may be made again."""
        check_limits(need)
        info = self._info()
        problem = None if info is None else self._too_small(info['lengths'], need)
        if problem is None or (replace_output is not None and info['output'] == replace_output):
            return
        raise MilvusCapacityError(
            f'{problem}. It was made with smaller fields before; Milvus cannot widen a field. Index into another '
            f'--collection (or --milvus database), which is created with fields sized for this run; or, if it '
            f'mirrors this --out, pass --overwrite to make it again.')

    def check_compatible(self, settings: dict[str, Any], dim: int, output: str, replace: bool = False) -> None:
        """Raise `MilvusCollectionError` now, before hours of indexing, unless `sync` will be able to mirror
        `output` (made with `settings`) in this collection (`LegacyCollectionError` for a collection of an earlier
        version's schema). `replace` (--overwrite): a collection of this same output made with other settings (or
        an earlier schema) is to be replaced."""
        info = self._info()
        if info is None or (replace and info['output'] == output):
            return
        legacy = self._legacy(info)
        if legacy is not None:
            raise legacy
        problem = self._problem(info, settings, dim, output)
        if problem is None:
            return
        if info['output'] == output:
            raise MilvusCollectionError(
                f'{problem}\nRe-run with the settings shown there; or index into another --collection (or --milvus '
                f'database); or pass --overwrite to replace the output and this collection with this run\'s results.')
        raise MilvusCollectionError(f'{problem}. Index into another --collection (one per output file) or another '
                                    f'--milvus database.')

    def prepare(self, settings: dict[str, Any], dim: int, output: str, labels: Iterable[str] = (),
                paths: Iterable[str] = (), replace: bool = False) -> None:
        """Make the collection ready to take windows of `output` made with `settings` (`OperatorSpec.signature()`)
        as `dim`-d vectors: create it, its VARCHAR fields sized for `paths` (stored, `paths.stored`) and `labels`
        (every label the model can give, so that later rows fit too), or check the one there.

        `output`: what the collection holds the rows of (the output file as `paths.stored` writes it; for a live
        stream without one, its source). `replace` (--overwrite): a collection of this output made with other
        settings, fields too small or an earlier schema is dropped and made again. Raises, before writing anything,
        `LegacyCollectionError`, `MilvusCollectionError` (other settings or output) or `MilvusCapacityError` (a
        value too long)."""
        need = needed_lengths(paths, labels)
        self.check_compatible(settings, dim, output, replace)
        self.check_capacity(need, output if replace else None)
        info = self._info()
        if info is not None and (self._legacy(info) or self._problem(info, settings, dim, output)
                                 or self._too_small(info['lengths'], need)):
            self.client.drop_collection(self.collection)  # with `replace`, of this output: the checks above passed
            info = None
        if info is None:
            self._create(settings, dim, output, need)
            info = self._info()
        self._lengths = info['lengths']

    def upsert(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert each processed row (a feature and no error) as its window's entity, replacing the entity of the
        same path and start; visible to a search at once. Rows are dicts with `path`, `start_ms`, `end_ms`,
        `labels`, `scores`, `feature` (`results.COLUMNS`). Returns how many were written. Call `prepare` first (else
        `MilvusCollectionError`); a path or label longer than the collection's fields raises `MilvusCapacityError`
        before any is written."""
        if self._lengths is None:
            raise MilvusCollectionError(f'Milvus collection {self.collection!r} at {self.uri}: call prepare(settings, '
                                        f'dim, output) before upsert')
        entities = [_entity(row) for row in rows if row.get('error') is None and row.get('feature') is not None]
        problem = self._too_small(self._lengths, needed_lengths([e['path'] for e in entities],
                                                                [e['label'] for e in entities]))
        if problem is not None:
            raise MilvusCapacityError(f'{problem}; write them into another --collection')
        for start in range(0, len(entities), _BATCH):
            self.client.upsert(self.collection, entities[start:start + _BATCH])
        return len(entities)

    def _create(self, settings: dict[str, Any], dim: int, output: str, need: dict[str, tuple[int, str]]) -> None:
        from pymilvus import DataType

        model = settings['model_name']
        sizes = _field_sizes(need)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False,
                                           description=f'TimeSformer window embeddings ({model})')
        schema.add_field('id', DataType.VARCHAR, is_primary=True, max_length=sizes['id'])
        schema.add_field('path', DataType.VARCHAR, max_length=sizes['path'])
        schema.add_field('start_ms', DataType.INT64)
        schema.add_field('end_ms', DataType.INT64)
        schema.add_field('label', DataType.VARCHAR, max_length=sizes['label'])
        schema.add_field('score', DataType.FLOAT)
        schema.add_field('vector', DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name='vector', index_type='AUTOINDEX', metric_type='COSINE')
        properties = {_MODEL_PROPERTY: model, _SETTINGS_PROPERTY: json.dumps(settings, sort_keys=True),
                      _OUTPUT_PROPERTY: output}
        with _quiet_lite_server(self.uri):  # Strong: a search sees every upsert before it (a live stream's too)
            self.client.create_collection(self.collection, schema=schema, index_params=index, properties=properties,
                                          consistency_level='Strong')

    def paths(self, batch: int = 1000) -> set[str]:
        """Every video path in the collection (every path with a window)."""
        return {key.rsplit('#', 1)[0] for key in self.keys(batch)}

    def keys(self, batch: int = 1000) -> set[str]:
        """Every primary key in the collection, `batch` a query, paged by key (`key > last`), the way
        pymilvus's query_iterator pages, but with the last key escaped (query_iterator pastes it in unescaped)."""
        self.client.load_collection(self.collection)
        found: set[str] = set()
        last = None
        while True:
            expression = '' if last is None else f'{self.key} > {string_literal(last)}'
            page = [entity[self.key] for entity in self.client.query(
                self.collection, filter=expression, output_fields=[self.key], limit=batch, iterator='True',
                reduce_stop_for_best='True')]  # as query_iterator asks: the `batch` smallest keys
            found.update(page)
            if len(page) < batch:
                return found
            last = max(page)  # Milvus orders strings by UTF-8 bytes, which is code point order

    def delete(self, keys: Iterable[str]) -> None:
        """Delete the entities of `keys` (`moment_id`s) by an expression built with escaped literals, in bounded
        batches."""
        batch: list[str] = []
        size = 0
        for key in keys:
            batch.append(key)
            size += len(key) + 8
            if len(batch) >= _BATCH or size >= _FILTER_CHARS:
                self.client.delete(self.collection, filter=in_filter(self.key, batch))
                batch, size = [], 0
        if batch:
            self.client.delete(self.collection, filter=in_filter(self.key, batch))

    def sync(self, rows: Iterable[dict[str, Any]], settings: dict[str, Any], dim: int, output: str,
             replace: bool = False, labels: Iterable[str] = ()) -> tuple[int, int]:
        """Make the collection mirror `output`'s rows: upsert every processed row's window, delete every other
        window (of failed rows, of videos no longer in the output, windows that no longer exist). Returns
        (upserted, deleted), counting only entities that existed. `replace` and `labels`: as `prepare` takes them.
        Raises as `prepare` does, before writing."""
        rows = [row for row in rows if row['error'] is None and row['feature'] is not None]
        self.prepare(settings, dim, output, labels=[*labels, *(row['labels'][0] for row in rows)],
                     paths=[row['path'] for row in rows], replace=replace)
        stale = sorted(self.keys() - {moment_id(row['path'], window(row)[0]) for row in rows})
        upserted = self.upsert(rows)
        self.delete(stale)
        # Seal what was written so the vector index covers it: Milvus Lite searches unsealed rows by brute force,
        # 1 s against 0.1 s over 10,000 768-d moments (benchmarks/moments.py).
        self.client.flush(self.collection)
        return upserted, len(stale)

    def count(self) -> int:
        self.client.load_collection(self.collection)
        result = self.client.query(self.collection, filter='', output_fields=['count(*)'])
        return int(result[0]['count(*)'])

    def search(self, vector: Sequence[float], k: int, model: str, settings: dict[str, Any] | None = None,
               filter: str = '', per_video: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        """The k nearest windows, best first: [{'path', 'start_ms', 'end_ms', 'distance' (cosine similarity: 1 =
        same direction), 'label', 'score'}]; with `per_video`, the best window of each of the k nearest videos (of
        a collection of whole videos: the k nearest videos). `filter`: a Milvus scalar expression on the fields
        (e.g. `label == "archery"`), applied before the vector search.

        `settings` (`OperatorSpec.signature()` of the query's embedding): when given, the collection's vectors must
        have been made with the same ones, top-k, window and stride aside (they do not change how one clip is
        embedded, and the query is one clip), else `MilvusCollectionError`. Raises ValueError when there is no such
        collection, `LegacyCollectionError` for one of an earlier version's schema."""
        info = self._info()
        if info is None:
            raise ValueError(f'no collection {self.collection!r} at {self.uri}; index videos into it first '
                             f'(timesformer-videos index ... --milvus {self.uri})')
        legacy = self._legacy(info)
        if legacy is not None:
            raise legacy
        self._check_model(info, model, len(vector))
        if settings is not None and info['settings'] is not None:
            saved, current = _without_window(info['settings']), _without_window(json.loads(json.dumps(settings)))
            differences = [f'  {key}: {json.dumps(saved.get(key))} there, '
                           f'{json.dumps(current.get(key))} for the query'
                           for key in dict.fromkeys([*saved, *current])
                           if key != 'topk' and saved.get(key) != current.get(key)]
            if differences:
                raise MilvusCollectionError(
                    f'Milvus collection {self.collection!r} at {self.uri} holds vectors made with other settings '
                    f'than the query\'s:\n' + '\n'.join(differences)
                    + '\nSearch with the model options the collection was indexed with.')
        self.client.load_collection(self.collection)  # a reopened Milvus Lite file starts released
        grouping = {'group_by_field': 'path'} if per_video else {}
        hits = self.client.search(self.collection, data=[[float(x) for x in vector]], limit=k, filter=filter,
                                  search_params={'metric_type': 'COSINE'}, output_fields=_OUTPUT_FIELDS,
                                  **grouping)[0]
        return [{'path': hit['entity']['path'], 'start_ms': int(hit['entity']['start_ms']),
                 'end_ms': int(hit['entity']['end_ms']), 'distance': float(hit['distance']),
                 'label': hit['entity']['label'], 'score': float(hit['entity']['score'])} for hit in hits]


def _entity(row: dict[str, Any]) -> dict[str, Any]:
    """A processed row's entity: its window, top-1 label and score, and feature."""
    start_ms, end_ms = window(row)
    return {'id': moment_id(row['path'], start_ms), 'path': row['path'], 'start_ms': start_ms, 'end_ms': end_ms,
            'label': row['labels'][0], 'score': float(row['scores'][0]),
            'vector': [float(x) for x in row['feature']]}
