"""Where the model looked: space-time attention maps of one clip, for a label or for a similarity to an embedding.

`explain(classifier, frames, target, method)` (also `ActionClassifier.explain`) runs the clip's centre crop once with
the attention probabilities recorded (`model.record_attention`; a plain call never forms them) and turns them into
one relevance value per patch token, then into one map per frame at that frame's own size.

Tokens: the class token c and the patch tokens (p, t), p one of P patches (row-major), t one of T frames. A block of
divided space-time attention is two steps, each a token-to-token matrix M over all 1 + P*T tokens:

- temporal: a patch token (p, t) attends to (p, t') with the head-mean probability B_p[t, t'] (heads, P, T, T);
  the class token takes no part (it maps to itself);
- spatial: in frame t the class token and the frame's patches attend to each other with A_t (heads, T, 1+P, 1+P);
  the class token is the same token in every frame, and its update is the mean of its T per-frame updates, so its
  row is A_t[0, :] / T summed over the frames, and a patch's attention to frame t's class token goes to c.

Rollout (Abnar and Zuidema 2020, as TimeSformer visualisations compose the two steps): with A the head-mean
probabilities in the matrices above, M = 0.5 I + 0.5 A for each step (the residual), and
R = M_L^spatial M_L^temporal ... M_1^spatial M_1^temporal. The map is the class token's row of R over the patch
tokens: how much of the class token flows from each (p, t). It does not depend on the label.

Gradient (Chefer, Gur and Wolf 2021, "Generic attention-model explainability"): A is replaced by
mean over heads of relu(dy/dA * A), y the target's logit (a label) or the cosine similarity of the clip's feature to
an embedding, and M = I + A; R and the map as above. Only what raises y shows.

Each map is scaled to [0, 1] over the whole clip (min to max), upsampled from the crop's patch grid to the crop,
placed where the centre crop lies in the short-side-scaled frame (zero outside: the model never saw it) and scaled to
the frame's size: the inverse of the resize and centre crop.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .build import autocast
from .errors import SaturatedSimilarityWarning, TruncatedVideoWarning
from .frames import Video
from .model import TimeSformer, record_attention
from .transform import ClipTransform, short_side_size, stack_frames

METHODS = ('rollout', 'gradient')
MIN_NORM = 1e-6  # an embedding target shorter than this has no direction to measure a cosine against
# 1 - |similarity| below which the similarity's gradient is float32 rounding noise, not a map (measured: a clip's own
# feature as the target gave relevance 1e-11, maps uncorrelated run to run; an unrelated one 5e-5, stable)
SATURATED = 1e-6
IMAGE_FORMATS = {'.png': 'PNG', '.gif': 'GIF', '.webp': 'WEBP'}
COLORMAP = 'jet'


def propagate(steps: Sequence[tuple[torch.Tensor, torch.Tensor]], keep: float, mix: float) -> torch.Tensor:
    """The class token's row of R = prod over blocks (last first) of M_spatial M_temporal, M = keep I + mix A,
    restricted to the patch tokens: `(P, T)`.

    `steps`: per block, `(temporal (P, T, T), spatial (T, 1+P, 1+P))`, already reduced over heads (see the module
    docstring for how they form A). The row vector is carried from the last block down, so no `(1+PT)^2` matrix is
    made: per step O(P T^2 + T P^2).
    """
    p, t = steps[0][0].shape[:2]
    cls = torch.ones((), dtype=torch.float64)
    patches = torch.zeros(p, t, dtype=torch.float64)
    for temporal, spatial in reversed(steps):
        tokens = torch.cat([(cls / t).expand(t, 1), patches.T], dim=1)  # (T, 1+P): frame t's share of the row
        flow = torch.einsum('ti,tij->tj', tokens, spatial.double())
        cls = keep * cls + mix * flow[:, 0].sum()
        patches = keep * patches + mix * flow[:, 1:].T
        patches = keep * patches + mix * torch.einsum('pt,pts->ps', patches, temporal.double())
        # the class token has no temporal attention: keep + mix * 1 (rollout) or 1 + 0 (gradient) = 1
    return patches.float()


def frame_map(patch_map: torch.Tensor, height: int, width: int, size: int) -> np.ndarray:
    """A `(gh, gw)` map on the crop's patch grid -> float32 `(height, width)` on the frame: the inverse of
    `transform.clip_to_tensor`'s short-side resize to `size` and centre crop (bilinear; zero outside the crop)."""
    new_h, new_w = short_side_size(height, width, size)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))  # as clip_to_tensor
    crop = F.interpolate(patch_map[None, None].float(), size=(size, size), mode='bilinear', align_corners=False)
    scaled = F.pad(crop, (left, new_w - size - left, top, new_h - size - top))
    if (new_h, new_w) != (height, width):
        scaled = F.interpolate(scaled, size=(height, width), mode='bilinear', align_corners=False)
    return scaled[0, 0].clamp_(0, 1).numpy()


def overlay(frame: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 `(H, W, 3)` frame with `heatmap` `(H, W)` in [0, 1] drawn over it in the 'jet' colours."""
    from matplotlib import colormaps

    colours = colormaps[COLORMAP](heatmap)[..., :3] * 255.0
    return np.clip((1 - alpha) * frame + alpha * colours, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class Explanation:
    """Where the model looked in one clip (its centre crop), for `label` or a similarity to an embedding.

    `label`: the class explained (None for an embedding); `score`: its probability for the centre crop alone, or the
    cosine similarity of the clip's feature to the embedding; `method`: 'rollout' or 'gradient' (module docstring).
    `frame_indices`: the frames of the input the clip used, in clip order; `frames`: those frames, RGB uint8
    `(T, H, W, 3)`; `heatmaps`: float32 `(T, H, W)` in [0, 1], one per frame at its own size (both are lists of
    per-frame arrays when the frames differ in size). `relevance`: float32 `(T, gh, gw)`, the unscaled class-token
    relevance of each patch token on the crop's patch grid. `attention`: per block, `{'temporal': (heads, P, T, T),
    'spatial': (heads, T, 1+P, 1+P)}` float32, the softmax probabilities the model computed (P patches row-major;
    spatial token 0 is the class token, repeated per frame as the model does).
    """

    label: str | None
    score: float
    method: str
    frame_indices: list[int]
    frames: np.ndarray | list[np.ndarray]
    heatmaps: np.ndarray | list[np.ndarray]
    relevance: np.ndarray
    attention: list[dict[str, np.ndarray]]

    def overlays(self, height: int | None = None, alpha: float = 0.5) -> list[np.ndarray]:
        """Each frame with its map drawn over it, RGB uint8, scaled to `height` px high when given."""
        from PIL import Image

        images = []
        for frame, heatmap in zip(self.frames, self.heatmaps):
            image = overlay(np.asarray(frame), heatmap, alpha)
            if height is not None and image.shape[0] != height:
                width = max(1, round(image.shape[1] * height / image.shape[0]))
                image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
            images.append(image)
        return images

    def title(self) -> str:
        what = f'{self.label} ({self.score:.3f})' if self.label is not None else f'similarity {self.score:.4f}'
        return f'{what}, {self.method}'

    def image(self, height: int = 224, columns: int = 4):
        """A PIL image: the title, then the frames with their maps in a grid of `columns`, each `height` px high."""
        from PIL import Image, ImageDraw

        tiles = self.overlays(height)
        columns = max(1, min(columns, len(tiles)))
        width = max(tile.shape[1] for tile in tiles)
        gap, header, caption = 4, 24, 16
        rows = math.ceil(len(tiles) / columns)
        sheet = Image.new('RGB', (columns * (width + gap) + gap, header + rows * (height + caption + gap)), 'white')
        draw = ImageDraw.Draw(sheet)
        draw.text((gap, 6), self.title(), fill='black')
        for i, (tile, index) in enumerate(zip(tiles, self.frame_indices)):
            x = gap + (i % columns) * (width + gap)
            y = header + (i // columns) * (height + caption + gap)
            draw.text((x, y), f'frame {index}', fill='black')
            sheet.paste(Image.fromarray(tile), (x, y + caption))
        return sheet

    def save(self, path: str | Path, height: int = 224, columns: int = 4, frame_ms: int = 400) -> Path:
        """Write the picture: `.png` a grid (`image`), `.gif` / `.webp` an animation of the overlaid frames,
        `frame_ms` each. Returns the path. Raises ValueError for another extension."""
        from PIL import Image

        path = Path(path)
        kind = IMAGE_FORMATS.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f'{path}: cannot tell the picture format from {path.suffix or "no extension"!r}; '
                             f'name the file with one of {", ".join(IMAGE_FORMATS)}')
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == 'PNG':
            self.image(height, columns).save(path, format=kind)
        else:
            frames = [Image.fromarray(tile) for tile in self.overlays(height)]
            frames[0].save(path, format=kind, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
        return path

    def _repr_png_(self) -> bytes:  # Jupyter shows the explanation as its picture
        buffer = io.BytesIO()
        self.image().save(buffer, format='PNG')
        return buffer.getvalue()


def _target(classifier, target) -> tuple[int | None, torch.Tensor | None]:
    """`target` -> (class index, None) for a label or index, (None, embedding) for a vector, (None, None) for None."""
    if target is None:
        return None, None
    if isinstance(target, str):
        if target not in classifier.labels:
            import difflib

            close = difflib.get_close_matches(target, classifier.labels, n=3)
            hint = f'; did you mean {", ".join(map(repr, close))}?' if close else ''
            raise ValueError(f'target {target!r} is not one of {classifier.cfg.name}\'s labels{hint}')
        return classifier.labels.index(target), None
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        n = len(classifier.labels)
        if not 0 <= target < n:
            raise ValueError(f'target class index must be in 0..{n - 1}, got {target}')
        return int(target), None
    if isinstance(target, (np.ndarray, torch.Tensor, Sequence)) and not isinstance(target, bytes):
        vector = torch.as_tensor(np.asarray(target, dtype=np.float32))
        d = classifier.cfg.embed_dim
        if vector.shape != (d,) or not torch.isfinite(vector).all() or not vector.norm() > MIN_NORM:
            raise ValueError(f'an embedding target must be a finite vector of shape ({d},) and norm above {MIN_NORM} '
                             f'(a cosine needs a direction), as op(frames) returns; got shape {tuple(vector.shape)}'
                             + (f', norm {float(vector.norm()):.3g}' if vector.shape == (d,) else ''))
        return None, vector
    raise TypeError(f'target must be None (the top label), a label name, a class index or a '
                    f'({classifier.cfg.embed_dim},) embedding; got {type(target).__name__}')


def _method(method, vector) -> str:
    if method is None:
        return 'rollout' if vector is None else 'gradient'
    if method not in METHODS:
        raise ValueError(f"method must be 'rollout' or 'gradient', got {method!r}")
    if method == 'rollout' and vector is not None:
        raise ValueError("method='rollout' does not depend on the target, so it cannot explain a similarity to an "
                         "embedding; use method='gradient' (the default for an embedding)")
    return method


def run_recorded(model: TimeSformer, clip: torch.Tensor, precision: str,
                 grad: bool) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """One clip `(1, 3, T, S, S)` through `model` with the attention recorded: (logits `(1, C)`, features `(1, D)`,
    per block `(temporal (P, heads, T, T), spatial (T, heads, 1+P, 1+P))`). With `grad`, the graph is kept so that
    the probabilities can be differentiated."""
    kinds = {}
    for i, block in enumerate(model.blocks):
        kinds[id(block.temporal_attn)], kinds[id(block.attn)] = (i, 0), (i, 1)
    recorded: list[list[Any]] = [[None, None] for _ in model.blocks]

    def keep(module, probs):
        i, kind = kinds[id(module)]
        recorded[i][kind] = probs

    context = torch.enable_grad() if grad else torch.inference_mode()
    with context, autocast(clip.device, precision), record_attention(keep):
        if grad:
            clip = clip.requires_grad_(True)  # the probabilities join the graph through the input, not the weights
        features = model.forward_features(clip)
        logits = model.forward_head(features)
    return logits, features, [tuple(pair) for pair in recorded]


def explain(classifier, frames: Video, target=None, method: str | None = None) -> Explanation:
    """See `ActionClassifier.explain`."""
    class_index, vector = _target(classifier, target)
    method = _method(method, vector)
    if method == 'gradient' and classifier.precision == 'int8':
        raise ValueError("method='gradient' needs gradients, and precision='int8' has none (quantized Linear "
                         "layers); use method='rollout', or make the operator with precision='fp32'")
    stopped = getattr(frames, 'error', None)
    if isinstance(stopped, Exception):  # as op(frames) does
        warnings.warn(TruncatedVideoWarning(f'{stopped}; explaining those {len(frames)} frames'), stacklevel=3)
    transform = ClipTransform(classifier.cfg, 1, classifier.sampling, classifier.skip_preprocess)
    indices, by_index = transform.sample(frames)
    chosen = [by_index[i] for i in indices]
    clip = transform.views(stack_frames(by_index, indices)).to(classifier.device)  # (1, 3, T, S, S): centre crop

    model = classifier.model
    logits, features, probs = run_recorded(model, clip, classifier.precision, grad=method == 'gradient')
    probabilities = logits.detach().float().softmax(-1)[0]
    if vector is not None:
        y = F.cosine_similarity(features.float()[0], vector.to(features.device), dim=0)
        label, score = None, float(y.detach())
        if 1 - abs(score) < SATURATED:  # d cos / d feature = (v/|v| - cos f/|f|) / |f|: zero when f is along v
            warnings.warn(SaturatedSimilarityWarning(
                f'the clip\'s feature points along the target embedding (similarity {score:.7f}), where the '
                'similarity\'s gradient vanishes; drawing the attention rollout map instead'), stacklevel=3)
            method = 'rollout'
    else:
        if class_index is None:
            class_index = int(probabilities.argmax())
        y = logits[0, class_index].float()
        label, score = classifier.labels[class_index], float(probabilities[class_index])

    if method == 'gradient':
        flat = [a for pair in probs for a in pair]
        grads = torch.autograd.grad(y, flat, allow_unused=True)
        weighted = [(g * a).detach().float().clamp(min=0) if g is not None else torch.zeros_like(a, dtype=torch.float)
                    for g, a in zip(grads, flat)]
        steps = [(weighted[2 * i].mean(1), weighted[2 * i + 1].mean(1)) for i in range(len(probs))]
        relevance = propagate(steps, keep=1.0, mix=1.0)
    else:
        steps = [(t.detach().float().mean(1), s.detach().float().mean(1)) for t, s in probs]
        relevance = propagate(steps, keep=0.5, mix=0.5)

    size, patch = classifier.cfg.image_size, classifier.cfg.patch_size
    t = relevance.shape[1]
    grid = relevance.T.reshape(t, size // patch, size // patch).cpu()
    low, high = grid.min(), grid.max()
    scaled = (grid - low) / (high - low) if high > low else torch.zeros_like(grid)
    heatmaps = [frame_map(m, f.shape[0], f.shape[1], size) for m, f in zip(scaled, chosen)]
    same_size = len({f.shape for f in chosen}) == 1
    attention = [{'temporal': a_t.detach().float().transpose(0, 1).cpu().numpy(),
                  'spatial': a_s.detach().float().transpose(0, 1).cpu().numpy()} for a_t, a_s in probs]
    return Explanation(label=label, score=score, method=method, frame_indices=list(indices),
                       frames=np.stack(chosen) if same_size else chosen,
                       heatmaps=np.stack(heatmaps) if same_size else heatmaps,
                       relevance=grid.numpy().astype(np.float32), attention=attention)
