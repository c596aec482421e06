"""Frames to a model clip: uniform temporal subsample, /255, short-side resize, centre crop, normalize.

This reproduces the Towhee TimeSformer operator's pytorchvideo transform (UniformTemporalSubsample, Normalize,
ShortSideScale bilinear without antialias, CenterCropVideo). Frames are subsampled and validated while still
uint8, and only the kept frames become float: a long video never turns into one huge float array.
Normalizing after the resize instead of before is exact up to float rounding (both are linear per channel).
`clip_indices` is the paper's alternative to the uniform subsample: a fixed-rate clip from the middle of the video.
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
    else:
        if not isinstance(frames, Sequence):
            raise TypeError(f'frames is a {type(frames).__name__}; expected a list of frames or a (T, H, W, 3) array')
        count = len(frames)
        if count == 0:
            raise ValueError('no frames: the video is empty or the decoder returned nothing')
    indices = uniform_indices(count, num_frames) if num_frames else list(range(count))
    return stack_frames(fetch_frames(frames, indices), indices)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def scale_short_side(clip: torch.Tensor, size: int, channel_order: str = 'RGB') -> torch.Tensor:
    """uint8 `(T, H, W, 3)` RGB -> float `(T, 3, h, w)` in [0, 1], the model's channel order, short side `size`.

    Frame by frame: only one full-size float frame exists at a time (8 frames of 8K video are 0.8 GB as uint8 but
    3.2 GB as float32; converting the whole clip at once peaked at +4 GB RSS)."""
    t, h, w = clip.shape[:3]
    new_h, new_w = short_side_size(h, w, size)
    scaled = torch.empty((t, 3, new_h, new_w), dtype=torch.float32)
    for i, frame in enumerate(clip):  # (H, W, 3) uint8
        if channel_order == 'BGR':
            frame = frame.flip(-1)
        x = frame.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # (1, 3, H, W)
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=False)
        scaled[i] = x[0]
    return scaled


def crop_normalize(x: torch.Tensor, top: int, left: int, size: int, mean, std) -> torch.Tensor:
    """One `size` square of a scaled `(T, 3, h, w)` clip, normalized, as the model's `(3, T, size, size)`."""
    x = x[:, :, top:top + size, left:left + size]
    mean = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).transpose(0, 1).contiguous()


def clip_to_tensor(clip: torch.Tensor, size: int, mean, std, channel_order: str = 'RGB') -> torch.Tensor:
    """uint8 `(T, H, W, 3)` RGB -> normalized float `(3, T, size, size)` in the model's channel order."""
    x = scale_short_side(clip, size, channel_order)
    new_h, new_w = x.shape[-2:]
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return crop_normalize(x, top, left, size, mean, std)


# PySlowFast's DATA.TARGET_FPS: a checkpoint's `sampling_rate` counts frames of a 30 fps video.
TARGET_FPS = 30


def clip_indices(num_available: int, num_frames: int, sampling_rate: int, fps: float,
                 target_fps: float = TARGET_FPS) -> list[int]:
    """The paper's test clip: `num_frames` over `num_frames * sampling_rate` frames at `target_fps`, centred.

    As PySlowFast's decoder, the span is converted to the video's own frames (`* fps / target_fps`, so an 8x32 clip
    covers 8.53 s at any frame rate) and sampled with `linspace(start, start + span - 1, num_frames)`, truncated.
    The original starts its single test clip at frame 0; here it is centred, `start = (n - span) / 2`. A video
    shorter than the span starts at frame 0 and its last frame repeats (indices clamped, as PySlowFast's
    `temporal_sampling`), which keeps the frame spacing the model was trained with.
    """
    if num_available < 1:
        raise ValueError('no frames: the video clip is empty')
    rate = float(fps) if isinstance(fps, (int, float, np.number)) else math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f'clip sampling needs the frame rate, a positive number; got fps={fps!r}')
    span = num_frames * sampling_rate * rate / target_fps
    start = max(num_available - span, 0.0) / 2
    index = np.linspace(start, start + span - 1, num_frames)
    return np.clip(index, 0, num_available - 1).astype(np.int64).tolist()


def fetch_frames(frames, indices) -> dict[int, np.ndarray]:
    """The frames at `indices` as validated RGB uint8 arrays, by index; a lazy decoder decodes them in one pass."""
    unique = sorted(set(indices))
    if hasattr(frames, 'take') and not isinstance(frames, np.ndarray):
        fetched = frames.take(unique)  # a lazy decoder: several frames in one forward pass, not one seek each
    else:
        fetched = [frames[i] for i in unique]
    return {i: _frame_array(f, i) for i, f in zip(unique, fetched)}


def stack_frames(by_index: dict[int, np.ndarray], indices) -> torch.Tensor:
    """Frames from `fetch_frames` in `indices` order as one uint8 `(T, H, W, 3)` clip."""
    arrays = [by_index[i] for i in indices]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f'frames have different sizes {sorted(shapes)}; all frames of a clip must be one size')
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
