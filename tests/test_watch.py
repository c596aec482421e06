"""`watch`, the live-stream command and its Python generator, on loopback streams a few seconds long.

The exact case compares with `index FILE --window S --stride S` on the file the stream is sent from (the offline
path, which decodes the file with seeks); the others check what a user sees: rows as they come, Ctrl-C, a source
that cannot be opened. Senders are the ffmpeg CLI (tests/stream_senders.py); the model is the tiny random-weights
one (conftest.py).
"""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, TINY
from stream_senders import FFMPEG, tcp_mpegts

VIDEOS_PY = ROOT / 'scripts' / 'videos.py'
TINY_CFG = {'name': TINY, 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48, 'depth': 2,
            'num_heads': 4}  # conftest's tiny_weights record
SUMMARY = re.compile(r'^watch: (\d+) windows done, (\d+) skipped, (\d+) gaps; latency p50 (\d+|n/a) ms?, '
                     r'p95 (\d+|n/a)', re.MULTILINE)


@pytest.fixture(scope='module')
def setup(tmp_path_factory, tiny_weights):
    """A 3 s H.264 MP4 with B-frames (as ffmpeg writes one: GOP 12, 2 B-frames), a 6 s one, and the tiny model's
    record beside them."""
    root = tmp_path_factory.mktemp('watch')
    for name, seconds in (('clip.mp4', 3), ('long.mp4', 6)):
        subprocess.run([*FFMPEG, '-y', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25', '-t', str(seconds),
                        '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '12', '-bf', '2', '-pix_fmt', 'yuv420p',
                        str(root / name)], check=True, timeout=60)
    (root / 'tiny.json').write_text(json.dumps(TINY_CFG))
    return root


def model_args(tiny_weights):
    return ['--model-cfg', 'tiny.json', '--weights', str(tiny_weights)]


def videos_py(*args, cwd, **options):
    return subprocess.Popen([sys.executable, str(VIDEOS_PY), *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, 'PYTHONWARNINGS': 'ignore'},
                            **options)


def test_a_stream_sent_from_a_file_gives_the_rows_index_gives_for_the_file(setup, tiny_weights):
    """Windows of 1.2 s every 0.8 s (overlapping, not on frame boundaries, the last one cut at the end): the same
    windows, labels and features (within 1e-5) as `index --window 1.2 --stride 0.8` on the file."""
    windows = ['--window', '1.2', '--stride', '0.8']
    index = videos_py('index', 'clip.mp4', '--out', 'index.parquet', *windows, *model_args(tiny_weights),
                      '--no-progress', cwd=setup)
    assert index.wait(300) == 0, index.stderr.read()
    with tcp_mpegts(setup / 'clip.mp4') as sender:
        watch = videos_py('watch', sender.url, *windows, '--out', 'watch.parquet', '--reconnect-timeout', '1',
                          *model_args(tiny_weights), cwd=setup)
        _, err = watch.communicate(timeout=120)
    assert watch.returncode == 0, err
    offline = pq.read_table(setup / 'index.parquet').to_pylist()
    live = pq.read_table(setup / 'watch.parquet').to_pylist()
    assert [(r['start_ms'], r['end_ms']) for r in live] == [(r['start_ms'], r['end_ms']) for r in offline]
    assert [(0, 1200), (800, 2000), (1600, 2800), (2400, 3000)] == [(r['start_ms'], r['end_ms']) for r in live]
    assert [r['labels'] for r in live] == [r['labels'] for r in offline]
    for a, b in zip(live, offline):
        assert np.abs(np.array(a['feature']) - np.array(b['feature'])).max() <= 1e-5
        assert a['path'] == sender.url and a['error'] is None and a['latency_ms'] >= 0
    done, skipped, gaps, p50, p95 = SUMMARY.search(err).groups()
    assert (done, skipped, gaps) == ('4', '0', '0') and p50 != 'n/a', err


def test_ctrl_c_mid_stream_finishes_the_rows_in_hand_and_exits_0(setup, tiny_weights):
    """SIGINT after the second row of a 6 s stream: exit 0 before the stream's end, --out a complete
    Parquet file holding every row printed, the summary line on stderr."""
    with tcp_mpegts(setup / 'long.mp4') as sender:
        watch = videos_py('watch', sender.url, '--window', '1', '--json', '--out', 'stopped.parquet',
                          *model_args(tiny_weights), cwd=setup)
        printed = [json.loads(watch.stdout.readline()) for _ in range(2)]
        watch.send_signal(signal.SIGINT)
        rest, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    printed += [json.loads(line) for line in rest.splitlines()]
    assert [(r['start_ms'], r['end_ms']) for r in printed[:2]] == [(0, 1000), (1000, 2000)]
    assert set(printed[0]) == {'source', 'start_ms', 'end_ms', 'wall_time', 'latency_ms', 'labels', 'scores',
                               'error'}
    assert len(printed) < 6  # it stopped mid-stream, not at the stream's end
    table = pq.read_table(setup / 'stopped.parquet')
    assert table['start_ms'].to_pylist() == [r['start_ms'] for r in printed]
    done = int(SUMMARY.search(err).group(1))
    assert done == len(printed), err


def test_the_generator_gives_rows_as_the_stream_plays(setup, tiny_weights):
    """`ActionClassifier.watch` yields each window while the stream is still being sent, with the rows the
    operator makes of the file (`window=1`), and a Towhee flat_map passes each row to the next step as it comes."""
    from towhee import pipe

    from timesformer_video import ActionClassifier, VideoDecoder

    op = ActionClassifier(TINY, weights=tiny_weights, device='cpu', window=1)
    offline = op(VideoDecoder()(str(setup / 'clip.mp4')))
    with tcp_mpegts(setup / 'clip.mp4') as sender:
        rows = []
        for row in op.watch(sender.url, 1, reconnect_timeout=0.5):
            rows.append((row, sender.running()))
    assert [(r['start_ms'], r['end_ms']) for r, _ in rows] == [(w.start_ms, w.end_ms) for w in offline]
    assert all(running for _, running in rows[:2])  # the first rows came while ffmpeg was still sending
    for (row, _), window in zip(rows, offline):
        assert row['labels'] == window.labels
        assert np.abs(row['feature'] - window.features).max() <= 1e-5
        assert 0 <= row['latency_ms'] < 2000
        assert row['wall_time'].endswith('+00:00')

    seen = []
    with tcp_mpegts(setup / 'clip.mp4') as sender:
        p = (pipe.input('url')
             .flat_map('url', 'row', lambda url: op.watch(url, 1, reconnect_timeout=0.5))
             .map('row', 'start', lambda row: seen.append((row['start_ms'], sender.running())) or row['start_ms'])
             .output('start'))
        result = p(sender.url)
    assert [start for start, _ in seen] == [0, 1000, 2000]
    assert seen[0][1]  # the map saw the first row while the stream was still being sent
    assert [result.get()[0] for _ in range(3)] == [0, 1000, 2000]  # ... but p() returned only at its end


@pytest.mark.parametrize('source, complaint', [
    ('missing.ts', 'missing.ts: no such file'),
    ('nope://127.0.0.1/x', 'nope://127.0.0.1/x: cannot be opened'),
])
def test_a_source_that_cannot_be_opened_is_one_error_line_and_exit_1(setup, tiny_weights, source, complaint):
    watch = videos_py('watch', source, '--window', '1', '--out', 'never.parquet', *model_args(tiny_weights),
                      cwd=setup)
    out, err = watch.communicate(timeout=120)
    assert watch.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and complaint in lines[0], err
    assert out == '' and not (setup / 'never.parquet').exists()


def test_the_generator_raises_a_typed_error_for_a_source_that_cannot_be_opened(tiny_weights, tmp_path):
    from timesformer_video import ActionClassifier
    from timesformer_video.jobs.errors import StreamOpenError

    op = ActionClassifier(TINY, weights=tiny_weights, device='cpu')
    with pytest.raises(StreamOpenError, match='no such device'):
        next(op.watch('/dev/video99', 1))
    folder = tmp_path / 'folder'
    folder.mkdir()
    with pytest.raises(StreamOpenError, match='no such file'):
        next(op.watch(str(folder), 1))


def test_windows_are_in_milvus_as_they_complete_and_search_moments_finds_them(setup, tiny_weights):
    """`watch --milvus` upserts each window into the moments collection; `search --moments` for the file's
    [1 s, 2 s) (the same frames as the stream's window 1000-2000) finds that window first, at similarity 1."""
    with tcp_mpegts(setup / 'clip.mp4') as sender:
        watch = videos_py('watch', sender.url, '--window', '1', '--milvus', 'live.db', '--reconnect-timeout', '1',
                          *model_args(tiny_weights), cwd=setup)
        _, err = watch.communicate(timeout=120)
    assert watch.returncode == 0, err
    search = videos_py('search', 'clip.mp4', '--start', '1', '--end', '2', '--milvus', 'live.db', '--moments',
                       '-k', '5', '--json', *model_args(tiny_weights), cwd=setup)
    out, err = search.communicate(timeout=120)
    assert search.returncode == 0, err
    hits = json.loads(out)
    assert sorted((h['start_ms'], h['end_ms']) for h in hits) == [(0, 1000), (1000, 2000), (2000, 3000)]
    assert all(h['path'] == sender.url for h in hits)
    assert (hits[0]['start_ms'], hits[0]['end_ms']) == (1000, 2000) and hits[0]['score'] > 1 - 1e-5
