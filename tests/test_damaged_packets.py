"""An intact-looking MP4/MKV whose packets are damaged in the middle: the frames a sequential decode gives, or an error
that says exactly why not.

Such files are indexed from their packets, without decoding, so the damage shows only when a read decodes through
it. The damage is built by construction, on the H.264 framing every MP4/MKV uses (each NAL unit after a 4-byte length),
at the packets' byte offsets found with plain PyAV (`packet.pos`), never at offsets that depend on what the encoder
wrote: a NAL length running past its packet (FFmpeg's H.264 decoder refuses such a packet, so a sequential decode
stops there), or the slice data of a few frames zeroed with their framing and slice headers kept (it decodes them,
damaged, and goes on). The reference is a plain sequential PyAV decode (`container.decode(video=0)`).
"""

import shutil
import subprocess

import av
import numpy as np
import pytest

from timesformer_video import errors
from timesformer_video.decode import VideoDecoder

FFMPEG = shutil.which('ffmpeg') or 'ffmpeg'
MAKE = '-f lavfi -i testsrc2=size=128x96:rate=25:duration=4 -c:v libx264 -g 25 -bf 2 -slices 1 -pix_fmt yuv420p'
DAMAGED = (40, 41, 42)  # packets (in file order) damaged: the middle of the second GOP of 100 frames


def make(folder, name):
    subprocess.run([FFMPEG, '-hide_banner', '-loglevel', 'error', '-y', *MAKE.split(), name], cwd=folder, check=True)
    return folder / name


def damage(source, target, how):
    """Copy `source` with the video packets `DAMAGED` changed by `how(payload) -> payload` (same size); return the
    pts range [first, end) of the GOP that holds them (from its keyframe to the next), as plain PyAV reads them."""
    data = bytearray(source.read_bytes())
    with av.open(str(source)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        for packet in (packets[k] for k in DAMAGED):
            payload = bytes(packet)
            at = data.index(payload, packet.pos)  # MP4: at pos; Matroska: after the block's header
            data[at:at + len(payload)] = how(payload)
    target.write_bytes(bytes(data))
    keyframes = sorted(p.pts for p in packets if p.is_keyframe)
    hit = [packets[k].pts for k in DAMAGED]
    return max(k for k in keyframes if k <= min(hit)), min((k for k in keyframes if k > max(hit)), default=None)


def nal_units(payload):
    """(start, end) of each NAL unit of an H.264 packet as MP4/MKV frame it: a 4-byte big-endian length before each."""
    units, at = [], 0
    while at + 4 <= len(payload):
        size = int.from_bytes(payload[at:at + 4], 'big')
        units.append((at + 4, at + 4 + size))
        at += 4 + size
    assert at == len(payload), 'not length-prefixed H.264'
    return units


def overrun_length(payload):
    """The first NAL unit's length made to run past the packet: FFmpeg's H.264 decoder refuses the packet."""
    return (len(payload) * 2).to_bytes(4, 'big') + payload[4:]


def zero_slice_data(payload):
    """The second half of the packet's last NAL unit (its slice data) zeroed; lengths and slice header kept."""
    start, end = nal_units(payload)[-1]
    middle = (start + end) // 2
    return payload[:middle] + bytes(end - middle) + payload[end:]


def sequential(path):
    """(RGB frame, pts in ms) of a plain sequential decode, up to where it stops, and whether it stopped."""
    frames = []
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(video=0):
                frames.append((frame.to_ndarray(format='rgb24'), round(frame.pts * frame.time_base * 1000)))
        except av.error.FFmpegError:
            return frames, True
    return frames, False


@pytest.fixture(scope='module', params=['mp4', 'mkv'])
def source(request, tmp_path_factory):
    return make(tmp_path_factory.mktemp(request.param), f'intact.{request.param}')


def test_a_packet_the_decoder_refuses_ends_the_video_there_and_reads_past_it_say_why(source, tmp_path):
    path = tmp_path / f'refused{source.suffix}'
    damage(source, path, overrun_length)
    expected, stopped = sequential(path)
    assert stopped and 0 < len(expected) < 100
    n = len(expected)
    frames = VideoDecoder()(str(path))
    assert len(frames) == 100  # counted from the packets: the damage is not known yet
    got = frames.take(range(n))  # decoding up to the frame before the damage
    assert all(np.array_equal(g, e) for g, (e, _) in zip(got, expected))
    for wanted in (n, 99):
        why = rf'gives only {n} frames \(decoding stopped after frame {n - 1}, at an error\).*damaged inside'
        with pytest.raises(errors.CorruptVideoError, match=rf'cannot decode frame {wanted} \(.*{why}') as info:
            frames[wanted]
        assert info.value.frame_index == wanted
    seen = []
    with pytest.raises(errors.CorruptVideoError, match='a sequential decode gives only'):
        for frame in VideoDecoder()(str(path)).iter_frames():  # every frame before the damage, then the error
            seen.append(frame)
    assert len(seen) == n and [f.timestamp for f in seen] == [ms for _, ms in expected]


def test_damaged_slices_that_a_sequential_decode_goes_on_from_give_its_frames(source, tmp_path):
    path = tmp_path / f'damaged_slices{source.suffix}'
    first, end = damage(source, path, zero_slice_data)
    expected, stopped = sequential(path)
    assert not stopped and len(expected) == 100
    frames = VideoDecoder()(str(path))
    assert len(frames) == 100 and frames.error is None
    assert frames.timestamps == [ms for _, ms in expected]
    got = frames.take(range(100))  # one forward pass from the start, as the sequential decode ran
    assert all(np.array_equal(g, e) for g, (e, _) in zip(got, expected))
    # After a seek: the frames of the GOPs without damage. (Those of the damaged GOP read after a seek can differ:
    # video_decode/README.md, Limits.)
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    damaged = set(range(sorted(pts).index(first), sorted(pts).index(end) if end is not None else 100))
    clean = [i for i in range(100) if i not in damaged]
    assert len(clean) >= 50
    for i in clean[::7] + [99]:
        assert np.array_equal(VideoDecoder()(str(path))[i], expected[i][0]), f'frame {i}'
