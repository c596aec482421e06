"""Action classification and video embedding with TimeSformer: frames in, (labels, scores, feature) out. No Towhee.

The data path is one straight line: frames -> `ClipTransform` (sample, fetch, stack, crop, normalise) -> the model
from `build_model` (logits and the CLS feature) -> views merged in logit space -> softmax once -> top-k. The Towhee
operator `action-classification/timesformer` (`timesformer.py` at the repository root) is this class with Towhee's
base class and node device added; the batch job uses this class directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .build import autocast, build_model, resolve_device
from .export import SUPPORTED_FORMATS, export_model
from .frames import Video
from .timeline import Timeline
from .timing import frame_times
from .transform import ClipTransform
from .windows import WindowRow, check_window, plan_windows, summarize, window_batches, windows_per_batch
from .zoo import ModelCfg, get_cfg
from .zoo import supported_model_names as _zoo_names


def _labels(cfg: ModelCfg, classmap) -> list[str]:
    if classmap is None:
        return cfg.labels
    n = cfg.num_classes
    if isinstance(classmap, Mapping):
        if not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in classmap):
            hint = (' (a dict read from JSON has string keys: pass {int(k): v for k, v in d.items()})'
                    if any(isinstance(k, str) for k in classmap) else '')
            raise ValueError(f'classmap keys must be class indices, integers 0..{n - 1}; got '
                             f'{", ".join(sorted({type(k).__name__ for k in classmap}))} keys{hint}')
        if sorted(classmap) != list(range(n)):
            raise ValueError(f'classmap must map every class index 0..{n - 1} of {cfg.name} to a name; '
                             f'got {len(classmap)} entries')
        names = [classmap[i] for i in range(n)]
    elif isinstance(classmap, Sequence) and not isinstance(classmap, (str, bytes)):
        if len(classmap) != n:
            raise ValueError(f'classmap has {len(classmap)} names but {cfg.name} has {n} classes')
        names = list(classmap)
    else:
        raise ValueError(f'classmap must be a list of {n} names or a dict index -> name, not '
                         f'{type(classmap).__name__}')
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f'classmap names must be strings, got {sorted({type(x).__name__ for x in names})}')
    return names


def merge_views(logits: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view `logits (B, V, C)` and `features (B, V, D)` -> per-clip probabilities `(B, C)` and features `(B, D)`.

    The views' logits are summed before one softmax (PySlowFast's multi-view test: `ensemble_method='sum'`); the
    clip's feature is the mean of its views'. One view passes through as its own softmax and feature.
    """
    if logits.ndim != 3 or features.ndim != 3 or logits.shape[:2] != features.shape[:2]:
        raise ValueError(f'merge_views takes logits (B, V, C) and features (B, V, D) of the same B and V; got '
                         f'{tuple(logits.shape)} and {tuple(features.shape)}')
    return logits.float().sum(dim=1).softmax(dim=-1), features.float().mean(dim=1)


class ActionClassifier:
    """TimeSformer action classification and video embedding (divided space-time attention, ViT-B/16).

    Thread-safe: one instance may be called from several threads at once (Towhee shares one operator).

    Args:
        model_name: a name from `supported_model_names()`; sets frames, crop size, labels and the checkpoint.
        skip_preprocess: pass every given frame to the model instead of subsampling `num_frames` uniformly (the
            frames are still resized, cropped and normalized).
        classmap: class names replacing the model's labels: a list of `num_classes` names or a dict index -> name.
        topk: how many labels and scores to return, 1..num_classes.
        weights: a checkpoint file (original `.pyth`, plain/timm or towhee-models state dict, `.safetensors`/`.bin`)
            or an HF transformers `save_pretrained` directory. None: the released file from torch's hub cache
            (`torch.hub.get_dir()/checkpoints/`), downloaded there if missing.
        device: 'cpu', 'cuda', 'cuda:1' or a CUDA index (-1: the CPU). None: CUDA when present (the Towhee
            operator: the node's device, `.map(..., config={'device': 0})`, when set). Weights load straight onto it.
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

    Raises ValueError (an argument out of its range, an unknown model name, a device or precision not available
    here), FileNotFoundError (`weights` names nothing), `errors.CheckpointError` (not a checkpoint, or one that
    does not fit the model) and `errors.WeightsUnavailableError` (no `weights` and the release cannot be fetched).
    """

    def __init__(self, model_name: str = 'timesformer_k400_8x224', skip_preprocess: bool = False, classmap=None,
                 topk: int = 5, weights: str | os.PathLike | None = None, device=None,
                 trust_checkpoint: bool = False,
                 num_crops: int = 1, sampling: str = 'uniform', window: float | None = None,
                 stride: float | None = None,
                 precision: str = 'fp32', *, node_device: int = -1):
        self.cfg = get_cfg(model_name)
        self.transform = ClipTransform(self.cfg, num_crops, sampling, skip_preprocess)  # checks its arguments
        self.window_ms, self.stride_ms = check_window(window, stride)
        if skip_preprocess and window is not None:
            raise ValueError("skip_preprocess=True gives the model the frames as they are, so it cannot be combined "
                             "with sampling='clip' or window=, which choose frames")
        self.num_crops, self.sampling, self.window, self.stride = num_crops, sampling, window, stride
        self.labels = _labels(self.cfg, classmap)
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= self.cfg.num_classes:
            default = ' (the default)' if topk == 5 else ''
            raise ValueError(f'topk must be an integer in 1..{self.cfg.num_classes}, got {topk!r}{default}: '
                             f'{self.cfg.name} has {self.cfg.num_classes} classes')
        self.model_name = model_name
        self.skip_preprocess = skip_preprocess
        self.topk = int(topk)
        self.device = resolve_device(device, node_device)
        self.model = build_model(self.cfg, weights, device=self.device, precision=precision,
                                 trust_checkpoint=trust_checkpoint)  # checks both before reading weights
        self.precision = precision

    def preprocess(self, frames: Video) -> torch.Tensor:
        """Frames -> normalized float clip `(3, T, S, S)` on the CPU; `(3 views, 3, T, S, S)` with num_crops=3.

        Lazy frames whose `error` says the video stops early are used as they are, with a `TruncatedVideoWarning`.
        """
        views = self.transform(frames)
        return views[0] if self.num_crops == 1 else views

    def __call__(self, frames: Video) -> tuple[list[str], list[float], np.ndarray] | list[WindowRow]:
        """A video's frames -> (top-k labels, their probabilities high to low, feature `(D,)` float32: the CLS token
        after the final LayerNorm, averaged over views); with `window=`, a list of `WindowRow`, one per window.

        Raises TypeError / ValueError for frames that are not a video (empty, wrong shape, dtype or mode), and the
        decoder's errors (`errors.VideoDecodeError` and its kinds) when lazy frames cannot be read.
        """
        if self.window_ms is not None:
            return list(self.iter_windows(frames))
        views = self.preprocess(frames)
        probs, features = self.classify(views.reshape(1, -1, *views.shape[-4:]))
        return self.postprocess(probs[0], features[0])

    def classify(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips' views `(B, V, 3, T, S, S)` -> one forward over all B*V views, merged per clip (logits summed,
        features averaged): (probabilities `(B, classes)`, features `(B, D)`)."""
        b, v = views.shape[:2]
        logits, features = self.forward(views.flatten(0, 1))
        return merge_views(logits.unflatten(0, (b, v)), features.unflatten(0, (b, v)))

    def iter_windows(self, frames: Video) -> Iterator[WindowRow]:
        """One `WindowRow` per window, yielded as soon as its batch has run (a call collects them into a list)."""
        if self.window_ms is None:
            raise ValueError('iter_windows needs the operator made with window= (seconds)')
        times = frame_times(frames, 'window=')
        spans = plan_windows(times, self.window_ms, self.stride_ms)
        batch_size = windows_per_batch(self.num_crops, self.device.type)
        for batch, views in window_batches(frames, spans, self.transform, times.fps, batch_size):
            probs, features = self.classify(views)
            for span, p, f in zip(batch, probs, features):
                yield WindowRow(span.start_ms, span.end_ms, *self.postprocess(p, f))

    def watch(self, source: str, window_s: float, stride_s: float | None = None, **options):
        """A live source's windows classified as they complete: an iterator of row dicts (`start_ms`, `end_ms` on
        the stream clock, `wall_time`, `latency_ms`, `labels`, `scores`, `feature`; gaps as `'gap': True` rows).
        `source`: rtsp://, udp://, tcp://, http(s):// (HLS or progressive), a growing file or /dev/videoN. Options
        and errors: `jobs.watch.watch` (docs/streams.md)."""
        from .jobs.watch import watch

        return watch(source, self, window_s, stride_s, **options)

    def explain(self, frames: Video, target=None, method: str | None = None):
        """Where the model looked: space-time attention maps of one clip (its centre crop) -> `explain.Explanation`.

        `target`: None (the top-1 label), a label name or a class index: explain that label, `score` its probability
        for the centre crop; or an embedding (a `(D,)` vector, e.g. a search hit's `feature`): explain the cosine
        similarity of the clip's feature to it. `method`: 'rollout' (the default for labels; R = prod over blocks of
        (0.5 I + 0.5 A_spatial)(0.5 I + 0.5 A_temporal), A the head-mean attention probabilities, independent of the
        label) or 'gradient' (the default, and the only method, for an embedding; A replaced by
        mean_heads relu(dy/dA * A), y the label's logit or the similarity, and 0.5 I + 0.5 A by I + A). The map is the
        class token's row of R over the patch tokens, scaled to [0, 1] over the clip and mapped back onto each frame
        (inverse resize and centre crop). Details and a worked example: docs/explain.md.

        Returns an `Explanation`: `label`, `score`, `method`, `frame_indices`, `frames` uint8 `(T, H, W, 3)`,
        `heatmaps` float32 `(T, H, W)` in [0, 1], `relevance` `(T, gh, gw)`, `attention` (per block `temporal`
        `(heads, P, T, T)` and `spatial` `(heads, T, 1+P, 1+P)` probabilities) and `save(path)` (.png grid,
        .gif/.webp animation); a notebook shows it as its picture. Costs about one forward pass ('rollout') or a
        forward and a backward pass ('gradient'); plain calls are unaffected.

        Raises ValueError (an unknown label, a class index out of range, an embedding of the wrong shape, 'rollout'
        for an embedding, 'gradient' at precision='int8'), TypeError (another kind of target) and, for frames, what
        `__call__` raises.
        """
        from .explain import explain

        return explain(self, frames, target, method)

    # Here so that Towhee users, who hold the operator but cannot import its modules, reach them too.
    summarize = staticmethod(summarize)
    timeline = staticmethod(Timeline)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips `(B, 3, T, S, S)` -> (logits `(B, classes)`, features `(B, D)`), float32 on the CPU.

        One pass over the whole batch at the classifier's `precision` (`build.autocast`).
        """
        with torch.inference_mode(), autocast(self.device, self.precision):
            features = self.model.forward_features(clips.to(self.device, non_blocking=True))
            logits = self.model.forward_head(features)
        return logits.float().cpu(), features.float().cpu()

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
        if self.precision == 'int8':
            raise ValueError("save_model exports the float32 model, and precision='int8' quantized it in place; make "
                             "the operator with precision='fp32' (the default) to export it")
        if path is None:
            path = Path('saved') / format / f'{self.model_name}{".onnx" if format == "onnx" else ".pt"}'
        return export_model(self.model, format, path)

    @staticmethod
    def supported_model_names(format: str | None = None) -> list[str]:  # noqa: A002 - Towhee's signature
        """The zoo's model names; every one exports to each of `supported_formats`, so `format` narrows nothing
        (Towhee's convention passes it)."""
        if format is not None and format not in SUPPORTED_FORMATS:
            raise ValueError(f'format must be one of {", ".join(SUPPORTED_FORMATS)} or None, got {format!r}')
        return _zoo_names()
