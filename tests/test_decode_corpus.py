"""Videos made the ways people make them, decoded like a plain sequential decode: same count, order, RGB, times.

Each input is written here with the ffmpeg CLI, as users make them: stream-copy trims (with an MP4 edit list, with
`-copyinkf`), H.264 with B-frames in AVI, an MPEG-TS capture that starts mid-GOP, packets without timestamps, palettized
AVI, a cover picture before the real video, DV with a wrong frame rate in its header, mirrored display matrices, and
more containers and codecs. The reference is a plain sequential PyAV decode of the stream FFmpeg's best-stream rule
picks (`container.decode(stream)`, `to_ndarray(format='rgb24')`); it imports nothing of ours.
"""

import functools
import http.server
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, install_operators
from test_jobs import TINY_CFG

from timesformer_video import decode, errors
from timesformer_video.decode import VideoDecoder
from timesformer_video.sampling import clip_indices

FFMPEG = shutil.which('ffmpeg') or 'ffmpeg'  # the CLI: scripts/setup.sh installs it
SRC = '-f lavfi -i testsrc2=size=176x144:rate=25:duration={s}'
# name -> (frames a sequential decode gives, ffmpeg commands run in the corpus folder; `{src}` is a 6 s source)
CORPUS = {
    'trim_editlist.mp4': (117, ['-ss 1.3 -i src.mp4 -c copy trim_editlist.mp4']),
    'trim_copyinkf.mp4': (100, ['-i src.mp4 -ss 1.3 -c copy -copyinkf trim_copyinkf.mp4']),
    'bframes.avi': (100, [f'{SRC.format(s=4)} -c:v libx264 -bf 3 -pix_fmt yuv420p bframes.avi']),
    'midgop.ts': (100, [f'{SRC.format(s=6)} -c:v libx264 -g 50 -sc_threshold 0 -bf 2 -pix_fmt yuv420p full.ts',
                        'CUT full.ts']),
    'untimed.mkv': (150, ['-i src.mp4 -c copy -output_ts_offset -1 -avoid_negative_ts disabled untimed.mkv']),
    'pal8.avi': (50, [f'{SRC.format(s=2)} -vf format=pal8 -c:v rawvideo -pix_fmt pal8 pal8.avi']),
    'cover_first.mkv': (150, ['-f lavfi -i color=red:size=64x64:d=1 -frames:v 1 cover.png',
                              '-i cover.png -i src.mp4 -map 0 -map 1:v -map 1:a -c:v:0 png -c:v:1 copy -c:a copy '
                              '-disposition:v:0 attached_pic cover_first.mkv']),
    'cover_first.mp4': (150, ['-f lavfi -i color=red:size=64x64:d=1 -frames:v 1 cover.png',
                              '-i cover.png -i src.mp4 -map 0 -map 1:v -c:v:0 png -c:v:1 copy cover_first.mp4']),
    'dv.dv': (50, [f'{SRC.format(s=2)} -vf scale=720:576 -c:v dvvideo -pix_fmt yuv420p -r 25 dv.dv']),
    'mpeg2.mpg': (75, [f'{SRC.format(s=3)} -c:v mpeg2video -bf 2 -g 12 mpeg2.mpg']),
    'mjpeg.avi': (75, [f'{SRC.format(s=3)} -c:v mjpeg mjpeg.avi']),
    'h264.flv': (75, [f'{SRC.format(s=3)} -c:v libx264 -bf 2 h264.flv']),
    'theora.ogv': (75, [f'{SRC.format(s=3)} -c:v libtheora theora.ogv']),
    'wmv2.wmv': (75, [f'{SRC.format(s=3)} -c:v wmv2 wmv2.wmv']),
    'anim.gif': (30, [f'{SRC.format(s=3)} -vf fps=10 anim.gif']),
    'hevc.ts': (75, [f'{SRC.format(s=3)} -c:v libx265 -x265-params log-level=error hevc.ts']),
    'vp8.webm': (75, [f'{SRC.format(s=3)} -c:v libvpx vp8.webm']),
    'trim_bframes.mov': (47, [f'{SRC.format(s=3)} -c:v libx264 -bf 3 -g 30 -sc_threshold 0 srcb.mov',
                              '-ss 1.1 -i srcb.mov -c copy trim_bframes.mov']),
    'trim_end.mp4': (39, [f'{SRC.format(s=3)} -c:v libx264 -g 25 -sc_threshold 0 fr.mp4',
                          '-ss 0.5 -t 1.5 -i fr.mp4 -c copy trim_end.mp4']),
    'trim.mkv': (75, [f'{SRC.format(s=3)} -c:v libx264 -bf 2 -g 30 -sc_threshold 0 src2.mkv',
                      '-ss 1.3 -i src2.mkv -c copy trim.mkv']),
    'mpeg4.avi': (75, [f'{SRC.format(s=3)} -c:v mpeg4 -bf 2 mpeg4.avi']),
    'fragmented.mp4': (75, [f'{SRC.format(s=3)} -c:v libx264 -bf 2 -g 20 -movflags frag_keyframe+empty_moov '
                            'fragmented.mp4']),
    'h263.3gp': (75, [f'{SRC.format(s=3)} -c:v h263 h263.3gp']),
    # Matroska counts its duration from time 0: a file starting at 2 s is not a truncated one.
    'offset.mkv': (75, [f'{SRC.format(s=3)} -c:v libx264 -output_ts_offset 2 offset.mkv']),
    # TS segments joined with cat: the demuxer flags each continuity-counter jump as a corrupt packet.
    'joined.ts': (250, [f'{SRC.format(s=10)} -c:v libx264 -g 25 long.ts',
                        '-i long.ts -c copy -f segment -segment_time 2 seg%03d.ts', 'CAT seg*.ts joined.ts']),
    # An adaptive-bitrate (HLS) capture: the stream switches from 176x144 to 320x240 half-way.
    'resolution_switch.ts': (100, [f'{SRC.format(s=2)} -c:v libx264 -g 25 switch_a.ts',
                                   f'{SRC.format(s=2)} -vf scale=320:240 -c:v libx264 -g 25 switch_b.ts',
                                   'CAT switch_*.ts resolution_switch.ts']),
}
# Downloads cut short: (None, commands). The frames are those a sequential decode gives (it may stop at a decoding
# error, or read a cut AVI's last, partial packet too), and `error` says where the video stops: the header declares
# more frames than the file holds.
TRUNCATED = {
    'cut_faststart.mp4': (None, [f'{SRC.format(s=10)} -c:v libx264 -g 50 -movflags +faststart fs.mp4',
                                'HEAD fs.mp4 cut_faststart.mp4']),
    'cut.avi': (None, [f'{SRC.format(s=4)} -c:v mpeg4 -g 12 -bf 2 full.avi', 'HEAD full.avi cut.avi']),
}
# Bit errors in a capture, every TS packet of a stretch of the middle damaged. Whether a sequential decode conceals
# them and goes on or stops at a decoding error depends on the bytes the encoder wrote (they differ between machines),
# so neither is assumed: the decoder must do what the sequential decode does, frames concealed after a seek as in
# sequence.
DAMAGED = {'damaged.ts': [f'{SRC.format(s=10)} -c:v libx264 -g 25 long.ts', 'DAMAGE long.ts damaged.ts']}
BROKEN = {'no_keyframe.ts': [f'{SRC.format(s=3)} -c:v libx264 -bf 2 -g 250 full250.ts', 'CUT full250.ts 0.4']}
SOURCE = f'{SRC.format(s=6)} -f lavfi -i sine=duration=6 -c:v libx264 -g 50 -sc_threshold 0 -bf 2 -pix_fmt yuv420p ' \
         '-c:a aac -shortest src.mp4'


def ffmpeg(folder, command):
    """One ffmpeg command in `folder`, or one of the ways files get damaged or joined:
    `CUT NAME [FRACTION]` (NAME from the TS packet where its 26th video packet starts, half-way through its first GOP
    of 50, found with plain PyAV; or without its first FRACTION of bytes, at a TS packet), `CAT GLOB OUT` (files
    joined byte for byte), `HEAD NAME OUT` (the first 60 % of NAME), `DAMAGE NAME OUT` (the payload of 30 TS
    packets in the middle inverted, their 4-byte headers kept).
    """
    op, *args = command.split()
    if op == 'CUT':
        name, *fraction = args
        data = (folder / name).read_bytes()
        if fraction:
            cut = int(len(data) * float(fraction[0])) // 188 * 188
        else:
            with av.open(str(folder / name)) as container:
                cut = [packet.pos for packet in container.demux(video=0) if packet.size][25] // 188 * 188
        target = 'midgop.ts' if not fraction else 'no_keyframe.ts'
        (folder / target).write_bytes(data[cut:])
    elif op == 'CAT':
        (folder / args[1]).write_bytes(b''.join(p.read_bytes() for p in sorted(folder.glob(args[0]))))
    elif op == 'HEAD':
        data = (folder / args[0]).read_bytes()
        (folder / args[1]).write_bytes(data[:len(data) * 6 // 10])
    elif op == 'DAMAGE':
        data = bytearray((folder / args[0]).read_bytes())
        middle = len(data) // 188 // 2 * 188
        for at in range(middle, middle + 30 * 188, 188):
            data[at + 4:at + 188] = bytes(b ^ 0xFF for b in data[at + 4:at + 188])
        (folder / args[1]).write_bytes(bytes(data))
    else:
        subprocess.run([FFMPEG, '-hide_banner', '-loglevel', 'error', '-y', *command.split()], cwd=folder, check=True)


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """corpus(name) -> path of one generated input (written on first use)."""
    folder = tmp_path_factory.mktemp('corpus')
    ffmpeg(folder, SOURCE)

    @functools.lru_cache(maxsize=None)
    def make(name):
        commands = BROKEN.get(name) or DAMAGED.get(name) or {**CORPUS, **TRUNCATED}[name][1]
        for command in commands:
            ffmpeg(folder, command)
        return str(folder / name)
    return make


def reference(path):
    """(rgb frames, times in ms from the first frame) of a plain sequential decode of FFmpeg's best video stream,
    which must decode to the end."""
    expected, times, stopped = sequential(path)
    assert not stopped, f'{path}: a sequential decode stops at a decoding error'
    return expected, times


@functools.lru_cache(maxsize=None)
def sequential(path):
    """(rgb frames, times in ms from the first frame, whether it stopped at an error) of a plain sequential decode
    of FFmpeg's best video stream, up to where it stops.

    Times: the decoder's pts where every frame has one and they increase, else the packet dts, else the frame
    durations added up (what the ffmpeg CLI's best-effort timestamps give for such streams).
    """
    with av.open(path) as container:
        stream = container.streams.best('video')
        decoded, stopped = [], False
        try:
            for f in container.decode(stream):
                decoded.append((f.to_ndarray(format='rgb24'), f.pts, f.dts, f.duration))
        except av.error.FFmpegError:
            stopped = True
        time_base = stream.time_base
    for column in (1, 2):
        values = [d[column] for d in decoded]
        if None not in values and all(a < b for a, b in zip(values, values[1:])):
            break
    else:
        values = list(np.cumsum([0] + [d[3] for d in decoded[:-1]]))
    return [d[0] for d in decoded], [round((v - values[0]) * time_base * 1000) for v in values], stopped


@pytest.mark.parametrize('name', sorted(CORPUS))
def test_each_kind_gives_the_frames_of_a_sequential_decode(corpus, name):
    path = corpus(name)
    expected, times = reference(path)
    assert len(expected) == (CORPUS[name][0] or len(expected)) > 0
    frames = VideoDecoder()(path)
    assert len(frames) == len(expected) and frames.error is None
    assert frames.timestamps == times
    got = frames.get_frames_at(range(len(frames)))  # one forward pass
    assert all(np.array_equal(g.data, e) for g, e in zip(got, expected))
    assert [g.timestamp for g in got] == times
    assert all(np.array_equal(g, e) for g, e in zip(frames.take(range(len(frames))), expected))
    spread = random.Random(name).sample(range(len(frames)), 8) + [len(frames) - 1, 0]
    for i in spread:  # one access each: a seek (where the index allows one), checked, or a decode from the start
        assert np.array_equal(frames[i], expected[i]), f'frame {i}'


# The kinds whose packets stand for their frames one to one (MP4/MOV/MKV/WebM, H.264/HEVC/VP8/VP9/AV1/MPEG-4, every
# packet timed, none hidden by an edit list, a keyframe first): `index='packets'` takes them, and refuses the others.
PACKET_INDEXED = {'cover_first.mkv', 'cover_first.mp4', 'fragmented.mp4', 'offset.mkv', 'trim.mkv', 'vp8.webm'}


@pytest.mark.parametrize('name', sorted(CORPUS))
def test_each_index_method_forced_gives_the_frames_of_a_sequential_decode_or_says_why_not(corpus, name):
    """`index='decoded'` reads every kind; `index='packets'` reads the kinds whose packets are their frames and
    raises `PacketIndexError` for the others, never giving other frames; 'auto' picks packets exactly where they do."""
    path = corpus(name)
    expected, times = reference(path)
    decoded = VideoDecoder(index='decoded')(path)
    assert decoded.index_method == 'decoded' and decoded.timestamps == times
    assert all(np.array_equal(g, e) for g, e in zip(decoded.take(range(len(decoded))), expected))
    auto = VideoDecoder(index='auto')(path)
    if name in PACKET_INDEXED:
        packets = VideoDecoder(index='packets')(path)
        assert packets.index_method == auto.index_method == 'packets'
        assert len(packets) == len(expected) and packets.timestamps == times
        assert all(np.array_equal(g, e) for g, e in zip(packets.take(range(len(packets))), expected))
        for i in random.Random(name).sample(range(len(packets)), 4):  # a seek each, checked against the packets
            assert np.array_equal(packets[i], expected[i]), f'frame {i}'
    else:
        with pytest.raises(errors.PacketIndexError, match="cannot be indexed from its packets .*index='decoded'"):
            VideoDecoder(index='packets')(path)
        assert auto.index_method == 'decoded'


@pytest.mark.parametrize('name', sorted(TRUNCATED))
def test_a_cut_file_gives_the_frames_of_a_sequential_decode_and_the_error_says_where_it_stops(corpus, name):
    path = corpus(name)
    expected, times, _ = sequential(path)
    assert len(expected) == (TRUNCATED[name][0] or len(expected)) > 0
    frames = VideoDecoder()(path)
    assert len(frames) == len(expected) and frames.timestamps == times
    assert 'stops after frame' in str(frames.error) and f'{len(expected)} frames are readable' in str(frames.error)
    assert all(np.array_equal(g, e) for g, e in zip(frames.take(range(len(frames))), expected))
    assert np.array_equal(frames[len(frames) // 2], expected[len(frames) // 2])


@pytest.mark.parametrize('name', sorted(DAMAGED))
def test_damage_gives_what_a_sequential_decode_gives_whether_it_conceals_or_stops(corpus, name):
    path = corpus(name)
    expected, times, stopped = sequential(path)
    frames = VideoDecoder()(path)
    assert len(frames) == len(expected) > 0 and frames.timestamps == times
    assert (frames.error is not None) == stopped, frames.error
    if stopped:
        assert f'{len(expected)} frames are readable' in str(frames.error)
    assert all(np.array_equal(g, e) for g, e in zip(frames.take(range(len(frames))), expected))
    for i in random.Random(name).sample(range(len(frames)), 8):  # one access each: a seek, checked
        assert np.array_equal(frames[i], expected[i]), f'frame {i}'


@pytest.mark.parametrize('name, step_ms', [('bframes.avi', 40), ('untimed.mkv', 40), ('dv.dv', 40)])
def test_times_and_rate_come_from_the_stream_when_pts_or_header_disagree(corpus, name, step_ms):
    """AVI with B-frames carries decode-order pts; untimed packets carry none; raw DV's header says 60000 fps."""
    frames = VideoDecoder()(corpus(name))
    assert frames.timestamps == [step_ms * i for i in range(len(frames))]
    assert frames.fps == pytest.approx(1000 / step_ms)
    assert frames.duration == pytest.approx(len(frames) * step_ms / 1000)


def test_clip_sampling_of_dv_spreads_over_the_video(corpus):
    """The paper's clip sampling steps by the frame rate: with the header's 60000 fps it picked [0, 299, 299, ...]."""
    frames = VideoDecoder()(corpus('dv.dv'))
    indices = clip_indices(len(frames), 8, 4, frames.fps)  # 8 frames, every 4th at 30 fps (the 8x224 record)
    assert indices == sorted(set(indices)) and len(indices) == 8 and indices[-1] < len(frames)


def set_matrix(src, dst, matrix):
    """Copy an MP4 with its video track's display matrix (tkhd, 16.16 fixed point) replaced, as phones write."""
    data = bytearray(Path(src).read_bytes())
    at = data.find(b'tkhd')
    version = data[at + 4]
    offset = at + 8 + (20 if version == 0 else 32) + 16
    data[offset:offset + 36] = struct.pack('>9i', *matrix)
    Path(dst).write_bytes(bytes(data))
    return str(dst)


@pytest.mark.parametrize('matrix, shown', [
    ((-65536, 0, 0, 0, 65536, 0, 176 << 16, 0, 1 << 30), lambda rgb: rgb[:, ::-1]),  # mirrored left-right
    ((65536, 0, 0, 0, -65536, 0, 0, 144 << 16, 1 << 30), lambda rgb: rgb[::-1]),  # mirrored top-bottom
    ((0, 65536, 0, 65536, 0, 0, 0, 0, 1 << 30), lambda rgb: rgb.transpose(1, 0, 2)),  # transposed
    ((0, -65536, 0, 65536, 0, 0, 0, 176 << 16, 1 << 30), lambda rgb: np.rot90(rgb, 1)),  # turned, not mirrored
])
def test_a_mirroring_display_matrix_is_shown_mirrored_not_turned(corpus, tmp_path, matrix, shown):
    """Expected images worked out from the matrix by hand: (x, y) -> (a x + c y, b x + d y), y pointing down."""
    plain = str(Path(corpus('mpeg2.mpg')).with_name('plain.mp4'))
    ffmpeg(Path(plain).parent, f'{SRC.format(s=1)} -c:v libx264 -pix_fmt yuv420p plain.mp4')
    path = set_matrix(plain, tmp_path / 'matrix.mp4', matrix)
    expected, _ = reference(plain)
    frames = VideoDecoder()(path)
    for i in (0, 12, 24):
        assert np.array_equal(frames[i], np.ascontiguousarray(shown(expected[i])))


@pytest.fixture(scope='module')
def plain_http(corpus):
    """Python's http.server over the corpus folder: it ignores Range requests, so nothing can be seeked."""
    folder = Path(corpus('mpeg2.mpg')).parent
    ffmpeg(folder, f'{SRC.format(s=10)} -c:v libx264 -g 50 -bf 2 long.mkv')
    ffmpeg(folder, f'{SRC.format(s=10)} -c:v libx264 -g 50 -bf 2 moov_at_end.mp4')
    ffmpeg(folder, f'{SRC.format(s=10)} -c:v libx264 -g 50 -bf 2 -movflags +faststart moov_first.mp4')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}', folder
    server.shutdown()


@pytest.mark.parametrize('name', ['long.mkv', 'moov_first.mp4'])
def test_a_server_without_byte_ranges_is_read_forward(plain_http, name):
    url, folder = plain_http
    expected, times = reference(str(folder / name))
    frames = VideoDecoder()(f'{url}/{name}')
    assert len(frames) == len(expected) == 250 and frames.timestamps == times
    wanted = [0, 177, 178, 60, 249, 120]
    assert all(np.array_equal(f, expected[i]) for f, i in zip(frames.take(wanted), wanted))
    assert all(np.array_equal(f, e) for f, e in zip(frames, expected))


def test_an_mp4_indexed_at_the_end_behind_such_a_server_says_the_server_cannot_seek(plain_http):
    url, _ = plain_http
    with pytest.raises(errors.NotSeekableError, match='does not answer byte-range requests.*faststart'):
        VideoDecoder()(f'{url}/moov_at_end.mp4')


@pytest.fixture(scope='module')
def corpus_folder(corpus, tmp_path_factory):
    """Every corpus video, two truncated copies and one truly broken file, in one folder as a user would have them.
    `cut_with_audio.mp4` is an MP4 with AAC and its index first, cut where an audio packet starts half-way: every
    video packet before the cut is whole, so only the header tells that frames are missing."""
    folder = tmp_path_factory.mktemp('user_videos')
    for name in CORPUS:
        shutil.copy(corpus(name), folder / name)
    data = Path(corpus('h264.flv')).read_bytes()
    (folder / 'half_downloaded.flv').write_bytes(data[:len(data) // 2])
    made = Path(corpus('mpeg2.mpg')).parent  # holds src.mp4: 6 s of H.264 and AAC
    ffmpeg(made, '-i src.mp4 -c copy -movflags +faststart src_faststart.mp4')
    with av.open(str(made / 'src_faststart.mp4')) as container:
        audio = [packet.pos for packet in container.demux(audio=0) if packet.size]
    (folder / 'cut_with_audio.mp4').write_bytes((made / 'src_faststart.mp4').read_bytes()[:audio[len(audio) // 2]])
    shutil.copy(corpus('no_keyframe.ts'), folder / 'no_keyframe.ts')
    return folder


TOWHEE_SCRIPT = """
import json, sys
from timesformer_video.jobs.operators import register_model_cfg  # the package the cached operator imports
cfg = json.loads(sys.argv[1])
register_model_cfg(cfg)
from towhee import pipe, ops
p = (pipe.input('path')
       .map('path', 'frames', ops.video_decode.ffmpeg())
       .map('frames', ('labels', 'scores', 'features'),
            ops.action_classification.timesformer(model_name=cfg['name'], weights=sys.argv[2], device='cpu'))
       .output('path', 'labels', 'scores', 'features'))
for path in sys.argv[3:]:
    try:
        _, labels, scores, features = p(path).get()
        print(json.dumps({'path': path, 'n': len(labels), 'dim': len(features)}))
    except Exception as e:
        print(json.dumps({'path': path, 'error': str(e)}))
"""


def test_the_seed_pipeline_classifies_every_readable_video(corpus_folder, tiny_weights, tmp_path):
    """Through Towhee: both operators resolved from a Towhee cache, as the seed pipeline (tiny model)."""
    env = install_operators(dict(os.environ, TOWHEE_HOME=str(tmp_path / 'towhee')))
    paths = sorted(str(p) for p in corpus_folder.iterdir())
    out = subprocess.run([sys.executable, '-c', TOWHEE_SCRIPT, json.dumps(TINY_CFG), str(tiny_weights),
                          *paths], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {Path(r['path']).name: r for r in map(json.loads, out.stdout.splitlines())}
    assert set(rows) == {Path(p).name for p in paths}
    failed = {name for name, row in rows.items() if 'error' in row}
    assert failed == {'no_keyframe.ts'}, {name: rows[name] for name in failed}
    assert all(row['n'] == 5 and row['dim'] == 48 for name, row in rows.items() if name not in failed)


def test_the_batch_job_gives_one_normal_row_per_valid_video(corpus_folder, tiny_weights, tmp_path):
    cfg = tmp_path / 'tiny.json'
    cfg.write_text(json.dumps(TINY_CFG))
    out = tmp_path / 'r.parquet'
    run = subprocess.run([sys.executable, ROOT / 'scripts' / 'videos.py', 'index', str(corpus_folder), '--out',
                          str(out), '--model-cfg', str(cfg), '--weights', str(tiny_weights), '--no-progress'],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 3, run.stderr[-3000:]  # done, and the output records failed videos
    rows = {Path(r['path']).name: r for r in pq.read_table(out).to_pylist()}
    # A folder gives its video files; a GIF is an image format, taken only when named (the seed pipeline reads it).
    assert set(rows) == set(CORPUS) - {'anim.gif'} | {'half_downloaded.flv', 'cut_with_audio.mp4', 'no_keyframe.ts'}
    errors = {name: row['error'] for name, row in rows.items() if row['error'] is not None}
    assert set(errors) == {'half_downloaded.flv', 'cut_with_audio.mp4', 'no_keyframe.ts'}, errors
    assert errors['cut_with_audio.mp4'].startswith('CorruptVideoError') and 'header declares 150 frames' in errors[
        'cut_with_audio.mp4']
    assert rows['cut_with_audio.mp4']['labels'] and rows['cut_with_audio.mp4']['duration'] < 6
    assert errors['half_downloaded.flv'].startswith('CorruptVideoError') and 'frames are readable' in errors[
        'half_downloaded.flv']
    assert rows['half_downloaded.flv']['labels'], 'the readable part is still classified'
    assert errors['no_keyframe.ts'].startswith(('EmptyVideoError', 'CorruptVideoError'))
    assert all(len(row['labels']) == 5 for name, row in rows.items() if name not in errors)


def test_a_well_formed_mp4_stays_lazy_decoding_only_the_gops_it_needs(corpus, monkeypatch):
    """8 frames of a 20 s MP4 (GOP 25) decode at most their 8 GOPs, whichever frame comes first."""
    folder = Path(corpus('mpeg2.mpg')).parent
    ffmpeg(folder, f'{SRC.format(s=20)} -c:v libx264 -g 25 -bf 2 -pix_fmt yuv420p gop25.mp4')
    decoded = []
    original = decode._frames

    def counting(container, stream):
        for frame in original(container, stream):
            decoded.append(frame.pts)
            yield frame
    monkeypatch.setattr(decode, '_frames', counting)
    frames = VideoDecoder()(str(folder / 'gop25.mp4'))
    assert len(frames) == 500 and len(decoded) <= 16  # the index: packets, confirmed on the first frames
    wanted = np.linspace(0, 499, 8).astype(int).tolist()
    expected, _ = reference(str(folder / 'gop25.mp4'))
    decoded.clear()
    assert all(np.array_equal(f, expected[i]) for f, i in zip(frames.take(wanted), wanted))
    assert len(decoded) <= 8 * 25 + 8  # each wanted frame's GOP at most, plus the decoder's reorder delay
