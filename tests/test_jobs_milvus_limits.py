"""What a Milvus collection can hold is checked before the run, never found out by a sync that fails for good.

Labels as a user's `--model-cfg` labels file has them (609-character names), a collection made earlier with a
smaller `label` field, a label no Milvus field can hold; and which sync failures say "run the command again".
Milvus Lite is the reference: the collection's schema and entities are read back with pymilvus.
"""

import json

import pyarrow.parquet as pq
import pytest
from conftest import TINY, videos_py
from pymilvus.exceptions import MilvusException, MilvusUnavailableException, ParamError

from timesformer_video.synthetic import make_video

N_CLASSES = 400  # the tiny model's head


def write_labels(path, name):
    path.write_text(json.dumps([name(i) for i in range(N_CLASSES)]), encoding='utf-8')


def long_name(i):
    return f'{i:03d} ' + 'très long libellé ' * 33 + 'x' * 11  # 609 characters, some of them 2 UTF-8 bytes


def milvus_read(db, collection):
    """(max_length of each VARCHAR field, every entity's label) as pymilvus reads them."""
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import MilvusClient

    client = MilvusClient(str(db))
    try:
        fields = client.describe_collection(collection)['fields']
        client.load_collection(collection)
        labels = [e['label'] for e in client.query(collection, filter='', output_fields=['label'], limit=100)]
    finally:
        client.close()
        server_manager_instance.release_server(str(db))  # let the next command open the .db
    return {f['name']: f['params']['max_length'] for f in fields if 'max_length' in f['params']}, labels


@pytest.fixture()
def job(tmp_path, tiny_weights):
    for i in range(2):
        make_video(tmp_path / 'clips' / f'clip{i}.mp4', n_frames=6, size=(96, 64), fps=6, seed=i)
    (tmp_path / 'tiny.json').write_text(json.dumps({'name': TINY, 'base': 'timesformer_k400_8x224', 'image_size': 64,
                                                    'embed_dim': 48, 'depth': 2, 'num_heads': 4,
                                                    'labels_file': 'labels.json'}))
    return ['--model-cfg', tmp_path / 'tiny.json', '--weights', tiny_weights, '--no-progress']


def test_long_labels_get_a_label_field_sized_for_them(job, tmp_path):
    assert len(long_name(0)) == 609 and len(long_name(0).encode()) > 609
    write_labels(tmp_path / 'labels.json', long_name)
    result = videos_py('index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', *job, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'Milvus videos: 2 upserted' in result.stdout
    lengths, labels = milvus_read(tmp_path / 'v.db', 'videos')
    assert lengths['label'] >= 609 and lengths['path'] >= 4096
    top = [row['labels'][0] for row in pq.read_table(tmp_path / 'r.parquet').to_pylist()]
    assert sorted(labels) == sorted(top) and all(len(label) == 609 for label in labels)


def test_a_collection_too_small_for_the_labels_is_refused_before_any_video_and_says_what_to_do(job, tmp_path):
    write_labels(tmp_path / 'labels.json', lambda i: f'class {i}')
    first = videos_py('index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', *job, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert milvus_read(tmp_path / 'v.db', 'videos')[0]['label'] == 512

    # The labels file is edited in place (same settings), and a new video is added.
    write_labels(tmp_path / 'labels.json', long_name)
    make_video(tmp_path / 'clips' / 'clip2.mp4', n_frames=6, size=(96, 64), fps=6, seed=2)
    refused = videos_py('index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', *job, cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), refused.stderr
    assert "VARCHAR field 'label' holds 512 characters, and 609 are needed" in lines[0]
    assert 'another --collection' in lines[0] and '--overwrite' in lines[0]
    assert 'run the command again' not in lines[0] and 'retry' not in lines[0]
    assert len(pq.read_table(tmp_path / 'r.parquet')) == 2  # nothing was processed
    assert not (tmp_path / 'r.parquet.parts').exists()

    # Each way out the message gives works: another collection, or --overwrite to make this one again.
    other = videos_py('index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', '--collection', 'long_labels',
                      *job, cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert '1 processed now' in other.stdout and 'Milvus long_labels: 3 upserted' in other.stdout
    again = videos_py('index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', '--overwrite', *job, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    lengths, labels = milvus_read(tmp_path / 'v.db', 'videos')
    assert lengths['label'] >= 609 and len(labels) == 3 and all(len(label) == 609 for label in labels)


def test_a_label_no_milvus_field_can_hold_is_refused_before_anything_is_written(job, tmp_path):
    write_labels(tmp_path / 'labels.json', lambda i: 'y' * 70_000 if i == 7 else f'class {i}')
    result = videos_py('index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', *job, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert 'is 70000 characters, more than any Milvus VARCHAR field holds (65535)' in result.stderr
    assert 'labels_file' in result.stderr and 'run the command again' not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['clips', 'labels.json', 'tiny.json']


@pytest.mark.parametrize('error, transient', [
    (MilvusUnavailableException(message='server unavailable'), True),
    (MilvusException(code=8, message='rate limited', retriable=True), True),
    (ConnectionRefusedError('connection refused'), True),
    (ParamError(message='bad parameter'), False),
    (MilvusException(code=6, message="VARCHAR field 'label' value length 611 exceeds max_length=512"), False),
], ids=['unavailable', 'retriable', 'connection_refused', 'param_error', 'value_too_long'])
def test_only_a_sync_failure_that_may_pass_advises_running_again(error, transient):
    from timesformer_video.jobs.runner import _sync_error

    message = str(_sync_error(error, '/r.parquet', 3, 'videos', '/v.db'))
    assert message.startswith('/r.parquet is complete (3 rows)')
    assert ('run the command again' in message) == transient
    assert ('would fail the same way' in message) == (not transient)
