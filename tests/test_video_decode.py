"""Specification of the `video-decode/ffmpeg` operator (video_decode/), checked against plain PyAV decoding."""

import concurrent.futures
import functools
import http.server
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

import timesformer_video.synthetic as mv
from timesformer_video import decode, errors
from timesformer_video.decode import VideoDecoder
from timesformer_video.frames import Frames

REPO = Path(__file__).resolve().parents[1]

SMALL = (160, 120)
# name -> (file suffix, make_video arguments)
VIDEOS = {
    'h264': ('.mp4', dict(seconds=3, size=SMALL)),  # B-frames, GOP 12
    'h264_gop250': ('.mp4', dict(seconds=5, size=SMALL, gop=250)),
    'mpeg4': ('.mp4', dict(seconds=3, size=SMALL, codec='mpeg4')),  # B-frames, open GOP
    'vp9': ('.webm', dict(seconds=3, size=SMALL, codec='vp9')),
    'mpegts': ('.ts', dict(seconds=3, size=SMALL)),  # seeks by dts: lands past the keyframe
    'mpeg_ps': ('.mpg', dict(seconds=3, size=SMALL, codec='mpeg4')),  # seeks to non-key packets
    'odd_size': ('.mp4', dict(seconds=2, size=(321, 241), pix_fmt='yuv444p')),
    'non_square': ('.mp4', dict(seconds=2, size=(322, 242), sar=(4, 3))),
    'vfr': ('.mp4', dict(n_frames=60, vfr=True, size=SMALL)),
    'rotate_-90': ('.mp4', dict(seconds=1, size=SMALL, rotate=-90)),
    'rotate_90': ('.mp4', dict(seconds=1, size=SMALL, rotate=90)),
    'rotate_180': ('.mp4', dict(seconds=1, size=SMALL, rotate=180)),
    'with_audio': ('.mp4', dict(seconds=2, size=SMALL, audio=True)),
    'faststart': ('.mp4', dict(seconds=4, size=SMALL, faststart=True)),
    'long_gop_mkv': ('.mkv', dict(seconds=4, size=SMALL, gop=250)),
    'zero_frames': ('.mkv', dict(n_frames=0, size=SMALL, audio=True)),
}
DECODE_CASES = ['h264', 'h264_gop250', 'mpeg4', 'vp9', 'mpegts', 'mpeg_ps', 'odd_size', 'non_square', 'vfr',
                'rotate_-90', 'with_audio']


@pytest.fixture(scope='session')
def video(tmp_path_factory):
    """video(name) -> path of a synthetic test video, written once per session."""
    folder = tmp_path_factory.mktemp('videos')

    @functools.lru_cache(maxsize=None)
    def make(name):
        suffix, kwargs = VIDEOS[name]
        return str(mv.make_video(folder / f'{name}{suffix}', **kwargs))
    return make


@pytest.fixture(scope='session')
def broken(tmp_path_factory, video):
    """Damaged inputs: broken(name) -> path."""
    folder = tmp_path_factory.mktemp('broken')

    def cut(source, fraction, name):
        data = Path(source).read_bytes()
        (folder / name).write_bytes(data[:int(len(data) * fraction)])
        return str(folder / name)

    def garble(source, name):
        data = bytearray(Path(source).read_bytes())
        middle = len(data) // 2
        data[middle:middle + 200] = np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8).tobytes()
        (folder / name).write_bytes(bytes(data))
        return str(folder / name)

    makers = {
        'truncated_mp4': lambda: cut(video('faststart'), 0.5, 'truncated.mp4'),
        'truncated_plain_mp4': lambda: cut(video('h264'), 0.5, 'truncated_plain.mp4'),
        'truncated_mkv': lambda: cut(video('long_gop_mkv'), 0.5, 'truncated.mkv'),
        'garbled_mp4': lambda: garble(video('h264_gop250'), 'garbled.mp4'),
        'text_mp4': lambda: (folder / 'notes.mp4').write_text('not a video\n') and str(folder / 'notes.mp4'),
        'audio_only': lambda: str(mv.make_audio(folder / 'tone.m4a', seconds=1)),
    }
    return functools.lru_cache(maxsize=None)(lambda name: makers[name]())


@functools.lru_cache(maxsize=None)
def reference(path):
    """Every frame from a plain sequential PyAV decode: (rgb turned upright, timestamp ms, key_frame)."""
    frames = []
    with av.open(path) as container:
        tb = container.streams.video[0].time_base
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format='rgb24')
            frames.append((np.rot90(rgb, round(frame.rotation / 90)), frame.pts, frame.key_frame))
    first_pts = frames[0][1]
    return [(rgb, round((pts - first_pts) * tb * 1000), key) for rgb, pts, key in frames]


def assert_same(frames, path, indices):
    """`frames`: the decoder's `Frame` records (pixels, timestamp, key flag checked) or its plain RGB arrays."""
    ref = reference(path)
    assert len(frames) == len(indices)
    for frame, i in zip(frames, indices):
        data = frame.data if isinstance(frame, decode.Frame) else frame
        assert type(data) is np.ndarray and data.dtype == np.uint8 and data.shape[2] == 3
        assert np.array_equal(data, ref[i][0]), f'frame {i} differs'
        if isinstance(frame, decode.Frame):
            assert frame.timestamp == ref[i][1] and frame.key_frame == ref[i][2]


# --- loading -------------------------------------------------------------------------------------------------------

def test_towhee_pipeline_loads_the_operator_from_the_hub_cache(tmp_path, video):
    """Through Towhee itself: TOWHEE_HOME holds the operator, no network. A subprocess keeps TOWHEE_HOME clean.
    The factory gives a Towhee `PyOperator` that is the package's decoder."""
    target = tmp_path / 'operators' / 'video-decode' / 'ffmpeg' / 'versions' / 'main'
    shutil.copytree(REPO / 'video_decode', target, ignore=shutil.ignore_patterns('__pycache__'))
    code = textwrap.dedent(f'''
        from towhee import pipe, ops
        p = (pipe.input('path')
             .map('path', 'frames', ops.video_decode.ffmpeg(sample_type='uniform_temporal_subsample',
                                                            args={{'num_samples': 8}}))
             .output('frames'))
        frames = p({video('h264')!r}).get()[0]
        from towhee.operator import PyOperator
        from timesformer_video.decode import VideoDecoder
        op = ops.video_decode.ffmpeg().get_op()
        assert isinstance(op, PyOperator) and isinstance(op, VideoDecoder), type(op).__mro__
        print([f.timestamp for f in frames], frames[0].shape, frames[0].mode)
    ''')
    env = dict(os.environ, TOWHEE_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [reference(video('h264'))[i][1] for i in np.linspace(0, 74, 8).astype(int)]
    assert result.stdout.strip().splitlines()[-1] == f"{expected} (120, 160, 3) RGB"


# --- decoding: lazy frames equal a sequential decode ------------------------------------------------------------

@pytest.mark.parametrize('name', DECODE_CASES)
def test_lazy_frames_are_bit_identical_to_sequential_decode(video, name):
    path = video(name)
    frames = VideoDecoder()(path)
    n = len(reference(path))
    assert len(frames) == n
    assert_same([frames.get_frame_at(i) for i in range(n)], path, range(n))  # every frame on its own: a seek each
    assert_same([frames[i] for i in range(0, n, 7)], path, range(0, n, 7))
    rng = random.Random(0)
    for _ in range(5):
        indices = [rng.randrange(-n, n) for _ in range(rng.randrange(1, 12))]
        assert_same(frames.get_frames_at(indices), path, [i % n for i in indices])
        assert_same(frames.take(indices), path, [i % n for i in indices])
    assert_same(list(frames.iter_frames()), path, range(n))
    assert_same(list(frames), path, range(n))


@pytest.mark.parametrize('name', ['h264', 'h264_gop250', 'mpeg4', 'vp9', 'vfr'])
def test_frames_show_the_index_drawn_into_them_and_the_written_timestamps(video, name):
    """Independent of PyAV's decode: the writer drew each frame's index into its pixels."""
    frames = VideoDecoder()(video(name))
    _, kwargs = VIDEOS[name]
    n = kwargs.get('n_frames') or round(kwargs['seconds'] * 25)
    assert [mv.read_index(f) for f in frames] == list(range(n))
    assert frames.timestamps == [f.timestamp for f in frames.iter_frames()] == mv.frame_times_ms(
        n, vfr=kwargs.get('vfr', False))


def test_vfr_timestamps_come_from_pts_not_from_index_over_fps(video):
    frames = VideoDecoder()(video('vfr'))
    assert frames.timestamps[:6] == [0, 40, 80, 160, 180, 240]
    assert frames.timestamps[-1] == sum(mv.VFR_PATTERN_MS[i % 8] for i in range(59))
    assert 2.96 < frames.duration <= 3.0  # the last frame lasts as long as the muxer says (MP4 guesses 1/25 s)
    assert frames.fps == pytest.approx(60 / frames.duration, rel=0.05)


def test_views_slice_lazily_and_index_like_lists(video):
    path = video('h264')
    frames = VideoDecoder()(path)
    view = frames[10:60:7]
    assert isinstance(view, decode.LazyFrames) and len(view) == len(range(10, 60, 7))
    assert isinstance(frames, Frames) and isinstance(view, Frames)  # the declared lazy-frames protocol
    assert view.timestamps == [40 * i for i in range(10, 60, 7)]
    assert_same(list(view), path, range(10, 60, 7))
    assert_same([view[-1], view[1]], path, [59, 17])
    assert_same(list(frames[::-9]), path, range(74, -1, -9))
    assert_same(list(view[::-2][1:]), path, list(range(10, 60, 7))[::-2][1:])
    assert len(frames[80:]) == 0 and list(frames[80:]) == []
    assert frames.fps == 25.0 and frames.duration == pytest.approx(3.0) and view.duration == pytest.approx(2.0)
    assert 'h264.mp4' in repr(frames) and '75 frames' in repr(frames)
    with pytest.raises(IndexError, match='out of range'):
        frames[75]
    with pytest.raises(TypeError, match='integers'):
        frames[1.5]


def test_iteration_streams_without_holding_all_frames(video):
    frames = VideoDecoder()(video('h264_gop250'))
    frame_bytes = 160 * 120 * 3
    tracemalloc.start()
    count = sum(1 for _ in frames)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 125 and peak < 10 * frame_bytes, f'peak {peak} bytes for {count} frames of {frame_bytes}'


def test_concurrent_reads_share_one_operator_and_one_sequence(video):
    path = video('h264_gop250')
    op = VideoDecoder()
    frames = op(path)
    rng = random.Random(1)
    jobs = [sorted(rng.sample(range(125), 6)) for _ in range(12)]

    def work(job):
        mine = op(path) if job[0] % 2 else frames
        return mine.take(job)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for job, got in zip(jobs, pool.map(work, jobs)):
            assert_same(got, path, job)


# --- time windows and sampling ---------------------------------------------------------------------------------

@pytest.mark.parametrize('start, end', [(None, None), (1, None), (None, 1), (0.52, 2.0), (1.0, 1.04), (0, 99)])
def test_time_window_is_half_open_on_presentation_time(video, start, end):
    path = video('h264')
    frames = VideoDecoder(start_time=start, end_time=end)(path)
    lo, hi = (start or 0) * 1000, (end if end is not None else 1e9) * 1000
    expected = [i for i, (_, ms, _) in enumerate(reference(path)) if lo <= ms < hi]
    assert_same(list(frames.iter_frames()), path, expected)


@pytest.mark.parametrize('name, start, end, n', [('h264', None, None, 8), ('h264_gop250', 1.3, 4.1, 8),
                                                 ('vfr', None, None, 16), ('mpeg4', 0, 0.2, 8), ('h264', 2.9, None, 3)])
def test_uniform_temporal_subsample_matches_pytorchvideo(video, name, start, end, n):
    torch = pytest.importorskip('torch')
    path = video(name)
    lo, hi = (start or 0) * 1000, (end if end is not None else 1e9) * 1000
    window = [i for i, (_, ms, _) in enumerate(reference(path)) if lo <= ms < hi]
    picks = torch.clamp(torch.linspace(0, len(window) - 1, n), 0, len(window) - 1).long().tolist()
    op = VideoDecoder(start_time=start, end_time=end, sample_type='uniform_temporal_subsample', args={'num_samples': n})
    frames = op(path)
    assert isinstance(frames, list)
    assert_same(frames, path, [window[p] for p in picks])
    assert_same(op.sample(path), path, [window[p] for p in picks])


@pytest.mark.parametrize('name, start, step', [('h264', None, 0.5), ('h264', 0.3, 0.1), ('h264', None, 0.01),
                                               ('vfr', None, 0.1), ('vfr', 0.5, 0.25), ('h264', 1, 5)])
def test_time_step_sample_takes_first_frame_at_or_after_each_step(video, name, start, step):
    path = video(name)
    times = [ms for _, ms, _ in reference(path)]
    expected, k = [], 0
    while (start or 0) + k * step < times[-1] / 1000 + 1e-9:
        target_ms = round(((start or 0) + k * step) * 1000, 6)
        first = next(i for i, ms in enumerate(times) if ms >= target_ms)
        if first not in expected:
            expected.append(first)
        k += 1
    op = VideoDecoder(start_time=start, sample_type='time_step_sample', args={'time_step': step})
    assert_same(op(path), path, expected)
    assert_same(op.sample(path), path, expected)


# --- rotation, odd sizes, non-square pixels --------------------------------------------------------------------

@pytest.mark.parametrize('name, red_corner', [('rotate_-90', 'bottom_right'), ('rotate_90', 'top_left'),
                                              ('rotate_180', 'bottom_left')])
def test_display_matrix_rotation_turns_frames_upright(video, name, red_corner):
    """make_video paints the coded top-right corner red; a player shows it where `red_corner` says."""
    frames = VideoDecoder()(video(name))
    frame = frames[3]
    assert frame.shape == ((160, 120, 3) if '90' in name and '180' not in name else (120, 160, 3))
    h, w = frame.shape[:2]
    corners = {'top_left': frame[2, 2], 'top_right': frame[2, w - 3], 'bottom_left': frame[h - 3, 2],
               'bottom_right': frame[h - 3, w - 3]}
    red = [c for c, px in corners.items() if px[0] > 200 and px[1] < 60 and px[2] < 60]
    assert red == [red_corner]


@pytest.mark.parametrize('name, shape', [('odd_size', (241, 321, 3)), ('non_square', (242, 322, 3))])
def test_odd_sizes_and_non_square_pixels_keep_the_coded_size(video, name, shape):
    frames = VideoDecoder(sample_type='uniform_temporal_subsample', args={'num_samples': 4})(video(name))
    assert [f.shape for f in frames] == [shape] * 4
    assert [mv.read_index(f) for f in frames] == [0, 16, 32, 49]


# --- damaged input ---------------------------------------------------------------------------------------------

def test_truncated_mp4_decodes_its_valid_part_and_says_where_it_stops(video, broken):
    path = broken('truncated_mp4')
    frames = VideoDecoder()(path)
    n = len(frames)
    assert 20 < n < 100 and 'stops after frame' in str(frames.error)
    assert_same(frames.get_frames_at([0, n - 1, n // 2]), video('faststart'), [0, n - 1, n // 2])
    with pytest.raises(errors.TruncatedVideoError, match=f'only {n} are readable') as info:
        frames[n]
    assert isinstance(info.value, IndexError) and info.value.frame_index == n - 1
    seen = []
    with pytest.raises(errors.CorruptVideoError, match='stops after frame'):
        for frame in frames:
            seen.append(frame)
    assert len(seen) == n
    with pytest.raises(errors.CorruptVideoError, match=r'stops after frame \d+ \(\d+\.\d+ s\)'):
        VideoDecoder(sample_type='uniform_temporal_subsample', args={'num_samples': 8})(path)
    inside = VideoDecoder(end_time=0.5, sample_type='uniform_temporal_subsample', args={'num_samples': 4})
    assert_same(inside(path), video('faststart'), [0, 4, 8, 12])
    assert_same(inside.sample(path), video('faststart'), [0, 4, 8, 12])
    assert frames[:10].error is None and len(list(frames[:10])) == 10


def test_truncated_mkv_is_detected_from_its_header_duration(broken):
    frames = VideoDecoder()(broken('truncated_mkv'))
    assert 10 < len(frames) < 100
    assert [mv.read_index(f) for f in frames.take(range(len(frames)))] == list(range(len(frames)))
    with pytest.raises(errors.TruncatedVideoError, match='header declares 4.000 s'):
        frames[len(frames)]


def test_corrupt_data_mid_stream_gives_the_frames_before_it_or_says_why(broken):
    """200 random bytes over the middle of an MP4. Where they land depends on the bytes the encoder wrote, and FFmpeg's
    H.264 decoder does not react to the same bytes the same way in every run (it refused them in most runs, concealed
    them in some), so no outcome is assumed: the frames before the damage are the right ones, and a read that meets
    the damage either gives frames or raises a `CorruptVideoError` saying why (damage by construction:
    test_damaged_packets.py)."""
    frames = VideoDecoder()(broken('garbled_mp4'))
    assert len(frames) == 125  # the container is intact: the index counts every packet
    assert [mv.read_index(f) for f in frames.take([0, 10, 20])] == [0, 10, 20]
    try:
        got = frames.take([5, 124])
    except errors.CorruptVideoError as error:
        assert 'as a sequential decode gives it' in str(error) and 'damaged inside its packets' in str(error)
        assert error.frame_index == 124 and error.time == pytest.approx(4.96)
    else:
        assert mv.read_index(got[0]) == 5


@pytest.mark.parametrize('case, error, message', [
    ('missing', FileNotFoundError, 'not found'),
    ('text_mp4', 'NotAVideoError', 'FFmpeg cannot open it'),
    ('truncated_plain_mp4', 'NotAVideoError', 'moov atom'),
    ('audio_only', 'NoVideoStreamError', 'streams found: audio'),
    ('zero_frames', 'EmptyVideoError', 'no readable frames'),
])
def test_bad_inputs_raise_one_clear_error_quickly(video, broken, tmp_path, case, error, message):
    error = getattr(errors, error) if isinstance(error, str) else error
    path = {'missing': str(tmp_path / 'nope.mp4'), 'zero_frames': video('zero_frames')}.get(case) or broken(case)
    started = time.monotonic()
    with pytest.raises(error, match=message):
        VideoDecoder(sample_type='uniform_temporal_subsample', args={'num_samples': 8})(path)
    with pytest.raises(error, match=message):
        VideoDecoder()(path)
    assert time.monotonic() - started < 5
    assert issubclass(error, ValueError) or error is FileNotFoundError


@pytest.mark.parametrize('kwargs, message', [
    (dict(start_time=-1), 'start_time must not be negative'),
    (dict(end_time=-0.5), 'end_time must not be negative'),
    (dict(start_time=2, end_time=2), 'must be less than end_time'),
    (dict(start_time='1'), 'finite number of seconds'),
    (dict(end_time=float('nan')), 'finite number of seconds'),
    (dict(sample_type='random'), "unknown sample_type 'random'"),
    (dict(sample_type='uniform_temporal_subsample'), "takes args={'num_samples': ...} only"),
    (dict(sample_type='uniform_temporal_subsample', args={'num_samples': 0}), 'num_samples must be positive'),
    (dict(sample_type='uniform_temporal_subsample', args={'num_samples': 2.5}), 'positive integer'),
    (dict(sample_type='uniform_temporal_subsample', args={'num_samples': 8, 'x': 1}), 'only'),
    (dict(sample_type='time_step_sample', args={'time_step': -1}), 'time_step must be positive'),
    (dict(sample_type='time_step_sample', args={'step': 1}), "takes args={'time_step': ...} only"),
    (dict(sample_type='time_step_sample', args={'time_step': float('inf')}), 'time_step must be positive'),
    (dict(args={'num_samples': 8}), 'given without a sample_type'),
])
def test_argument_errors_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoDecoder(**kwargs)


# --- URLs ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def http_root(video, broken):
    """Local servers: one over the test videos, one that never answers, one that stalls halfway through a body."""
    folder = Path(video('h264')).parent
    shutil.copy(broken('text_mp4'), folder / 'notes.mp4')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.create_server(('127.0.0.1', 0))
    stalling, done = socket.create_server(('127.0.0.1', 0)), threading.Event()
    body = Path(video('faststart')).read_bytes()

    def stall():
        with stalling.accept()[0] as conn:
            conn.recv(65536)
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n' % len(body))
            conn.sendall(body[:len(body) * 3 // 4])  # enough to open; the demux pass stalls
            done.wait(30)
    threading.Thread(target=stall, daemon=True).start()
    yield [f'http://127.0.0.1:{s.getsockname()[1]}' for s in (server.socket, silent, stalling)]
    done.set()
    server.shutdown()
    silent.close()
    stalling.close()


def test_http_urls_decode_like_files(video, http_root):
    url = http_root[0] + '/' + Path(video('h264_gop250')).name
    frames = VideoDecoder(sample_type='uniform_temporal_subsample', args={'num_samples': 8}).sample(url)
    assert_same(frames, video('h264_gop250'), np.linspace(0, 124, 8).astype(int).tolist())
    lazy = VideoDecoder(start_time=2)(url)
    assert_same(lazy.get_frames_at([3, 0]), video('h264_gop250'), [53, 50])
    with pytest.raises(FileNotFoundError, match='404'):
        VideoDecoder()(http_root[0] + '/missing.mp4')
    with pytest.raises(errors.NotAVideoError):
        VideoDecoder()(http_root[0] + '/notes.mp4')


@pytest.mark.parametrize('server, message', [(1, 'no data within 1 s$'), (2, 'no data within 1 s while reading')])
def test_a_silent_or_stalling_server_times_out_instead_of_hanging(http_root, server, message):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=message):
        VideoDecoder(timeout=1)(http_root[server] + '/clip.mp4')
    assert time.monotonic() - started < 5
