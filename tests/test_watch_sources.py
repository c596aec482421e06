"""Every kind of live source `timesformer-videos watch` reads gives window rows: RTSP (TCP and UDP transport), MPEG-TS
over UDP and TCP, HLS served over HTTP, a file still being written.

Each loopback sender (tests/stream_senders.py, the ffmpeg CLI or GStreamer's RTSP server) is first checked with an
independent reader, plain PyAV: it receives the sent video's frames, one frame duration apart, at real time. Then
`watch` reads the same kind of sender; its windows are checked against the video as ffprobe counts it.
"""

import contextlib
import datetime
import math
import subprocess
import threading
import time
from fractions import Fraction

import av
import pytest
from stream_senders import growing_file, hls, make_video, rtsp_camera, tcp_mpegts, udp_mpegts
from watching import WatchRun, file_open, tiny_model_args, udp_bound

FPS = 25
SECONDS = 1  # the video the senders send to PyAV: they run at real time, so this is the wall time of each check
FRAME = Fraction(1, FPS)


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    """1 s, 25 fps, a keyframe every 0.5 s (the PyAV checks)."""
    return make_video(tmp_path_factory.mktemp('senders') / 'clip.mp4', SECONDS, fps=FPS, gop=FPS // 2)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    """2.5 s, 25 fps, a keyframe each second (the watches)."""
    return make_video(tmp_path_factory.mktemp('senders') / 'cam.mp4', 2.5, fps=FPS, gop=FPS)


def ffprobe_frames(path) -> int:
    """The number of video frames in `path`, as ffprobe counts them by decoding."""
    out = subprocess.run(['ffprobe', '-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries',
                          'stream=nb_read_frames', '-of', 'csv=p=0', str(path)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return int(out)


def receive(url: str, limit: int = 10_000, timeout_s: float = 5, **options) -> tuple[list[Fraction], float]:
    """PyAV decodes `url` until it ends, `limit` frames came, or nothing came for `timeout_s`: the frames' times (s)
    and the seconds it took."""
    began = time.monotonic()
    times = []
    with av.open(url, options={'timeout': str(round(timeout_s * 1e6)), **options}, timeout=timeout_s) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                if frame.pts is not None:  # RTSP's first frame may come before its clock is known
                    times.append(frame.pts * stream.time_base)
                if len(times) == limit:
                    break
        except av.error.ExitError:  # nothing came for timeout_s: how a UDP stream ends for its receiver
            pass
    return times, time.monotonic() - began


def assert_one_frame_apart(times):
    steps = {b - a for a, b in zip(times, times[1:])}
    assert max(abs(step - FRAME) for step in steps) < Fraction(1, 1000), sorted(steps)


# ---- the senders, read by plain PyAV ----

@pytest.mark.parametrize('transport', ['tcp', 'udp'])
def test_rtsp_camera_sends_the_whole_video_at_real_time(clip, transport):
    with rtsp_camera(clip) as camera:
        times, took = receive(camera.url, rtsp_transport=transport)
    assert len(times) >= ffprobe_frames(clip) - 1  # all frames; the first may have no time yet
    assert_one_frame_apart(times)
    assert took > 0.8 * SECONDS


def test_tcp_mpegts_sends_the_whole_video_at_real_time(clip):
    with tcp_mpegts(clip) as sender:
        times, took = receive(sender.url)
    assert len(times) == ffprobe_frames(clip)
    assert_one_frame_apart(times)
    assert took > 0.8 * SECONDS


def test_tcp_mpegts_without_re_sends_faster_than_real_time(clip):
    with tcp_mpegts(clip, realtime=False, loops=10) as sender:
        times, took = receive(sender.url)
    assert len(times) == 10 * ffprobe_frames(clip)
    assert_one_frame_apart(times)  # the loops follow each other on one clock
    assert took < 10 * SECONDS / 4


def test_udp_mpegts_joined_late_gives_frames_from_mid_stream(clip):
    with udp_mpegts(clip, loops=2) as sender:
        time.sleep(0.5)  # the receiver binds late: what was sent before is lost
        times, took = receive(sender.url, timeout_s=1)
    assert FPS // 2 <= len(times) <= 2 * ffprobe_frames(clip) - FPS // 2
    assert_one_frame_apart(times)


def test_udp_mpegts_timestamps_jump_where_asked(clip):
    with udp_mpegts(clip, ts_offsets=(0, 100), start=False) as sender:
        threading.Timer(0.3, sender.start).start()  # once the receiver has bound the port
        times, _ = receive(sender.url, limit=ffprobe_frames(clip) + FPS // 2)  # a few frames may go unheard
    steps = [b - a for a, b in zip(times, times[1:])]
    jumps = [step for step in steps if step != FRAME]
    assert len(jumps) == 1 and abs(jumps[0] - (100 - SECONDS + FRAME)) < Fraction(1, 100), jumps


def test_hls_playlist_is_served_live_and_ends(clip, tmp_path):
    with hls(clip, tmp_path / 'hls', loops=2) as sender:
        playlist = (tmp_path / 'hls' / 'live.m3u8').read_text()
        assert '#EXT-X-ENDLIST' not in playlist  # live: no end yet
        times, took = receive(sender.url)
    assert len(times) >= FPS  # a live HLS reader starts a few segments before the live edge
    assert_one_frame_apart(times)


@pytest.mark.parametrize('suffix', ['.ts', '.mkv'])
def test_growing_file_is_readable_while_written(clip, tmp_path, suffix):
    path = tmp_path / f'rec{suffix}'
    with growing_file(clip, path, loops=2) as writer:  # 2 s of writing
        time.sleep(SECONDS / 2)
        partial, _ = receive(str(path))
        assert writer.running()
        assert writer.wait() == 0
    whole, _ = receive(str(path))
    assert 0 < len(partial) < len(whole) == 2 * ffprobe_frames(clip)
    assert_one_frame_apart(whole)


# ---- `watch` on each kind of sender ----
# All six run at once (each `watch` spends seconds loading Python and the model; the senders wait or loop): the
# fixture starts them, waits for every watch to end, and each test checks one.
KINDS = ['rtsp-tcp', 'rtsp-udp', 'udp', 'tcp', 'hls', 'growing-file']
# A source that ends is given up 2 s after its last frame; HLS is watched for 4 s of its looping live playlist.
ENDS = ['--timeout', '2', '--reconnect-timeout', '2']


@pytest.fixture(scope='module')
def watched(video, tiny_weights, tmp_path_factory):
    """{kind: the finished WatchRun} for each of KINDS, with --window 1."""
    folder = tmp_path_factory.mktemp('watched')
    model = tiny_model_args(tiny_weights, folder)
    runs = {}
    with contextlib.ExitStack() as stack:
        def watch(kind, sender, *args):
            runs[kind] = run = WatchRun(sender.url, '--window', 1, *args, *model, cwd=folder)
            stack.callback(run.kill)
            return run

        for transport in ('tcp', 'udp'):
            camera = stack.enter_context(rtsp_camera(video))
            watch(f'rtsp-{transport}', camera, *ENDS, '--rtsp-transport', transport)
        watch('tcp', stack.enter_context(tcp_mpegts(video)), *ENDS)
        watch('hls', stack.enter_context(hls(video, folder / 'hls', loops=30)), '--duration', 4)
        udp = stack.enter_context(udp_mpegts(video, start=False))
        late = [(watch('udp', udp, *ENDS), udp_bound(int(udp.url.rsplit(':', 1)[1])), udp)]
        recorder = stack.enter_context(growing_file(video, folder / 'rec.ts', start=False))
        late.append((watch('growing-file', recorder, *ENDS), file_open(folder / 'rec.ts'), recorder))
        for run, ready, sender in late:  # start sending once the watch listens (has the file open)
            run.wait_ready(ready)
            sender.start()
        statuses = {kind: run.finish(limit_s=120) for kind, run in runs.items()}
    assert statuses == dict.fromkeys(KINDS, 0), {kind: runs[kind].stderr for kind in KINDS}
    return runs


def utc(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize('kind', KINDS)
def test_every_source_kind_gives_window_rows_as_the_stream_plays(watched, video, kind):
    run = watched[kind]
    rows = run.rows
    spans = [(row['start_ms'], row['end_ms']) for row in rows]
    if kind == 'hls':  # a live playlist is joined near its live edge; the watch stops after 4 s
        assert len(rows) >= 2 and spans == [(1000 * i, 1000 * (i + 1)) for i in range(len(rows))]
    else:  # the sender waited for the watch (or started when it listened): the whole video, then its end
        end_ms = math.ceil(ffprobe_frames(video) * 1000 / FPS)  # the last frame's end
        if kind.startswith('rtsp'):  # FFmpeg's RTSP client may drop the last frame or two at the server's goodbye
            last_start, last_end = spans.pop()
            assert last_start == 1000 * len(spans) and end_ms - 2 * 1000 / FPS <= last_end <= end_ms, run.stderr
            end_ms = last_start
        assert spans == [(start, min(start + 1000, end_ms)) for start in range(0, end_ms, 1000)], run.stderr
    assert run.gaps == [] and run.stray == [] and all(row['error'] is None for row in rows)
    assert all(row['source'] == run.process.args[3] for row in rows)
    assert all(len(row['labels']) == len(row['scores']) >= 1 for row in rows)
    # Read as it played: the first row was out (the test received it) while later windows' frames were still to come,
    # and each row after its window's last frame had come.
    timed = [(utc(row['wall_time']), received, row['latency_ms']) for row, received, _ in run.lines
             if not row.get('gap')]
    assert timed[0][1] < timed[-1][0] - 0.5, timed
    assert all(0 <= latency_ms <= (received - arrival) * 1000 + 5 for arrival, received, latency_ms in timed), timed
    assert run.summary()['done'] == len(rows)
