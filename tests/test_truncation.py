"""A download cut short is never a complete, shorter video, whatever other streams are interleaved with the video.

Files are made with the ffmpeg CLI the ways people make them (MP4/MOV with AAC and the index first, AVI with MP3 or
PCM, Matroska/WebM with Vorbis/Opus, video-only ones), then cut at 10 %, 15 %, ... 95 % of their bytes. The reference
is a plain sequential PyAV decode of the whole file and of the cut (it imports nothing of ours): a cut that loses
video frames must come out with `error` set (and the frames a sequential decode gives), and the intact files,
including stream-copy trims, variable frame rates, B-frames and audio longer or shorter than the video, never.
"""

import shutil
import subprocess

import av
import numpy as np
import pytest

from timesformer_video import errors
from timesformer_video.decode import VideoDecoder

FFMPEG = shutil.which('ffmpeg') or 'ffmpeg'
VIDEO = '-f lavfi -i testsrc2=size=128x96:rate=25:duration=4'
TONE = '-f lavfi -i sine=duration={s}'
H264 = '-c:v libx264 -g 25 -bf 2 -pix_fmt yuv420p'
# name -> ffmpeg arguments (after -y); `{tone}` is a 4 s tone
KINDS = {
    'aac_faststart.mp4': f'{VIDEO} {TONE.format(s=4)} {H264} -c:a aac -movflags +faststart',
    'aac_faststart.mov': f'{VIDEO} {TONE.format(s=4)} {H264} -c:a aac -movflags +faststart',
    'mp3.avi': f'{VIDEO} {TONE.format(s=4)} -c:v mpeg4 -c:a libmp3lame',
    'pcm.avi': f'{VIDEO} {TONE.format(s=4)} -c:v mjpeg -c:a pcm_s16le',
    'vorbis.mkv': f'{VIDEO} {TONE.format(s=4)} {H264} -c:a libvorbis',
    'opus.webm': f'{VIDEO} {TONE.format(s=4)} -c:v libvpx-vp9 -deadline realtime -c:a libopus',
    'video_only.mp4': f'{VIDEO} {H264} -movflags +faststart',
    'video_only.avi': f'{VIDEO} -c:v mpeg4',
    'video_only.mkv': f'{VIDEO} {H264}',
}
# Intact files that must not read as truncated: name -> ffmpeg arguments (run after KINDS exist).
INTACT = {
    'trim_aac.mp4': '-ss 1.3 -i aac_faststart.mp4 -c copy',  # an edit list hides the GOP's leading frames
    'trim_aac.mov': '-ss 1.3 -i aac_faststart.mov -c copy',
    'trim_vorbis.mkv': '-ss 1.3 -i vorbis.mkv -c copy',
    'trim_mp3.avi': '-ss 1.3 -i mp3.avi -c copy',
    'audio_longer.mp4': f'{VIDEO} {TONE.format(s=6)} {H264} -c:a aac -movflags +faststart',
    'audio_shorter.mp4': f'{VIDEO} {TONE.format(s=2)} {H264} -c:a aac -movflags +faststart',
    'audio_longer.mkv': f'{VIDEO} {TONE.format(s=6)} {H264} -c:a libopus',
    'audio_shorter.mkv': f'{VIDEO} {TONE.format(s=2)} {H264} -c:a libopus',
    'audio_longer.avi': f'{VIDEO} {TONE.format(s=6)} -c:v mpeg4 -c:a libmp3lame',
    'audio_shorter.avi': f'{VIDEO} {TONE.format(s=2)} -c:v mjpeg -c:a pcm_s16le',
    'vfr_aac.mp4': f"{VIDEO} {TONE.format(s=4)} -vf setpts='if(lt(N\\,50)\\,2*N\\,50+N)/25/TB' -fps_mode vfr "
                   f'{H264} -c:a aac -movflags +faststart',
    'bframes_aac.mov': f'{VIDEO} {TONE.format(s=4)} -c:v libx264 -bf 3 -g 30 -pix_fmt yuv420p -c:a aac',
}
# Intact files written to a pipe, as a recorder streaming to stdout writes them: the muxer cannot seek back to fill
# in the header, and FFmpeg's AVI muxer leaves a placeholder length of 2**30 frames there. name -> (arguments, format)
PIPED = {
    'piped_mp3.avi': (f'{VIDEO} {TONE.format(s=4)} -c:v mpeg4 -c:a libmp3lame', 'avi'),
    'piped_video_only.avi': (f'{VIDEO} -c:v mpeg4', 'avi'),
}
CUTS = range(10, 100, 5)  # percent of the bytes kept


def ffmpeg(folder, name, arguments):
    subprocess.run([FFMPEG, '-hide_banner', '-loglevel', 'error', '-y', *split(arguments), name], cwd=folder,
                   check=True)


def split(arguments):
    """Shell-like split on spaces, keeping a quoted filter expression whole."""
    parts, quoted = [], None
    for word in arguments.split(' '):
        if quoted is not None:
            quoted += ' ' + word
            if word.endswith("'"):
                parts.append(quoted.replace("'", ''))
                quoted = None
        elif "'" in word and not word.endswith("'"):
            quoted = word
        else:
            parts.append(word.replace("'", ''))
    return parts


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp('truncation')
    for name, arguments in {**KINDS, **INTACT}.items():
        ffmpeg(folder, name, arguments)
    for name, (arguments, muxer) in PIPED.items():
        written = subprocess.run([FFMPEG, '-hide_banner', '-loglevel', 'error', *split(arguments), '-f', muxer,
                                  'pipe:1'], cwd=folder, check=True, capture_output=True).stdout
        (folder / name).write_bytes(written)
    return folder


def sequential(path):
    """(RGB frames, pts) of a plain sequential PyAV decode of the best video stream, up to where it stops."""
    frames = []
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(container.streams.best('video')):
                frames.append((frame.to_ndarray(format='rgb24'), frame.pts))
        except av.error.FFmpegError:
            pass  # a sequential decode stops here: the frames before are the video
    return frames


def opens(path):
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video)
    except av.error.FFmpegError:
        return False


@pytest.mark.parametrize('name', sorted(KINDS))
def test_every_cut_that_loses_frames_says_where_the_video_stops(folder, tmp_path, name):
    whole = len(sequential(folder / name))
    assert whole == 100
    data = (folder / name).read_bytes()
    silent = []
    for percent in CUTS:
        cut = tmp_path / f'{percent}_{name}'
        cut.write_bytes(data[:len(data) * percent // 100])
        if not opens(cut):
            with pytest.raises(errors.VideoDecodeError):
                VideoDecoder()(str(cut))
            continue
        expected = sequential(cut)
        if not expected:  # cut before the first whole frame
            with pytest.raises(errors.VideoDecodeError):
                VideoDecoder()(str(cut))
            continue
        frames = VideoDecoder()(str(cut))
        assert len(frames) == len(expected), f'{percent} %'
        if len(expected) < whole and frames.error is None:
            silent.append(percent)
        elif frames.error is not None:
            assert f'{len(expected)} frames are readable' in str(frames.error)
    assert silent == [], f'cuts at these percentages read as a complete video: {silent}'


@pytest.mark.parametrize('name', sorted(KINDS))
def test_a_cut_between_video_packets_gives_the_readable_frames_and_the_error(folder, tmp_path, name):
    """Cut at the first byte of an audio packet half-way (found with plain PyAV): every video packet before it is
    whole, so no decoder complains; only the header says frames are missing. Video-only files: at a video packet."""
    with av.open(str(folder / name)) as container:
        audio = [p.pos for p in container.demux() if p.size and p.pos is not None and p.pos > 0
                 and p.stream.type == ('audio' if container.streams.audio else 'video')]
    at = audio[len(audio) // 2]
    cut = tmp_path / name
    cut.write_bytes((folder / name).read_bytes()[:at])
    expected = sequential(cut)
    assert 0 < len(expected) < 100
    frames = VideoDecoder()(str(cut))
    assert len(frames) == len(expected) and frames.error is not None
    assert 'stops after frame' in str(frames.error) and 'header declares' in str(frames.error)
    got = frames.take(range(len(frames)))
    assert all(np.array_equal(g, e[0]) for g, e in zip(got, expected))
    with pytest.raises(errors.TruncatedVideoError):
        frames[len(frames)]
    with pytest.raises(errors.CorruptVideoError, match='header declares'):
        VideoDecoder(sample_type='uniform_temporal_subsample', args={'num_samples': 8})(str(cut))


@pytest.mark.parametrize('name', sorted(INTACT) + sorted(KINDS) + sorted(PIPED))
def test_an_intact_file_is_not_called_truncated(folder, name):
    expected = sequential(folder / name)
    frames = VideoDecoder()(str(folder / name))
    assert frames.error is None, frames.error
    assert len(frames) == len(expected) > 0
