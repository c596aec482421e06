"""Moments: index the windows of videos, search for the moment (video and time), filter by label, look at the hits.

The library holds a video of three visibly different generated segments (0-4 s green, 4-8 s red, 8-12 s blue)
among other videos. The tiny model has random weights: identical content gives the closest embeddings, so a
separately encoded copy of the middle segment must find that video at 4000-8000 ms first. Label filters are
checked against the output file's rows, resume against the windows a clean run makes, Ray against the local engine.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import TINY, TINY_CFG, VIDEOS_PY, run_until_first_chunk, videos_py

from timesformer_video.jobs import milvus_store, moments, operators, results, runner
from timesformer_video.synthetic import make_video

SLOW_CFG = {'name': 'timesformer_slow_test', 'base': 'timesformer_k400_8x224', 'embed_dim': 192, 'depth': 6,
            'num_heads': 3}  # 224 px crops: slow enough on 2 cores to kill a run in the middle of a video
CHROMIUM = shutil.which('chromium') or 'chromium'  # scripts/setup.sh installs it
FPS = 8
SEGMENT_COLOURS = ((30, 200, 40), (210, 40, 30), (40, 60, 220))  # green, red, blue; 4 s each


def segment_frame(i: int, colour, size=(96, 64)) -> np.ndarray:
    """A frame of a segment: its colour, a little fixed texture, and a bright box moving across."""
    width, height = size
    rng = np.random.default_rng(sum(colour))
    texture = rng.integers(-20, 21, (height, width, 1))
    image = np.clip(np.array(colour)[None, None, :] + texture, 0, 255).astype(np.uint8)
    x = (6 * i) % (width - 16)
    image[24:40, x:x + 16] = 245
    return image


def write_frames(path, frames, fps=FPS):
    """Encode RGB frames to H.264 MP4 with PyAV, timestamps from 0 at `fps`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = 'yuv420p'
        stream.options = {'crf': '18'}
        stream.time_base = Fraction(1, fps)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format='rgb24')
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def segments_video(path, seconds_each=4, colours=SEGMENT_COLOURS):
    frames = [segment_frame(i, colour) for colour in colours for i in range(seconds_each * FPS)]
    return write_frames(path, frames)


@pytest.fixture(scope='module')
def model_args(tiny_weights, tmp_path_factory):
    cfg = tmp_path_factory.mktemp('cfg') / 'tiny.json'
    cfg.write_text(json.dumps(TINY_CFG))
    return ['--model-cfg', cfg, '--weights', tiny_weights]


def tiny_spec(weights, window=None, stride=None):
    options = {} if window is None else {'window': window, 'stride': window if stride is None else stride}
    return operators.OperatorSpec(model_name=TINY, weights=str(weights), model_cfg=TINY_CFG, options=options)


@pytest.fixture(scope='module')
def library(model_args, tmp_path_factory):
    """Three-segment video among other videos, indexed with --window 4 --stride 4 into Parquet and Milvus Lite;
    the query: a separately encoded copy of the middle (red) segment."""
    root = tmp_path_factory.mktemp('library')
    videos = root / 'videos'
    target = segments_video(videos / 'segments.mp4')
    for seed in range(3):
        make_video(videos / f'other{seed}.mp4', n_frames=12 * FPS, size=(96, 64), fps=FPS, seed=seed)
    segments_video(videos / 'two_colours.mp4', colours=(SEGMENT_COLOURS[0], SEGMENT_COLOURS[2]))
    query = write_frames(root / 'query' / 'middle.mp4',
                         [segment_frame(i, SEGMENT_COLOURS[1]) for i in range(4 * FPS)])
    out, db = root / 'moments.parquet', root / 'videos.db'
    result = videos_py('index', videos, '--out', out, '--window', 4, '--stride', 4, '--milvus', db, '--no-progress',
                       *model_args, cwd=root)
    assert result.returncode == 0, result.stderr
    return {'root': root, 'target': str(target), 'query': query, 'out': out, 'db': db,
            'rows': results.read_output(out)}


def test_index_writes_one_row_per_window_with_its_time(library):
    table = pq.read_table(library['out'])
    assert table.column_names == list(results.COLUMNS)
    rows = library['rows']
    assert len(rows) == 4 * 3 + 2  # four 12 s videos with three 4 s windows, one 8 s video with two
    target = [row for row in rows if row['path'] == library['target']]
    assert [(row['start_ms'], row['end_ms']) for row in target] == [(0, 4000), (4000, 8000), (8000, 12000)]
    for row in rows:
        assert row['error'] is None
        assert row['duration'] == pytest.approx(8.0 if 'two_colours' in row['path'] else 12.0)
        assert len(row['labels']) == 5 and row['feature'].shape == (48,)
    with milvus_store.MilvusStore(str(library['db']), 'moments') as store:
        assert store.count() == 14
        assert store.keys() == {milvus_store.moment_id(row['path'], row['start_ms']) for row in rows}


def test_a_copy_of_the_middle_segment_finds_that_video_at_4_to_8_s_first(library, model_args):
    result = videos_py('search', library['query'], '--milvus', library['db'], '--moments', '-k', 5, '--json',
                       *model_args, cwd=library['root'])
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 5
    assert {key: hits[0][key] for key in ('path', 'start_ms', 'end_ms')} == \
        {'path': library['target'], 'start_ms': 4000, 'end_ms': 8000}
    assert hits[0]['score'] > hits[1]['score']
    assert [h['score'] for h in hits] == sorted((h['score'] for h in hits), reverse=True)

    table = videos_py('search', library['query'], '--milvus', library['db'], '--moments', '-k', 2, *model_args,
                      cwd=library['root'])
    assert table.returncode == 0, table.stderr
    first = table.stdout.splitlines()[2]
    assert '0:00:04.0 - 0:00:08.0' in first and library['target'] in first

    # The same moment as a part of a longer video: the [4, 8) s of the indexed video itself.
    part = videos_py('search', library['target'], '--start', 4, '--end', 8, '--milvus', library['db'], '--moments',
                     '-k', 1, '--json', *model_args, cwd=library['root'])
    assert part.returncode == 0, part.stderr
    [hit] = json.loads(part.stdout)
    assert (hit['path'], hit['start_ms'], hit['end_ms']) == (library['target'], 4000, 8000)
    assert hit['score'] == pytest.approx(1.0, abs=1e-4)


def test_label_and_min_score_filter_in_milvus_return_exactly_the_matching_moments(library, model_args):
    rows = library['rows']
    labels = [row['labels'][0] for row in rows]
    label = max(set(labels), key=labels.count)
    scores = sorted(row['scores'][0] for row in rows if row['labels'][0] == label)
    min_score = scores[len(scores) // 2]  # about half of that label's moments
    expected = {(row['path'], row['start_ms']) for row in rows
                if row['labels'][0] == label and np.float32(row['scores'][0]) >= np.float32(min_score)}
    result = videos_py('search', library['query'], '--milvus', library['db'], '--moments', '-k', 100,
                       '--label', label, '--min-score', repr(min_score), '--json', *model_args, cwd=library['root'])
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert {(hit['path'], hit['start_ms']) for hit in hits} == expected  # touching windows are not merged
    assert all(hit['label'] == label and hit['label_score'] >= min_score - 1e-6 for hit in hits)
    none = videos_py('search', library['query'], '--milvus', library['db'], '--moments', '--label', 'no such label',
                     '--json', *model_args, cwd=library['root'])
    assert none.returncode == 0 and json.loads(none.stdout) == []


def test_html_page_shows_each_hits_frames_in_headless_chromium(library, model_args, tmp_path):
    page = tmp_path / 'hits.html'
    result = videos_py('search', library['query'], '--milvus', library['db'], '--moments', '-k', 2, '--html', page,
                       *model_args, cwd=library['root'])
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert text.count('<img src="data:image/jpeg;base64,') == 12  # 6 frames a hit
    assert '0:00:04.0 – 0:00:08.0' in text

    png = tmp_path / 'hits.png'
    profile = tmp_path / 'chromium-profile'
    profile.mkdir()
    shot = subprocess.run(
        [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         f'--user-data-dir={profile}', '--window-size=1000,700', f'--screenshot={png}', page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert('RGB')).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    # The first hit is the red middle segment: its six 144x96 thumbnails are mostly red. A broken image shows a
    # small icon and no red at all; the page itself has no red.
    assert red.sum() > 6 * 144 * 96 * 0.5, red.sum()


def test_reindexing_a_video_replaces_all_its_windows_including_gone_ones(tiny_weights, tmp_path):
    video = segments_video(tmp_path / 'v' / 'changing.mp4')  # 12 s: three windows
    make_video(tmp_path / 'v' / 'other.mp4', n_frames=4 * FPS, size=(96, 64), fps=FPS, seed=5)
    db, out, spec = tmp_path / 'm.db', tmp_path / 'm.parquet', tiny_spec(tiny_weights, window=4)
    first = runner.run_index(runner.IndexJob([tmp_path / 'v'], out, spec, milvus=str(db), progress=False))
    assert first.milvus == (4, 0) and first.windows == 4
    segments_video(video, seconds_each=3, colours=SEGMENT_COLOURS[:2])  # now 6 s: windows 0-4 s and 4-6 s
    again = runner.run_index(runner.IndexJob([tmp_path / 'v'], out, spec, milvus=str(db), overwrite=True,
                                             progress=False))
    assert again.milvus == (3, 1)  # the 8-12 s window no longer exists
    with milvus_store.MilvusStore(str(db), 'moments') as store:
        assert store.keys() == {f'{video}#0', f'{video}#4000', f'{tmp_path / "v" / "other.mp4"}#0'}
    rows = [row for row in results.read_output(out) if row['path'] == str(video)]
    assert [(row['start_ms'], row['end_ms']) for row in rows] == [(0, 4000), (4000, 6000)]


def test_kill_9_mid_video_then_resume_gives_every_window_exactly_once(tmp_path):
    clips = tmp_path / 'clips'
    for i in range(3):
        make_video(clips / f'long{i}.mp4', n_frames=10 * FPS, size=(128, 96), fps=FPS, seed=i)
    operators.save_random_weights(tmp_path / 'slow.pth', SLOW_CFG['name'], SLOW_CFG)
    (tmp_path / 'slow.json').write_text(json.dumps(SLOW_CFG))
    command = [sys.executable, str(VIDEOS_PY), 'index', str(clips), '--out', 'out/m.parquet', '--window', '1',
               '--model-cfg', 'slow.json', '--weights', 'slow.pth', '--chunk-size', '1', '--no-progress']
    parts = tmp_path / 'out' / 'm.parquet.parts'
    first = run_until_first_chunk(command, tmp_path, parts)
    time.sleep(0.1)  # into the next video's windows (a video takes seconds here)
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stderr.close()
    assert first.returncode == -signal.SIGKILL, 'the run finished before the kill; make the videos longer'

    before = [row for chunk in sorted(parts.glob('chunk-*.parquet')) for row in pq.read_table(chunk).to_pylist()]
    done_before = {row['path'] for row in before}
    assert 1 <= len(done_before) < 3
    for path in done_before:  # a chunk holds whole videos
        assert [row['start_ms'] for row in before if row['path'] == path] == list(range(0, 10_000, 1000))

    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f'resuming: {len(done_before)} of 3 videos already done' in second.stderr
    rows = pq.read_table(tmp_path / 'out' / 'm.parquet').to_pylist()
    expected = [(str(clips / f'long{i}.mp4'), start) for i in range(3) for start in range(0, 10_000, 1000)]
    assert [(row['path'], row['start_ms']) for row in rows] == expected  # every window once, in order
    assert all(row['error'] is None for row in rows)
    kept = {(row['path'], row['start_ms']): row['decode_s'] for row in before}
    for row in rows:
        if row['path'] in done_before:  # kept from before the kill, not redone
            assert row['decode_s'] == kept[(row['path'], row['start_ms'])]
    assert not parts.exists()


def test_ray_and_local_engines_give_equal_moment_rows(library, tiny_weights, tmp_path):
    pytest.importorskip('ray')
    videos = library['root'] / 'videos'
    spec = tiny_spec(tiny_weights, window=4, stride=2)
    local = runner.run_index(runner.IndexJob([videos], tmp_path / 'local.parquet', spec, progress=False))
    ray = runner.run_index(runner.IndexJob([videos], tmp_path / 'ray.parquet', spec, engine='ray', workers=2,
                                           chunk_size=2, progress=False))
    assert (ray.processed, ray.windows) == (local.processed, local.windows) == (5, 4 * 5 + 3)
    local_table, ray_table = pq.read_table(tmp_path / 'local.parquet'), pq.read_table(tmp_path / 'ray.parquet')
    assert ray_table.schema == local_table.schema
    compared = ('path', 'start_ms', 'end_ms', 'model', 'duration', 'labels', 'error')
    local_rows, ray_rows = results.table_to_rows(local_table), results.table_to_rows(ray_table)
    assert [{k: r[k] for k in compared} for r in ray_rows] == [{k: r[k] for k in compared} for r in local_rows]
    for a, b in zip(ray_rows, local_rows):
        np.testing.assert_allclose(a['scores'], b['scores'], rtol=1e-4)
        np.testing.assert_allclose(a['feature'], b['feature'], atol=1e-5)


@pytest.mark.parametrize('args, message', [
    (['index', 'VIDEOS', '--out', 'x.parquet', '--window', '0'],
     "Invalid value for '--window': expected a finite number x>0, got 0"),
    (['index', 'VIDEOS', '--out', 'x.parquet', '--window', '-4'],
     "Invalid value for '--window': expected a finite number x>0, got -4"),
    (['index', 'VIDEOS', '--out', 'x.parquet', '--window', 'inf'],
     "Invalid value for '--window': expected a finite number x>0, got inf"),
    (['index', 'VIDEOS', '--out', 'x.parquet', '--window', '4', '--stride', '0'],
     "Invalid value for '--stride': expected a finite number x>0, got 0"),
    (['index', 'VIDEOS', '--out', 'x.parquet', '--stride', '2'], '--stride needs --window'),
    (['search', 'QUERY', '--milvus', 'DB', '--moments', '--start', '6', '--end', '2'], 'must be before --end'),
    (['search', 'QUERY', '--milvus', 'DB', '--moments', '--start', '4', '--end', '4'], 'must be before --end'),
    (['search', 'QUERY', '--milvus', 'DB', '--moments', '-k', '0'],
     "Invalid value for '-k': expected an integer 1<=x<=16384, got 0"),
    (['search', 'QUERY', '--milvus', 'DB', '--moments', '--start', '30', '--end', '40'], 'no frames in the range'),
])
def test_bad_moment_arguments_are_one_line_errors_with_exit_status_2(library, model_args, tmp_path, args,
                                                                     message):
    names = {'VIDEOS': library['root'] / 'videos', 'QUERY': library['query'], 'DB': library['db']}
    result = videos_py(*[names.get(a, a) for a in args], *model_args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'error: ' in lines[0] and message in lines[0], result.stderr
    assert result.stdout == '' and os.listdir(tmp_path) == []  # nothing written


def test_python_api_searches_with_the_index_spec_and_jsonl_keeps_the_windows(library, tiny_weights, tmp_path):
    spec = tiny_spec(tiny_weights, window=4)
    query = runner.embed(str(library['query']), spec)  # the window is dropped: the query is one clip
    with milvus_store.MilvusStore(str(library['db']), 'moments') as store:
        hits = moments.search_moments(store, query['feature'], 1, spec.model_name, spec.signature())
    assert (hits[0]['path'], hits[0]['start_ms'], hits[0]['end_ms']) == (library['target'], 4000, 8000)

    out = tmp_path / 'moments.jsonl'
    runner.run_index(runner.IndexJob([library['target']], out, spec, progress=False))
    rows = results.read_output(out)
    parquet = [row for row in library['rows'] if row['path'] == library['target']]
    assert [(r['start_ms'], r['end_ms'], r['labels']) for r in rows] == \
        [(r['start_ms'], r['end_ms'], r['labels']) for r in parquet]
    for a, b in zip(rows, parquet):
        np.testing.assert_allclose(a['feature'], b['feature'], atol=1e-5)


def test_merging_chains_only_windows_that_overlap_a_better_hit():
    def hit(path, start, distance):
        return {'path': path, 'start_ms': start, 'end_ms': start + 4000, 'distance': distance, 'label': 'x',
                'score': 0.5}

    hits = [hit('a', 4000, 0.9), hit('a', 2000, 0.8), hit('b', 0, 0.7), hit('a', 6000, 0.6), hit('a', 8000, 0.55),
            hit('a', 20000, 0.5), hit('a', 10000, 0.4)]
    merged = moments.merge_overlapping(hits, k=3)
    assert [(m['path'], m['start_ms'], m['end_ms'], m['windows'], m['distance']) for m in merged] == [
        ('a', 2000, 12000, 4, 0.9),  # 4-8 s, then 2-6, 6-10 (overlap it) and 8-12 (overlaps the grown range)
        ('b', 0, 4000, 1, 0.7),
        ('a', 20000, 24000, 1, 0.5),
    ]  # 10-14 s ranks below the third hit: not merged
    touching = moments.merge_overlapping([hit('a', 0, 0.9), hit('a', 4000, 0.8)])
    assert len(touching) == 2
    assert moments.format_time(3_723_456) == '1:02:03.4' and moments.format_time(0) == '0:00:00.0'
    assert moments.label_filter('say "hi"', 0.5) == 'label == "say \\"hi\\"" and score >= 0.5'


def test_the_progress_bar_counts_seconds_of_video(library, tiny_weights, tmp_path, capsys):
    videos = [library['target'], str(library['root'] / 'videos' / 'two_colours.mp4')]  # 12 s and 8 s
    runner.run_index(runner.IndexJob(videos, tmp_path / 'p.parquet', tiny_spec(tiny_weights, window=4), progress=True))
    bar = capsys.readouterr().err.replace('\r', '\n').splitlines()
    assert any('/20 s of video' in line for line in bar)
    assert any('20/20 s of video' in line and 'videos=2/2' in line for line in bar)

    class Bar:  # what the clock uses of tqdm
        total, n = 20.0, 0.0

        def update(self, seconds):
            self.n += seconds

    clock = runner._VideoClock(bar := Bar(), {'a': 12.0, 'b': 8.0})  # header durations
    clock.on_window('a', 4000)
    clock.on_window('a', 8000)
    assert bar.n == 8.0  # moved by each window, before the video is done
    clock.video_done('a', [{'duration': 12.0}])
    clock.video_done('b', [{'duration': 7.5}])  # decoded shorter than its header said
    assert (bar.n, bar.total) == (19.5, 19.5)
