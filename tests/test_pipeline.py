"""The staged index pipeline: the decode stage sends the frames plain PyAV decodes, and batching clips across videos
in worker processes gives the rows of one clip at a time in this process (whole videos and windows alike)."""

import subprocess

import av
import numpy as np
import pytest
from conftest import TINY, TINY_CFG, earlier_output_schema

from timesformer_video.jobs import operators, results, runner
from timesformer_video.jobs.decoding import CLIPS_PER_PART, Sampler


def ffmpeg_video(path, seconds, hue, size='160x96', rate=10):
    """H.264 with B-frames and a GOP of 12, as a camera or an encoder's defaults make it."""
    subprocess.run(['ffmpeg', '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i',
                    f'testsrc2=size={size}:rate={rate}:duration={seconds}', '-vf', f'hue=h={hue}', '-c:v', 'libx264',
                    '-g', '12', '-bf', '2', '-pix_fmt', 'yuv420p', str(path)], check=True)
    return path


def pyav_frames(path):
    """Every frame, decoded one after another by PyAV (the reference), as RGB arrays, and their times (s)."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [f.to_ndarray(format='rgb24') for f in frames], [float(f.time) for f in frames]


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('pipeline')
    return [ffmpeg_video(root / f'v{i}.mp4', seconds, 40 * i) for i, seconds in enumerate((3, 1, 4, 2))]


def spec(weights, **options):
    return operators.OperatorSpec(model_name=TINY, weights=str(weights), model_cfg=TINY_CFG, options=options)


def test_the_decode_stage_sends_the_sampled_frames_of_each_clip_as_plain_pyav_decodes_them(videos, tiny_weights):
    frames, times = pyav_frames(videos[2])  # 40 frames
    whole = Sampler(spec(tiny_weights)).decode(str(videos[2]))
    assert whole.error is None and whole.last and len(whole.clips) == 1
    picks = np.floor(np.linspace(0, len(frames) - 1, 8)).astype(int)  # the model's uniform rule
    clip = whole.clips[0]
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (8, 96, 160, 3)
    np.testing.assert_array_equal(clip.frames, np.stack([frames[i] for i in picks]))
    assert clip.times == pytest.approx([times[i] for i in picks])

    # Windows of 0.2 s: 20 of them, more than one part; each holds the 2 frames shown in [start, end).
    sampler = Sampler(spec(tiny_weights, window=0.2))
    first, second = sampler.decode(str(videos[2]), 0), sampler.decode(str(videos[2]), 1)
    assert (len(first.clips), first.last, len(second.clips), second.last) == (CLIPS_PER_PART, False, 4, True)
    for k, clip in enumerate(first.clips + second.clips):
        assert (clip.start_ms, clip.end_ms) == (200 * k, 200 * k + 200)
        inside = [i for i, t in enumerate(times) if k * 0.2 <= t + 1e-9 < (k + 1) * 0.2]
        want = [inside[i] for i in np.floor(np.linspace(0, len(inside) - 1, 8)).astype(int)]
        np.testing.assert_array_equal(clip.frames, np.stack([frames[i] for i in want]))


@pytest.mark.parametrize('options', [{}, {'window': 0.2, 'stride': 0.1}], ids=['videos', 'windows'])
def test_batches_across_videos_in_worker_processes_give_the_rows_of_one_clip_at_a_time(videos, tiny_weights,
                                                                                      tmp_path, options):
    inputs = [str(v) for v in videos] + [str(tmp_path / 'missing.mp4')]
    one = runner.run_index(runner.IndexJob(inputs, tmp_path / 'one.parquet', spec(tiny_weights, **options),
                                           decode_workers=1, batch_size=1, progress=False))
    many = runner.run_index(runner.IndexJob(inputs, tmp_path / 'many.parquet', spec(tiny_weights, **options),
                                            decode_workers=2, batch_size=5, progress=False))
    assert (one.processed, one.failed) == (many.processed, many.failed) == (5, 1)
    a = results.read_output(tmp_path / 'one.parquet')
    b = results.read_output(tmp_path / 'many.parquet')
    keys = ('path', 'start_ms', 'end_ms', 'model', 'duration', 'labels', 'error') if options else \
        ('path', 'model', 'duration', 'labels', 'error')
    assert [{k: r[k] for k in keys} for r in a] == [{k: r[k] for k in keys} for r in b]
    if options:  # 0.1 s apart over 3 + 1 + 4 + 2 s, the last window of each cut at its end
        assert one.windows == many.windows == 30 + 10 + 40 + 20 - 4
    for x, y in zip(a, b):
        if x['error'] is None:
            np.testing.assert_allclose(x['feature'], y['feature'], atol=1e-6)
            np.testing.assert_allclose(x['scores'], y['scores'], atol=1e-6)


def test_an_output_written_before_videos_had_windows_is_resumed_and_its_rows_kept(videos, tiny_weights, tmp_path):
    """An output of the earlier schema (no start_ms/end_ms: written here by pyarrow, column by column): the job adds
    the other videos to it; its row is kept as it was (no window), the new rows have their video's window."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    job_spec = spec(tiny_weights)
    out = tmp_path / 'old.parquet'
    earlier = earlier_output_schema(job_spec.signature())
    kept = {'path': str(videos[0]), 'model': TINY, 'duration': 3.0, 'labels': ['a', 'b', 'c', 'd', 'e'],
            'scores': [0.5, 0.25, 0.125, 0.0625, 0.0625], 'feature': [0.25] * 48, 'decode_s': 0.1, 'model_s': 0.2,
            'error': None}
    pq.write_table(pa.Table.from_pylist([kept], schema=earlier), out)

    summary = runner.run_index(runner.IndexJob([str(v) for v in videos[:2]], out, job_spec, progress=False))
    assert (summary.skipped, summary.processed) == (1, 1)
    table = pq.read_table(out)
    assert table.column_names == list(results.COLUMNS)
    old, new = table.to_pylist()
    assert old == {**kept, 'start_ms': None, 'end_ms': None}
    assert new['path'] == str(videos[1]) and (new['start_ms'], new['end_ms']) == (0, 1000) and new['error'] is None
