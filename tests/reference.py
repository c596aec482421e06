"""Independent references for the tests: the seed's preprocessing written out step by step, in its original order
(normalize before resize, `(C, T, H, W)` layout), and HF transformers run on the result."""

import math

import numpy as np
import torch
import torch.nn.functional as F


def reference_clip(frames: np.ndarray, num_frames: int | None = 8, size: int = 224) -> torch.Tensor:
    """uint8 `(N, H, W, 3)` RGB -> `(3, T, size, size)`, as pytorchvideo's transform in the Towhee operator."""
    n = frames.shape[0]
    if num_frames:
        frames = frames[np.floor(np.linspace(0, n - 1, num_frames)).astype(int)]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255.0
    x = (x - 0.45) / 0.225
    _, _, h, w = x.shape
    if w < h:
        new_h, new_w = int(math.floor(h / w * size)), size
    else:
        new_h, new_w = size, int(math.floor(w / h * size))
    x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=False)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return x[:, :, top:top + size, left:left + size]


@torch.inference_mode()
def hf_outputs(hf_model, clip: torch.Tensor):
    """(softmax scores over all classes, 768-d feature) from HF for one `(3, T, H, W)` clip."""
    pixel_values = clip.permute(1, 0, 2, 3).unsqueeze(0)  # HF wants (B, T, C, H, W)
    hidden = hf_model.timesformer(pixel_values)[0]
    logits = hf_model.classifier(hidden[:, 0])
    return logits.softmax(-1)[0], hidden[0, 0]


def random_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)
