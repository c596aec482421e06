"""Loopback live-stream senders for the `watch` tests: each one a context manager that starts a sender on 127.0.0.1 at
a free port, yields a `Sender` (its `url`, `kill()`, `restart()`), and stops it on exit.

Made the way users stream, with the ffmpeg CLI (`-re` paces at real time, `-c copy` sends the file's own H.264 as
a camera's encoder made it):
- `udp_mpegts`: MPEG-TS over UDP (`udp://127.0.0.1:P`), the receiver binds the port; what it misses is lost.
- `tcp_mpegts`: MPEG-TS over TCP, ffmpeg listening (`tcp://127.0.0.1:P?listen=1`) for one receiver.
- `hls`: ffmpeg's hls muxer writing a live playlist and 1 s segments into a folder that Python's http.server serves.
- `rtsp_camera`: GStreamer's RTSP server (tests/rtsp_server.py) serving a file at real time over TCP or UDP transport.
- `growing_file`: ffmpeg writing MPEG-TS or Matroska at real time into a file that a reader follows.
- `make_video`: the H.264 MP4 they send (ffmpeg's testsrc2 pattern, a keyframe every `gop` frames).

Faults: `Sender.kill()` (SIGKILL, as a crash or a network drop), `Sender.restart(ts_offset=...)` (the same sender
anew, optionally with its timestamps moved, as a camera that reboots), `ts_offsets=(0, 100)` (one stream whose
timestamps jump by 100 s with no pause in arrival), `realtime=False` (sent as fast as the receiver takes it).
Nothing here imports timesformer_video.
"""

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

FFMPEG = ['ffmpeg', '-nostdin', '-hide_banner', '-loglevel', 'error']
RTSP_SERVER = Path(__file__).resolve().parent / 'rtsp_server.py'
DEBIAN_PYTHON = '/usr/bin/python3'  # has python3-gi; the venv's Python does not


def make_video(path: Path, seconds: float, size=(160, 120), fps: int = 25, gop: int = 25) -> Path:
    """An H.264 MP4 of `seconds` of ffmpeg's testsrc2 (a moving pattern with a running clock), keyframe every `gop`
    frames, no B-frames (as most cameras send). Returns `path`."""
    subprocess.run([*FFMPEG, '-y', '-f', 'lavfi', '-i', f'testsrc2=size={size[0]}x{size[1]}:rate={fps}',
                    '-t', str(seconds), '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '0', '-g', str(gop),
                    '-pix_fmt', 'yuv420p', str(path)], check=True, timeout=120)
    return path


def free_port(kind=socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing uses now (TCP by default, `socket.SOCK_DGRAM` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tcp_listening(port: int) -> bool:
    """Whether a socket listens on 127.0.0.1:`port`, read from /proc/net/tcp (a probe connection would take the
    single connection that `ffmpeg ...?listen=1` accepts)."""
    wanted = f'0100007F:{port:04X}'
    with open('/proc/net/tcp') as table:
        return any(line.split()[1] == wanted and line.split()[3] == '0A' for line in list(table)[1:])


def wait_for(condition, what: str, limit_s: float = 20):
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what}: not ready within {limit_s} s')
        time.sleep(0.02)


class Sender:
    """One sending process (`command(ts_offset)` gives its argv), started by `start()`.

    url: what a receiver opens. kill(): SIGKILL, no goodbye, as a crash or a cable pulled. restart(ts_offset):
    kill (if alive) and start the same sender anew, its timestamps moved by `ts_offset` seconds."""

    def __init__(self, url: str, command, ready=None):
        self.url = url
        self._command = command
        self._ready = ready
        self.process = None

    def start(self, ts_offset: float = 0) -> 'Sender':
        self.process = subprocess.Popen(self._command(ts_offset), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        if self._ready is not None:
            wait_for(lambda: self._ready(self.process), f'sender {self.url}')
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, limit_s: float = 60) -> int:
        """Wait for the sender to finish its stream; its exit status."""
        return self.process.wait(limit_s)

    def kill(self):
        if self.running():
            os.killpg(self.process.pid, signal.SIGKILL)  # the whole group: a `sh -c` chain and its ffmpeg
        if self.process is not None:
            self.process.wait(10)
            self.process.stdout.close()
            self.process.stderr.close()

    def restart(self, ts_offset: float = 0) -> 'Sender':
        self.kill()
        return self.start(ts_offset)


def _ffmpeg_send(video: Path, out_args: list, realtime: bool, loops: int, ts_offsets) -> callable:
    """argv of a sender: one ffmpeg per offset in `ts_offsets`, back to back (a `sh -c` chain when several)."""

    def one(offset):
        return [*FFMPEG, *(['-re'] if realtime else []), '-stream_loop', str(loops - 1), '-i', str(video),
                '-map', '0:v', '-c', 'copy', '-output_ts_offset', str(offset), *out_args]

    def command(ts_offset):
        parts = [one(ts_offset + offset) for offset in ts_offsets]
        if len(parts) == 1:
            return parts[0]
        return ['sh', '-c', ' && '.join(subprocess.list2cmdline(p) for p in parts)]

    return command


@contextlib.contextmanager
def udp_mpegts(video: Path, realtime=True, loops=1, ts_offsets=(0,), start=True):
    """MPEG-TS over UDP to udp://127.0.0.1:P, `loops` times through `video`. The sender does not wait for a
    receiver: a receiver that binds late joins mid-stream (mid-GOP). `start=False`: yielded unstarted (`start()`
    it once the receiver listens, to send the whole stream)."""
    port = free_port(socket.SOCK_DGRAM)
    out = ['-f', 'mpegts', f'udp://127.0.0.1:{port}?pkt_size=1316']
    sender = Sender(f'udp://127.0.0.1:{port}', _ffmpeg_send(video, out, realtime, loops, ts_offsets))
    try:
        yield sender.start() if start else sender
    finally:
        sender.kill()


@contextlib.contextmanager
def tcp_mpegts(video: Path, realtime=True, loops=1, ts_offsets=(0,)):
    """MPEG-TS over TCP: ffmpeg listens on tcp://127.0.0.1:P and sends to the first receiver that connects (it is
    ready when this yields). After `kill()`, `restart()` listens on the same port again."""
    port = free_port()
    out = ['-f', 'mpegts', f'tcp://127.0.0.1:{port}?listen=1']
    sender = Sender(f'tcp://127.0.0.1:{port}', _ffmpeg_send(video, out, realtime, loops, ts_offsets),
                    ready=lambda process: tcp_listening(port) or process.poll() is not None)
    try:
        yield sender.start()
    finally:
        sender.kill()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def hls(video: Path, folder: Path, realtime=True, loops=1):
    """ffmpeg's hls muxer writes a live playlist (1 s segments, the last 6 listed, no end tag until the sender
    finishes) into `folder`, served at http://127.0.0.1:P/live.m3u8 by http.server in a thread. Ready once the
    playlist lists its first segment."""
    folder.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                             functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    playlist = folder / 'live.m3u8'
    out = ['-f', 'hls', '-hls_time', '1', '-hls_list_size', '6', '-hls_flags', 'delete_segments+temp_file',
           '-hls_segment_filename', str(folder / 'seg%05d.ts'), str(playlist)]
    sender = Sender(f'http://127.0.0.1:{server.server_address[1]}/live.m3u8',
                    _ffmpeg_send(video, out, realtime, loops, (0,)),
                    ready=lambda process: playlist.exists() or process.poll() is not None)
    try:
        yield sender.start()
    finally:
        sender.kill()
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def rtsp_camera(video: Path):
    """An RTSP camera at rtsp://127.0.0.1:P/cam (GStreamer's RTSP server, tests/rtsp_server.py): serves `video`'s
    H.264 once at real time to whoever connects, over TCP or UDP transport (the client's choice). `kill()` and
    `restart()` are a camera crash and reboot: the RTP timestamps start anew."""
    port = free_port()
    sender = Sender(f'rtsp://127.0.0.1:{port}/cam', lambda ts_offset: [DEBIAN_PYTHON, str(RTSP_SERVER), str(port),
                                                                       str(video)],
                    ready=lambda process: tcp_listening(port) or process.poll() is not None)
    try:
        yield sender.start()
    finally:
        sender.kill()


@contextlib.contextmanager
def growing_file(video: Path, path: Path, realtime=True, loops=1, start=True):
    """ffmpeg writes `video` into `path` at real time, as a recorder does: MPEG-TS for a .ts path, Matroska for .mkv
    (written as it goes, cluster by cluster). `url` is the path; ready once the file exists. `start=False`: yielded
    unstarted, with `path` created empty (ffmpeg truncates it in place: a reader that opened it reads on)."""
    fmt = {'.ts': 'mpegts', '.mkv': 'matroska'}[path.suffix]
    out = ['-f', fmt, '-flush_packets', '1', '-y', str(path)]
    sender = Sender(str(path), _ffmpeg_send(video, out, realtime, loops, (0,)),
                    ready=lambda process: path.exists() or process.poll() is not None)
    if not start:
        path.touch()
    try:
        yield sender.start() if start else sender
    finally:
        sender.kill()


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` in KiB (VmRSS in /proc/PID/status)."""
    with open(f'/proc/{pid}/status') as status:
        return next(int(line.split()[1]) for line in status if line.startswith('VmRSS:'))

