"""The decoder's own API, without Towhee: frames as arrays with their times, the index method forced, the keyframes
seek; and the Towhee glue (`video_decode`) that wraps those frames as `VideoFrame`s.

Inputs are written with the ffmpeg CLI as users make them; the reference is a plain sequential PyAV decode
(`container.decode(stream)`, `to_ndarray(format='rgb24')`, the decoder's `key_frame` flag), importing nothing of ours.
"""

import random
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest

from timesformer_video import decode, errors
from timesformer_video.decode import VideoDecoder

FFMPEG = shutil.which('ffmpeg') or 'ffmpeg'
SRC = '-f lavfi -i testsrc2=size=176x144:rate=25:duration=3'
# name -> ffmpeg arguments after the source: the kinds the keyframes seek is meant for, GOPs of 12 to 30 frames.
KINDS = {
    'h264_bframes.mp4': '-c:v libx264 -g 30 -bf 3 -pix_fmt yuv420p',
    'h264_short_gop.mp4': '-c:v libx264 -g 12 -bf 0 -pix_fmt yuv420p',
    'hevc.mkv': '-c:v libx265 -x265-params log-level=error:keyint=25 -pix_fmt yuv420p',
    'vp9.webm': '-c:v libvpx-vp9 -g 20 -deadline realtime -cpu-used 8 -pix_fmt yuv420p',
    'h264.ts': '-c:v libx264 -g 25 -bf 2 -pix_fmt yuv420p',
}


@pytest.fixture(scope='module')
def kinds(tmp_path_factory):
    folder = tmp_path_factory.mktemp('kinds')
    for name, args in KINDS.items():
        subprocess.run([FFMPEG, '-v', 'error', *SRC.split(), *args.split(), str(folder / name)], check=True)
    return {name: str(folder / name) for name in KINDS}


def reference(path):
    """[(rgb, pts, ms since the first frame, key_frame)] of a plain sequential decode of the best video stream."""
    with av.open(path) as container:
        stream = container.streams.best('video')
        frames = [(f.to_ndarray(format='rgb24'), f.pts, f.key_frame) for f in container.decode(stream)]
        tb = stream.time_base
    return [(rgb, pts, round((pts - frames[0][1]) * tb * 1000), bool(key)) for rgb, pts, key in frames]


def test_importing_the_decoder_imports_neither_towhee_nor_torch():
    code = ('import sys, timesformer_video.decode\n'
            'print(sorted(m for m in ("towhee", "torch") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == '[]'


@pytest.mark.parametrize('name', sorted(KINDS))
def test_frames_are_plain_rgb_arrays_with_their_times_beside_them(kinds, name):
    path = kinds[name]
    ref = reference(path)
    frames = VideoDecoder()(path)
    assert frames.timestamps == [ms for _, _, ms, _ in ref] and frames.pts == [pts for _, pts, _, _ in ref]
    assert frames.times[5] * 1000 == pytest.approx(ref[5][2], abs=0.5)
    picks = [len(ref) - 1, 7, 0, 7]
    for frame, i in zip(frames.get_frames_at(picks), picks):
        assert type(frame.data) is np.ndarray and np.array_equal(frame.data, ref[i][0])
        assert (frame.time, frame.timestamp, frame.pts, frame.key_frame) == (
            frames.times[i], ref[i][2], ref[i][1], ref[i][3])
    assert all(type(f) is np.ndarray for f in frames.take(picks) + [frames[3]])


@pytest.mark.parametrize('name', sorted(KINDS))
def test_the_keyframes_seek_gives_the_keyframe_at_or_before_each_frame_decoding_only_keyframes(kinds, name,
                                                                                            monkeypatch):
    path = kinds[name]
    ref = reference(path)
    keys = [i for i, (_, _, _, key) in enumerate(ref) if key]
    assert keys[0] == 0 and len(keys) > 2
    decoded = []

    def counting(codec, packet):
        decoded.append(None if packet is None else packet.is_keyframe)
        return codec.decode(packet)
    monkeypatch.setattr(decode, '_decode_packet', counting)
    frames = VideoDecoder(seek='keyframes')(path)
    wanted = random.Random(name).sample(range(len(ref)), 10) + [len(ref) - 1, 0]
    got = frames.get_frames_at(wanted)
    expected = [max(k for k in keys if k <= i) for i in wanted]
    for frame, k in zip(got, expected):
        assert np.array_equal(frame.data, ref[k][0]), f'keyframe {k}'
        assert (frame.pts, frame.timestamp, frame.key_frame) == (ref[k][1], ref[k][2], True)
    assert all(np.array_equal(a, f.data) for a, f in zip(frames.take(wanted), got))
    packets = [flag for flag in decoded if flag is not None]
    assert all(packets) and len(packets) == 2 * len(set(expected)), decoded  # get_frames_at, then take
    assert np.array_equal(frames[wanted[0]], ref[wanted[0]][0])  # indexing stays exact


def test_sampled_calls_take_the_keyframes_when_asked(kinds):
    path = kinds['h264_bframes.mp4']
    ref = reference(path)
    keys = [i for i, (_, _, _, key) in enumerate(ref) if key]
    args = dict(sample_type='uniform_temporal_subsample', args={'num_samples': 8})
    exact = VideoDecoder(**args).sample(path)
    approximate = VideoDecoder(**args, seek='keyframes').sample(path)
    picks = [int(i) for i in np.floor(np.linspace(0, len(ref) - 1, 8))]
    assert [f.pts for f in exact] == [ref[i][1] for i in picks]
    assert [f.pts for f in approximate] == [ref[max(k for k in keys if k <= i)][1] for i in picks]


def test_the_keyframes_seek_reads_exactly_where_no_keyframe_can_be_sought(kinds, tmp_path):
    """Packets without timestamps (a remux that drops them): no frame can be sought by its pts, so there is no
    keyframe to give; the frames are read as asked, not the keyframes the decoder flags before them."""
    path = str(tmp_path / 'untimed.mkv')
    subprocess.run([FFMPEG, '-v', 'error', '-i', kinds['h264_short_gop.mp4'], '-c', 'copy', '-output_ts_offset', '-1',
                    '-avoid_negative_ts', 'disabled', path], check=True)
    with av.open(path) as container:
        ref = [(f.to_ndarray(format='rgb24'), f.key_frame) for f in container.decode(video=0)]
    assert ref[12][1] and not ref[23][1] and not ref[7][1]  # keyframes every 12 frames, none at 23 or 7
    got = VideoDecoder(seek='keyframes')(path).take([23, 7])
    assert np.array_equal(got[0], ref[23][0]) and np.array_equal(got[1], ref[7][0])


@pytest.mark.parametrize('name, method', [('h264_bframes.mp4', 'packets'), ('h264.ts', 'decoded')])
def test_index_method_says_how_the_index_was_built_and_each_can_be_forced(kinds, name, method):
    path = kinds[name]
    ref = reference(path)
    assert VideoDecoder()(path).index_method == method
    frames = VideoDecoder(index='decoded')(path)
    assert frames.index_method == 'decoded' and frames.timestamps == [ms for _, _, ms, _ in ref]
    assert all(np.array_equal(f, r[0]) for f, r in zip(frames, ref))
    if method == 'packets':
        assert VideoDecoder(index='packets')(path).index_method == 'packets'
    else:
        with pytest.raises(errors.PacketIndexError, match=r'the container \(mpegts\) is not MP4/MOV/MKV/WebM'):
            VideoDecoder(index='packets')(path)


@pytest.mark.parametrize('kwargs, message', [(dict(index='fast'), 'index must be one of'),
                                             (dict(seek='approximate'), 'seek must be one of')])
def test_unknown_index_or_seek_is_an_argument_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoDecoder(**kwargs)


def test_the_towhee_operator_gives_video_frames_with_the_decoders_times_and_key_flags(kinds):
    """The glue's contract, as before the decoder stopped knowing Towhee: `VideoFrame`s, RGB, `timestamp` in ms,
    the decoder's `key_frame`; lazily (and in views) without a sample_type, as a list with one."""
    from towhee.types import VideoFrame

    from video_decode import ffmpeg

    path = kinds['h264_bframes.mp4']
    ref = reference(path)

    def same(frame, i):
        return (isinstance(frame, VideoFrame) and frame.mode == 'RGB' and np.array_equal(frame, ref[i][0])
                and (frame.timestamp, frame.key_frame) == (ref[i][2], ref[i][3]))
    lazy = ffmpeg()(path)
    assert len(lazy) == len(ref) and lazy.timestamps == [ms for _, _, ms, _ in ref]
    assert all(same(f, i) for i, f in enumerate(lazy))
    assert all(same(f, i) for f, i in zip(lazy.take([40, 3, 40]), [40, 3, 40]))
    view = lazy[10::15]
    assert all(same(f, i) for f, i in zip(view, range(10, len(ref), 15))) and same(view[-1], range(10, 75, 15)[-1])
    assert 'LazyFrames(' in repr(view) and '<img' in lazy._repr_html_()
    sampled = ffmpeg(sample_type='uniform_temporal_subsample', args={'num_samples': 4})(path)
    assert isinstance(sampled, list) and all(same(f, i) for f, i in zip(sampled, [0, 24, 49, 74]))
    assert ffmpeg(start_time=9)(path).take([]) == [] and ffmpeg(start_time=9, sample_type='time_step_sample',
                                                                 args={'time_step': 1})(path) == []
