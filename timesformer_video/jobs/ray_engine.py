"""Scale-out on Ray Data, as its batch-inference guide does it: decoding as CPU tasks, the model as an actor pool.

    paths (a dataset, one video per block)
      -> map_batches(decode_videos, num_cpus=1, TaskPoolStrategy(decode_workers))   CPU tasks: `decoding.Sampler`
                                                                                      (frames, then the views)
      -> map_batches(_Replica, num_gpus=..., ActorPoolStrategy(workers), batch_size) actors: `model_stage.ClipModel`
      -> the driver: `rows.VideoRows` -> one list of rows per finished video

Decoding and the model scale apart: the decode tasks take the CPUs (any node), the replicas the GPUs. A decoded
clip travels as one binary cell (the pickled clip: the model's views and their window), its result the same way. The
driver writes the rows through the same `ResultStore`, so resuming, chunking and the output schema do not depend
on the engine, and the rows equal the local engine's.

Code shipping: the workers get the `timesformer_video` package (and nothing else: no videos, no virtualenv) as a
Ray `py_modules` entry, so a cluster on other machines needs only the same third-party packages installed. Video
paths must be readable on every node (shared storage) or be URLs; so must `--weights`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .checks import count
from .decoding import Sampler, VideoPart
from .errors import ReplicaStartError
from .operators import OperatorSpec

_QUIET = 'ignore:pkg_resources is deprecated:UserWarning'  # towhee's import, once per replica


def decode_videos(batch: dict[str, np.ndarray], sampler: Sampler) -> Iterator[dict[str, np.ndarray]]:
    """A Ray CPU task: each video of the batch, part by part, as items `pickle((part without frames, clip number,
    clip))`; a part with no clip (a failed video) is one item with clip number None."""
    for path in batch['path']:
        number = 0
        while True:
            part = sampler.views(sampler.decode(str(path), number))  # the replicas get the model's input
            bare = dataclasses.replace(part, clips=[dataclasses.replace(c, frames=None, views=None)
                                                    for c in part.clips])
            items = [pickle.dumps((bare, i, clip)) for i, clip in enumerate(part.clips)] or \
                [pickle.dumps((bare, None, None))]
            yield {'item': np.array(items, dtype=object)}
            if part.last:
                break
            number += 1


class _Replica:
    """One model replica in the actor pool (Ray constructs it on a worker with `spec`): a batch of decoded clips,
    from any videos, through one forward; items `pickle((part, clip number, ClipResult))`."""

    def __init__(self, spec: OperatorSpec):
        from .model_stage import ClipModel
        from .operators import build_classifier

        try:
            self.model = ClipModel(build_classifier(spec))
        except Exception as e:  # noqa: BLE001 - reported once by the driver, see replica_start_error
            import socket

            raise ReplicaStartError(f'on {socket.gethostname()}: {type(e).__name__}: {e}') from None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(item) for item in batch['item']]
        clips = [(i, item) for i, item in enumerate(items) if item[1] is not None]
        results = dict(zip((i for i, _ in clips), self.model.run([clip for _, (_, _, clip) in clips])))
        out = [pickle.dumps((part, number, results.get(i))) for i, (part, number, _) in enumerate(items)]
        return {'item': np.array(out, dtype=object)}


class RayEngine:
    """Starts (or joins, with `address`) a Ray cluster; `run(paths)` yields each video's rows as it finishes.

    `workers`: model replicas in the actor pool. `cpus_per_worker`: CPU cores reserved per replica (and torch
    threads it uses). `gpus_per_worker`: None means 1 when the cluster has GPUs, else 0. `batch_size`: clips per
    forward. `decode_workers`: concurrent decode tasks (None: as many as the cluster's CPUs allow). `seek`: as
    `VideoDecoder`'s. A Ray started here reserves every core of this machine for decoding, on top of the
    replicas' cores. When Ray is already initialized (by the caller), it is used as it is: its runtime_env must
    then make `timesformer_video` importable on the workers (`py_modules`), as `__enter__` otherwise does.
    """

    def __init__(self, spec: OperatorSpec, workers: int = 2, address: str | None = None,
                 cpus_per_worker: float = 1, gpus_per_worker: float | None = None, batch_size: int = 1,
                 decode_workers: int | None = None, seek: str = 'exact'):
        count('workers', workers)
        count('batch_size', batch_size)
        self.spec, self.workers, self.address = spec, workers, address
        self.cpus_per_worker, self.gpus_per_worker, self.batch_size = cpus_per_worker, gpus_per_worker, batch_size
        self.decode_workers, self.seek = decode_workers, seek
        self._started = False
        self._local = False  # a Ray started here, on this machine, for this run

    def __enter__(self) -> RayEngine:
        import ray

        if not ray.is_initialized():
            import timesformer_video

            from .local_engine import usable_cores

            # address None: RAY_ADDRESS if set (e.g. under `ray job submit`), else a new local cluster.
            self._local = self.address is None and not os.environ.get('RAY_ADDRESS')
            cpus = {'num_cpus': usable_cores() + int(self.workers * self.cpus_per_worker + 0.999)} \
                if self._local else {}
            runtime_env = {'py_modules': [timesformer_video], 'env_vars': {'PYTHONWARNINGS': _QUIET}}
            for attempt in range(1 + self._local):  # a local start is tried twice (below)
                try:
                    ray.init(address=self.address, runtime_env=runtime_env, include_dashboard=False,
                             logging_level=logging.WARNING, log_to_driver=True, **cpus)
                    break
                except Exception:
                    # Ray 2.60 gives a starting raylet a fixed 30 s to register and then raises a bare Exception; on
                    # a loaded 2-core machine it once did not (no raylet log at all). A local start is cheap to redo;
                    # a cluster's failure is the cluster's and is raised at once.
                    ray.shutdown()
                    if attempt == self._local:
                        raise
            self._started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job shows its own
        context.print_on_execution_start = False
        logging.getLogger('ray.data').setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def _results(self, paths: Sequence[str]):
        """The dataset of clip results: decode tasks, then the replicas."""
        import ray

        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get('GPU', 0) >= 1 else 0
        dataset = ray.data.from_items([{'path': p} for p in paths], override_num_blocks=min(len(paths), 10_000))
        clips = dataset.map_batches(decode_videos, fn_kwargs={'sampler': Sampler(self.spec, self.seek, threads=1)},
                                    batch_size=1, batch_format='numpy', num_cpus=1,
                                    compute=ray.data.TaskPoolStrategy(size=self.decode_workers))
        # On a Ray started for this run, a replica that dies is not restarted (the job fails and resumes when run
        # again), so Ray's core worker has no restart to warn about on every run; a cluster keeps Ray's restarts.
        # Ray 2.60 takes max_restarts only through its deprecated **ray_remote_args (no named parameter yet, so its
        # deprecation warning is silenced here); requirements pin ray below 2.64, which removes them.
        restarts = {'max_restarts': 0} if self._local else {}
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='`ray_remote_args` is deprecated')
            return clips.map_batches(_Replica, fn_constructor_kwargs={'spec': self.spec}, batch_size=self.batch_size,
                                     batch_format='numpy', compute=ray.data.ActorPoolStrategy(size=self.workers),
                                     num_cpus=self.cpus_per_worker,
                                     num_gpus=gpus, **restarts)

    def run(self, paths: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        import ray

        from .rows import VideoRows

        if not paths:
            return
        rows = VideoRows(self.spec.model_name)
        parts: dict[tuple[str, int], list] = collections.defaultdict(list)
        try:
            for batch in self._results(paths).iter_batches(batch_size=None, batch_format='numpy',
                                                           prefetch_batches=0):
                for item in batch['item']:
                    part, number, result = pickle.loads(item)
                    finished = _add(rows, parts, part, number, result)
                    if finished is not None:
                        yield finished
        except ray.exceptions.RayError as e:
            failed = replica_start_error(e)
            if failed is None:
                raise
            raise ReplicaStartError(f'a Ray replica could not load the model {failed}') from None


def _add(rows, parts, part: VideoPart, number: int | None, result) -> list[dict[str, Any]] | None:
    """One clip's result (or a part with no clip); the video's rows when it is now complete."""
    if number is None:
        return rows.add(part, [])
    done = parts[part.path, part.part]
    done.append((number, result))
    if len(done) < len(part.clips):
        return None
    del parts[part.path, part.part]
    return rows.add(part, [r for _, r in sorted(done, key=lambda pair: pair[0])])


def replica_start_error(error: BaseException) -> ReplicaStartError | None:
    """The `ReplicaStartError` a replica raised, found (by type) inside the exception Ray hands the driver; else None.

    Ray keeps the replica's exception instance (pickled on the worker, unpickled on the driver): a replica whose
    constructor raised reaches the driver as an `ActorDiedError` (a `RayActorError`) whose one constructor argument,
    `args[0]` (what Ray pickles it with), is the creation task's `RayTaskError`, whose `cause` is the instance; Ray
    Data re-raises it `from SystemException()`. A failed task is a `RayTaskError` with the instance as `cause` (made
    by `as_instanceof_cause()` it is also of the cause's class, but its text is Ray's, so its `cause` is returned),
    and Ray Data raises a UDF's error as a `UserCodeException` `from` it. This follows those links, and
    `__cause__`/`__context__`, from `error`.
    """
    from ray.exceptions import RayActorError, RayTaskError

    pending, seen = [error], set()
    while pending:
        e = pending.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ReplicaStartError) and not isinstance(e, RayTaskError):  # a dual instance's str is Ray's
            return e
        links = [e.__cause__, e.__context__]
        if isinstance(e, RayTaskError):
            links.append(e.cause)
        if isinstance(e, RayActorError):
            links.extend(e.args)
        pending.extend(link for link in links if isinstance(link, BaseException))
    return None
