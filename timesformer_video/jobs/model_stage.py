"""The model stage: batches of decoded clips, from any videos, through one classifier on one device.

A clip's views (`decoding.Clip.views`, made by the decode workers), or else its uint8 frames turned into them here
(`ClipTransform.views`: scale the short side, crop, normalise), are stacked; the batch goes through one forward
(`ActionClassifier.classify`), and each clip gets its top-k labels, scores and feature (`postprocess`). A batch
that fails is run again clip by clip, so a failure is recorded against the clip (and video) that caused it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import torch

from .decoding import Clip, error_text, frames_tensor


@dataclasses.dataclass
class ClipResult:
    """One clip's result: `labels` (top-k, best first), `scores` (their probabilities), `feature` `(D,)` float32,
    `model_s` (its share of the batch's seconds); or `error` (`TypeName: message`) and None for the rest."""

    labels: list[str] | None
    scores: list[float] | None
    feature: np.ndarray | None
    model_s: float
    error: str | None = None


class ClipModel:
    """`op`: an `ActionClassifier` (the batch job's `operators.build_classifier`). `run(clips)` -> one
    `ClipResult` per clip, in order."""

    def __init__(self, op):
        self.op = op

    def run(self, clips: Sequence[Clip]) -> list[ClipResult]:
        if not clips:
            return []
        started = time.perf_counter()
        try:
            results = self._forward(clips)
        except Exception:  # noqa: BLE001 - redone per clip, which records the right clip's error
            return [self._one(clip) for clip in clips]
        share = (time.perf_counter() - started) / len(clips)
        return [ClipResult(*result, share) for result in results]

    def _one(self, clip: Clip) -> ClipResult:
        started = time.perf_counter()
        try:
            (labels, scores, feature), = self._forward([clip])
        except Exception as e:  # noqa: BLE001 - one clip's failure is its result
            return ClipResult(None, None, None, time.perf_counter() - started, error_text(e))
        return ClipResult(labels, scores, feature, time.perf_counter() - started)

    def _forward(self, clips: Sequence[Clip]) -> list[tuple[list[str], list[float], np.ndarray]]:
        """One forward over the clips' views `(B, V, 3, T, S, S)`."""
        views = torch.stack([torch.from_numpy(clip.views) if clip.views is not None
                             else self.op.transform.views(frames_tensor(clip.frames)) for clip in clips])
        probs, features = self.op.classify(views)
        return [self.op.postprocess(p, f) for p, f in zip(probs, features)]
