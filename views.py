"""Spatial test views: the seed's single centre crop, or the paper's three crops, and how their outputs combine.

The published TimeSformer accuracy is 1 clip x 3 crops (PySlowFast's test protocol): the short side is scaled to
the crop size and `uniform_crop` takes the left, centre and right squares (top, centre, bottom when the frame is
taller than wide); the views' logits are summed before the softmax. The feature of a clip is the mean of its views'.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import clip_to_tensor, crop_normalize, scale_short_side

NUM_CROPS = (1, 3)


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


@torch.inference_mode()
def merge_views(probs: torch.Tensor, features: torch.Tensor, head: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view `probs (B, V, C)` and `features (B, V, D)` -> per-clip `(B, C)`, `(B, D)`.

    One view passes through unchanged. Several: the softmax of the summed logits, which are recomputed from each
    view's feature with the classifier head in float32 on the CPU (probabilities cannot be summed as logits), and
    the mean feature.
    """
    if probs.shape[1] == 1:
        return probs[:, 0], features[:, 0]
    logits = F.linear(features.float(), head.weight.detach().float().cpu(), head.bias.detach().float().cpu())
    return logits.sum(dim=1).softmax(dim=-1), features.mean(dim=1)
