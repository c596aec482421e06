"""Towhee operator `action-classification/timesformer`: frames in, (labels, scores, feature) out.

Towhee glue only: arguments, frames in, a tuple out. Modelling, checkpoints and preprocessing live in plain PyTorch
modules beside it (`model.py`, `checkpoints.py`, `preprocess.py`, `zoo.py`) that work without Towhee.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from towhee.operator import NNOperator

from .checkpoints import check_state_dict, load_checkpoint, resolve_weights
from .model import TimeSformer
from .preprocess import clip_to_tensor, select_frames
from .zoo import ModelCfg, get_cfg
from .zoo import supported_model_names as _zoo_names


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


def _device(device) -> torch.device:
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(f'cuda:{device}' if isinstance(device, int) else device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {device} was asked for but CUDA is not available here; use device="cpu"')
    return device


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
        device: 'cpu', 'cuda', 'cuda:1' or a CUDA index; None picks CUDA when present.
        trust_checkpoint: allow `torch.load(weights_only=False)` for checkpoints holding Python objects besides
            tensors. Unpickling runs code from the file: only for files you trust.
    """

    def __init__(self, model_name: str = 'timesformer_k400_8x224', skip_preprocess: bool = False, classmap=None,
                 topk: int = 5, weights: str | os.PathLike | None = None, device=None,
                 trust_checkpoint: bool = False):
        super().__init__()
        self.cfg = get_cfg(model_name)
        self.labels = _labels(self.cfg, classmap)
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= self.cfg.num_classes:
            raise ValueError(f'topk must be an integer in 1..{self.cfg.num_classes}, got {topk!r}')
        self.model_name = model_name
        self.skip_preprocess = skip_preprocess
        self.topk = topk
        self.device = _device(device)
        self.model = load_model(self.cfg, weights, self.device, trust_checkpoint)

    def preprocess(self, frames) -> torch.Tensor:
        """Frames -> normalized float clip `(3, T, S, S)` on the CPU."""
        clip = select_frames(frames, None if self.skip_preprocess else self.cfg.num_frames)
        return clip_to_tensor(clip, self.cfg.image_size, self.cfg.mean, self.cfg.std, self.cfg.channel_order)

    def __call__(self, frames) -> tuple[list[str], list[float], np.ndarray]:
        probs, features = self.forward(self.preprocess(frames).unsqueeze(0))
        return self.postprocess(probs[0], features[0])

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips `(B, 3, T, S, S)` -> (softmax probabilities `(B, classes)`, features `(B, D)`), float32 on the CPU."""
        with torch.inference_mode():
            features = self.model.forward_features(clips.to(self.device))
            probs = self.model.forward_head(features).softmax(dim=-1)
        return probs.float().cpu(), features.float().cpu()

    def postprocess(self, probs: torch.Tensor, feature: torch.Tensor) -> tuple[list[str], list[float], np.ndarray]:
        """One clip's probabilities and feature -> (top-k labels, their scores high to low, feature array)."""
        scores, indices = probs.topk(self.topk)
        return [self.labels[i] for i in indices.tolist()], scores.tolist(), feature.numpy()

    @staticmethod
    def supported_model_names(format: str | None = None) -> list[str]:  # noqa: A002 - Towhee's signature
        return _zoo_names()
