"""Faults: a download killed midway, a batch job killed with SIGKILL again and again, crashes at the worst moments.

After each fault the next run must succeed and lose nothing: no half file in the cache, exactly one result row per
video, rows finished before a kill kept as they were. Processes are killed for real (SIGKILL: no cleanup runs) at
points chosen by a seeded random generator, so every CI run injects the same faults. The model is conftest's TINY.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, TINY, TINY_CFG, VIDEOS_PY
from release_server import RELEASE, ReleaseServer

from timesformer_video.classifier import ActionClassifier
from timesformer_video.decode import VideoDecoder
from timesformer_video.synthetic import make_video

WAIT_S = 60  # longest wait for a subprocess to reach a kill point


def wait_for(condition, what, proc=None, limit=WAIT_S, step=0.005):
    deadline = time.monotonic() + limit
    while not condition():
        if proc is not None and proc.poll() is not None:
            return False  # it ended before the point was reached
        assert time.monotonic() < deadline, f'{what} did not happen within {limit} s'
        time.sleep(step)
    return True


def kill(proc):
    """SIGKILL and reap; True when the process was still running (a fault injected), False if it had ended."""
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return alive


# --- a download killed midway ------------------------------------------------------------------------------------



DOWNLOAD_SCRIPT = textwrap.dedent('''
    import json, sys
    from timesformer_video import ActionClassifier
    from timesformer_video.jobs.operators import register_model_cfg
    root, tiny = sys.argv[1], json.loads(sys.argv[2])
    register_model_cfg(tiny)
    ActionClassifier(model_name=tiny['name'], device='cpu')  # weights=None: the release file, downloaded
    print('loaded')
''')


def test_a_download_killed_midway_leaves_no_cached_file_and_the_next_run_succeeds(tiny_weights, tmp_path,
                                                                                  monkeypatch):
    """Killed twice (right after the server sent half the file, and a second time after a further 0-300 ms of
    stall), then a normal run. The cache never holds the release file name until a complete download; what a kill
    leaves is a temporary `<file>.<hex>.partial[.<hex>.partial]` (SIGKILL skips the clean-up), which does not
    disturb the next run, and is removed by the first run an hour or more later (here: its mtime is set back)."""
    payload = tiny_weights.read_bytes()
    server = ReleaseServer(payload, mode='stall', wait_s=WAIT_S)
    cache = tmp_path / 'torch' / 'hub' / 'checkpoints'
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch'), TIMESFORMER_WEIGHTS_BASE_URL=server.url)
    rng = random.Random(11)
    faults = 0

    def partial_bytes():
        return [p for p in cache.glob('*.partial') if p.stat().st_size]
    try:
        for attempt in range(2):
            server.sent_half.clear()
            proc = subprocess.Popen([sys.executable, '-c', DOWNLOAD_SCRIPT, str(ROOT), json.dumps(TINY_CFG)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                assert wait_for(server.sent_half.is_set, 'half of the download', proc), proc.stderr.read()[-2000:]
                assert wait_for(partial_bytes, 'bytes in the temporary file', proc)
                time.sleep(rng.uniform(0, 0.3) * attempt)
                faults += kill(proc)
            finally:
                if proc.poll() is None:
                    kill(proc)
                proc.stdout.close()
                proc.stderr.close()
            assert not (cache / RELEASE).exists()  # never a half file under the name the next run trusts
        assert faults == 2
        leftovers = sorted(p.name for p in cache.iterdir())
        assert leftovers and all(name.startswith(f'{RELEASE}.') and name.endswith('.partial') for name in leftovers)
        print(f'left by {faults} killed downloads: {leftovers}')

        server.mode = 'ok'  # the network is back
        monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
        monkeypatch.setenv('TIMESFORMER_WEIGHTS_BASE_URL', server.url)
        op = ActionClassifier(model_name=TINY, device='cpu')
        assert (cache / RELEASE).read_bytes() == payload
        assert op(np.zeros((8, 64, 64, 3), np.uint8))[2].shape == (48,)
        assert sorted(p.name for p in cache.iterdir() if p.name != RELEASE) == leftovers  # fresh: maybe in use

        old = time.time() - 2 * 3600  # an hour later: the killed downloads' files are stale
        for name in leftovers:
            os.utime(cache / name, (old, old))
        running = cache / f'{RELEASE}.{"0" * 32}.partial'  # another process downloading right now
        running.write_bytes(b'in progress')
        ActionClassifier(model_name=TINY, device='cpu')  # a cache hit also tidies up
        assert sorted(p.name for p in cache.iterdir()) == sorted([RELEASE, running.name])
        assert server.requests == 3  # two killed downloads and one complete: the cache hit fetched nothing
    finally:
        server.close()


# --- the batch job killed with SIGKILL, again and again ----------------------------------------------------------

def _load_jobs():
    from timesformer_video.jobs import operators, results, runner

    return runner, results, operators


@pytest.fixture(scope='module')
def collection(tmp_path_factory):
    """48 short clips, one file that is not a video; plus a path that does not exist: 50 inputs. Enough that six
    kills (each after at most 3 new chunks + 150 ms) cannot finish the job on a fast machine."""
    root = tmp_path_factory.mktemp('kill_collection')
    for i in range(48):
        make_video(root / 'clips' / f'clip{i:02d}.mp4', n_frames=8, size=(64, 48), fps=8, seed=i)
    (root / 'clips' / 'zz_broken.mp4').write_bytes(b'not a video' * 50)
    paths = [str(root / 'clips' / f'clip{i:02d}.mp4') for i in range(48)]
    return root, paths + [str(root / 'clips' / 'zz_broken.mp4'), str(root / 'missing.mp4')]


def chunk_rows(parts: Path) -> list[dict]:
    return [row for chunk in sorted(parts.glob('chunk-*.parquet')) for row in pq.read_table(chunk).to_pylist()]


def test_the_batch_job_killed_with_sigkill_at_random_points_always_resumes_to_one_row_per_video(
        collection, tiny_weights, tmp_path):
    """Six runs of the same `videos.py index` command are SIGKILLed (one during start-up, five after a random number
    of newly written chunks plus a random 0-150 ms), then a seventh finishes. After every kill each chunk is readable
    and no video is in two chunks; at the end the output holds each of the 50 inputs exactly once, in input order,
    rows finished before a kill unchanged (not redone), the failures recorded, and every result equal to the
    operator's on that video."""
    root, inputs = collection
    (tmp_path / 'tiny.json').write_text(json.dumps(TINY_CFG))
    command = [sys.executable, str(VIDEOS_PY), 'index', str(root / 'clips'),
               str(root / 'missing.mp4'), '--out', 'out/results.parquet', '--model-cfg', 'tiny.json',
               '--weights', str(tiny_weights), '--chunk-size', '1', '--no-progress']
    parts = tmp_path / 'out' / 'results.parquet.parts'
    rng = random.Random(2024)
    faults, kept = 0, {}
    for run in range(6):
        before = len(list(parts.glob('chunk-*.parquet')))
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if run == 0:
                time.sleep(rng.uniform(0.2, 1.5))  # importing, loading the model, opening the output
            else:
                wanted = before + rng.randint(1, 3)
                wait_for(lambda: len(list(parts.glob('chunk-*.parquet'))) >= wanted, 'new chunks', proc)  # noqa: B023
                time.sleep(rng.uniform(0, 0.15))
            faults += kill(proc)
        finally:
            if proc.poll() is None:
                kill(proc)
            stderr = proc.stderr.read().decode()
            proc.stderr.close()
        assert 'Traceback' not in stderr, stderr[-3000:]
        rows = chunk_rows(parts) if parts.exists() else []  # every chunk readable: written whole or not at all
        paths = [row['path'] for row in rows]
        assert len(paths) == len(set(paths)), 'a video was processed twice'
        for row in rows:
            kept.setdefault(row['path'], row)
    assert faults == 6, f'only {faults} of 6 runs were still running when killed'
    out = tmp_path / 'out' / 'results.parquet'
    if out.exists():  # the last kill landed after the final file was renamed into place, before the sidecar went
        for row in pq.read_table(out).to_pylist():
            kept.setdefault(row['path'], row)
    assert 0 < len(kept) <= len(inputs)

    final = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert final.returncode == 3, final.stderr[-3000:]  # complete; the broken and missing inputs failed
    assert f'resuming: {len(kept)} of {len(inputs)} videos already done' in final.stderr
    rows = pq.read_table(tmp_path / 'out' / 'results.parquet').to_pylist()
    assert [row['path'] for row in rows] == inputs  # each exactly once, in input order: nothing lost or repeated
    assert not parts.exists()
    for row in rows:
        if row['path'] in kept:
            assert row == kept[row['path']]  # kept as written before the kill, timings included
    errors = {row['path']: row['error'] for row in rows if row['error'] is not None}
    assert sorted(errors) == sorted(inputs[-2:])
    assert errors[inputs[-2]].startswith('NotAVideoError') and errors[inputs[-1]].startswith('FileNotFoundError')

    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu')
    for row in rows[:-2]:
        labels, scores, features = op(VideoDecoder()(row['path']))
        assert row['labels'] == labels
        np.testing.assert_allclose(row['scores'], scores, rtol=0, atol=1e-6)
        np.testing.assert_allclose(row['feature'], features, rtol=0, atol=1e-6)
    print(f'{faults} SIGKILLs; {len(kept)} rows kept across them; {len(inputs)} rows at the end')


# --- crashes at the worst moments (in-process: deterministic) --------------------------------------------------

@pytest.fixture(scope='module')
def jobs(tiny_weights):
    runner, results, operators = _load_jobs()
    spec = operators.OperatorSpec(model_name=TINY, weights=str(tiny_weights), model_cfg=TINY_CFG)
    return runner, results, spec


def _rows(path):
    return pq.read_table(path).to_pylist()


class Crash(BaseException):
    """Stands for the process dying here (a BaseException, so no `except Exception` handles it)."""


def test_a_crash_between_the_final_rename_and_the_sidecar_removal_resumes_to_one_row_per_video(
        jobs, collection, tmp_path, monkeypatch):
    runner, results, spec = jobs
    _, inputs = collection
    out = tmp_path / 'r.parquet'

    def crash(*args, **kwargs):
        raise Crash()
    with monkeypatch.context() as m:
        m.setattr(results.shutil, 'rmtree', crash)
        with pytest.raises(Crash):
            runner.run_index(runner.IndexJob(inputs[:6], out, spec, chunk_size=2, progress=False))
    assert out.exists() and out.with_name('r.parquet.parts').exists()  # the output, and chunks with the same rows
    first = _rows(out)
    again = runner.run_index(runner.IndexJob(inputs[:6], out, spec, progress=False))
    assert (again.processed, again.skipped) == (0, 6)
    assert _rows(out) == first and [row['path'] for row in first] == inputs[:6]
    assert not out.with_name('r.parquet.parts').exists()


def test_a_full_disk_mid_job_fails_clearly_and_the_next_run_resumes(jobs, collection, tmp_path, monkeypatch):
    """ENOSPC on the third chunk write: the job stops with that error (the CLI prints it, exit 1); chunks already
    written stay; once there is space the same job resumes and ends with one row per video."""
    runner, results, spec = jobs
    _, inputs = collection
    out = tmp_path / 'r.parquet'
    writes = []
    real_write = results.pq.write_table

    def write_table(table, where, **kwargs):
        writes.append(where)
        if len(writes) >= 3:
            raise OSError(28, 'No space left on device')
        return real_write(table, where, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(results.pq, 'write_table', write_table)
        with pytest.raises(OSError, match='No space left on device'):
            runner.run_index(runner.IndexJob(inputs[:10], out, spec, chunk_size=2, progress=False))
    parts = out.with_name('r.parquet.parts')
    assert not out.exists() and not list(parts.glob('.tmp-*'))  # the failed write left no temporary file
    done = [row['path'] for row in chunk_rows(parts)]
    assert done == inputs[:4]
    summary = runner.run_index(runner.IndexJob(inputs[:10], out, spec, chunk_size=2, progress=False))
    assert (summary.skipped, summary.processed) == (4, 6)
    assert [row['path'] for row in _rows(out)] == inputs[:10]


def test_leftovers_of_a_killed_chunk_write_are_ignored_and_a_damaged_chunk_is_named(jobs, collection, tmp_path):
    """A kill during a chunk write leaves `.tmp-*` (never a partial chunk, which is renamed into place whole); the
    next run deletes it. A chunk damaged from outside (disk fault, an editor) is a clear error naming the file."""
    runner, results, spec = jobs
    _, inputs = collection
    out = tmp_path / 'r.parquet'
    parts = out.with_name('r.parquet.parts')
    with results.ResultStore(out, 48, spec.signature()) as store:
        store.write_chunk([{'path': inputs[0], 'model': TINY, 'duration': 1.0, 'labels': ['a'], 'scores': [0.5],
                            'feature': np.ones(48, np.float32), 'decode_s': 0.1, 'model_s': 0.1, 'error': None}])
    (parts / '.tmp-0123abcd').write_bytes(b'PAR1 half a parquet file')
    summary = runner.run_index(runner.IndexJob(inputs[:3], out, spec, progress=False))
    assert (summary.skipped, summary.processed) == (1, 2)
    assert [row['path'] for row in _rows(out)] == inputs[:3] and not parts.exists()

    with results.ResultStore(out, 48, spec.signature()) as store:  # an unfinished job again, then damage
        store.write_chunk([{'path': inputs[3], 'model': TINY, 'duration': 1.0, 'labels': ['a'], 'scores': [0.5],
                            'feature': np.ones(48, np.float32), 'decode_s': 0.1, 'model_s': 0.1, 'error': None}])
    chunk = next(parts.glob('chunk-*.parquet'))
    chunk.write_bytes(chunk.read_bytes()[:40])
    with pytest.raises(results.JobStateError, match=f'cannot read {chunk}.*delete it to redo its videos'):
        runner.run_index(runner.IndexJob(inputs[:4], out, spec, progress=False))
    chunk.unlink()
    runner.run_index(runner.IndexJob(inputs[:4], out, spec, progress=False))
    assert [row['path'] for row in _rows(out)] == inputs[:4]
