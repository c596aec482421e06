"""The local engine: decoding in worker processes, the model in this process, batches of clips across videos.

    paths --(decode tasks: path, part)--> decode workers (`decoding.Sampler`, one process each)
          --(clips' views)--> model (`model_stage.ClipModel`, `batch_size` clips per forward, from any videos)
          --(clip results)--> rows (`rows.VideoRows`) --> one list of rows per finished video, in input order

Bounded: at most `2 * decode_workers` decode tasks are in flight (each one part: a whole video's clip, or up to
`decoding.CLIPS_PER_PART` windows), and decoded clips wait for the model only until a batch is full, so memory
does not grow with the number of videos. The workers are started with `forkserver` (`spawn` where there is none):
torch and `fork` do not mix; they do not import the caller's main script (`_bare_main`), so a script that calls
`run_index` needs no `if __name__ == '__main__':` guard. `decode_workers=0` decodes in one thread of this process.

`default_decode_workers(device)`: every core this process may use, on the CPU as with a GPU. Measured on a 2-core
AMD EPYC (benchmarks/pipeline.py): with a fast model the job is decode-bound and each added worker adds a core of
decoding (the workers also make the model's views, so the model process needs 0.04-0.06 CPU seconds per video
against their 0.34-0.40; a worker more than the cores adds nothing); with ViT-B on the CPU the model is the
bottleneck and the workers' decoding overlaps it. On a GPU machine the model process mostly waits for the GPU, so
every core decodes: one GPU needs about `decode core-seconds per clip x clips/s of the GPU` cores (about 400 for
exact sampling of 720p H.264 on an H100-class GPU, benchmarks/README.md); give more GPUs more cores, or use the Ray
engine.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.context
import os
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from typing import Any

from .checks import count
from .decoding import Sampler, VideoPart
from .model_stage import ClipModel
from .rows import VideoRows

_sampler: Sampler | None = None  # a decode worker's own


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_decode_workers() -> int:
    """Decode worker processes when none are asked for: every usable core (see the module docstring)."""
    return usable_cores()


def _start_worker(sampler: Sampler) -> None:
    global _sampler
    import torch

    torch.set_num_threads(1)  # the workers decode; the model process keeps torch's threads
    _sampler = sampler.single_threaded()  # the workers decode side by side, one core each
    parent = multiprocessing.parent_process()
    if parent is not None:  # a job killed with SIGKILL cannot stop its workers: each stops itself
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name='parent-watch').start()


def _exit_with(parent) -> None:
    parent.join()  # returns when the job's process has ended, however it ended
    os._exit(1)


def _decode(path: str, part: int) -> VideoPart:
    return _sampler.views(_sampler.decode(path, part))  # the model process gets the model's input, not frames


@contextlib.contextmanager
def _bare_main():
    """`__main__` replaced by an empty module while a worker starts: multiprocessing then does not make the worker
    import the caller's main script, which, without an `if __name__ == '__main__':` guard, would run the caller's
    whole script again in every worker. The workers run only this package's functions."""
    main = sys.modules['__main__']
    sys.modules['__main__'] = types.ModuleType('__main__')
    try:
        yield
    finally:
        sys.modules['__main__'] = main


class _WorkerProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):  # noqa: N802 - multiprocessing's name
        with _bare_main():
            return multiprocessing.context.ForkServerProcess._Popen(process_obj)


class _WorkerContext(multiprocessing.context.ForkServerContext):
    Process = _WorkerProcess


def _pool(sampler: Sampler, workers: int) -> concurrent.futures.Executor:
    if workers == 0:
        global _sampler
        _sampler = sampler
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='decode')
    if 'forkserver' in multiprocessing.get_all_start_methods():
        context = _WorkerContext()
        # The server imports these once and forks each worker from itself, so a worker starts in milliseconds
        # instead of importing torch; no thread has started in it yet, so the fork is safe.
        context.set_forkserver_preload(['timesformer_video.jobs.decoding', 'timesformer_video.transform'])
    else:
        context = multiprocessing.get_context('spawn')
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                                  initargs=(sampler,))


class LocalEngine:
    """`run(paths)` yields each video's rows (`rows.VideoRows`), in input order, as soon as it and those before it
    are done.

    `op`: the classifier (built once by the caller); `sampler`: what to decode; `decode_workers`: processes (0: a
    thread here); `batch_size`: clips per forward."""

    def __init__(self, op, sampler: Sampler, decode_workers: int, batch_size: int, model: str):
        count('decode_workers', decode_workers, minimum=0)
        count('batch_size', batch_size)
        self.model, self.sampler = ClipModel(op), sampler
        self.decode_workers, self.batch_size = decode_workers, batch_size
        self.model_name = model

    def run(self, paths: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        """Each video's rows, in the order of `paths` (a video decoded early waits, as rows, for those before it;
        `paths` are distinct)."""
        rank = {path: i for i, path in enumerate(paths)}
        finished: dict[int, list[dict[str, Any]]] = {}
        for rows in self._run(paths):
            finished[rank[rows[0]['path']]] = rows
            while len(paths) - len(rank) in finished:  # the next video in input order is done
                i = len(paths) - len(rank)
                del rank[paths[i]]
                yield finished.pop(i)

    def _run(self, paths: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        rows = VideoRows(self.model_name)
        tasks = collections.deque((path, 0) for path in paths)  # a video's next part goes first
        waiting: collections.deque = collections.deque()  # (part, clip number) decoded, not yet through the model
        results: dict[tuple[str, int], list] = {}  # a part's clip results so far
        limit = 2 * max(1, self.decode_workers)
        with _pool(self.sampler, self.decode_workers) as pool:
            in_flight: set[concurrent.futures.Future] = set()
            try:
                while tasks or in_flight or waiting:
                    while tasks and len(in_flight) < limit:
                        in_flight.add(pool.submit(_decode, *tasks.popleft()))
                    if len(waiting) >= self.batch_size or (waiting and not in_flight):
                        yield from self._batch(waiting, results, rows)
                        continue
                    done, in_flight = concurrent.futures.wait(in_flight,
                                                              return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        part = future.result()
                        if not part.last:
                            tasks.appendleft((part.path, part.part + 1))
                        if not part.clips:
                            finished = rows.add(part, [])
                            if finished is not None:
                                yield finished
                            continue
                        results[part.path, part.part] = [None] * len(part.clips)
                        waiting.extend((part, i) for i in range(len(part.clips)))
            finally:
                for future in in_flight:
                    future.cancel()

    def _batch(self, waiting, results, rows: VideoRows) -> Iterator[list[dict[str, Any]]]:
        batch = [waiting.popleft() for _ in range(min(self.batch_size, len(waiting)))]
        for (part, i), result in zip(batch, self.model.run([part.clips[i] for part, i in batch])):
            part.clips[i].frames = part.clips[i].views = None  # a long video's rows wait for its last part; its
            # frames and views do not
            done = results[part.path, part.part]
            done[i] = result
            if all(r is not None for r in done):
                del results[part.path, part.part]
                finished = rows.add(part, done)
                if finished is not None:
                    yield finished
