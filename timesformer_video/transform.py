"""Frames to the model's input, for one model record: sample -> fetch -> stack -> crops -> normalise.

`ClipTransform(cfg, num_crops, sampling)` is the whole path; the operator and the sliding windows both use it.

Single crop (the seed's): this reproduces the Towhee TimeSformer operator's pytorchvideo transform
(UniformTemporalSubsample, Normalize, ShortSideScale bilinear without antialias, CenterCropVideo). Frames are
subsampled and validated while still uint8, and only the kept frames become float: a long video never turns into
one huge float array.
Normalizing after the resize instead of before is exact up to float rounding (both are linear per channel).
Which frames make the clip is `sampling.py`'s (`uniform_indices`, or `clip_indices`: the paper's alternative, a
fixed-rate clip from the middle of the video); the decoder samples by the same rules.

Three crops (the paper's test views): the published TimeSformer accuracy is 1 clip x 3 crops (PySlowFast's test
protocol): the short side is scaled to the crop size and `uniform_crop` takes the left, centre and right squares
(top, centre, bottom when the frame is taller than wide). How the views' outputs combine is the classifier's
(`classifier.merge_views`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from .errors import TruncatedVideoWarning
from .frames import Frames, Video
from .sampling import TARGET_FPS, clip_indices, uniform_indices  # noqa: F401 - also this module's API
from .timing import frame_rate
from .zoo import ModelCfg, get_cfg

NUM_CROPS = (1, 3)
SAMPLINGS = ('uniform', 'clip')


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


def _count(frames: Video) -> int:
    """How many frames `frames` holds; TypeError / ValueError when it is not a non-empty video."""
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        count = frames.shape[0]
        if count == 0:
            raise ValueError('no frames: the video clip is empty')
        return count
    if isinstance(frames, (str, bytes, os.PathLike)):
        raise TypeError(f'frames is a path ({frames!r}), not frames; decode the video first: '
                        f'VideoDecoder()(path) (timesformer_video.decode), or ops.video_decode.ffmpeg() in Towhee')
    if not isinstance(frames, (Sequence, Frames)):
        raise TypeError(f'frames is a {type(frames).__name__}; expected a list of frames or a (T, H, W, 3) array')
    if len(frames) == 0:
        raise ValueError('no frames: the video is empty or the decoder returned nothing')
    return len(frames)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def scale_short_side(clip: torch.Tensor, size: int, channel_order: str = 'RGB') -> torch.Tensor:
    """uint8 `(T, H, W, 3)` RGB -> float `(T, 3, h, w)` in [0, 1], the model's channel order, short side `size`.

    Frame by frame: only one full-size float frame exists at a time (8 frames of 8K video are 0.8 GB as uint8 but
    3.2 GB as float32; converting the whole clip at once peaked at +4 GB RSS). The 3 channels are scaled as a batch
    of 3 one-channel images: the same numbers at any torch thread count (a `(1, 3, H, W)` input gave results 1 ulp
    apart on 1 thread and on several), so the batch job's decode workers (1 thread each) make the views this
    process would."""
    t, h, w = clip.shape[:3]
    new_h, new_w = short_side_size(h, w, size)
    scaled = torch.empty((t, 3, new_h, new_w), dtype=torch.float32)
    for i, frame in enumerate(clip):  # (H, W, 3) uint8
        if channel_order == 'BGR':
            frame = frame.flip(-1)
        x = frame.permute(2, 0, 1).unsqueeze(1).float().div_(255.0)  # (3, 1, H, W)
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=False)
        scaled[i] = x[:, 0]
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


def fetch_frames(frames: Video, indices) -> dict[int, np.ndarray]:
    """The frames at `indices` as validated RGB uint8 arrays, by index; a lazy decoder decodes them in one pass."""
    unique = sorted(set(indices))
    if hasattr(frames, 'take') and not isinstance(frames, np.ndarray):
        fetched = frames.take(unique)  # a lazy decoder: several frames in one forward pass, not one seek each
    else:
        fetched = [frames[i] for i in unique]
    return {i: _frame_array(f, i) for i, f in zip(unique, fetched)}


def stack_frames(by_index: dict[int, np.ndarray], indices) -> torch.Tensor | list[torch.Tensor]:
    """Frames from `fetch_frames` in `indices` order as one uint8 `(T, H, W, 3)` clip; when the video changes size
    within the clip (a resolution switch in a stream capture, clips of two sizes joined), a list of its T uint8
    `(H, W, 3)` frames, which `ClipTransform.views` scales and crops one by one."""
    arrays = [by_index[i] for i in indices]
    if len({a.shape for a in arrays}) > 1:
        return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))


def three_crop_offsets(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """(top, left) of PySlowFast's `uniform_crop` views 0, 1, 2 in a short-side-scaled `height x width` frame.

    Its centre offset rounds up (`ceil`), where the seed's single centre crop rounds half to even: the two centres
    can differ by 1 px. A square frame takes the landscape branch, so its three views are the same.
    """
    top, left = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if height > width:
        return [(0, left), (top, left), (height - size, left)]
    return [(top, 0), (top, left), (top, width - size)]


def clip_to_views(clip: torch.Tensor, size: int, mean, std, channel_order: str = 'RGB',
                  num_crops: int = 1) -> torch.Tensor:
    """uint8 `(T, H, W, 3)` RGB -> normalized float views `(num_crops, 3, T, size, size)`."""
    if num_crops == 1:
        return clip_to_tensor(clip, size, mean, std, channel_order).unsqueeze(0)
    if num_crops != 3:
        raise ValueError(f'num_crops must be one of {NUM_CROPS}, got {num_crops!r}')
    x = scale_short_side(clip, size, channel_order)
    offsets = three_crop_offsets(x.shape[2], x.shape[3], size)
    return torch.stack([crop_normalize(x, top, left, size, mean, std) for top, left in offsets])


class ClipTransform:
    """A model record's transform: which frames make the clip, and the clip as the model's normalised views.

    Args:
        cfg: the record: `num_frames`, `image_size`, `mean`, `std`, `channel_order`, `sampling_rate`.
        num_crops: 1 (the seed's centre crop) or 3 (the paper's three crops).
        sampling: 'uniform' (`num_frames` spread over all frames) or 'clip' (the paper's fixed-rate clip from the
            middle; needs the frame rate).
        skip_preprocess: every frame goes to the model (no temporal subsample); frames are still resized, cropped
            and normalised.

    Raises ValueError for an argument out of its range.
    """

    def __init__(self, cfg: ModelCfg | str, num_crops: int = 1, sampling: str = 'uniform',
                 skip_preprocess: bool = False):
        cfg = get_cfg(cfg) if isinstance(cfg, str) else cfg
        if not isinstance(cfg, ModelCfg):
            raise TypeError(f'cfg must be a zoo.ModelCfg or a model name, not a {type(cfg).__name__}')
        if not isinstance(skip_preprocess, bool):  # a truthy string ('no') must not skip the sampling
            raise ValueError(f'skip_preprocess must be True or False, got {skip_preprocess!r}')
        if isinstance(num_crops, bool) or not isinstance(num_crops, int) or num_crops not in NUM_CROPS:
            raise ValueError(f'num_crops must be 1 (centre crop) or 3 (the paper\'s 3 crops), got {num_crops!r}')
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be 'uniform' or 'clip', got {sampling!r}")
        if sampling == 'clip' and cfg.sampling_rate is None:
            raise ValueError(f"{cfg.name} has no clip sampling rate: {cfg.dataset} checkpoints were trained on "
                             f"frames spread over the whole video; use sampling='uniform'")
        if skip_preprocess and sampling == 'clip':
            raise ValueError("skip_preprocess=True gives the model the frames as they are, so it cannot be combined "
                             "with sampling='clip' or window=, which choose frames")
        self.cfg, self.num_crops, self.sampling, self.skip_preprocess = cfg, num_crops, sampling, skip_preprocess

    def indices(self, count: int, fps: Fraction | float | None = None) -> list[int]:
        """Which of `count` frames make the clip (`fps`: the frames' rate, needed by sampling='clip')."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f'count must be a positive number of frames, got {count!r}')
        if self.skip_preprocess:
            return list(range(count))
        if self.sampling == 'clip':
            return clip_indices(count, self.cfg.num_frames, self.cfg.sampling_rate, fps)
        return uniform_indices(count, self.cfg.num_frames)

    def views(self, clip: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 `(T, H, W, 3)` RGB clip -> normalised float views `(num_crops, 3, T, S, S)`, S the crop size.

        A list of T uint8 `(H, W, 3)` frames of different sizes (`stack_frames`) is taken frame by frame: each is
        scaled and cropped as a clip of its own size would be (for frames of one size, the same numbers).
        """
        cfg = self.cfg
        if isinstance(clip, torch.Tensor):
            if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
                raise ValueError(f'a clip is uint8 (T, H, W, 3) RGB; got {clip.dtype} {tuple(clip.shape)}')
            return clip_to_views(clip, cfg.image_size, cfg.mean, cfg.std, cfg.channel_order, self.num_crops)
        return torch.cat([self.views(frame[None]) for frame in clip], dim=2)

    def __call__(self, frames: Video) -> torch.Tensor:
        """Frames (a list of RGB `VideoFrame`s / `(H, W, 3)` uint8 arrays, a `(T, H, W, 3)` array, or lazy frames)
        -> views `(num_crops, 3, T, S, S)` float32 on the CPU.

        Lazy frames whose `error` says the video stops early are used as they are, with a `TruncatedVideoWarning`.
        Raises TypeError / ValueError for frames that are not a video (empty, wrong shape, dtype or mode).
        """
        stopped = getattr(frames, 'error', None)
        if isinstance(stopped, Exception):
            warnings.warn(TruncatedVideoWarning(f'{stopped}; classifying those {len(frames)} frames'), stacklevel=3)
        indices, by_index = self.sample(frames)
        return self.views(stack_frames(by_index, indices))

    def sample(self, frames: Video) -> tuple[list[int], dict]:
        """The clip's frame indices into `frames` (in clip order) and `{index: RGB uint8 (H, W, 3)}` for each,
        fetched once (`fetch_frames`: lazy frames decode only these). Raises as `__call__` does."""
        count = _count(frames)
        fps = frame_rate(frames, "sampling='clip'") if self.sampling == 'clip' else None
        indices = self.indices(count, fps)
        return indices, fetch_frames(frames, indices)
