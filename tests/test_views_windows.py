"""Views (1 or 3 crops), clip sampling and sliding windows: each checked against a computation written out here
from the description (PySlowFast's test protocol), not from the operator's code."""

import html
import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PARITY_FEATURES, PARITY_SCORES, TINY
from reference import random_frames, reference_clip
from towhee.types import VideoFrame

from timesformer_video.classifier import ActionClassifier
from timesformer_video.decode import VideoDecoder
from timesformer_video.synthetic import make_video
from timesformer_video.timeline import Timeline
from timesformer_video.timing import FrameTimes
from timesformer_video.transform import clip_indices, clip_to_views
from timesformer_video.windows import plan_windows, summarize
from timesformer_video.zoo import get_cfg

MEAN, STD = (0.45,) * 3, (0.225,) * 3


def reference_three_crops(frames: np.ndarray, size: int) -> list[torch.Tensor]:
    """uint8 `(T, H, W, 3)` -> three `(3, T, size, size)` views: normalize, scale the short side to `size`
    (bilinear, new long side floored), then squares at the start, centre (offset rounded up) and end of the long
    side; a frame taller than wide is cut top/centre/bottom, any other left/centre/right."""
    x = (torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255.0 - 0.45) / 0.225
    h, w = x.shape[-2:]
    new_h, new_w = (math.floor(h / w * size), size) if h > w else (size, math.floor(w / h * size))
    x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=False)
    if h > w:
        left = math.ceil((new_w - size) / 2)
        boxes = [(top, left) for top in (0, math.ceil((new_h - size) / 2), new_h - size)]
    else:
        top = math.ceil((new_h - size) / 2)
        boxes = [(top, left) for left in (0, math.ceil((new_w - size) / 2), new_w - size)]
    return [x[:, :, t:t + size, s:s + size] for t, s in boxes]


@pytest.fixture(scope='module')
def tiny(tiny_weights):
    return lambda **kw: ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', **kw)


@pytest.fixture(scope='module')
def decoder():
    return VideoDecoder()


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    """9.6 s, 25 fps, 240 frames, GOP 12 with B-frames."""
    return make_video(tmp_path_factory.mktemp('video') / 'walk.mp4', seconds=9.6, size=(160, 120), fps=25)


def stamped(arrays, fps):
    return [VideoFrame(a, mode='RGB', timestamp=round(i * 1000 / fps)) for i, a in enumerate(arrays)]


# ---- views -------------------------------------------------------------------------------------------------------

def test_three_crops_sum_hf_logits_over_left_centre_right_in_one_batch(tiny_checkpoints, tiny_hf_model):
    """240x319 with 64 px crops: scaled to 64x85, the centre offset 10.5 rounds up to 11 (the seed's centre crop
    takes 10). Crop placement and the logit sum are not full-size numerics: the small same-architecture model
    against HF built alike."""
    op = ActionClassifier(model_name=TINY, weights=tiny_checkpoints['plain'], num_crops=3, device='cpu')
    batches = []
    forward = op.forward
    op.forward = lambda clips: batches.append(tuple(clips.shape)) or forward(clips)
    frames = random_frames(12, 240, 319, seed=7)
    labels, scores, feature = op(frames)

    crops = reference_three_crops(frames[np.floor(np.linspace(0, 11, 8)).astype(int)], 64)
    with torch.inference_mode():
        hidden = tiny_hf_model.timesformer(torch.stack([c.permute(1, 0, 2, 3) for c in crops]))[0][:, 0]
        probs = tiny_hf_model.classifier(hidden).sum(0).softmax(-1)
    top = probs.topk(5)
    assert batches == [(3, 3, 8, 64, 64)]
    feature_diff = np.abs(feature - hidden.mean(0).numpy()).max()
    score_diff = np.abs(np.array(scores) - top.values.numpy()).max()
    print(f'3 crops vs HF: features {feature_diff:.2e}, scores {score_diff:.2e}')
    assert feature_diff < PARITY_FEATURES and score_diff < PARITY_SCORES
    assert labels == [op.labels[i] for i in top.indices.tolist()]
    seed_centre = reference_clip(frames, 8, 64)  # the 1-crop path's centre: offset 10, one column left
    assert not torch.allclose(seed_centre, crops[1]) and torch.allclose(seed_centre[..., 1:], crops[1][..., :-1])


@pytest.mark.parametrize('shape', [(8, 98, 67), (8, 67, 101), (8, 90, 90), (8, 64, 200)],
                         ids=['portrait', 'landscape', 'square', 'wide'])
def test_three_views_are_the_uniform_crops_of_the_short_side_scaled_clip(shape):
    frames = random_frames(*shape, seed=8)
    views = clip_to_views(torch.from_numpy(frames), 64, MEAN, STD, num_crops=3)
    assert views.shape == (3, 3, 8, 64, 64)
    for view, ref in zip(views, reference_three_crops(frames, 64)):
        assert (view - ref).abs().max() < 1e-5


def test_preprocess_shape_is_one_clip_or_three_views(tiny):
    frames = random_frames(10, 48, 80, seed=9)
    assert tiny().preprocess(frames).shape == (3, 8, 64, 64)
    assert tiny(num_crops=3).preprocess(frames).shape == (3, 3, 8, 64, 64)


# ---- clip sampling -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('count, fps, expected', [
    (300, 30, [22, 58, 94, 131, 167, 204, 240, 277]),  # 256-frame span from frame (300 - 256) / 2 = 22
    (300, 24, [47, 76, 105, 134, 164, 193, 222, 251]),  # span 256 * 24 / 30 = 204.8: the same 8.53 s
    (1000, 60, [244, 317, 390, 463, 536, 609, 682, 755]),  # span 512 at 60 fps
    (100, 30, [0, 36, 72, 99, 99, 99, 99, 99]),  # shorter than the span: from frame 0, the last frame repeats
])
def test_clip_sampling_takes_8_frames_over_256_at_30fps_from_the_middle(count, fps, expected):
    assert clip_indices(count, 8, 32, fps) == expected


def test_clip_sampling_reads_the_frame_rate_from_timestamps(tiny):
    arrays = random_frames(301, 16, 16, seed=10)
    chosen = [43, 74, 104, 134, 165, 195, 225, 256]  # span 213.33 frames at 25 fps from (301 - 213.33) / 2
    assert chosen == reference_clip_indices(301, 8, 32, 25.0)
    labels, scores, feature = tiny(sampling='clip')(stamped(arrays, 25))
    expected = tiny(skip_preprocess=True)(arrays[chosen])
    assert labels == expected[0]
    np.testing.assert_allclose(feature, expected[2], atol=1e-6)
    with pytest.raises(ValueError, match='timestamp'):
        tiny(sampling='clip')(arrays)  # a plain array: no timestamps, no fps


def test_clip_sampling_is_refused_for_models_without_a_sampling_rate():
    with pytest.raises(ValueError, match="sampling='uniform'"):
        ActionClassifier(model_name='timesformer_ssv2_8x224', sampling='clip')


# ---- sliding windows ---------------------------------------------------------------------------------------------

def reference_clip_indices(n: int, num_frames: int, rate: int, fps: float) -> list[int]:
    """PySlowFast's test clip, written out from the paper's protocol: `rate` counts frames of a 30 fps video, so the
    clip spans `num_frames * rate * fps / 30` of this video's frames, centred (from frame 0 when the window is
    shorter), `linspace` over the span, truncated, clamped to the last frame."""
    span = num_frames * rate * fps / 30
    start = max((n - span) / 2, 0.0)
    return [min(int(x), n - 1) for x in np.linspace(start, start + span - 1, num_frames)]


def pyav_frames(path) -> tuple[np.ndarray, list[int]]:
    """Every frame (RGB) and its time in ms from the first, by a plain sequential PyAV decode (not our decoder)."""
    import av

    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    first = decoded[0].pts
    times = [round(float((f.pts - first) * f.time_base) * 1000) for f in decoded]
    return np.stack([f.to_ndarray(format='rgb24') for f in decoded]), times


@pytest.mark.parametrize('options, spans', [
    (dict(window=2), [(0, 2000), (2000, 4000), (4000, 6000), (6000, 8000), (8000, 9600)]),
    (dict(window=4, stride=2, sampling='clip', num_crops=3), [(0, 4000), (2000, 6000), (4000, 8000), (6000, 9600)]),
], ids=['side_by_side', 'overlapping_clip_3crops'])
def test_each_window_holds_the_frames_its_timestamps_place_in_it(tiny, decoder, video, options, spans):
    """Rows from the lazy decoder, batched, against frame indices worked out here from the timestamps of a plain
    PyAV decode: a window holds the frames shown in [start, end), the last one cut at the video's end (9.6 s), and
    its clip is sampled from those frames by `floor(linspace)` (uniform) or the paper's clip (`reference_clip_indices`).
    The chosen frames then go through the model with `skip_preprocess=True`, which resizes and crops but samples
    nothing."""
    rows = tiny(**options)(decoder(video))
    arrays, times = pyav_frames(video)
    duration = times[-1] + 40  # the last frame's end at 25 fps
    window, stride = options['window'] * 1000, options.get('stride', options['window']) * 1000
    expected_spans, start = [], 0
    while not expected_spans or expected_spans[-1][1] < duration:
        expected_spans.append((start, min(start + window, duration)))
        start += stride
    assert expected_spans == spans  # the table above, as the docs describe it
    assert [(row.start_ms, row.end_ms) for row in rows] == spans
    cfg = get_cfg(TINY)
    single = tiny(skip_preprocess=True, num_crops=options.get('num_crops', 1))
    for row in rows:
        inside = [i for i, t in enumerate(times) if row.start_ms <= t < row.end_ms]
        if options.get('sampling') == 'clip':
            picks = reference_clip_indices(len(inside), cfg.num_frames, cfg.sampling_rate, 25.0)
        else:
            picks = np.floor(np.linspace(0, len(inside) - 1, cfg.num_frames)).astype(int).tolist()
        labels, scores, feature = single(arrays[[inside[i] for i in picks]])
        assert row.labels == labels
        np.testing.assert_allclose(row.scores, scores, atol=1e-5)
        np.testing.assert_allclose(row.features, feature, atol=1e-5)


@pytest.mark.parametrize('count, fps', [(300, 30), (300, 24), (1000, 60), (100, 30), (301, 25), (7, 29.97)])
def test_clip_indices_equal_the_protocol_written_out(count, fps):
    assert clip_indices(count, 8, 32, fps) == reference_clip_indices(count, 8, 32, fps)


@pytest.mark.parametrize('window, stride, spans', [
    (2000, 5000, [(0, 2000, 0, 20), (5000, 7000, 50, 70), (10000, 11000, 100, 110)]),  # gaps between windows
    (4000, 3000, [(0, 4000, 0, 40), (3000, 7000, 30, 70), (6000, 10000, 60, 100), (9000, 11000, 90, 110)]),
    (11000, 1000, [(0, 11000, 0, 110)]),  # the first window covers everything: no window inside it follows
])
def test_windows_step_by_stride_until_the_video_is_covered(window, stride, spans):
    times = FrameTimes([Fraction(i, 10) for i in range(110)], Fraction(11), Fraction(10))  # 11 s at 10 fps
    assert [(s.start_ms, s.end_ms, s.first, s.stop) for s in plan_windows(times, window, stride)] == spans


class Recording(Sequence):
    """A lazy frame sequence that counts what is fetched; reading one frame at a time is a failure."""

    def __init__(self, frames):
        self.frames, self.takes = frames, []
        self.timestamps, self.fps, self.duration = frames.timestamps, frames.fps, frames.duration

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, item):
        raise AssertionError('frames must be fetched in batches with take()')

    def take(self, indices):
        self.takes.append(list(indices))
        return self.frames.take(indices)


def test_windows_fetch_only_their_sampled_frames_one_batch_at_a_time(tiny, decoder, video):
    op = tiny(window=2)
    batches = []
    forward = op.forward
    op.forward = lambda clips: batches.append(clips.shape[0]) or forward(clips)
    frames = Recording(decoder(video))
    op(frames)
    windows = [(0, 50), (50, 100), (100, 150), (150, 200), (200, 240)]  # frames of each 2 s window at 25 fps
    wanted = [sorted({first + int(i) for i in np.linspace(0, stop - first - 1, 8)}) for first, stop in windows]
    assert batches == [4, 1]  # on the CPU, 4 clips per forward: windows 1-4, then 5
    assert frames.takes == [sorted(set().union(*wanted[:4])), wanted[4]]


def test_a_window_longer_than_the_video_gives_one_row_over_all_of_it(tiny, decoder, video):
    rows = tiny(window=60, stride=30)(decoder(video))
    assert [(row.start_ms, row.end_ms) for row in rows] == [(0, 9600)]


def test_frames_without_timestamps_use_index_over_fps_or_are_refused(tiny):
    arrays = random_frames(25, 16, 16, seed=11)

    class WithFps(list):
        fps = 10.0

    rows = tiny(window=1)(WithFps(arrays))
    assert [(row.start_ms, row.end_ms) for row in rows] == [(0, 1000), (1000, 2000), (2000, 2500)]
    for frames in (arrays, list(arrays)):
        with pytest.raises(ValueError, match='timestamp'):
            tiny(window=1)(frames)


def test_windows_without_frames_give_no_row_and_backward_timestamps_are_refused(tiny):
    arrays = random_frames(20, 16, 16, seed=12)
    times = [i * 100 for i in range(10)] + [5000 + i * 100 for i in range(10)]  # nothing from 1 s to 5 s
    frames = [VideoFrame(a, mode='RGB', timestamp=t) for a, t in zip(arrays, times)]
    rows = tiny(window=1)(frames)
    assert [(row.start_ms, row.end_ms) for row in rows] == [(0, 1000), (5000, 6000)]
    frames[3], frames[4] = frames[4], frames[3]
    with pytest.raises(ValueError, match='backwards'):
        tiny(window=1)(frames)


@pytest.mark.parametrize('options', [
    dict(window=0), dict(window=-5), dict(window=float('nan')), dict(window='10'), dict(window=True),
    dict(window=0.0004), dict(window=10, stride=0), dict(window=10, stride=float('inf')), dict(stride=5),
    dict(window=10, skip_preprocess=True), dict(sampling='clip', skip_preprocess=True), dict(sampling='random'),
    dict(num_crops=2), dict(num_crops='3'),
])
def test_invalid_view_sampling_and_window_arguments_fail_at_construction(tiny, options):
    with pytest.raises(ValueError):
        tiny(**options)


# ---- Towhee pipeline, summary and timeline -----------------------------------------------------------------------

def test_flat_map_pipeline_gives_a_row_per_window_and_window_all_a_summary(tiny, decoder, video):
    """As docs/long_videos.md writes it: one operator instance, called from lambdas (Towhee deep-copies an operator
    handed to a step, model and all), its rows spread by flat_map and summarized by window_all."""
    from towhee import pipe

    op = tiny(window=2, stride=2)
    columns = ('start', 'end', 'labels', 'scores', 'features')
    p = (pipe.input('path')
         .map('path', 'frames', decoder)
         .flat_map('frames', columns, lambda frames: op(frames))
         .output(*columns))
    rows = p(str(video)).to_list()
    assert [(start, end) for start, end, *_ in rows] == [(0, 2000), (2000, 4000), (4000, 6000), (6000, 8000),
                                                        (8000, 9600)]
    assert all(features.shape == (48,) for *_, features in rows)
    summary_pipe = (pipe.input('path')
                    .map('path', 'frames', decoder)
                    .flat_map('frames', columns, lambda frames: op(frames))
                    .window_all(columns, 'summary', lambda *cols: op.summarize(zip(*cols)))
                    .output('summary'))
    summary = summary_pipe(str(video)).get()[0]
    weights = np.array([2000, 2000, 2000, 2000, 1600])[:, None]
    np.testing.assert_allclose(summary['feature'], (np.stack([r[4] for r in rows]) * weights).sum(0) / 9600,
                               atol=1e-6)
    assert op.timeline(rows).to_html().count('<title>') == 5


def test_summary_ranks_top_labels_by_seconds_and_merges_runs():
    feature = np.ones(4, np.float32)
    rows = [(0, 10000, ['a', 'b'], [0.5, 0.1], feature), (10000, 20000, ['a'], [0.7], 3 * feature),
            (20000, 25000, ['b'], [0.9], feature), (25000, 30000, ['a'], [0.2], feature)]
    summary = summarize(rows)
    assert summary['labels'] == [('a', 25.0, 0.7), ('b', 5.0, 0.9)]
    assert summary['segments'] == [(0, 20000, 'a', pytest.approx(0.6)), (20000, 25000, 'b', 0.9),
                                   (25000, 30000, 'a', 0.2)]
    np.testing.assert_allclose(summary['feature'], feature * (10 + 30 + 5 + 5) / 30)


def test_summary_numbers_are_python_numbers_also_from_numpy_rows():
    rows = [(np.int64(0), np.int64(4000), np.array(['a', 'b']), np.array([0.6, 0.3], np.float32), np.ones(4)),
            (np.int64(4000), np.int64(6000), ['a'], [np.float64(0.8)], np.ones(4))]
    summary = summarize(rows)
    for label, seconds, best in summary['labels']:
        assert (type(label), type(seconds), type(best)) == (str, float, float)
    for start, end, label, score in summary['segments']:
        assert (type(start), type(end), type(label), type(score)) == (int, int, str, float)
    assert summary['labels'] == [('a', 6.0, pytest.approx(0.8))]


def timeline_rows():
    rows = [(i * 10000, (i + 1) * 10000, [label], [score]) for i, (label, score) in
            enumerate([('abseiling', 0.9), ('abseiling', 0.4), ('<b>&', 0.7)])]
    return rows + [(25000, 32000, ['abseiling'], [0.5])]  # overlaps the third window: a second lane


def test_timeline_renders_windows_to_html_and_svg(tmp_path):
    timeline = Timeline(timeline_rows(), title='walk.mp4')
    assert timeline.lanes == [0, 0, 0, 1]
    page = timeline.save(tmp_path / 'timeline.html').read_text()
    assert page.count('<rect') == 4 + 2  # windows and legend swatches
    assert '&lt;b&gt;&amp;' in page and '<b>&' not in page
    assert '0:20-0:30  &lt;b&gt;&amp;  0.70' in page  # the tooltip: window, top label, score
    assert timeline._repr_html_() == timeline.to_html()
    assert timeline.save(tmp_path / 'timeline.svg').read_text().startswith('<svg')
    with pytest.raises(ValueError, match='suffix'):
        timeline.save(tmp_path / 'timeline.jpg')


def test_a_labels_colour_is_stable_and_bars_match_the_legend():
    import re
    import zlib

    from timesformer_video.timeline import PALETTE, label_colours

    first = Timeline(timeline_rows())
    # The same labels with other shares of the video and in another order: each keeps its colour.
    second = Timeline([(0, 90000, ['<b>&'], [0.2]), (90000, 91000, ['abseiling'], [0.99])])
    assert first.labels != second.labels and first.colours == second.colours
    assert label_colours(['abseiling'])['abseiling'] == PALETTE[zlib.crc32(b'abseiling') % len(PALETTE)]
    many = label_colours(f'label {i}' for i in range(20))
    assert len(set(many.values())) == 20  # colliding names move on to a free colour
    assert many == label_colours(f'label {i}' for i in reversed(range(20)))
    svg = first.to_svg()
    bars = re.findall(r'<rect [^>]*height="26" fill="(#[0-9a-f]{6})"(/?)>', svg)
    swatches = dict(re.findall(r'fill="(#[0-9a-f]{6})"/><text [^>]*>([^<]*?) \(', svg))
    assert len(bars) == 4 and 'opacity' not in svg  # drawn as the legend shows them
    assert {colour for colour, _ in bars} == set(swatches)
    assert {swatches[colour] for colour in swatches} == {'abseiling', '&lt;b&gt;&amp;'}
    for colour, label in swatches.items():
        assert first.colours[html.unescape(label)] == colour


def test_timeline_renders_a_png_with_matplotlib(tmp_path):
    pytest.importorskip('matplotlib', reason='PNG timelines need matplotlib (HTML and SVG do not)')
    png = Timeline(timeline_rows(), title='walk.mp4').save(tmp_path / 'timeline.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
