"""`timesformer-videos watch` run as a user runs it (a process, `--json` on stdout), read as its lines come.

`WatchRun` starts the command with the tiny random-weights model (conftest's `tiny_weights`), records each stdout
line with the moment the test received it and the process's resident memory then, and gives the exit status, the
summary line on stderr and the readiness probes a test needs (the UDP port bound, the growing file opened).
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT, TINY
from stream_senders import rss_kib, wait_for

# The `timesformer-videos` command; run through scripts/videos.py (the same `main`) by this venv's Python, with this
# checkout first on the path.
VIDEOS_PY = ROOT / 'scripts' / 'videos.py'
TINY_CFG = {'name': TINY, 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48, 'depth': 2,
            'num_heads': 4}  # conftest's tiny_weights record
SUMMARY = re.compile(r'^watch: (\d+) windows done, (\d+) skipped, (\d+) gaps; '
                     r'latency p50 (\d+ ms|n/a), p95 (\d+ ms|n/a)$')


def tiny_model_args(tiny_weights: Path, folder: Path) -> list[str]:
    """`--model-cfg tiny.json --weights tiny.pth`: the tiny model's options for the CLI (the cfg written in
    `folder`)."""
    cfg = folder / 'tiny.json'
    cfg.write_text(json.dumps(TINY_CFG))
    return ['--model-cfg', str(cfg), '--weights', str(tiny_weights)]


class WatchRun:
    """`timesformer-videos watch SOURCE --json ARGS...` running. `lines`: (parsed JSON, time.time() when received,
    the watch's RSS in KiB then) per stdout line, filled by a thread as they come."""

    def __init__(self, source: str, *args, cwd: Path):
        self.process = subprocess.Popen([sys.executable, str(VIDEOS_PY), 'watch', source, '--json', *map(str, args)],
                                        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, 'PYTHONWARNINGS': 'ignore', 'PYTHONPATH': str(ROOT),
                                             'OMP_NUM_THREADS': '1'})
        self.lines: list[tuple[dict, float, int]] = []
        self.stray: list[str] = []  # stdout lines that are not JSON (there should be none)
        self._errors: list[str] = []
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=lambda: self._errors.extend(self.process.stderr), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self):
        for line in self.process.stdout:
            try:
                rss = rss_kib(self.process.pid)
            except (FileNotFoundError, StopIteration):  # exited meanwhile
                rss = 0
            try:
                self.lines.append((json.loads(line), time.time(), rss))
            except json.JSONDecodeError:
                self.stray.append(line)

    @property
    def rows(self) -> list[dict]:
        """The window rows so far (gaps left out)."""
        return [row for row, _, _ in self.lines if not row.get('gap')]

    @property
    def gaps(self) -> list[dict]:
        return [row for row, _, _ in self.lines if row.get('gap')]

    def wait_rows(self, n: int, limit_s: float = 60):
        """Wait until `n` window rows have come (fails if the watch exits first)."""
        def enough():
            assert self.process.poll() is None or len(self.rows) >= n, self.finish()
            return len(self.rows) >= n
        wait_for(enough, f'{n} rows', limit_s)

    def wait_ready(self, probe, limit_s: float = 60):
        """Wait until `probe(pid)` is true: the watch has its source open (and its model loaded before that)."""
        def ready():
            assert self.process.poll() is None, self.finish()
            return probe(self.process.pid)
        wait_for(ready, 'watch ready', limit_s)

    def interrupt(self):
        self.process.send_signal(signal.SIGINT)

    @property
    def stderr(self) -> str:
        return ''.join(self._errors)

    def finish(self, limit_s: float = 60) -> int:
        """Wait for the exit and for its output to be read; its status."""
        try:
            self.process.wait(limit_s)
        finally:
            self.kill()
            for reader in self._readers:
                reader.join(10)
        return self.process.returncode

    def summary(self) -> dict:
        """The summary line (the last line of stderr), parsed: done, skipped, gaps (ints), p50, p95 (ms or None)."""
        last = self.stderr.strip().splitlines()[-1]
        match = SUMMARY.match(last)
        assert match, self.stderr
        done, skipped, gaps, p50, p95 = match.groups()
        ms = [None if v == 'n/a' else int(v.split()[0]) for v in (p50, p95)]
        return {'done': int(done), 'skipped': int(skipped), 'gaps': int(gaps), 'p50': ms[0], 'p95': ms[1]}

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def udp_bound(port: int):
    """A probe: some process has bound UDP 127.0.0.1:`port` or 0.0.0.0:`port` (/proc/net/udp)."""
    def probe(pid):
        with open('/proc/net/udp') as table:
            return any(line.split()[1].endswith(f':{port:04X}') for line in list(table)[1:])
    return probe


def file_open(path: Path):
    """A probe: process `pid` has `path` open (/proc/PID/fd)."""
    def probe(pid):
        folder = Path(f'/proc/{pid}/fd')
        for fd in folder.iterdir():
            try:
                if os.readlink(fd) == str(path):
                    return True
            except OSError:
                continue
        return False
    return probe
