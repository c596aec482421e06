"""Towhee operator `action-classification/timesformer`: frames in, (labels, scores, feature) out.

Towhee glue only: arguments, frames in, a tuple out. Modelling, checkpoints and preprocessing live in plain PyTorch
modules beside it (`model.py`, `checkpoints.py`, `preprocess.py`, `zoo.py`; `views.py`, `timing.py`, `windows.py`
for crops and long videos) that work without Towhee.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from towhee.operator import NNOperator

from .checkpoints import check_state_dict, load_checkpoint, resolve_weights
from .export import SUPPORTED_FORMATS, export_model
from .model import TimeSformer, quantize_int8
from .preprocess import clip_indices, fetch_frames, select_frames, stack_frames, uniform_indices
from .timeline import Timeline
from .timing import frame_rate, frame_times
from .views import NUM_CROPS, clip_to_views, merge_views
from .windows import WindowRow, check_window, plan_windows, summarize, window_batches, windows_per_batch
from .zoo import ModelCfg, get_cfg
from .zoo import supported_model_names as _zoo_names


class TruncatedVideoWarning(UserWarning):
    """The frames given stop early (the decoder's `frames.error`, e.g. a half-downloaded video): the result is of
    the readable part only."""


def _labels(cfg: ModelCfg, classmap) -> list[str]:
    if classmap is None:
        return cfg.labels
    n = cfg.num_classes
    if isinstance(classmap, Mapping):
        if sorted(classmap) != list(range(n)):
            raise ValueError(f'classmap must map every class index 0..{n - 1} of {cfg.name} to a name; '
                             f'got {len(classmap)} entries')
        return [str(classmap[i]) for i in range(n)]
    if isinstance(classmap, Sequence) and not isinstance(classmap, str):
        if len(classmap) != n:
            raise ValueError(f'classmap has {len(classmap)} names but {cfg.name} has {n} classes')
        return [str(name) for name in classmap]
    raise ValueError(f'classmap must be a list of {n} names or a dict index -> name, not {type(classmap).__name__}')


def _device(device, node_device: int = -1) -> torch.device:
    """`device` when given; else the Towhee node's (`config={'device': 0}`: Towhee hands it to `Operator.__init__`,
    which keeps it as `_device_id`; -1, its default, means not set); else CUDA when present."""
    asked = ''
    if device is None:
        if not isinstance(node_device, int) or node_device < 0:
            return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        device, asked = node_device, f" by the Towhee node's config={{'device': {node_device}}}"
    try:
        if isinstance(device, int) and not isinstance(device, bool):
            device = torch.device('cpu') if device < 0 else torch.device('cuda', device)
        else:
            device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a CUDA index, got {device!r}") from e
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {device} was asked for{asked} but CUDA is not available here; '
                             f'use device="cpu"')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f'device {device} was asked for{asked} but this machine has {torch.cuda.device_count()} '
                             f'CUDA device(s): cuda:0..cuda:{torch.cuda.device_count() - 1}')
    return device


PRECISIONS = ('fp32', 'bf16', 'fp16', 'int8')
_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matmuls are emulated and slower than fp32."""
    checks = (getattr(torch.cpu, '_is_avx512_bf16_supported', None), getattr(torch.cpu, '_is_amx_tile_supported', None))
    return any(check() for check in checks if check is not None)


def _check_precision(precision, device: torch.device) -> str:
    """Only combinations with fast kernels: a precision slower than fp32 on its device is refused, not run."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(map(repr, PRECISIONS))}, got {precision!r}')
    if precision == 'int8' and device.type != 'cpu':
        raise ValueError(f"precision='int8' is dynamic quantization for the CPU; on {device} use 'bf16' or 'fp16'")
    if device.type == 'cpu' and precision == 'fp16':
        raise ValueError("precision='fp16' is slower than fp32 on the CPU (no fp16 matmul kernels; measured 1.5x "
                         "slower); use 'bf16' on a CPU with AVX512-BF16/AMX, or 'int8'")
    if device.type == 'cpu' and precision == 'bf16' and not _cpu_has_native_bf16():
        raise ValueError("precision='bf16' needs a CPU with AVX512-BF16 or AMX (this one has neither, and emulated "
                         "bf16 is slower than fp32); use 'int8' or 'fp32'")
    if device.type not in ('cpu', 'cuda') and precision != 'fp32':
        raise ValueError(f"precision={precision!r} is supported on 'cpu' and 'cuda'; on {device} use 'fp32'")
    return precision


def load_model(cfg: ModelCfg, weights=None, device='cpu', trust_checkpoint: bool = False,
               progress: bool = True) -> TimeSformer:
    """Build the model for `cfg` and load `weights` (file/dir, or None for the released file) strictly."""
    source = resolve_weights(cfg, progress) if weights is None else weights
    state_dict, fmt = load_checkpoint(source, trust_checkpoint)
    with torch.device('meta'):
        model = TimeSformer(num_classes=cfg.num_classes, num_frames=cfg.num_frames, img_size=cfg.image_size,
                            patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                            num_heads=cfg.num_heads)
    check_state_dict(state_dict, {k: v.shape for k, v in model.state_dict().items()}, fmt, source)
    state_dict = {k: v.to(device=device, dtype=torch.float32) for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval().requires_grad_(False)


class Timesformer(NNOperator):
    """TimeSformer action classification and video embedding (divided space-time attention, ViT-B/16).

    Args:
        model_name: a name from `supported_model_names()`; sets frames, crop size, labels and the checkpoint.
        skip_preprocess: pass every given frame to the model instead of subsampling `num_frames` uniformly (the
            frames are still resized, cropped and normalized).
        classmap: class names replacing the model's labels: a list of `num_classes` names or a dict index -> name.
        topk: how many labels and scores to return, 1..num_classes.
        weights: a checkpoint file (original `.pyth`, plain/timm or towhee-models state dict, `.safetensors`/`.bin`)
            or an HF transformers `save_pretrained` directory. None: the released file from torch's hub cache
            (`torch.hub.get_dir()/checkpoints/`), downloaded there if missing.
        device: 'cpu', 'cuda', 'cuda:1' or a CUDA index (-1: the CPU). None: the Towhee node's device
            (`.map(..., config={'device': 0})`) when set, else CUDA when present. Weights load straight onto it.
        trust_checkpoint: allow `torch.load(weights_only=False)` for checkpoints holding Python objects besides
            tensors. Unpickling runs code from the file: only for files you trust.
        num_crops: 1, the seed's centre crop, or 3, the paper's test views (left/centre/right, top/centre/bottom for
            portrait video): one batch through the model, logits summed before the softmax, features averaged.
        sampling: 'uniform' (the seed's: `num_frames` spread over all given frames) or 'clip' (the paper's:
            `num_frames` over `num_frames * sampling_rate` frames at 30 fps, from the middle; needs frame timestamps
            or an `fps` attribute). Details in docs/long_videos.md.
        window: seconds. When set, a call returns a list of `(start_ms, end_ms, labels, scores, features)` rows, one
            per window, for Towhee's `flat_map`; each window's frames are sampled as `sampling` says.
        stride: seconds from one window's start to the next's; defaults to `window` (windows side by side).
        precision: 'fp32' (default: equal to HF transformers within 1e-4); 'bf16' or 'fp16' on CUDA (autocast:
            half-precision matmuls and flash/memory-efficient attention, LayerNorm and softmax in float32); 'bf16'
            on a CPU with AVX512-BF16/AMX; 'int8' on the CPU (dynamic quantization of the Linear layers). Other
            combinations raise ValueError. Speed and error of each: benchmarks/README.md.
    """

    def __init__(self, model_name: str = 'timesformer_k400_8x224', skip_preprocess: bool = False, classmap=None,
                 topk: int = 5, weights: str | os.PathLike | None = None, device=None,
                 trust_checkpoint: bool = False,
                 num_crops: int = 1, sampling: str = 'uniform', window: float | None = None,
                 stride: float | None = None,
                 precision: str = 'fp32'):
        super().__init__()
        self.cfg = get_cfg(model_name)
        for name, flag in (('skip_preprocess', skip_preprocess), ('trust_checkpoint', trust_checkpoint)):
            if not isinstance(flag, bool):  # a truthy string ('false') must not skip steps or allow unpickling
                raise ValueError(f'{name} must be True or False, got {flag!r}')
        if isinstance(num_crops, bool) or num_crops not in NUM_CROPS:
            raise ValueError(f'num_crops must be 1 (centre crop) or 3 (the paper\'s 3 crops), got {num_crops!r}')
        if sampling not in ('uniform', 'clip'):
            raise ValueError(f"sampling must be 'uniform' or 'clip', got {sampling!r}")
        if sampling == 'clip' and self.cfg.sampling_rate is None:
            raise ValueError(f"{model_name} has no clip sampling rate: {self.cfg.dataset} checkpoints were trained on "
                             f"frames spread over the whole video; use sampling='uniform'")
        self.window_ms, self.stride_ms = check_window(window, stride)
        if skip_preprocess and (sampling == 'clip' or window is not None):
            raise ValueError("skip_preprocess=True gives the model the frames as they are, so it cannot be combined "
                             "with sampling='clip' or window=, which choose frames")
        self.num_crops, self.sampling, self.window, self.stride = num_crops, sampling, window, stride
        self.labels = _labels(self.cfg, classmap)
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= self.cfg.num_classes:
            raise ValueError(f'topk must be an integer in 1..{self.cfg.num_classes}, got {topk!r}')
        self.model_name = model_name
        self.skip_preprocess = skip_preprocess
        self.topk = int(topk)
        self.device = _device(device, getattr(self, '_device_id', -1))
        self.precision = _check_precision(precision, self.device)
        self.model = load_model(self.cfg, weights, self.device, trust_checkpoint)
        self.model.fold_temporal_projections()  # one matmul where the original has two: model.py
        # int8 runs a quantized copy; `model` stays float32 for export and for summing the crops' logits.
        self._runner = quantize_int8(self.model) if precision == 'int8' else self.model

    def preprocess(self, frames) -> torch.Tensor:
        """Frames -> normalized float clip `(3, T, S, S)` on the CPU; `(3 views, 3, T, S, S)` with num_crops=3.

        Lazy frames whose `error` says the video stops early are used as they are, with a `TruncatedVideoWarning`.
        """
        stopped = getattr(frames, 'error', None)
        if isinstance(stopped, Exception):
            warnings.warn(TruncatedVideoWarning(f'{stopped}; classifying those {len(frames)} frames'), stacklevel=3)
        if self.sampling == 'clip':
            indices = self._sample(len(frames), frame_rate(frames, "sampling='clip'"))
            clip = stack_frames(fetch_frames(frames, indices), indices)
        else:
            clip = select_frames(frames, None if self.skip_preprocess else self.cfg.num_frames)
        views = self._views(clip)
        return views[0] if self.num_crops == 1 else views

    def __call__(self, frames) -> tuple[list[str], list[float], np.ndarray] | list[WindowRow]:
        if self.window_ms is not None:
            return list(self.iter_windows(frames))
        views = self.preprocess(frames)
        probs, features = self.classify(views.reshape(1, -1, *views.shape[-4:]))
        return self.postprocess(probs[0], features[0])

    def classify(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips' views `(B, V, 3, T, S, S)` -> one forward over all B*V views, merged per clip (logits summed,
        features averaged): (probabilities `(B, classes)`, features `(B, D)`)."""
        b, v = views.shape[:2]
        probs, features = self.forward(views.flatten(0, 1))
        return merge_views(probs.unflatten(0, (b, v)), features.unflatten(0, (b, v)), self.model.head)

    def iter_windows(self, frames) -> Iterator[WindowRow]:
        """One `WindowRow` per window, yielded as soon as its batch has run (a call collects them into a list)."""
        if self.window_ms is None:
            raise ValueError('iter_windows needs the operator made with window= (seconds)')
        times = frame_times(frames, 'window=')
        spans = plan_windows(times, self.window_ms, self.stride_ms)
        sample = functools.partial(self._sample, fps=times.fps)
        batch_size = windows_per_batch(self.num_crops, self.device.type)
        for batch, views in window_batches(frames, spans, sample, self._views, batch_size):
            probs, features = self.classify(views)
            for span, p, f in zip(batch, probs, features):
                yield WindowRow(span.start_ms, span.end_ms, *self.postprocess(p, f))

    def _sample(self, count: int, fps: float | None) -> list[int]:
        """Which of `count` frames make the clip: spread over all of them, or the paper's fixed-rate clip."""
        if self.sampling == 'clip':
            return clip_indices(count, self.cfg.num_frames, self.cfg.sampling_rate, fps)
        return uniform_indices(count, self.cfg.num_frames)

    def _views(self, clip: torch.Tensor) -> torch.Tensor:
        return clip_to_views(clip, self.cfg.image_size, self.cfg.mean, self.cfg.std, self.cfg.channel_order,
                             self.num_crops)

    # Here so that Towhee users, who hold the operator but cannot import its modules, reach them too.
    summarize = staticmethod(summarize)
    timeline = staticmethod(Timeline)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips `(B, 3, T, S, S)` -> (softmax probabilities `(B, classes)`, features `(B, D)`), float32 on the CPU.

        One pass over the whole batch at the operator's `precision`; the softmax is taken in float32.
        """
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        autocast = torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.inference_mode():
            with autocast:
                features = self._runner.forward_features(clips.to(self.device, non_blocking=True))
                logits = self._runner.forward_head(features)
            probs = logits.float().softmax(dim=-1)
        return probs.cpu(), features.float().cpu()

    def postprocess(self, probs: torch.Tensor, feature: torch.Tensor) -> tuple[list[str], list[float], np.ndarray]:
        """One clip's probabilities and feature -> (top-k labels, their scores high to low, feature array)."""
        scores, indices = probs.topk(self.topk)
        return [self.labels[i] for i in indices.tolist()], scores.tolist(), feature.numpy()

    def batch(self, videos) -> list[tuple[list[str], list[float], np.ndarray]]:
        """Several videos -> one `(labels, scores, features)` per video, from one forward pass over all their clips.

        Each video is what `__call__` takes and is preprocessed and validated the same way, so videos of different
        sizes and lengths batch together; results equal per-video calls within float rounding. Activation memory
        grows with the batch: pass as many videos as fit, and split longer lists.
        """
        if self.window_ms is not None:
            raise ValueError('batch() returns one result per video; with window= call the operator per video '
                             '(each call already runs its windows in batches)')
        if isinstance(videos, np.ndarray) and videos.ndim == 5:
            videos = list(videos)
        if isinstance(videos, (str, bytes, np.ndarray)) or not isinstance(videos, Sequence):
            raise TypeError(f'videos must be a list of videos, each what op(frames) takes (a list of frames or a '
                            f'(T, H, W, 3) array); got {type(videos).__name__}'
                            + (f' of shape {videos.shape}: for one video call op(frames)'
                               if isinstance(videos, np.ndarray) else ''))
        if len(videos) == 0:
            return []
        views = []
        for i, video in enumerate(videos):
            try:
                v = self.preprocess(video)
            except (TypeError, ValueError) as e:
                raise type(e)(f'video {i}: {e}') from e
            views.append(v.reshape(-1, *v.shape[-4:]))  # (views, 3, T, S, S)
        shapes = sorted({tuple(v.shape) for v in views})
        if len(shapes) > 1:
            raise ValueError(f'videos give clips of different shapes {shapes}; with skip_preprocess=True every video '
                             f'needs the same number of frames')
        probs, features = self.classify(torch.stack(views))
        return [self.postprocess(p, f) for p, f in zip(probs, features)]

    @property
    def supported_formats(self) -> list[str]:
        """Formats `save_model` writes; Towhee's Triton builder reads this."""
        return list(SUPPORTED_FORMATS)

    def save_model(self, format: str = 'onnx', path: str | os.PathLike | None = None) -> Path:  # noqa: A002
        """Export the float32 model for serving (Triton's onnxruntime or pytorch backend); returns the path.

        Input `clips (batch, 3, T, S, S)`, normalized as `preprocess` makes them, batch axis dynamic; outputs
        `logits (batch, classes)` and `features (batch, D)` (see export.py). `path` defaults to
        `saved/<format>/<model_name>.onnx` (`.pt` for torchscript) under the current directory.
        """
        if format not in SUPPORTED_FORMATS:
            raise ValueError(f'format must be one of {", ".join(SUPPORTED_FORMATS)}, got {format!r}')
        if path is None:
            path = Path('saved') / format / f'{self.model_name}{".onnx" if format == "onnx" else ".pt"}'
        return export_model(self.model, format, path)

    @staticmethod
    def supported_model_names(format: str | None = None) -> list[str]:  # noqa: A002 - Towhee's signature
        return _zoo_names()
