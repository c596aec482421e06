"""One clock for moments, exact frame rates: frame times and rates stay exact fractions until the last step.

Videos are muxed with a 90 kHz time base by the ffmpeg CLI (MPEG-TS, and MP4 with `-video_track_timescale 90000`) at
25.005 fps, so frame 50 is shown at 1999.6 ms: rounded to ms it would land in the window that starts at 2000 ms.
DV files are made with `-target pal-dv` / `-target ntsc-dv`, whose PyAV header rate (60000 fps) is wrong, so the rate
comes from the frames' ticks. The references are a plain sequential PyAV decode (each frame's pts * time_base from the
first) and ffprobe's frame rate and frame count, with the paper's clip rule written out here in fractions.
"""

import json
import math
import shutil
import subprocess
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import TINY, TINY_CFG

from timesformer_video.classifier import ActionClassifier
from timesformer_video.decode import VideoDecoder
from timesformer_video.jobs import cli as jobs_cli
from timesformer_video.jobs.moments_page import thumbnails
from timesformer_video.timing import frame_range, frame_times
from timesformer_video.zoo import get_cfg

FFMPEG = shutil.which('ffmpeg') or 'ffmpeg'  # the CLI: scripts/setup.sh installs it
FFPROBE = shutil.which('ffprobe') or 'ffprobe'
RATE = '5001/200'  # 25.005 fps: on a 90 kHz clock frame 25 is at 999.8 ms and frame 50 at 1999.6 ms
SOURCE = ['-f', 'lavfi', '-i', f'testsrc2=size=96x64:rate={RATE}:duration=6']
H264 = ['-c:v', 'libx264', '-g', '12', '-bf', '2', '-pix_fmt', 'yuv420p']

def ffmpeg(folder, *args):
    subprocess.run([FFMPEG, '-hide_banner', '-loglevel', 'error', '-y', *args], cwd=folder, check=True)


def ffprobe_rate_and_count(path) -> tuple[Fraction, int]:
    """The video stream's average frame rate (exact, as ffprobe prints it) and the frames it decodes."""
    result = subprocess.run([FFPROBE, '-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries',
                             'stream=avg_frame_rate,nb_read_frames', '-of', 'json', str(path)],
                            capture_output=True, text=True, check=True)
    stream = json.loads(result.stdout)['streams'][0]
    return Fraction(stream['avg_frame_rate']), int(stream['nb_read_frames'])


def pyav_decode(path) -> tuple[np.ndarray, list[Fraction], Fraction]:
    """Every frame (RGB), its exact time from the first frame (pts * time_base) and the end of the last frame (its
    time plus its duration), by a plain sequential decode."""
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    first = decoded[0].pts
    times = [(f.pts - first) * f.time_base for f in decoded]
    end = times[-1] + decoded[-1].duration * decoded[-1].time_base
    return np.stack([f.to_ndarray(format='rgb24') for f in decoded]), times, end


def expected_windows(end: Fraction, window_ms: int, stride_ms: int) -> list[tuple[int, int]]:
    """The windows as docs/long_videos.md describes them, in whole ms: from 0, every stride, while the video (to its
    last frame's end, rounded up to a whole ms) is not yet covered; the last one cut at that end."""
    end_ms, spans, start = math.ceil(end * 1000), [], 0
    while not spans or spans[-1][0] + window_ms < end_ms:
        spans.append((start, min(start + window_ms, end_ms)))
        start += stride_ms
    return spans


def inside(times: Sequence[Fraction], start_ms: int, end_ms: int) -> list[int]:
    """The frames shown in [start_ms, end_ms), compared exactly."""
    return [i for i, t in enumerate(times) if Fraction(start_ms, 1000) <= t < Fraction(end_ms, 1000)]


def uniform_picks(frames: list[int], num_frames: int = 8) -> list[int]:
    """The frames a clip of `num_frames` takes of `frames`: `floor(linspace(0, n - 1, num_frames))`."""
    return [frames[i] for i in np.floor(np.linspace(0, len(frames) - 1, num_frames)).astype(int)]


def paper_clip(count: int, num_frames: int, sampling_rate: int, fps: Fraction) -> list[int]:
    """The paper's test clip (PySlowFast): `num_frames * sampling_rate` frames at 30 fps, as this video's frames
    (`* fps / 30`), centred (from frame 0 when the video is shorter), `linspace` over the span, truncated, clamped to
    the last frame; in fractions, so no index moves by float rounding."""
    span = Fraction(num_frames * sampling_rate) * fps / 30
    start = max(count - span, 0) / 2
    return [min(math.floor(start + i * (span - 1) / (num_frames - 1)), count - 1) for i in range(num_frames)]


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """The 90 kHz videos: the same 6 s source (151 frames) in MPEG-TS and in MP4."""
    folder = tmp_path_factory.mktemp('clock')
    ffmpeg(folder, *SOURCE, *H264, 'clock.ts')
    ffmpeg(folder, *SOURCE, *H264, '-video_track_timescale', '90000', 'clock.mp4')
    return folder


@pytest.fixture(scope='module')
def tiny(tiny_weights):
    return lambda **kw: ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', **kw)


@pytest.mark.parametrize('name', ['clock.ts', 'clock.mp4'])
def test_the_input_puts_a_frame_just_before_a_whole_second(videos, name):
    """The case the rule is about: frame 50 at 1999.6 ms (rounded to ms it would be at 2000 ms)."""
    _, times, _ = pyav_decode(videos / name)
    assert times[50] == Fraction(19996, 10000) and times[25] == Fraction(9998, 10000)


@pytest.mark.parametrize('name', ['clock.ts', 'clock.mp4'])
@pytest.mark.parametrize('window, stride', [(2, 2), (1.5, 0.5)])
def test_each_window_holds_exactly_the_frames_its_range_gives_the_decoder(tiny, videos, name, window, stride):
    """`op(frames, window=)`: each row's frames are those a plain PyAV decode shows in [start_ms, end_ms) (checked
    through the model: the row's feature is that of those frames, sampled by floor(linspace)); and asking the decoder
    for the row's range (what `search --start/--end` and the moments page's thumbnails decode) gives those frames."""
    path = videos / name
    arrays, times, end = pyav_decode(path)
    rows = tiny(window=window, stride=stride)(VideoDecoder()(path))
    spans = [span for span in expected_windows(end, round(window * 1000), round(stride * 1000)) if inside(times, *span)]
    assert [(row.start_ms, row.end_ms) for row in rows] == spans
    single = tiny(skip_preprocess=True)
    for row in rows:
        frames = inside(times, row.start_ms, row.end_ms)
        expected = single(arrays[uniform_picks(frames)])
        np.testing.assert_allclose(row.features, expected[2], atol=1e-5)
        assert row.labels == expected[0]
        part = VideoDecoder(start_time=row.start_ms / 1000, end_time=row.end_ms / 1000)(path)
        assert part.times == [times[i] for i in frames]
    assert inside(times, 0, 2000)[-1] == 50  # the frame at 1999.6 ms is in the first 2 s, not the next


def test_the_decoders_range_and_the_timing_rule_agree_at_exact_frame_times(videos):
    """Ranges whose ends fall exactly on a frame's time, a tick before or after it, or on a whole ms beside it: the
    decoder's start_time/end_time and `timing.frame_range` over the whole video's times pick the same frames."""
    path = videos / 'clock.ts'
    _, times, _ = pyav_decode(path)
    whole = frame_times(VideoDecoder()(path), 'test').times
    assert whole == times
    micro = Fraction(1, 10**6)  # less than a tick (11.1 us): the decoder reads a float as the decimal it prints as
    bounds = sorted({times[i] + d for i in (25, 50, 100) for d in (0, -micro, micro)}
                    | {Fraction(math.floor(times[i] * 1000 + r), 1000) for i in (25, 50, 100) for r in (0, 1)})
    assert all(Fraction(repr(float(b))) == b for b in bounds)  # each is a short decimal: passed exactly
    for b in bounds:
        first, _ = frame_range(whole, b)
        assert VideoDecoder(start_time=float(b))(path).times == times[first:] == [t for t in times if t >= b]
        _, stop = frame_range(whole, 0, b)
        assert VideoDecoder(end_time=float(b))(path).times == times[:stop] == [t for t in times if t < b]


def test_thumbnails_of_a_hit_show_frames_of_its_window_only(videos):
    """The moments page decodes a hit's [start_ms, end_ms): asking for more thumbnails than frames gives one per
    frame, so the count is the window's frame count (50 here; 51 if the frame at 1999.6 ms were counted in)."""
    _, times, _ = pyav_decode(videos / 'clock.ts')
    assert len(thumbnails(str(videos / 'clock.ts'), 2000, 4000, count=200, height=8)) == len(inside(times, 2000, 4000))
    assert len(inside(times, 2000, 4000)) == 50


def test_index_and_search_embed_the_same_frames_for_a_windows_range(videos, tiny_weights, tmp_path, capsys):
    """`index --window 2`, then `search --start S --end E` of the same video for each window's range: both embed the
    frames the PyAV reference puts in the range (the indexed row's feature and the query's both equal the operator
    run on those reference frames), and the window comes back first, at similarity 1. Before, the window
    [2000, 4000) held the frame at 1999.6 ms (frames 50..100) and the query did not (51..100): other frames, which
    this model tells apart (checked below). The frames are decoded in the job's worker processes, so they are
    compared by what was embedded, not by watching the decoder."""
    import pyarrow.parquet as pq

    from timesformer_video.jobs.operators import OperatorSpec
    from timesformer_video.jobs.runner import embed

    rgb, times, _ = pyav_decode(videos / 'clock.ts')
    cfg = tmp_path / 'tiny.json'
    cfg.write_text(json.dumps(TINY_CFG))
    model = ['--model-cfg', str(cfg), '--weights', str(tiny_weights)]
    video, db, out = str(videos / 'clock.ts'), str(tmp_path / 'videos.db'), tmp_path / 'moments.parquet'
    assert jobs_cli.main(['index', video, '--out', str(out), '--window', '2', '--milvus', db, '--no-progress',
                          *model]) == 0
    windows = [(0, 2000), (2000, 4000), (4000, 6000)]  # [6000, 6039) holds no frame (the last is at 5998.8 ms)
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu')
    expected = {span: op(rgb[inside(times, *span)])[2] for span in windows}
    old_rule = op(rgb[50:101])[2]  # [2000, 4000) with times rounded to ms: frame 50 (1999.6 ms) inside
    assert np.abs(old_rule - expected[(2000, 4000)]).max() > 1e-4  # measured 3.8e-4: 38x the tolerance below
    rows = pq.read_table(out).to_pylist()
    assert sorted((r['start_ms'], r['end_ms']) for r in rows) == windows
    for row in rows:
        np.testing.assert_allclose(row['feature'], expected[(row['start_ms'], row['end_ms'])], atol=1e-5)
    spec = OperatorSpec(model_name=TINY, weights=str(tiny_weights), model_cfg=TINY_CFG)
    capsys.readouterr()
    for start_ms, end_ms in windows:
        query = embed(video, spec, start_ms / 1000, end_ms / 1000)
        np.testing.assert_allclose(query['feature'], expected[(start_ms, end_ms)], atol=1e-5)
        assert jobs_cli.main(['search', video, '--start', str(start_ms / 1000), '--end', str(end_ms / 1000),
                              '--milvus', db, '--moments', '-k', '3', '--json', *model]) == 0
        hits = json.loads(capsys.readouterr().out)
        assert (hits[0]['path'], hits[0]['start_ms'], hits[0]['end_ms']) == (video, start_ms, end_ms)
        assert hits[0]['score'] == pytest.approx(1.0, abs=1e-4)


# ---- frame rates -------------------------------------------------------------------------------------------------

class Recording(Sequence):
    """Lazy frames that record which frames are fetched (timing and rate passed through)."""

    def __init__(self, frames):
        self.frames, self.takes = frames, []

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, item):
        return self.frames[item]

    def take(self, indices):
        self.takes.append(list(indices))
        return self.frames.take(indices)

    def __getattr__(self, name):
        return getattr(self.frames, name)


RATES = {  # name: ffmpeg arguments (the source's rate and length decide the frame count)
    # 300 frames from a header that says 60000 fps: the rate comes from the ticks (25, not 24.999999999999996,
    # which moved the sixth frame from 195 to 194).
    'pal.dv': ['-f', 'lavfi', '-i', 'testsrc2=size=720x576:rate=25', '-t', '12', '-target', 'pal-dv'],
    'ntsc.dv': ['-f', 'lavfi', '-i', 'testsrc2=size=720x480:rate=30000/1001', '-t', '9', '-target', 'ntsc-dv'],
    'film.mp4': ['-f', 'lavfi', '-i', 'testsrc2=size=96x64:rate=24000/1001', '-t', '14', *H264],
    # 470 frames at 25 fps: the third frame is exactly frame 189, which float linspace gives as 188.99999999999997.
    'pal470.mp4': ['-f', 'lavfi', '-i', 'testsrc2=size=96x64:rate=25', '-frames:v', '470', *H264],
}


@pytest.mark.parametrize('name', list(RATES))
def test_clip_sampling_takes_the_frames_the_paper_rule_gives_at_the_exact_rate(tiny, tmp_path, name):
    ffmpeg(tmp_path, *RATES[name], name)
    rate, count = ffprobe_rate_and_count(tmp_path / name)
    frames = VideoDecoder()(tmp_path / name)
    assert (len(frames), frames.fps) == (count, rate) and isinstance(frames.fps, Fraction)
    cfg = get_cfg(TINY)
    expected = paper_clip(count, cfg.num_frames, cfg.sampling_rate, rate)
    recording = Recording(frames)
    tiny(sampling='clip')(recording)
    assert recording.takes == [sorted(set(expected))]
    if name == 'pal.dv':
        assert expected[5] == 195
    if name == 'pal470.mp4':
        assert expected[2] == 189
