"""Batch jobs: inputs, the resumable output, kill -9 and resume, Ray parity, Milvus Lite index and search, CLI errors.

Models are small same-architecture ones with random weights: these tests check plumbing, not accuracy.
"""

import json
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import TINY, TINY_CFG, VIDEOS_PY, run_until_first_chunk, videos_py

from timesformer_video.jobs import inputs, operators, results, runner
from timesformer_video.synthetic import make_video

# Slow enough (a few videos a second on 2 cores) to kill a run in the middle: 224 px crops, 6 blocks of 192-d.
SLOW_CFG = {'name': 'timesformer_slow_test', 'base': 'timesformer_k400_8x224', 'embed_dim': 192, 'depth': 6,
            'num_heads': 3}
COMPARED = ('path', 'model', 'duration', 'labels', 'scores', 'error')  # all but the timings


@pytest.fixture(scope='session')
def collection(tmp_path_factory):
    """6 short clips in nested folders (different content each) and one file that is not a video."""
    root = tmp_path_factory.mktemp('collection')
    for i in range(6):
        make_video(root / f'{"ab"[i % 2]}' / f'clip{i}.mp4', n_frames=10, size=(96, 64), fps=10, seed=i)
    (root / 'a' / 'broken.mp4').write_bytes(b'this is not a video' * 20)
    (root / 'a' / 'notes.txt').write_text('not an input: folders are searched by video extension\n')
    return root


@pytest.fixture(scope='session')
def tiny_spec(tiny_weights):
    return operators.OperatorSpec(model_name=TINY, weights=str(tiny_weights), model_cfg=TINY_CFG)


@pytest.fixture(scope='session')
def tiny_args(tiny_weights, tmp_path_factory):
    cfg = tmp_path_factory.mktemp('cfg') / 'tiny.json'
    cfg.write_text(json.dumps(TINY_CFG))
    return ['--model-cfg', str(cfg), '--weights', str(tiny_weights)]


def by_path(rows):
    return {row['path']: row for row in rows}


def test_inputs_expand_folders_globs_and_list_files_each_video_once(collection, tmp_path, monkeypatch):
    listing = tmp_path / 'list.txt'
    listing.write_text(f'# my videos\n{collection / "a" / "clip0.mp4"}\n\nmissing.mp4\nhttps://example.org/v.mp4\n')
    monkeypatch.chdir(collection)
    warnings = []
    found = inputs.expand(['b', str(listing), 'a/*', 'b/clip1.mp4', 'gone/*.mp4'], warn=warnings.append)

    b = [str(collection / 'b' / f'clip{i}.mp4') for i in (1, 3, 5)]
    a = [str(collection / 'a' / name) for name in ('broken.mp4', 'clip2.mp4', 'clip4.mp4')]
    assert found == b + [str(collection / 'a' / 'clip0.mp4'), str(tmp_path / 'missing.mp4'),
                         'https://example.org/v.mp4'] + a
    assert warnings == ['no files match gone/*.mp4']


def test_index_writes_one_row_per_video_and_records_failures(collection, tiny_spec, tmp_path):
    out = tmp_path / 'results.parquet'
    summary = runner.run_index(runner.IndexJob([collection, tmp_path / 'missing.mp4'], out, tiny_spec, chunk_size=3,
                                               progress=False))

    assert (summary.total, summary.processed, summary.failed, summary.skipped) == (8, 8, 2, 0)
    assert not out.with_name('results.parquet.parts').exists()  # the sidecar goes once the output is whole
    table = pq.read_table(out)
    assert table.column_names == list(results.COLUMNS)
    assert str(table.schema.field('feature').type) == 'fixed_size_list<element: float>[48]'
    rows = by_path(results.table_to_rows(table))
    assert len(rows) == 8
    broken, missing = rows[str(collection / 'a' / 'broken.mp4')], rows[str(tmp_path / 'missing.mp4')]
    assert broken['error'].startswith('NotAVideoError') and broken['feature'] is None
    assert missing['error'].startswith('FileNotFoundError')
    clip = rows[str(collection / 'a' / 'clip0.mp4')]
    assert clip['error'] is None and clip['duration'] == pytest.approx(1.0)
    assert len(clip['labels']) == 5 and clip['scores'] == sorted(clip['scores'], reverse=True)
    assert clip['feature'].dtype == np.float32 and clip['feature'].shape == (48,)
    assert clip['decode_s'] > 0 and clip['model_s'] > 0

    again = runner.run_index(runner.IndexJob([collection, tmp_path / 'missing.mp4'], out, tiny_spec, progress=False))
    assert (again.processed, again.skipped) == (0, 8)
    retried = runner.run_index(runner.IndexJob([collection, tmp_path / 'missing.mp4'], out, tiny_spec,
                                               retry_failed=True, progress=False))
    assert (retried.processed, retried.failed) == (2, 2)
    assert len(pq.read_table(out)) == 8

    jsonl = tmp_path / 'results.jsonl'
    runner.run_index(runner.IndexJob([collection, tmp_path / 'missing.mp4'], jsonl, tiny_spec, progress=False))
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])['path'] == str(collection / 'a' / 'broken.mp4')
    as_json = by_path(results.read_output(jsonl))
    for path, row in rows.items():
        assert {k: as_json[path][k] for k in COMPARED} == {k: row[k] for k in COMPARED}
        if row['feature'] is not None:
            np.testing.assert_array_equal(as_json[path]['feature'], row['feature'])


def test_kill_9_mid_run_then_the_same_command_finishes_with_each_input_once(tmp_path):
    clips = tmp_path / 'clips'
    for i in range(12):
        make_video(clips / f'clip{i:02d}.mp4', n_frames=8, size=(128, 96), fps=8, seed=i)
    operators.save_random_weights(tmp_path / 'slow.pth', SLOW_CFG['name'], SLOW_CFG)
    (tmp_path / 'slow.json').write_text(json.dumps(SLOW_CFG))
    work = tmp_path / 'elsewhere'  # the command runs from another directory, with relative paths
    work.mkdir()
    command = [sys.executable, str(VIDEOS_PY), 'index', '../clips', '../nope.mp4', '--out', 'out/results.parquet',
               '--model-cfg', '../slow.json', '--weights', '../slow.pth', '--chunk-size', '2', '--no-progress']
    parts = work / 'out' / 'results.parquet.parts'

    first = run_until_first_chunk(command, work, parts)
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stderr.close()

    assert not (work / 'out' / 'results.parquet').exists()
    chunks = sorted(parts.glob('chunk-*.parquet'))
    done_before = {row['path']: row for chunk in chunks for row in pq.read_table(chunk).to_pylist()}
    assert 2 <= len(done_before) < 13

    second = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    assert second.returncode == 3, second.stderr  # complete, with nope.mp4 recorded as failed
    assert '1 video failed (1 FileNotFoundError)' in second.stderr
    assert f'resuming: {len(done_before)} of 13 videos already done' in second.stderr
    rows = pq.read_table(work / 'out' / 'results.parquet').to_pylist()
    expected = [str(clips / f'clip{i:02d}.mp4') for i in range(12)] + [str(tmp_path / 'nope.mp4')]
    assert [row['path'] for row in rows] == expected  # each input exactly once, in input order
    assert sum(row['error'] is not None for row in rows) == 1
    for row in rows:
        if row['path'] in done_before:  # kept from before the kill, not redone
            assert row['decode_s'] == done_before[row['path']]['decode_s']
    assert not parts.exists()


def test_an_unfinished_output_is_not_resumed_with_other_settings(tmp_path):
    out = tmp_path / 'r.parquet'
    row = {'path': '/v.mp4', 'model': 'm', 'duration': 1.0, 'labels': ['a'], 'scores': [0.5],
           'feature': np.ones(4, np.float32), 'decode_s': 0.1, 'model_s': 0.2, 'error': None}
    with results.ResultStore(out, 4, {'model_name': 'm', 'topk': 1}) as store:
        store.write_chunk([row])  # then "killed": no finish()
    with pytest.raises(results.JobStateError, match='unfinished job with other settings'):
        with results.ResultStore(out, 4, {'model_name': 'm', 'topk': 5}):
            pass
    with results.ResultStore(out, 4, {'model_name': 'm', 'topk': 1}) as store:
        with pytest.raises(results.JobStateError, match='another job is writing'):
            with results.ResultStore(out, 4, {'model_name': 'm', 'topk': 1}):
                pass
        assert store.done() == {'/v.mp4'}
        store.finish()
    assert len(pq.read_table(out)) == 1


def test_missing_weights_print_one_clear_message_and_exit_nonzero(collection, tmp_path):
    env = {'TORCH_HOME': str(tmp_path / 'torch'), 'TIMESFORMER_WEIGHTS_BASE_URL': 'http://127.0.0.1:9'}
    result = videos_py('index', collection, '--out', 'r.parquet', cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.count('pretrained weights for') == 1 and '--weights' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'r.parquet').exists() and not (tmp_path / 'r.parquet.parts').exists()


def test_ray_engine_with_two_workers_gives_the_local_engines_rows(collection, tiny_spec, tmp_path):
    """Same rows; numbers equal to float rounding (a replica runs torch on 1 thread, the local engine on all)."""
    pytest.importorskip('ray')
    local = runner.run_index(runner.IndexJob([collection], tmp_path / 'local.parquet', tiny_spec, progress=False))
    ray = runner.run_index(runner.IndexJob([collection], tmp_path / 'ray.parquet', tiny_spec, engine='ray', workers=2,
                                           chunk_size=2, progress=False))
    assert (ray.processed, ray.failed) == (local.processed, local.failed) == (7, 1)
    local_table, ray_table = pq.read_table(tmp_path / 'local.parquet'), pq.read_table(tmp_path / 'ray.parquet')
    assert ray_table.schema == local_table.schema
    local_rows, ray_rows = results.table_to_rows(local_table), results.table_to_rows(ray_table)
    assert [r['path'] for r in ray_rows] == [r['path'] for r in local_rows]
    for a, b in zip(ray_rows, local_rows):
        assert {k: a[k] for k in ('path', 'model', 'duration', 'labels', 'error')} == \
            {k: b[k] for k in ('path', 'model', 'duration', 'labels', 'error')}
        if b['error'] is None:
            np.testing.assert_allclose(a['scores'], b['scores'], rtol=1e-4)
            np.testing.assert_allclose(a['feature'], b['feature'], atol=1e-5)


def test_milvus_lite_reindexing_replaces_a_path_and_search_lists_the_nearest(collection, tiny_spec, tiny_args,
                                                                             tmp_path):
    pytest.importorskip('milvus_lite')
    from timesformer_video.jobs.milvus_store import MilvusStore

    db = tmp_path / 'videos.db'
    first = runner.run_index(runner.IndexJob([collection], tmp_path / 'r.parquet', tiny_spec, milvus=str(db),
                                             progress=False))
    assert first.milvus == (6, 0)  # the broken file is not indexed, so there is nothing to remove
    again = runner.run_index(runner.IndexJob([collection], tmp_path / 'r.parquet', tiny_spec, milvus=str(db),
                                             overwrite=True, progress=False))
    assert again.processed == 7
    with MilvusStore(str(db)) as store:
        assert store.count() == 6  # replaced, not added
        with pytest.raises(ValueError, match="holds 48-d vectors of model 'timesformer_tiny_test'"):
            store.search(np.ones(768), 3, 'timesformer_k400_8x224')  # another model's embedding

    query = collection / 'b' / 'clip3.mp4'
    result = videos_py('search', query, '--milvus', db, '-k', 3, '--json', *tiny_args, cwd=collection / 'a')
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)['results']
    assert len(hits) == 3
    assert hits[0]['path'] == str(query) and hits[0]['distance'] == pytest.approx(1.0, abs=1e-5)
    assert [h['distance'] for h in hits] == sorted((h['distance'] for h in hits), reverse=True)
    table = videos_py('search', query, '--milvus', db, '-k', 2, *tiny_args, cwd=tmp_path)
    assert table.returncode == 0 and str(query) in table.stdout.splitlines()[2]

    other = videos_py('search', query, '--milvus', db, '--weights', tmp_path / 'none.pth', cwd=tmp_path)
    assert other.returncode == 2 and 'weights file not found' in other.stderr  # checked before the model loads
