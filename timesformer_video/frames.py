"""What the classifier, the windows and the batch job accept as a video's frames, declared once.

A plain `list` of RGB `(H, W, 3)` uint8 arrays (Towhee `VideoFrame`s are such arrays) or a `(T, H, W, 3)` array is a
video. `Frames` is the richer, lazy form `decode.LazyFrames` implements (and the Towhee operator's `VideoFrames`
around it): frames decoded when read, several at once with `take`, and
the timing that sliding windows and clip sampling need without decoding. `isinstance(x, Frames)` holds when x has
every member; a consumer also takes sequences with fewer and falls back (`transform.fetch_frames` reads `frames[i]`
one by one without `take`; `timing.frame_times` reads `timestamps` (ms) without `times`, each frame's `timestamp`
without either, or uses `fps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Frames(Protocol):
    """A lazy sequence of a video's frames, in presentation order."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray:
        """One RGB uint8 `(H, W, 3)` frame (from the Towhee operator, a `towhee.types.VideoFrame`: `timestamp` ms)."""

    def take(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The frames at `indices`, in the order asked, decoded in one forward pass."""

    @property
    def times(self) -> Sequence[Fraction]:
        """Each frame's exact presentation time in seconds since the video's first frame; non-decreasing."""

    @property
    def timestamps(self) -> Sequence[int]:
        """Each frame's presentation time in ms since the video's first frame (`times` rounded); non-decreasing."""

    @property
    def fps(self) -> Fraction:
        """The frame rate (frames per second), exact: 30000/1001, not 29.97002997002997."""

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end."""

    @property
    def error(self) -> Exception | None:
        """Set when the video stops early (a `TruncatedVideoError`): the frames are the readable part."""


# What a consumer accepts as one video: lazy frames, a list of frames, or one `(T, H, W, 3)` uint8 array.
Video = Frames | Sequence[np.ndarray] | np.ndarray
