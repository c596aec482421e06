"""The settings of one `index` run (`IndexJob`), checked once (jobs/checks.py), and how two settings differ.

`IndexJob` is what the command line builds and what `runner.run_index` takes; `diff` says which fields of two
jobs differ, and `differences` the same for the settings a finished output or a Milvus collection records (a dict,
`OperatorSpec.signature()`), which a resumed run must match.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from ..decode import SEEK_MODES
from . import checks
from .operators import OperatorSpec

ENGINES = ('local', 'ray')
FORMATS = ('parquet', 'jsonl')


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`{key: (mine[key], theirs[key])}` for each key whose values differ (None where a side lacks the key), in
    the order the keys first appear."""
    return {key: (mine.get(key), theirs.get(key)) for key in dict.fromkeys([*mine, *theirs])
            if mine.get(key) != theirs.get(key)}


def describe(diff: dict[str, tuple[Any, Any]], mine: str = 'there', theirs: str = 'in this run') -> str:
    """One indented line per differing setting: `  key: <mine> there, <theirs> in this run` (values as JSON)."""
    return '\n'.join(f'  {key}: {json.dumps(a, default=str)} {mine}, {json.dumps(b, default=str)} {theirs}'
                     for key, (a, b) in diff.items())


@dataclasses.dataclass(frozen=True)
class IndexJob:
    """One `index` run: what to read, where to write, which model, which engine, which Milvus collection.

    inputs: files, folders, globs, list files (`@list.txt` or `.txt`/`.lst`) and URLs (`inputs.expand`).
    out: the output file (`.parquet`, or `.jsonl`; `fmt` overrides the extension). spec: the model and its options.
    engine: 'local' (this process and its decoding workers) or 'ray' (an actor pool of `workers` model replicas of
    `cpus_per_worker` cores and `gpus_per_worker` GPUs, None: 1 where the cluster has GPUs; `ray_address` an
    existing cluster). decode_workers: decoding processes (local) or concurrent decode tasks (Ray); None: the
    default rule (docs/batch_jobs.md). batch_size: clips per model forward, gathered across videos.
    seek: 'exact' (the frames the sampling asks for) or 'keyframes' (the keyframe at or before each: faster,
    approximate). chunk_size / chunk_seconds: finished rows are saved (and survive a kill) every `chunk_size`
    videos or `chunk_seconds` s. milvus: a Milvus Lite `.db` path or a server URI (`collection` default 'videos',
    or 'moments' for windows; `milvus_token` for a server). retry_failed: process again the videos whose row has an
    error. overwrite: start again instead of resuming. progress: show a progress bar on stderr.
    Raises ValueError for a setting out of its range, TypeError for a spec that is not an OperatorSpec.
    """

    inputs: Sequence[str | os.PathLike] | str | os.PathLike  # one path alone is one input
    out: str | os.PathLike
    spec: OperatorSpec = dataclasses.field(default_factory=OperatorSpec)
    fmt: str | None = None
    engine: str = 'local'
    workers: int = 2
    ray_address: str | None = None
    cpus_per_worker: float = 1
    gpus_per_worker: float | None = None
    decode_workers: int | None = None
    batch_size: int = 1
    seek: str = 'exact'
    chunk_size: int = 32
    chunk_seconds: float = 60.0
    milvus: str | None = None
    collection: str | None = None
    milvus_token: str | None = None
    retry_failed: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        inputs = self.inputs
        if isinstance(inputs, (str, bytes, os.PathLike)):
            inputs = [inputs]  # one input, not a sequence of characters
        object.__setattr__(self, 'inputs', tuple(os.fspath(item) for item in inputs))
        if not isinstance(self.spec, OperatorSpec):
            raise TypeError(f'spec must be an OperatorSpec (jobs.operators), not a {type(self.spec).__name__}')
        if self.engine not in ENGINES:
            raise ValueError(f'unknown engine {self.engine!r}; expected one of {ENGINES}')
        if self.fmt is not None and self.fmt not in FORMATS:
            raise ValueError(f"fmt must be 'parquet', 'jsonl' or None (from the extension of out), got {self.fmt!r}")
        checks.one_of('seek', self.seek, SEEK_MODES)
        for name in ('workers', 'batch_size', 'chunk_size'):
            checks.count(name, getattr(self, name))
        checks.optional_count('decode_workers', self.decode_workers)
        checks.positive('chunk_seconds', self.chunk_seconds, ' of seconds')
        checks.positive('cpus_per_worker', self.cpus_per_worker)
        if self.gpus_per_worker is not None:
            checks.at_least('gpus_per_worker', self.gpus_per_worker, 0)

    def diff(self, other: IndexJob) -> dict[str, tuple[Any, Any]]:
        """`{field: (this job's value, other's)}` for each field whose values differ, in field order; the spec's
        fields are compared one by one, as `spec.<field>`."""
        if not isinstance(other, IndexJob):
            raise TypeError(f'diff compares two IndexJobs, not an IndexJob and a {type(other).__name__}')
        mine, theirs = _fields(self), _fields(other)
        return differences(mine, theirs)


def _fields(job: IndexJob) -> dict[str, Any]:
    """The job's fields by name, the spec's as `spec.<name>`."""
    fields = {field.name: getattr(job, field.name) for field in dataclasses.fields(job) if field.name != 'spec'}
    spec = {f'spec.{field.name}': getattr(job.spec, field.name) for field in dataclasses.fields(job.spec)}
    return {**fields, **spec}
