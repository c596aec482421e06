"""`ops.video_decode.ffmpeg` as a drop-in for the hub's `video-decode/ffmpeg` in Towhee's example notebooks.

Each case is made as users make such files (the ffmpeg CLI) and checked against a plain sequential PyAV decode or
ffprobe: the arguments the notebooks pass (an inclusive `end_time`, any-case `sample_type`, a range past a short
video's end), inputs FFmpeg opens (an image-sequence pattern) or refuses as video (audio with cover art), and
`DataCollection.show()` drawing frames offline, as a notebook and as a terminal.
"""

import base64
import fractions
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import install_operators

from timesformer_video import errors
from timesformer_video.decode import LazyFrames, VideoDecoder

ROOT = Path(__file__).resolve().parents[1]


def ffmpeg(*args):
    subprocess.run(['ffmpeg', '-v', 'error', '-y', *map(str, args)], check=True, timeout=120)


def make_clip(path, seconds, fps=25, size='64x48'):
    """An H.264 MP4 of `seconds` of FFmpeg's test pattern (a moving counter), one keyframe a second."""
    ffmpeg('-f', 'lavfi', '-i', f'testsrc=size={size}:rate={fps}', '-t', seconds, '-c:v', 'libx264',
           '-pix_fmt', 'yuv420p', '-g', fps, path)
    return str(path)


def reference(path):
    """(RGB array, exact seconds from the first frame) of every frame of a plain sequential PyAV decode."""
    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            frames.append((frame.to_ndarray(format='rgb24'), frame.pts * fractions.Fraction(frame.time_base)))
    return [(rgb, t - frames[0][1]) for rgb, t in frames]


def ms(seconds):
    return round(seconds * 1000)


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp('dropin')
    return {'long': make_clip(folder / 'eight_seconds.mp4', 8), 'short': make_clip(folder / 'three_seconds.mp4', 3),
            'minute': make_clip(folder / 'sixty_two_seconds.mp4', 62, fps=5),
            'show': make_clip(folder / 'show.mp4', 2, size='320x240')}


# --- item 8: a range with no frames gives no frames -----------------------------------------------------------------

@pytest.mark.parametrize('kwargs', [dict(start_time=5.0, end_time=10.0), dict(start_time=5.0),
                                    dict(start_time=1.01, end_time=1.02)])  # past the end; between two frames
@pytest.mark.parametrize('include_end', [False, True])
def test_a_range_with_no_frames_gives_no_frames(clips, kwargs, include_end):
    path = clips['short']
    start, end = kwargs['start_time'], kwargs.get('end_time', 1e9)
    assert not [t for _, t in reference(path) if start <= t <= end]  # the reference: no frame in the range
    for sample_type, args in [('time_step_sample', {'time_step': 1}), ('uniform_temporal_subsample',
                                                                       {'num_samples': 8})]:
        assert VideoDecoder(sample_type=sample_type, args=args, include_end=include_end, **kwargs)(path) == []
    frames = VideoDecoder(include_end=include_end, **kwargs)(path)
    assert isinstance(frames, LazyFrames) and len(frames) == 0 and list(frames) == [] and frames.take([]) == []
    assert frames.timestamps == [] and frames.duration == 0.0 and '0 frames' in repr(frames)
    with pytest.raises(errors.TimeRangeError, match=r'no frames in \[(5.0|1.01), .*the video has 75 frames '
                                                    r'spanning 3.000 s'):
        VideoDecoder(include_end=include_end, **kwargs).frames(path)


# --- item 9: the factory's arguments behave as the hub's ------------------------------------------------------------

@pytest.mark.parametrize('start, end', [(1.0, 2.0), (0, 0.52), (2.0, 2.0), (0.5, 99)])
def test_include_end_keeps_the_frame_at_exactly_end_time_the_default_does_not(clips, start, end):
    path = clips['short']
    ref = reference(path)
    closed = [i for i, (_, t) in enumerate(ref) if start <= t <= fractions.Fraction(str(end))]
    half_open = [i for i, (_, t) in enumerate(ref) if start <= t < fractions.Fraction(str(end))]
    got = VideoDecoder(start_time=start, end_time=end, include_end=True)(path)
    assert got.timestamps == [ms(ref[i][1]) for i in closed]
    assert all(np.array_equal(f, ref[i][0]) for f, i in zip(got.take([0, -1]), [closed[0], closed[-1]]))
    if start == end:
        with pytest.raises(ValueError, match='must be less than end_time'):
            VideoDecoder(start_time=start, end_time=end)
    else:
        assert VideoDecoder(start_time=start, end_time=end)(path).timestamps == [ms(ref[i][1]) for i in half_open]


def test_sample_type_is_case_insensitive_as_in_the_hub(clips):
    path = clips['short']
    for given in ['Uniform_Temporal_Subsample', 'UNIFORM_TEMPORAL_SUBSAMPLE']:
        got = VideoDecoder(sample_type=given, args={'num_samples': 5}).sample(path)
        want = VideoDecoder(sample_type='uniform_temporal_subsample', args={'num_samples': 5}).sample(path)
        assert [f.timestamp for f in got] == [f.timestamp for f in want] == [0, 720, 1480, 2200, 2960]
    with pytest.raises(ValueError, match="unknown sample_type 'random'"):
        VideoDecoder(sample_type='Random')


# --- items 8, 9, 10 through Towhee: the notebooks' pipelines, offline -----------------------------------------------

NOTEBOOK = """
import contextlib, io, json, socket, sys

def no_network(*args, **kwargs):
    raise OSError('this test runs with no network')

socket.socket.connect = no_network
import towhee.utils.dependency_control

def no_install(package):
    raise AssertionError(f'Towhee tried to pip-install {package}')

towhee.utils.dependency_control.prompt_install = no_install  # Towhee's silent `pip install` of what show() lacks
from towhee import DataCollection, ops, pipe

clips, out = json.loads(sys.argv[1]), {}
# The reverse video search / copy detection notebooks: flat_map over a range that one video does not reach.
p = (pipe.input('path')
     .flat_map('path', 'frame', ops.video_decode.ffmpeg(start_time=5.0, end_time=10.0, sample_type='time_step_sample',
                                                         args={'time_step': 1}))
     .output('path', 'frame'))
out['flat_map'] = [[row.frame.timestamp for row in DataCollection(q)] for q in p.batch([clips['long'], clips['short']])]
# The copy detection notebook: end_time=60.0, one frame a second, sample_type in any case.
p = (pipe.input('path')
     .map('path', 'frames', ops.video_decode.ffmpeg(end_time=60.0, sample_type='Time_Step_Sample',
                                                    args={'time_step': 1}))
     .output('frames'))
out['minute'] = [f.timestamp for f in p(clips['minute']).get()[0]]
# show(): every frame (lazy) and a sampled clip, as a terminal shows it, then as a notebook does.
p = (pipe.input('path')
     .map('path', 'frames', ops.video_decode.ffmpeg())
     .map('path', 'clip', ops.video_decode.ffmpeg(sample_type='uniform_temporal_subsample', args={'num_samples': 3}))
     .output('path', 'frames', 'clip'))
terminal = io.StringIO()
with contextlib.redirect_stdout(terminal):
    DataCollection(p(clips['show'])).show()
out['terminal'] = terminal.getvalue()
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

shell = InteractiveShell.instance()
from IPython.display import display

shell.user_ns.update(p=p, DataCollection=DataCollection, display=display, path=clips['show'])
for name, cell in [('show', 'DataCollection(p(path)).show()'), ('cell', 'frames = p(path).get()[1]\\ndisplay(frames)')]:
    with capture_output() as captured:
        shell.run_cell(cell).raise_error()
    out[name] = [o.data.get('text/html') for o in captured.outputs]
import cv2
out['cv2'] = cv2.__file__
print(json.dumps(out))
"""


@pytest.fixture(scope='module')
def notebook(clips, tmp_path_factory):
    """What the notebook pipelines give through Towhee, with both operators in a fresh TOWHEE_HOME, sockets closed,
    pip given no index, and Towhee's on-the-fly `pip install` made to fail."""
    home = tmp_path_factory.mktemp('towhee')
    env = install_operators(dict(os.environ, TOWHEE_HOME=str(home), PIP_NO_INDEX='1', MPLBACKEND='Agg'))
    result = subprocess.run([sys.executable, '-c', NOTEBOOK, json.dumps(clips)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_flat_map_over_a_range_a_short_video_does_not_reach_gives_it_no_rows(notebook, clips):
    expected = []
    for second in (5, 6, 7, 8, 9, 10):  # the first frame at or after each second of [5, 10]
        at = [t for _, t in reference(clips['long']) if t >= second]
        if at and at[0] <= 10 and ms(at[0]) not in expected:
            expected.append(ms(at[0]))
    assert expected == [5000, 6000, 7000]
    assert notebook['flat_map'] == [expected, []]


def test_end_time_60_gives_61_frames_as_the_hub(notebook, clips):
    times = [t for _, t in reference(clips['minute'])]
    expected = [ms(next(t for t in times if t >= second)) for second in range(61)]
    assert notebook['minute'] == expected == [1000 * s for s in range(61)]


def _images(html):
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)


def _decode_png(data):
    with av.open(io.BytesIO(base64.b64decode(data))) as container:
        return next(container.decode(video=0)).to_ndarray(format='rgb24')


def test_show_in_a_notebook_draws_lazy_frames_as_thumbnails_and_sampled_frames_offline(notebook, clips):
    assert Path(notebook['cv2']).is_relative_to(Path(sys.prefix))  # OpenCV installed, not fetched by Towhee
    (table,) = notebook['show']
    cells = re.findall(r'<td.*?</td>', table, flags=re.DOTALL)
    lazy = next(c for c in cells if 'LazyFrames(' in c)
    sampled = [c for c in cells if 'LazyFrames(' not in c and '<img' in c]
    assert len(sampled) == 1 and len(_images(sampled[0])) == 3  # Towhee's own drawing of a list of frames
    thumbnails = [_decode_png(data) for data in _images(lazy)]
    assert [t.shape for t in thumbnails] == [(96, 128, 3)] * 4
    ref = reference(clips['show'])
    positions = [int(p) for p in re.findall(r'alt="frame (\d+) ', lazy)]
    assert positions == [0, 16, 32, 49] and '50 frames' in lazy  # spread as uniform_temporal_subsample spreads
    for position, thumbnail in zip(positions, thumbnails):
        # 320x240 -> 128x96: compare with the reference frame averaged down (resampling filters differ a little)
        frame = ref[position][0].astype(np.float64)
        coarse = frame[:240, :320].reshape(48, 5, 64, 5, 3).mean(axis=(1, 3))
        small = thumbnail.astype(np.float64).reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))
        others = [np.abs(small - ref[p][0].astype(np.float64).reshape(48, 5, 64, 5, 3).mean(axis=(1, 3))).mean()
                  for p in positions if p != position]
        error = np.abs(small - coarse).mean()
        assert error < 6 and error < min(others) / 2, (position, error, others)  # measured: 1.8-2.0 vs 8.8-9.1


def test_a_notebook_cell_holding_lazy_frames_shows_them(notebook):
    (html,) = notebook['cell']
    assert len(_images(html)) == 4 and re.search(r'LazyFrames\(.*show\.mp4.*50 frames, fps=25\.000', html)


def test_show_in_a_terminal_prints_the_lazy_frames_repr(notebook):
    assert re.search(r"LazyFrames\('[^']*show\.mp4', 50 frames, fps=25\.000, duration=2\.000 s\)",
                     notebook['terminal'])
    assert '<img' not in notebook['terminal']


def test_html_of_frames_that_cannot_be_read_says_why(clips, tmp_path):
    gone = shutil.copy(clips['short'], tmp_path / 'gone.mp4')
    frames = VideoDecoder()(str(gone))
    os.remove(gone)
    html = frames._repr_html_()
    assert 'cannot draw thumbnails: FileNotFoundError' in html and '75 frames' in html and '<img' not in html
    empty = VideoDecoder(start_time=9)(clips['short'])._repr_html_()
    assert '<img' not in empty and '0 frames' in empty


def test_towhee_would_install_nothing_when_it_loads_the_operator():
    """Towhee 1.1.3 pip-installs each line of an operator's requirements.txt whose name (the text before the first
    space or version sign) is not an installed distribution: every one must be installed, comments included."""
    from importlib.metadata import PackageNotFoundError, distribution

    for line in (ROOT / 'video_decode' / 'requirements.txt').read_text().splitlines():
        if line.strip():
            name = re.split(r'[~<>=!\[\] ]', line)[0]
            try:
                distribution(name)
            except PackageNotFoundError:
                pytest.fail(f'video_decode/requirements.txt: {line!r} would make Towhee run pip install {name}')


# --- item 5: inputs FFmpeg opens, and inputs that are no video --------------------------------------------------------

@pytest.fixture(scope='module')
def sequences(tmp_path_factory):
    """Image sequences as people write them with the ffmpeg CLI: PNG numbered from 1 (its default), JPEG from 0."""
    folder = tmp_path_factory.mktemp('sequences')
    (folder / 'png').mkdir()
    (folder / 'jpg').mkdir()
    ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10', '-frames:v', 12, folder / 'png' / 'frame%03d.png')
    ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10', '-frames:v', 9, '-start_number', 0,
           folder / 'jpg' / 'img%d.jpg')
    return {'png': str(folder / 'png' / 'frame%03d.png'), 'jpg': str(folder / 'jpg' / 'img%d.jpg')}


@pytest.mark.parametrize('kind, count', [('png', 12), ('jpg', 9)])
def test_an_image_sequence_pattern_gives_the_frames_of_a_sequential_decode(sequences, kind, count):
    pattern = sequences[kind]
    probe = subprocess.run(['ffprobe', '-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries',
                            'stream=nb_read_frames,r_frame_rate', '-of', 'json', pattern],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)['streams'][0]
    ref = reference(pattern)
    assert int(stream['nb_read_frames']) == len(ref) == count
    frames = VideoDecoder()(pattern)
    assert len(frames) == count and frames.fps == float(fractions.Fraction(stream['r_frame_rate'])) == 25.0
    assert frames.timestamps == [ms(t) for _, t in ref] == [40 * i for i in range(count)]
    order = [count - 1, 3, 0, count // 2, 3]  # backwards, a repeat: seeks and forward decoding
    assert all(np.array_equal(f, ref[i][0]) for f, i in zip(frames.take(order), order))
    assert all(np.array_equal(f, r) for f, (r, _) in zip(frames, ref))
    sampled = VideoDecoder(sample_type='time_step_sample', args={'time_step': 0.1}).sample(pattern)
    times, step = [t for _, t in ref], fractions.Fraction(1, 10)
    firsts = [next(t for t in times if t >= k * step) for k in range(int(times[-1] / step) + 1)]  # at or after
    assert [f.timestamp for f in sampled] == [ms(t) for t in firsts]


def test_a_pattern_no_file_matches_is_not_found_and_a_file_named_like_one_is_a_file(sequences, clips, tmp_path):
    with pytest.raises(FileNotFoundError, match='no image matches this image-sequence pattern'):
        VideoDecoder()(str(Path(sequences['png']).with_name('other%03d.png')))
    literal = shutil.copy(clips['short'], tmp_path / '100%done.mp4')
    assert len(VideoDecoder()(str(literal))) == len(reference(str(literal))) == 75


@pytest.mark.parametrize('suffix, codecs', [('mp3', ['-c:a', 'libmp3lame', '-c:v', 'mjpeg', '-id3v2_version', 3]),
                                            ('m4a', ['-c:a', 'aac', '-c:v', 'png'])])
def test_audio_whose_only_picture_is_its_cover_says_so(tmp_path, suffix, codecs):
    cover = tmp_path / 'cover.png'
    ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=64x64', '-frames:v', 1, cover)
    song = tmp_path / f'song.{suffix}'
    ffmpeg('-f', 'lavfi', '-i', 'sine=duration=1', '-i', cover, '-map', 0, '-map', 1, *codecs,
           '-disposition:v', 'attached_pic', song)
    probe = subprocess.run(['ffprobe', '-v', 'error', '-show_entries', 'stream=codec_type:stream_disposition='
                            'attached_pic', '-of', 'json', song], capture_output=True, text=True, check=True)
    streams = json.loads(probe.stdout)['streams']
    assert sorted((s['codec_type'], s['disposition']['attached_pic']) for s in streams) == [('audio', 0), ('video', 1)]
    for decoder in (VideoDecoder(), VideoDecoder(sample_type='uniform_temporal_subsample', args={'num_samples': 8})):
        with pytest.raises(errors.NoVideoStreamError) as raised:
            decoder(str(song))
        message = str(raised.value)
        assert 'it holds audio and a cover picture' in message and 'not a video' in message
        assert 'streams found: audio, video' not in message


# --- item 12: the decoder's README quotes what the benchmark measured ------------------------------------------------

def test_the_readme_quotes_the_fallback_benchmark():
    bench = (ROOT / 'benchmarks' / 'README_decode.md').read_text()
    header = next(line for line in bench.splitlines() if 'ours, 8 frames / sequential' in line)
    columns = [c.strip() for c in header.strip('|').split('|')]
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in bench.splitlines()
            if line.startswith('| ') and line.count('|') == header.count('|') and line != header
            and re.match(r'\d', line.split('|')[2].strip())]
    eight = [float(r[columns.index('ours, 8 frames / sequential')]) for r in rows]
    every = [float(r[columns.index('ours, every frame / sequential')]) for r in rows]
    assert len(eight) == 8
    readme = ' '.join((ROOT / 'video_decode' / 'README.md').read_text().split())
    assert f'8 frames for the operator took {min(eight):.2f}–{max(eight):.1f}×' in readme
    assert f'reading every frame {min(every):.1f}–{max(every):.1f}×' in readme


def test_a_local_name_that_looks_like_a_protocol_opens_that_file(tmp_path, monkeypatch):
    """`file:clip.mp4` (a name a download or a copy can give) is that file, as `ls` shows it, not FFmpeg's file
    protocol reading `clip.mp4`; likewise for any `scheme:` prefix without `//`."""
    make_clip(tmp_path / 'clip.mp4', 2)
    make_clip(tmp_path / 'file:clip.mp4', 3.6)
    make_clip(tmp_path / 'pipe:0.mp4', 1.2)
    monkeypatch.chdir(tmp_path)
    for name in ('file:clip.mp4', 'pipe:0.mp4', 'clip.mp4'):
        assert len(VideoDecoder()(name)) == len(reference(tmp_path / name)), name
    with pytest.raises(FileNotFoundError, match='video file not found'):
        VideoDecoder()('file:missing.mp4')
