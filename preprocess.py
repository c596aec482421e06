"""Frames to a model clip: uniform temporal subsample, /255, short-side resize, centre crop, normalize.

This reproduces the Towhee TimeSformer operator's pytorchvideo transform (UniformTemporalSubsample, Normalize,
ShortSideScale bilinear without antialias, CenterCropVideo). Frames are subsampled and validated while still
uint8, and only the kept frames become float: a long video never turns into one huge float array.
Normalizing after the resize instead of before is exact up to float rounding (both are linear per channel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def uniform_indices(num_available: int, num_samples: int) -> list[int]:
    """`floor(linspace(0, n - 1, k))`, as pytorchvideo's UniformTemporalSubsample (repeats frames when k > n)."""
    return torch.linspace(0, num_available - 1, num_samples).long().tolist()


def _frame_array(frame, index: int) -> np.ndarray:
    """One RGB uint8 (H, W, 3) array; BGR VideoFrames are flipped, anything else is a clear error."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f'frame {index} is a {type(frame).__name__}; expected a towhee VideoFrame or an '
                        f'np.ndarray (H, W, 3) uint8')
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f'frame {index} has shape {frame.shape}; expected (H, W, 3) RGB '
                         f'(grayscale and RGBA frames must be converted to RGB first)')
    if frame.dtype != np.uint8:
        raise ValueError(f'frame {index} has dtype {frame.dtype}; expected uint8 (0..255)')
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f'frame {index} is empty: shape {frame.shape}')
    mode = getattr(frame, 'mode', None) or 'RGB'
    if mode == 'BGR':
        return np.asarray(frame)[..., ::-1]
    if mode != 'RGB':
        raise ValueError(f'frame {index} has mode {mode!r}; expected RGB or BGR')
    return np.asarray(frame)


def select_frames(frames, num_frames: int | None) -> torch.Tensor:
    """Pick `num_frames` uniformly (all when None) and stack them as uint8 RGB `(T, H, W, 3)`."""
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        count = frames.shape[0]
        if count == 0:
            raise ValueError('no frames: the video clip is empty')
        chosen = frames[uniform_indices(count, num_frames)] if num_frames else frames
        arrays = [_frame_array(f, i) for i, f in enumerate(chosen)]
    else:
        if not isinstance(frames, Sequence):
            raise TypeError(f'frames is a {type(frames).__name__}; expected a list of frames or a (T, H, W, 3) array')
        count = len(frames)
        if count == 0:
            raise ValueError('no frames: the video is empty or the decoder returned nothing')
        indices = uniform_indices(count, num_frames) if num_frames else list(range(count))
        unique = sorted(set(indices))
        # A lazy decoder can fetch several frames in one forward pass instead of one seek per frame.
        fetched = frames.take(unique) if hasattr(frames, 'take') else [frames[i] for i in unique]
        by_index = {i: _frame_array(f, i) for i, f in zip(unique, fetched)}
        arrays = [by_index[i] for i in indices]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f'frames have different sizes {sorted(shapes)}; all frames of a clip must be one size')
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def clip_to_tensor(clip: torch.Tensor, size: int, mean, std, channel_order: str = 'RGB') -> torch.Tensor:
    """uint8 `(T, H, W, 3)` RGB -> normalized float `(3, T, size, size)` in the model's channel order."""
    if channel_order == 'BGR':
        clip = clip.flip(-1)
    x = clip.permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H, W): frames are the batch for interpolate
    t, _, h, w = x.shape
    new_h, new_w = short_side_size(h, w, size)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=False)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    x = x[:, :, top:top + size, left:left + size]
    mean = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).transpose(0, 1).contiguous()
