"""One video in, its result rows out, in this process: the decode, model and rows stages run one after another.

For a search query (`runner.embed`) and for trying one video; the batch job runs the same stages in its engines
(`local_engine`, `ray_engine`), so all make the same rows for the same video.
"""

from __future__ import annotations

from typing import Any

from .decoding import Sampler, error_text
from .model_stage import ClipModel
from .operators import OperatorSpec, build_classifier
from .rows import VideoRows, error_row

__all__ = ['Indexer', 'error_row', 'error_text']


class Indexer:
    """The operator (`op`, or built from `spec`) and a `decoding.Sampler`, in this process.

    `start`/`end` (seconds): only the frames shown in `[start, end)`. `rows(path)` -> the video's rows (its one row,
    or one per window); `indexer(path)` -> its first row."""

    def __init__(self, spec: OperatorSpec, op=None, start: float | None = None, end: float | None = None,
                 seek: str = 'exact'):
        self.spec = spec
        self.op = op if op is not None else build_classifier(spec)
        self.sampler = Sampler(spec, seek, start, end)
        self.model = ClipModel(self.op)

    @property
    def dim(self) -> int:
        return self.op.cfg.embed_dim

    def __call__(self, path: str) -> dict[str, Any]:
        return self.rows(path)[0]

    def rows(self, path: str) -> list[dict[str, Any]]:
        collected = VideoRows(self.spec.model_name)
        part_number = 0
        while True:
            part = self.sampler.decode(path, part_number)
            finished = collected.add(part, self.model.run(part.clips))
            if finished is not None:
                return finished
            part_number += 1
