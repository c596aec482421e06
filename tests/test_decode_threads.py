"""A `take` spread over several threads (runs of whole GOPs, each in its own container) gives the frames a plain
sequential PyAV decode gives, for inputs indexed from packets and by decoding, and really decodes on several."""

import subprocess
import threading

import av
import numpy as np
import pytest

from timesformer_video import decode
from timesformer_video.decode import VideoDecoder


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """6 s of 320x180 at 10 fps, a keyframe every 12 frames, 2 B-frames: as MP4 (indexed from packets) and
    MPEG-TS (indexed by decoding)."""
    root = tmp_path_factory.mktemp('threads')
    made = {}
    for name in ('clip.mp4', 'clip.ts'):
        made[name] = root / name
        subprocess.run(['ffmpeg', '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i',
                        'testsrc2=size=320x180:rate=10:duration=6', '-c:v', 'libx264', '-g', '12', '-bf', '2',
                        '-sc_threshold', '0', '-pix_fmt', 'yuv420p', str(made[name])], check=True)
    return made


def pyav_frames(path):
    """Every frame, decoded one after another by PyAV (the reference), as RGB arrays."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]


@pytest.mark.parametrize('name', ['clip.mp4', 'clip.ts'])
@pytest.mark.parametrize('threads', [1, 2, 3, 8])
def test_a_take_on_several_threads_gives_the_frames_of_a_sequential_decode(videos, name, threads):
    want = pyav_frames(videos[name])
    frames = VideoDecoder(threads=threads)(str(videos[name]))
    assert len(frames) == len(want) == 60
    for picks in ([0, 8, 17, 25, 34, 42, 51, 59], [59, 3, 30, 31, 45, 3], list(range(60))):
        got = frames.take(picks)
        for i, frame in zip(picks, got):
            np.testing.assert_array_equal(frame, want[i])


def test_the_runs_are_decoded_on_as_many_threads(videos, monkeypatch):
    seen = set()
    inner = decode._decode

    def recording(index, positions):
        seen.add(threading.get_ident())
        yield from inner(index, positions)

    monkeypatch.setattr(decode, '_decode', recording)
    VideoDecoder(threads=3)(str(videos['clip.mp4'])).take([0, 13, 26, 39, 52])  # 5 GOPs, each its own seek group
    assert len(seen) == 3
    seen.clear()
    VideoDecoder(threads=1)(str(videos['clip.mp4'])).take([0, 13, 26, 39, 52])
    assert len(seen) == 1


@pytest.mark.parametrize('threads', [0, -1, 1.5, True, '2'])
def test_threads_out_of_range_are_refused_when_the_decoder_is_made(threads):
    with pytest.raises(ValueError, match='threads must be None'):
        VideoDecoder(threads=threads)
