"""Video embeddings in Milvus: one entity per path (the primary key), so re-indexing a path replaces it.

`uri` is a Milvus Lite file (`./videos.db`, embedded, in-process; the `.db` is a directory) or a server URI
(`http://host:19530`). Collection fields: `path` (primary key), `label` and `score` (the top-1 prediction),
`duration`, and `vector` (the model's feature, COSINE index). A collection property records the model, so
a search with another model is refused instead of returning nonsense.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

MAX_PATH_BYTES = 4096
_MODEL_PROPERTY = 'timesformer.model'  # a collection property (Milvus Lite does not keep descriptions)
_BATCH = 500  # entities per upsert call


def resolve_uri(uri: str) -> str:
    """Server URIs verbatim; a local Milvus Lite path made absolute (cwd-independent), and it must end in `.db`."""
    if '://' in uri:
        return uri
    if not uri.endswith('.db'):
        raise ValueError(f'--milvus {uri!r}: a Milvus Lite database is a path ending in .db (e.g. ./videos.db); '
                         f'a Milvus server is a URI such as http://localhost:19530')
    return os.path.abspath(os.path.expanduser(uri))


@contextlib.contextmanager
def _quiet_lite_server(uri: str):
    """pymilvus waits for a new index with an AllocTimestamp call that Milvus Lite does not implement: the
    in-process server logs a traceback, pymilvus carries on and the index is built. Hide only that log."""
    logger = logging.getLogger('grpc._server')
    level = logger.level
    if '://' not in uri:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class MilvusStore:
    def __init__(self, uri: str, collection: str = 'videos', token: str | None = None):
        from pymilvus import MilvusClient

        self.uri = resolve_uri(uri)
        self.collection = collection
        self.client = MilvusClient(self.uri, token=token or os.environ.get('MILVUS_TOKEN', ''))

    def close(self) -> None:
        self.client.close()
        if '://' not in self.uri:
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
        info = {}
        model = (description.get('properties') or {}).get(_MODEL_PROPERTY)
        if model is not None:
            info['model'] = model
        dims = [f['params'].get('dim') for f in description['fields'] if f['name'] == 'vector']
        info['dim'] = int(dims[0]) if dims else None
        return info

    def _check(self, info: dict[str, Any], model: str, dim: int) -> None:
        if info.get('dim') != dim or info.get('model', model) != model:
            raise ValueError(
                f'Milvus collection {self.collection!r} at {self.uri} holds {info.get("dim")}-d vectors of model '
                f'{info.get("model")!r}; this run makes {dim}-d vectors with {model!r}. Use the same model, or '
                f'another --collection.')

    def check_compatible(self, model: str, dim: int) -> None:
        """Raise now if the collection exists with another model or dimension (before hours of indexing)."""
        info = self._info()
        if info is not None:
            self._check(info, model, dim)

    def ensure_collection(self, model: str, dim: int) -> None:
        from pymilvus import DataType

        info = self._info()
        if info is not None:
            self._check(info, model, dim)
            self.client.load_collection(self.collection)  # a reopened Milvus Lite file starts released
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False,
                                           description=f'TimeSformer video embeddings ({model})')
        schema.add_field('path', DataType.VARCHAR, is_primary=True, max_length=MAX_PATH_BYTES)
        schema.add_field('label', DataType.VARCHAR, max_length=512)
        schema.add_field('score', DataType.FLOAT)
        schema.add_field('duration', DataType.FLOAT)
        schema.add_field('vector', DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name='vector', index_type='AUTOINDEX', metric_type='COSINE')
        with _quiet_lite_server(self.uri):
            self.client.create_collection(self.collection, schema=schema, index_params=index,
                                          properties={_MODEL_PROPERTY: model})

    def sync(self, rows: Iterable[dict[str, Any]], model: str, dim: int) -> tuple[int, int]:
        """Upsert every processed row; delete paths whose latest result is an error. Returns (upserted, deleted)."""
        self.ensure_collection(model, dim)
        entities, failed = [], []
        for row in rows:
            if row['error'] is not None or row['feature'] is None:
                failed.append(row['path'])
                continue
            if len(row['path'].encode()) > MAX_PATH_BYTES:
                raise ValueError(f'path longer than {MAX_PATH_BYTES} bytes cannot be a Milvus key: {row["path"]}')
            entities.append({'path': row['path'], 'label': row['labels'][0], 'score': float(row['scores'][0]),
                             'duration': float(row['duration']), 'vector': [float(x) for x in row['feature']]})
        for start in range(0, len(entities), _BATCH):
            self.client.upsert(self.collection, entities[start:start + _BATCH])
        for start in range(0, len(failed), _BATCH):
            self.client.delete(self.collection, ids=failed[start:start + _BATCH])
        return len(entities), len(failed)

    def count(self) -> int:
        self.client.load_collection(self.collection)
        result = self.client.query(self.collection, filter='', output_fields=['count(*)'])
        return int(result[0]['count(*)'])

    def search(self, vector: Sequence[float], k: int, model: str) -> list[dict[str, Any]]:
        """The k nearest videos: [{'path', 'distance' (cosine similarity: 1 = same direction), 'label', 'score'}]."""
        info = self._info()
        if info is None:
            raise ValueError(f'no collection {self.collection!r} at {self.uri}; index videos into it first '
                             f'(videos.py index ... --milvus {self.uri})')
        self._check(info, model, len(vector))
        self.client.load_collection(self.collection)  # a reopened Milvus Lite file starts released
        hits = self.client.search(self.collection, data=[[float(x) for x in vector]], limit=k,
                                  search_params={'metric_type': 'COSINE'},
                                  output_fields=['path', 'label', 'score', 'duration'])[0]
        return [{'path': hit['entity']['path'], 'distance': float(hit['distance']),
                 'label': hit['entity']['label'], 'score': float(hit['entity']['score']),
                 'duration': float(hit['entity']['duration'])} for hit in hits]
