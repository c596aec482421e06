"""Scale-out on Ray Data: the inputs as a dataset of paths, `map_batches` over an actor pool of operator replicas.

Each replica (`_Replica`) builds the operator once from the `OperatorSpec` and turns a batch of paths into a
batch of result rows, the same rows the local engine makes. The driver consumes the results as they stream in
and writes them through the same `ResultStore`, so resuming, chunking and the output schema do not depend on the
engine.

Code shipping: the workers get the `timesformer_video` package (and nothing else: no videos, no virtualenv) as a
Ray `py_modules` entry, so a cluster on other machines needs only the same third-party packages installed. Video
paths must be readable on every node (shared storage) or be URLs; so must `--weights`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import ReplicaStartError
from .operators import OperatorSpec

_QUIET = 'ignore:pkg_resources is deprecated:UserWarning'  # towhee's import, once per replica


class _Replica:
    """One model replica in the actor pool (Ray constructs it on a worker with `spec`)."""

    def __init__(self, spec: OperatorSpec):
        from .indexer import Indexer

        try:
            self.indexer = Indexer(spec)
        except Exception as e:  # noqa: BLE001 - reported once by the driver, see replica_start_error
            import socket

            raise ReplicaStartError(f'on {socket.gethostname()}: {type(e).__name__}: {e}') from None

    def __call__(self, batch: dict[str, Any]):
        from .results import rows_to_table

        rows = self.indexer.process_many([str(p) for p in batch['path']])
        return rows_to_table(rows, self.indexer.dim, moments=self.indexer.moments)


class RayEngine:
    """Starts (or joins, with `address`) a Ray cluster; `run(paths)` yields lists of result rows as they finish.

    `workers`: replicas in the actor pool. `cpus_per_worker`: CPU cores reserved per replica (and torch threads
    it uses). `gpus_per_worker`: None means 1 when the cluster has GPUs, else 0. `batch_size`: videos per
    `map_batches` call. When Ray is already initialized (by the caller), it is used as it is: its runtime_env must
    then make `timesformer_video` importable on the workers (`py_modules`), as `__enter__` otherwise does.
    """

    def __init__(self, spec: OperatorSpec, workers: int = 2, address: str | None = None,
                 cpus_per_worker: float = 1, gpus_per_worker: float | None = None, batch_size: int = 1):
        if workers < 1 or batch_size < 1:
            raise ValueError(f'workers and batch_size must be at least 1, got {workers} and {batch_size}')
        self.spec, self.workers, self.address = spec, workers, address
        self.cpus_per_worker, self.gpus_per_worker, self.batch_size = cpus_per_worker, gpus_per_worker, batch_size
        self._started = False
        self._local = False  # a Ray started here, on this machine, for this run

    def __enter__(self) -> RayEngine:
        import ray

        if not ray.is_initialized():
            import timesformer_video

            # address None: RAY_ADDRESS if set (e.g. under `ray job submit`), else a new local cluster.
            runtime_env = {'py_modules': [timesformer_video], 'env_vars': {'PYTHONWARNINGS': _QUIET}}
            ray.init(address=self.address, runtime_env=runtime_env, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=True)
            self._started = True
            self._local = self.address is None and not os.environ.get('RAY_ADDRESS')
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

    def run(self, paths: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        import ray

        from .results import table_to_rows

        if not paths:
            return
        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get('GPU', 0) >= 1 else 0
        blocks = min(len(paths), max(self.workers, math.ceil(len(paths) / self.batch_size)), 10_000)
        dataset = ray.data.from_items([{'path': p} for p in paths], override_num_blocks=blocks)
        # On a Ray started for this run, a replica that dies is not restarted (the job fails and resumes when run
        # again), so Ray's core worker has no restart to warn about on every run; a cluster keeps Ray's restarts.
        # Ray 2.60 takes max_restarts only through its deprecated **ray_remote_args (no named parameter yet, so its
        # deprecation warning is silenced here); requirements pin ray below 2.64, which removes them.
        restarts = {'max_restarts': 0} if self._local else {}
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='`ray_remote_args` is deprecated')
            results = dataset.map_batches(
                _Replica, fn_constructor_kwargs={'spec': self.spec}, batch_size=self.batch_size,
                batch_format='numpy', compute=ray.data.ActorPoolStrategy(size=self.workers),
                num_cpus=self.cpus_per_worker, num_gpus=gpus, **restarts)
        try:
            for table in results.iter_batches(batch_size=None, batch_format='pyarrow', prefetch_batches=0):
                yield table_to_rows(table)
        except ray.exceptions.RayError as e:
            failed = replica_start_error(e)
            if failed is None:
                raise
            raise ReplicaStartError(f'a Ray replica could not load the model {failed}') from None


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
