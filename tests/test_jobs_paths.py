"""File names as users have them: a Latin-1 name that is not UTF-8, a newline, a tab, an emoji, a 255-byte name.

Each video is indexed, its path is stored so that it opens again, and a re-run skips it: in Parquet, JSONL, the
sidecar and Milvus. References: pyarrow / json reading the output, the ffmpeg CLI writing the files under byte names,
plain PyAV opening the name decoded from the stored `file:` URI, pymilvus listing the collection's keys.
"""

import json
import os
import pathlib
import subprocess
import sys
import urllib.parse

import av
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY, TINY_CFG, VIDEOS_PY, videos_py

FRAMES = 10
NAMES = {  # file name bytes -> what the test calls it
    b'ok.mp4': 'plain',
    b'caf\xe9.mp4': 'latin-1 (not UTF-8)',
    b'line\nbreak.mp4': 'newline',
    b'tab\there.mp4': 'tab',
    'clip \U0001f3ac.mp4'.encode(): 'emoji',
    b'l' * 251 + b'.mp4': '255-byte name',
}


def ffmpeg_clip(path: bytes, seed: int) -> None:
    """A 10-frame H.264 clip written by the ffmpeg CLI straight to a byte name (as a Latin-1 system would)."""
    subprocess.run([b'ffmpeg', b'-v', b'error', b'-y', b'-f', b'lavfi', b'-i',
                    f'testsrc=size=96x64:rate=10,hue=h={seed * 40}'.encode(), b'-frames:v', str(FRAMES).encode(),
                    b'-c:v', b'libx264', b'-pix_fmt', b'yuv420p', path], check=True, timeout=60)


def uri_to_name(stored: str) -> bytes:
    """The file name a stored path stands for: a `file:` URI (RFC 8089) decoded to bytes, else the path's UTF-8."""
    if stored.startswith('file://'):
        return urllib.parse.unquote_to_bytes(stored[len('file://'):])
    return stored.encode()


@pytest.fixture(scope='module')
def odd_names(tmp_path_factory, tiny_weights):
    root = tmp_path_factory.mktemp('names')
    folder = os.fsencode(root / 'clips')
    os.mkdir(folder)
    for seed, name in enumerate(NAMES):
        ffmpeg_clip(os.path.join(folder, name), seed)
    (root / 'tiny.json').write_text(json.dumps(TINY_CFG))
    return root


@pytest.mark.parametrize('out_name', ['r.parquet', 'r.jsonl'])
def test_every_odd_name_is_indexed_stored_reopenable_and_skipped_on_the_rerun(odd_names, tiny_weights, tmp_path,
                                                                             out_name):
    from pymilvus import MilvusClient

    out, db = tmp_path / out_name, tmp_path / 'v.db'
    command = ['index', odd_names / 'clips', '--out', out, '--milvus', db, '--model-cfg', odd_names / 'tiny.json',
               '--weights', tiny_weights, '--no-progress']
    first = videos_py(*command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f'{len(NAMES)} videos, {len(NAMES)} processed now (0 failed)' in first.stdout
    assert f'Milvus videos: {len(NAMES)} upserted' in first.stdout

    if out_name.endswith('.parquet'):
        rows = pq.read_table(out, columns=['path', 'duration', 'error']).to_pylist()
    else:
        rows = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
    folder = os.fsencode(odd_names / 'clips')
    assert sorted(uri_to_name(row['path']) for row in rows) == sorted(os.path.join(folder, n) for n in NAMES)
    for row in rows:
        name = uri_to_name(row['path'])
        assert row['error'] is None and row['duration'] == pytest.approx(FRAMES / 10), name
        if os.path.basename(name) == b'caf\xe9.mp4':  # not UTF-8: its file: URI, as pathlib writes it
            assert row['path'] == pathlib.Path(os.fsdecode(name)).as_uri()
            assert row['path'].endswith('/caf%E9.mp4')
        else:  # every UTF-8 name (newline, tab, emoji, 255 bytes) exactly as it is
            assert row['path'] == os.fsdecode(name)
        with av.open(os.fsdecode(name)) as container:  # the stored path opens the same file
            assert sum(1 for _ in container.decode(video=0)) == FRAMES

    again = videos_py(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f'0 processed now (0 failed), {len(NAMES)} already done' in again.stdout
    assert f'Milvus videos: {len(NAMES)} upserted, 0 removed' in again.stdout

    client = MilvusClient(str(db))  # the primary keys are the stored paths
    client.load_collection('videos')
    keys = {e['path'] for e in client.query('videos', filter='', output_fields=['path'], limit=100)}
    client.close()
    assert keys == {row['path'] for row in rows}


def test_a_failed_odd_name_is_an_error_row_shown_readably(odd_names, tiny_weights, tmp_path):
    """Not a video under a Latin-1 name: one error row (its message names the file with \\xe9), exit status 3.
    The output is in a Latin-1 folder too; a Milvus Lite database there is refused up front (Milvus Lite cannot
    keep one under such a name)."""
    folder = os.fsencode(tmp_path / 'bad')
    os.mkdir(folder)
    with open(os.path.join(folder, b'r\xe9sum\xe9.mp4'), 'wb') as f:
        f.write(b'not a video' * 50)
    ffmpeg_clip(os.path.join(folder, b'ok.mp4'), 0)
    results = os.path.join(os.fsencode(tmp_path), b'r\xe9sultats')
    out = os.fsdecode(os.path.join(results, b'r.parquet'))
    command = [sys.executable, VIDEOS_PY, 'index', tmp_path / 'bad', '--out', out, '--model-cfg',
               odd_names / 'tiny.json', '--weights', tiny_weights, '--no-progress']
    refused = subprocess.run([*command, '--milvus', os.fsdecode(os.path.join(results, b'v.db'))], cwd=tmp_path,
                             capture_output=True, timeout=300, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    assert refused.returncode == 2 and b'Milvus Lite cannot keep a database under a name that is not UTF-8' in \
        refused.stderr and not os.path.exists(results)
    result = subprocess.run([*command, '--milvus', tmp_path / 'v.db'], cwd=tmp_path, capture_output=True,
                            timeout=300, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 3, stderr
    assert 'Milvus videos: 1 upserted' in stdout
    with open(out, 'rb') as f:  # pyarrow opens only UTF-8 paths by name
        table = pq.read_table(pa.py_buffer(f.read()))
    rows = {uri_to_name(row['path']): row['error'] for row in table.to_pylist()}
    assert rows[os.path.join(folder, b'ok.mp4')] is None
    error = rows[os.path.join(folder, b'r\xe9sum\xe9.mp4')]
    assert error.startswith('NotAVideoError') and 'r\\xe9sum\\xe9.mp4' in error
    assert f'  {tmp_path}/bad/r\\xe9sum\\xe9.mp4: NotAVideoError' in stderr


def test_the_sidecar_and_a_moments_collection_hold_the_stored_path(odd_names, tiny_weights, tmp_path):
    """A chunk of the sidecar (resume bookkeeping) and a moments collection's id and path keep the Latin-1 name."""
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import MilvusClient

    from timesformer_video.jobs import inputs, results, runner
    from timesformer_video.jobs.operators import OperatorSpec

    latin1 = os.path.join(os.fsencode(odd_names / 'clips'), b'caf\xe9.mp4')
    [path] = inputs.expand([os.fsdecode(latin1)])
    uri = pathlib.Path(os.fsdecode(latin1)).as_uri()
    assert path == uri

    out = tmp_path / 'r.parquet'
    with results.ResultStore(out, 4, {'model_name': 'm'}) as store:
        chunk = store.write_chunk([{'path': path, 'model': 'm', 'duration': 1.0, 'labels': ['a'], 'scores': [1.0],
                                    'feature': [0.5] * 4, 'decode_s': 0.0, 'model_s': 0.0, 'error': None}])
        assert pq.read_table(chunk)['path'].to_pylist() == [uri]
    with results.ResultStore(out, 4, {'model_name': 'm'}) as store:  # a resumed run finds it done
        assert store.done() == {uri}

    spec = OperatorSpec(model_name=TINY, weights=str(tiny_weights), model_cfg=TINY_CFG, options={'window': 0.5})
    db = tmp_path / 'v.db'
    summary = runner.run_index(runner.IndexJob([os.fsdecode(latin1)], tmp_path / 'm.parquet', spec, milvus=str(db),
                                               progress=False))
    assert (summary.processed, summary.failed, summary.windows) == (1, 0, 2)
    client = MilvusClient(str(db))
    try:
        client.load_collection('moments')
        entities = client.query('moments', filter='', output_fields=['id', 'path', 'start_ms'], limit=10)
    finally:
        client.close()
        server_manager_instance.release_server(str(db))
    assert sorted((e['id'], e['path']) for e in entities) == [(f'{uri}#0', uri), (f'{uri}#500', uri)]


def test_a_list_file_and_a_url_with_latin1_bytes_give_the_same_stored_forms(odd_names, tmp_path):
    """A list file written by a Latin-1 system names the file by its bytes; a URL's odd bytes are percent-encoded."""
    from timesformer_video.jobs import inputs

    latin1 = os.path.join(os.fsencode(odd_names / 'clips'), b'caf\xe9.mp4')
    listing = tmp_path / 'videos.txt'
    listing.write_bytes(latin1 + b'\nhttp://example.org/caf\xe9.mp4\n')
    assert inputs.expand([listing]) == [pathlib.Path(os.fsdecode(latin1)).as_uri(),
                                        'http://example.org/' + urllib.parse.quote(b'caf\xe9') + '.mp4']
