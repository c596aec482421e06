"""One Milvus key scheme: every entity is a window keyed `<path>#<start_ms>`, for whole videos and windows alike.

A search of videos gives each video's best window; a search of windows gives windows. What earlier versions wrote
is read (a moments collection, `id`-keyed) or refused in one line that says what to do (a per-video collection keyed
by `path`); an output written before whole videos had windows is synced as `[0, duration)`. A live stream's windows
(`prepare`, `upsert`) are found by a search at once. The references: collections built and read back with pymilvus
itself (the earlier schemas as the earlier code wrote them), cosine similarities by numpy over the output's rows as
pyarrow reads them, and an earlier-schema output written by pyarrow.
"""

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY, TINY_CFG, earlier_output_schema, videos_py

from timesformer_video.jobs import errors, milvus_store, operators, runner
from timesformer_video.synthetic import make_video

pytest.importorskip('milvus_lite')

FPS = 8


def spec(weights, window=None):
    options = {} if window is None else {'window': window, 'stride': window}
    return operators.OperatorSpec(model_name=TINY, weights=str(weights), model_cfg=TINY_CFG, options=options)


def client_of(db):
    """A pymilvus client of the Milvus Lite file, and how to let it go (the next opener may be another process)."""
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import MilvusClient

    client = MilvusClient(str(db))

    def close():
        client.close()
        server_manager_instance.release_server(str(db))
    return client, close


def entities(db, collection, fields):
    client, close = client_of(db)
    try:
        client.load_collection(collection)
        return client.query(collection, filter='', output_fields=fields, limit=1000)
    finally:
        close()


def primary_key(db, collection):
    client, close = client_of(db)
    try:
        return next(f['name'] for f in client.describe_collection(collection)['fields'] if f.get('is_primary'))
    finally:
        close()


def earlier_collection(db, collection, rows, settings, out, per_video):
    """A collection as the earlier code wrote it (its `_create` and `sync`, with pymilvus): per video (`path` the
    primary key, `duration`), or of windows (`id` = path#start_ms, the `timesformer.kind` property)."""
    from pymilvus import DataType

    client, close = client_of(db)
    try:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        if per_video:
            schema.add_field('path', DataType.VARCHAR, is_primary=True, max_length=4096)
        else:
            schema.add_field('id', DataType.VARCHAR, is_primary=True, max_length=4117)
            schema.add_field('path', DataType.VARCHAR, max_length=4096)
            schema.add_field('start_ms', DataType.INT64)
            schema.add_field('end_ms', DataType.INT64)
        schema.add_field('label', DataType.VARCHAR, max_length=512)
        schema.add_field('score', DataType.FLOAT)
        if per_video:
            schema.add_field('duration', DataType.FLOAT)
        schema.add_field('vector', DataType.FLOAT_VECTOR, dim=48)
        index = client.prepare_index_params()
        index.add_index(field_name='vector', index_type='AUTOINDEX', metric_type='COSINE')
        properties = {'timesformer.model': TINY, 'timesformer.settings': json.dumps(settings, sort_keys=True),
                      'timesformer.output': str(out)}
        if not per_video:
            properties['timesformer.kind'] = 'moments'
        client.create_collection(collection, schema=schema, index_params=index, properties=properties)
        data = []
        for row in rows:
            entity = {'path': row['path'], 'label': row['labels'][0], 'score': row['scores'][0],
                      'vector': row['feature']}
            if per_video:
                entity['duration'] = row['duration']
            else:
                entity.update(id=f'{row["path"]}#{row["start_ms"]}', start_ms=row['start_ms'], end_ms=row['end_ms'])
            data.append(entity)
        client.upsert(collection, data)
        client.flush(collection)
    finally:
        close()


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope='module')
def library(tiny_weights, tmp_path_factory):
    """Three 3 s videos, indexed whole (collection 'videos') and in 1 s windows (collection 'moments') into one
    Milvus Lite file; each output's rows as pyarrow reads them."""
    root = tmp_path_factory.mktemp('keys')
    for seed in range(3):
        make_video(root / 'clips' / f'v{seed}.mp4', n_frames=3 * FPS, size=(96, 64), fps=FPS, seed=seed)
    db = root / 'library.db'
    for name, window in (('videos', None), ('moments', 1)):
        summary = runner.run_index(runner.IndexJob([root / 'clips'], root / f'{name}.parquet',
                                                   spec(tiny_weights, window), milvus=str(db), progress=False))
        assert summary.failed == 0
    return {'root': root, 'db': db, 'videos': pq.read_table(root / 'videos.parquet').to_pylist(),
            'windows': pq.read_table(root / 'moments.parquet').to_pylist()}


def test_every_collection_has_one_entity_per_window_keyed_by_path_and_start(library):
    for collection, rows in (('videos', library['videos']), ('moments', library['windows'])):
        assert primary_key(library['db'], collection) == 'id'
        found = entities(library['db'], collection, ['id', 'path', 'start_ms', 'end_ms'])
        assert sorted((e['id'], e['path'], e['start_ms'], e['end_ms']) for e in found) == sorted(
            (f'{r["path"]}#{r["start_ms"]}', r['path'], r['start_ms'], r['end_ms']) for r in rows)
    assert len(library['videos']) == 3 and len(library['windows']) == 9  # a whole video is its one window


def test_a_search_of_videos_gives_each_videos_best_window_and_a_search_of_windows_every_window(library, tiny_weights):
    query = np.random.default_rng(7).standard_normal(48).astype(np.float32)
    best = {}
    for row in library['windows']:
        similarity = cosine(query, row['feature'])
        if row['path'] not in best or similarity > best[row['path']][0]:
            best[row['path']] = (similarity, row['start_ms'])
    expected_videos = sorted(best.items(), key=lambda item: -item[1][0])[:2]
    expected_windows = sorted(library['windows'], key=lambda row: -cosine(query, row['feature']))
    settings = spec(tiny_weights).signature()  # a query is one clip: the collection's window does not matter
    with milvus_store.MilvusStore(str(library['db']), 'moments') as store:
        videos = store.search(query, 2, TINY, settings, per_video=True)
        windows = store.search(query, 20, TINY, settings)
    assert [(hit['path'], hit['start_ms']) for hit in videos] == [(path, start) for path, (_, start) in
                                                                   expected_videos]
    np.testing.assert_allclose([hit['distance'] for hit in videos], [s for _, (s, _) in expected_videos], atol=1e-5)
    assert [(hit['path'], hit['start_ms'], hit['end_ms']) for hit in windows] == \
        [(row['path'], row['start_ms'], row['end_ms']) for row in expected_windows]

    # Whole videos (one window each): a search of videos and of windows give the same hits.
    with milvus_store.MilvusStore(str(library['db']), 'videos') as store:
        assert store.search(query, 3, TINY, settings, per_video=True) == store.search(query, 3, TINY, settings)


def test_a_per_video_collection_of_the_earlier_version_is_refused_in_one_line_and_the_ways_out_work(
        library, tiny_weights, tmp_path):
    out, db = tmp_path / 'videos.parquet', tmp_path / 'earlier.db'
    shutil.copy(library['root'] / 'videos.parquet', out)
    earlier_collection(db, 'videos', library['videos'], spec(tiny_weights).signature(), out, per_video=True)
    cfg = tmp_path / 'tiny.json'
    cfg.write_text(json.dumps(TINY_CFG))
    refused = videos_py('index', library['root'] / 'clips', '--out', out, '--milvus', db, '--model-cfg', cfg,
                        '--weights', tiny_weights, '--no-progress', cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.count('\n') == 1 and refused.stderr.startswith(
        f"error: Milvus collection 'videos' at {db} was written by an older timesformer-videos (one entity per "
        f"video, keyed by 'path'"), refused.stderr
    assert 'a new --collection' in refused.stderr and '--overwrite' in refused.stderr
    with milvus_store.MilvusStore(str(db)) as store, pytest.raises(errors.LegacyCollectionError):
        store.search(library['videos'][0]['feature'], 1, TINY)

    # A new collection: the output's rows are copied in, no video processed again.
    copied = runner.run_index(runner.IndexJob([library['root'] / 'clips'], out, spec(tiny_weights), milvus=str(db),
                                              collection='videos_now', progress=False))
    assert (copied.processed, copied.milvus) == (0, (3, 0))
    assert primary_key(db, 'videos_now') == 'id' and primary_key(db, 'videos') == 'path'  # the old one untouched
    # --overwrite makes it again, with the one schema; but only for the output it mirrors.
    with pytest.raises(errors.LegacyCollectionError):
        runner.run_index(runner.IndexJob([library['root'] / 'clips'], tmp_path / 'other.parquet', spec(tiny_weights),
                                         milvus=str(db), progress=False, overwrite=True))
    rewritten = runner.run_index(runner.IndexJob([library['root'] / 'clips'], out, spec(tiny_weights),
                                                 milvus=str(db), progress=False, overwrite=True))
    assert rewritten.milvus == (3, 0) and primary_key(db, 'videos') == 'id'


def test_a_moments_collection_of_the_earlier_version_is_searched_and_resumed_as_it_is(library, tiny_weights,
                                                                                      tmp_path):
    out, db = tmp_path / 'moments.parquet', tmp_path / 'earlier.db'
    shutil.copy(library['root'] / 'moments.parquet', out)
    window_spec = spec(tiny_weights, window=1)
    earlier_collection(db, 'moments', library['windows'], window_spec.signature(), out, per_video=False)
    target = library['windows'][4]
    with milvus_store.MilvusStore(str(db), 'moments') as store:
        [hit] = store.search(target['feature'], 1, TINY, window_spec.signature())
    assert (hit['path'], hit['start_ms'], hit['end_ms']) == (target['path'], target['start_ms'], target['end_ms'])
    assert hit['distance'] == pytest.approx(1.0, abs=1e-5)

    resumed = runner.run_index(runner.IndexJob([library['root'] / 'clips'], out, window_spec, milvus=str(db),
                                               progress=False))
    assert (resumed.processed, resumed.milvus) == (0, (9, 0))  # the same 9 windows, replaced in place
    assert len(entities(db, 'moments', ['id'])) == 9


def test_an_output_written_before_videos_had_windows_syncs_each_video_as_0_to_its_duration(library, tiny_weights,
                                                                                           tmp_path):
    job_spec = spec(tiny_weights)
    earlier = earlier_output_schema(job_spec.signature())
    kept = {key: value for key, value in library['videos'][0].items() if key not in ('start_ms', 'end_ms')}
    kept['duration'] = 2.9991  # ends inside a millisecond: its window ends at the next one
    out, db = tmp_path / 'earlier.parquet', tmp_path / 'v.db'
    pq.write_table(pa.Table.from_pylist([kept], schema=earlier), out)
    clips = sorted((library['root'] / 'clips').iterdir())
    summary = runner.run_index(runner.IndexJob(clips[:2], out, job_spec, milvus=str(db), progress=False))
    assert (summary.skipped, summary.processed, summary.milvus) == (1, 1, (2, 0))
    new = library['videos'][1]
    assert sorted((e['id'], e['start_ms'], e['end_ms']) for e in entities(db, 'videos', ['id', 'start_ms', 'end_ms'])) \
        == sorted([(f'{kept["path"]}#0', 0, math.ceil(2999.1)),
                   (f'{new["path"]}#{new["start_ms"]}', new['start_ms'], new['end_ms'])])


def test_a_live_streams_windows_are_found_as_soon_as_they_are_upserted(tmp_path):
    settings, source = {'model_name': 'm', 'topk': 1}, 'rtsp://camera.example/1'
    rng = np.random.default_rng(3)

    def row(start_ms, error=None):
        return {'path': source, 'start_ms': start_ms, 'end_ms': start_ms + 2000, 'labels': [f'label {start_ms}'],
                'scores': [0.5], 'feature': None if error else rng.standard_normal(8).astype(np.float32),
                'error': error}

    with milvus_store.MilvusStore(str(tmp_path / 's.db'), 'moments') as store:
        with pytest.raises(errors.MilvusCollectionError, match='prepare'):
            store.upsert([row(0)])
        store.prepare(settings, 8, source, labels=['label 0'], paths=[source])
        first, second = row(0), row(2000)
        assert store.upsert([first, second, row(4000, error='ConnectionError: lost')]) == 2  # a gap is no vector
        [hit] = store.search(second['feature'], 1, 'm')  # no flush in between
        assert (hit['path'], hit['start_ms'], hit['end_ms'], hit['label']) == (source, 2000, 4000, 'label 2000')
        again = row(2000)  # the same window again replaces it
        assert store.upsert([again]) == 1 and store.count() == 2
        assert store.search(again['feature'], 1, 'm')[0]['distance'] == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(errors.MilvusCapacityError, match="'path' holds 4096 characters"):
            store.upsert([{**row(0), 'path': 'rtsp://camera.example/' + 'x' * 5000}])
    with milvus_store.MilvusStore(str(tmp_path / 's.db'), 'moments') as store:
        with pytest.raises(errors.MilvusCollectionError, match='other settings'):
            store.prepare({'model_name': 'm', 'topk': 3}, 8, source)
        with pytest.raises(errors.MilvusCollectionError, match='mirrors another output'):
            store.prepare(settings, 8, 'rtsp://camera.example/2')
        store.prepare(settings, 8, source)  # the same stream again: its windows stay
        assert store.count() == 2
