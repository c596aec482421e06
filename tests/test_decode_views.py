"""The decode workers make the model's views (scale, crop, normalise) on one torch thread each, and the model
process only stacks them: the rows equal those of the classifier called in one process on the same video (whole
videos and windows), and the views equal the classifier's own preprocessing."""

import subprocess

import numpy as np
import pytest
import torch
from conftest import TINY

from timesformer_video import ActionClassifier, VideoDecoder
from timesformer_video.jobs import operators, results, runner
from timesformer_video.jobs.decoding import Sampler

TINY_CFG = {'name': TINY, 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48, 'depth': 2,
            'num_heads': 4}  # the record conftest's tiny_weights registers


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """H.264 with B-frames (GOP 12), scaled down to the model's 64 px as 720p is to 224; one portrait."""
    root = tmp_path_factory.mktemp('views')
    made = []
    for i, (size, seconds) in enumerate((('320x180', 2), ('180x320', 1))):
        path = root / f'v{i}.mp4'
        subprocess.run(['ffmpeg', '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i',
                        f'testsrc2=size={size}:rate=10:duration={seconds}', '-c:v', 'libx264', '-g', '12', '-bf', '2',
                        '-pix_fmt', 'yuv420p', str(path)], check=True)
        made.append(path)
    return made


def spec(weights, **options):
    return operators.OperatorSpec(model_name=TINY, weights=str(weights), model_cfg=TINY_CFG, options=options)


def test_a_workers_views_on_one_thread_are_the_classifiers_preprocessing(videos, tiny_weights):
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu')
    sampler = Sampler(spec(tiny_weights))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as in a decode worker
        part = sampler.views(sampler.decode(str(videos[0])))
    finally:
        torch.set_num_threads(threads)
    clip, = part.clips
    assert clip.frames is None and clip.views.dtype == np.float32 and clip.views.shape == (1, 3, 8, 64, 64)
    want = op.preprocess(VideoDecoder()(str(videos[0]))).numpy()  # this process, its own threads
    np.testing.assert_allclose(clip.views[0], want, rtol=0, atol=1e-6)


@pytest.mark.parametrize('options', [{}, {'window': 0.5, 'stride': 0.3}], ids=['videos', 'windows'])
def test_rows_from_decode_workers_equal_the_classifier_in_one_process(videos, tiny_weights, tmp_path, options):
    out = tmp_path / 'rows.parquet'
    summary = runner.run_index(runner.IndexJob([str(v) for v in videos], out, spec(tiny_weights, **options),
                                               decode_workers=2, batch_size=3, progress=False))
    assert (summary.processed, summary.failed) == (2, 0)
    rows = results.read_output(out)
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', **options)
    want = []
    for video in videos:
        got = op(VideoDecoder()(str(video)))
        if options:
            want += [(str(video), w.start_ms, w.end_ms, w.labels, w.features) for w in got]
        else:
            want.append((str(video), None, None, got[0], got[2]))
    assert len(rows) == len(want)
    for row, (path, start_ms, end_ms, labels, feature) in zip(rows, want):
        assert row['path'] == path and row['error'] is None and row['labels'] == labels
        if options:
            assert (row['start_ms'], row['end_ms']) == (start_ms, end_ms)
        np.testing.assert_allclose(row['feature'], feature, rtol=0, atol=1e-6)
