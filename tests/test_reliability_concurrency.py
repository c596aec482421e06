"""Concurrency: many threads through one shared operator give exactly the serial results, and leak nothing.

Towhee runs nodes in a thread pool and shares one `NNOperator` between concurrent calls, and a `LazyFrames` may be
read from several threads. Here 16 threads x 50 calls go (1) through one operator, (2) through its `batch()`, and
(3) through a Towhee pipeline (`pipe.batch`) with both operators resolved from a Towhee cache, as a user runs them.
Every result must equal the serial one bit for bit, bad inputs among them must fail alone with their own error, and
the process must hold the same open files and pipes after as before. The model is conftest's TINY.
"""

import gc
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import TINY, TINY_CFG, install_operators
from towhee.types import VideoFrame

from timesformer_video.classifier import ActionClassifier
from timesformer_video.decode import VideoDecoder
from timesformer_video.synthetic import make_video

THREADS, CALLS = 16, 50
JOIN_LIMIT_S = 120  # all threads of one test; a deadlock fails the test instead of hanging CI

def open_fds() -> list[str]:
    """What this process's open file descriptors point at: files and pipes, sorted.

    Sockets and event fds are left out: they are not the operator's (it opens none), and gRPC channels that earlier
    tests' Milvus Lite clients left in this process open and close them on their own threads at any time (CI saw
    two sockets close during this test)."""
    gc.collect()
    targets = []
    for fd in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink(f'/proc/self/fd/{fd}')
        except FileNotFoundError:  # the fd listdir itself used, closed since
            continue
        if not target.startswith(('socket:', 'anon_inode:')):
            targets.append(target)
    return sorted(targets)


def run_threads(work, count=THREADS):
    """work(k) in `count` threads started together; their return values; any exception or a hang fails the test."""
    start = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(k):
        try:
            start.wait()
            results[k] = work(k)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_LIMIT_S)
    assert not any(t.is_alive() for t in threads), f'threads still running after {JOIN_LIMIT_S} s: a deadlock?'
    if errors:
        raise errors[0]
    return results


def outcome(fn):
    """A call's result, or (exception type name, message): what must repeat exactly under concurrency."""
    try:
        labels, scores, features = fn()
    except Exception as e:  # noqa: BLE001 - compared, not handled
        return type(e).__name__, str(e)
    return labels, scores, features.tobytes()


@pytest.fixture(scope='module')
def op(tiny_weights):
    return ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu')


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """10 short clips of different sizes, lengths and GOPs (one VFR)."""
    folder = tmp_path_factory.mktemp('concurrent_videos')
    return [str(make_video(folder / f'clip{i}.mp4', n_frames=6 + 3 * i, size=(48 + 16 * (i % 4), 40 + 8 * (i % 3)),
                           fps=10, gop=4 + i, vfr=i == 7, seed=i)) for i in range(10)]


def mixed_inputs(videos):
    """50 inputs, each a callable giving what op() takes: arrays of many shapes, BGR VideoFrames, lazy frames
    shared by all threads, lazy frames each thread decodes itself, and 5 bad inputs that must fail on their own."""
    rng = np.random.default_rng(7)
    inputs = []
    for i in range(25):
        shape = (int(rng.integers(1, 20)), int(rng.integers(8, 90)), int(rng.integers(8, 90)), 3)
        clip = rng.integers(0, 256, shape, dtype=np.uint8)
        if i % 3 == 0:
            frames = [VideoFrame(np.ascontiguousarray(f[..., ::-1]), mode='BGR') for f in clip]
            inputs.append(lambda frames=frames: frames)
        else:
            inputs.append(lambda clip=clip: clip)
    shared = [VideoDecoder()(path) for path in videos]
    inputs += [lambda lazy=lazy: lazy for lazy in shared]
    inputs += [lambda path=path: VideoDecoder()(path) for path in videos]
    inputs += [lambda: [], lambda: np.zeros((8, 32, 32, 4), np.uint8), lambda: [np.zeros((8, 8, 3), np.float32)],
               lambda: VideoDecoder()(videos[0] + '.missing'), lambda: 'not frames']
    assert len(inputs) == CALLS
    return inputs


def test_16_threads_x_50_calls_through_one_operator_equal_serial_calls(op, videos):
    inputs = mixed_inputs(videos)
    serial = [outcome(lambda make=make: op(make())) for make in inputs]
    assert sum(len(s) == 3 for s in serial) == 45  # 45 results, 5 errors
    fds = open_fds()

    def work(k):
        order = list(range(CALLS))
        random.Random(k).shuffle(order)  # each thread its own order: calls overlap on different inputs
        return [(i, outcome(lambda i=i: op(inputs[i]()))) for i in order]
    results = run_threads(work)
    differ = [(k, i) for k, done in enumerate(results) for i, got in done if got != serial[i]]
    assert differ == [], f'{len(differ)} of {THREADS * CALLS} concurrent calls differ from the serial call'
    assert open_fds() == fds


def test_16_threads_calling_batch_equal_serial_batches(op, videos):
    """op.batch from 16 threads at once, 5 batches of 10 videos each (800 clips): equal to the same batches run
    one after another."""
    inputs = mixed_inputs(videos)[:45]  # the valid ones: one bad video fails its whole batch, by design
    batches = [[inputs[(b * 7 + j * 3) % 45] for j in range(10)] for b in range(5)]

    def run(batch):
        return [(labels, scores, features.tobytes()) for labels, scores, features in op.batch([m() for m in batch])]
    serial = [run(batch) for batch in batches]
    fds = open_fds()
    results = run_threads(lambda k: [run(batches[(b + k) % 5]) for b in range(5)])
    for k, done in enumerate(results):
        for b, got in enumerate(done):
            assert got == serial[(b + k) % 5], f'thread {k}, batch {b} differs from the serial batch'
    assert open_fds() == fds


PIPELINE_SCRIPT = textwrap.dedent('''
    import gc, json, os, sys, threading
    from towhee import ops, pipe

    weights, threads, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tiny, paths, missing = json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]

    def build():
        return (pipe.input('path')
                .map('path', 'frames', ops.video_decode.ffmpeg())
                .map('frames', ('labels', 'scores', 'features'),
                     ops.action_classification.timesformer(model_name=tiny['name'], weights=weights, device='cpu'))
                .output('path', 'labels', 'scores', 'features'))

    # The operator Towhee loads from its cache imports the installed package: TINY registered here is in its zoo.
    from timesformer_video.jobs.operators import register_model_cfg
    register_model_cfg(tiny)
    p = build()
    suffix = os.path.join('timesformer', 'versions', 'main', 'timesformer.py')
    operator_module = next(m.__name__ for m in list(sys.modules.values())
                           if (getattr(m, '__file__', None) or '').endswith(suffix))

    def row(queue):
        path, labels, scores, features = queue.get()
        return path, labels, scores, features.tobytes().hex()

    inputs = [paths[i % len(paths)] for i in range(calls)]
    serial = {path: row(p(path)) for path in paths}
    gc.collect()
    fds = len(os.listdir('/proc/self/fd'))
    start, differ, failures, errors = threading.Barrier(threads), [], [], []

    def work(k):
        try:
            start.wait()
            mine = inputs[k % len(paths):] + inputs[:k % len(paths)]  # each thread starts elsewhere
            for path, queue in zip(mine, p.batch(mine)):
                if row(queue) != serial[path]:
                    differ.append((k, path))
            try:
                p(missing).get()
            except RuntimeError as e:
                failures.append(str(e))
        except BaseException as e:
            errors.append(repr(e))
    pool = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(240)
    gc.collect()
    print(json.dumps({'alive': sum(t.is_alive() for t in pool), 'errors': errors, 'differ': len(differ),
                      'failures': failures, 'fds_before': fds, 'fds_after': len(os.listdir('/proc/self/fd')),
                      'serial': serial, 'operator_module': operator_module}))
''')


def test_16_threads_x_50_calls_through_a_towhee_pipeline_from_the_towhee_cache(op, videos, tiny_weights,
                                                                              tmp_path):
    """`ops.action_classification.timesformer` and `ops.video_decode.ffmpeg` resolved from a fresh Towhee cache
    (TOWHEE_HOME) in a subprocess, TINY registered in the installed package's zoo; 16 threads each run
    `pipe.batch` over 50 paths (800 pipeline calls, every node in Towhee's thread pool, one shared operator) plus
    one missing file: identical to serial calls, and to this process's operator; no descriptor leaked."""
    home = tmp_path / 'towhee'
    env = install_operators(dict(os.environ, TOWHEE_HOME=str(home), TIMESFORMER_WEIGHTS_BASE_URL='http://127.0.0.1:9'))
    missing = str(tmp_path / 'missing.mp4')
    out = subprocess.run([sys.executable, '-c', PIPELINE_SCRIPT, str(tiny_weights), str(THREADS), str(CALLS),
                          json.dumps(TINY_CFG), json.dumps(videos), missing],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got['operator_module'].startswith('towhee.operator.action_classification.timesformer')  # Towhee's load
    assert got['alive'] == 0 and got['errors'] == []
    assert got['differ'] == 0, f"{got['differ']} of {THREADS * CALLS} pipeline calls differ from serial calls"
    assert len(got['failures']) == THREADS
    assert all('video file not found' in f and missing in f for f in got['failures'])
    assert got['fds_after'] == got['fds_before']
    for path in videos:  # the cached operator in another process computes what this one does
        p_path, labels, scores, features = got['serial'][path]
        mine = op(VideoDecoder()(path))
        assert p_path == path and labels == mine[0]
        np.testing.assert_allclose(scores, mine[1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(np.frombuffer(bytes.fromhex(features), np.float32), mine[2], rtol=0, atol=1e-6)
    shutil.rmtree(home)
