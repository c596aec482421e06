"""The rows stage: a video's decoded parts and their clips' results -> the video's result rows (`results.schema`).

The one place a row is built, for whole videos and windows alike: a whole video is the one window
`[start_ms, end_ms)` from its first frame to the end of its last, so a row is a window either way. A video is
complete once its last part and every part before it have their results; its rows then come together: one per
window (one for a whole video), in time order. A video that fails (opening, decoding or the model, in any part)
is one row with its `error` and no window: a failure after some windows drops them, so the video is redone by
`--retry-failed`, never kept half done. A video that stops early (truncated) keeps the results of its readable
part, and every row's `error` says where it stops.

Timings: a row's `decode_s` is its share of the video's opening and decoding (all of it for a whole video),
`model_s` its clip's share of its batch's forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .decoding import VideoPart, error_text
from .model_stage import ClipResult
from .paths import readable

__all__ = ['error_row', 'error_text', 'VideoRows']


def error_row(path: str, model: str, error: BaseException | str, decode_s: float = 0.0) -> dict[str, Any]:
    """The one row of a video that failed (no window: `start_ms` and `end_ms` are None): `error` is
    `TypeName: message` (an exception is written so)."""
    message = readable(error) if isinstance(error, str) else error_text(error)
    return {'path': path, 'start_ms': None, 'end_ms': None, 'model': model, 'duration': None, 'labels': None,
            'scores': None, 'feature': None, 'decode_s': decode_s, 'model_s': 0.0, 'error': message}


class VideoRows:
    """Collects each video's parts and results (`add`) and gives its rows once it is complete.

    `model`: the model's name for the `model` column."""

    def __init__(self, model: str):
        self.model = model
        self._parts: dict[str, dict[int, tuple[VideoPart, Sequence[ClipResult]]]] = {}

    def add(self, part: VideoPart, results: Sequence[ClipResult]) -> list[dict[str, Any]] | None:
        """Record one part and its clips' results (in clip order); the video's rows when it is now complete."""
        parts = self._parts.setdefault(part.path, {})
        parts[part.part] = (part, results)
        last = next((number for number, (p, _) in parts.items() if p.last), None)
        if last is None or any(number not in parts for number in range(last + 1)):
            return None
        del self._parts[part.path]
        return self._rows([parts[number] for number in range(last + 1)])

    def _rows(self, parts: list[tuple[VideoPart, Sequence[ClipResult]]]) -> list[dict[str, Any]]:
        path = parts[0][0].path
        decode_s = sum(part.decode_s for part, _ in parts)
        clips = [(part, clip, result) for part, results in parts for clip, result in zip(part.clips, results)]
        failed = next((part.error for part, _ in parts if part.error is not None), None)
        failed = failed or next((result.error for _, _, result in clips if result.error is not None), None)
        if failed is not None or not clips:
            return [error_row(path, self.model, failed or 'EmptyVideoError: no clips', decode_s)]
        share = decode_s / len(clips)
        return [self._row(part, clip, result, share) for part, clip, result in clips]

    def _row(self, part: VideoPart, clip, result: ClipResult, decode_s: float) -> dict[str, Any]:
        return {'path': part.path, 'start_ms': int(clip.start_ms), 'end_ms': int(clip.end_ms), 'model': self.model,
                'duration': part.duration,
                'labels': list(result.labels), 'scores': [float(s) for s in result.scores],
                'feature': result.feature, 'decode_s': decode_s, 'model_s': result.model_s, 'error': part.stopped}
