"""Export TimeSformer for serving (Triton's onnxruntime and pytorch backends, or any ONNX runtime).

The exported graph takes `clips (batch, 3, T, S, S)` float32 -- normalized clips, as `Timesformer.preprocess` makes
them -- and returns two named outputs: `logits (batch, classes)` (logits, not probabilities: several crops or clips
of one video are combined by summing logits) and `features (batch, D)`, the embedding the operator returns. The
batch axis is dynamic; T and S are those of the example clip (the model's own by default). The graph is float32
whatever precision the operator runs at: reduced precision is the serving runtime's choice.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .model import TimeSformer

SUPPORTED_FORMATS = ('onnx', 'torchscript')
INPUT_NAME = 'clips'
OUTPUT_NAMES = ('logits', 'features')


class ClipModel(nn.Module):
    """`clips -> (logits, features)`: the two outputs a server needs, from one forward pass."""

    def __init__(self, model: TimeSformer):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(clips)
        return self.model.forward_head(features), features


def example_clips(model: TimeSformer, batch: int = 2) -> torch.Tensor:
    """A random clip batch of the model's trained shape on its device. Batch 2: torch.export specializes size 1."""
    p = next(model.parameters())
    return torch.randn(batch, 3, model.num_frames, model.img_size, model.img_size, device=p.device)


def export_onnx(model: TimeSformer, path: str | os.PathLike, clips: torch.Tensor | None = None,
                opset: int = 20) -> Path:
    """Write an ONNX model with a dynamic batch axis (torch.export-based exporter; needs `onnx` and `onnxscript`)."""
    missing = [name for name in ('onnx', 'onnxscript') if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f'ONNX export needs {" and ".join(missing)}: pip install onnx onnxscript '
                          f'(and onnxruntime to run the result)')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ClipModel(model).eval()
    clips = example_clips(model) if clips is None else clips
    with torch.no_grad():
        torch.onnx.export(wrapper, (clips,), str(path), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_shapes={INPUT_NAME: {0: torch.export.Dim('batch')}}, opset_version=opset,
                          dynamo=True, external_data=False, verbose=False)
    return path


def export_torchscript(model: TimeSformer, path: str | os.PathLike) -> Path:
    """Write a scripted (not traced) module: any batch size, and other frame counts and sizes resize the embeddings
    as in eager mode. Load it with `torch.jit.load`; it returns `(logits, features)`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # TorchScript is deprecated upstream, but it is what Triton's pytorch (libtorch) backend serves.
        warnings.filterwarnings('ignore', message='.*torch.jit.*deprecated', category=FutureWarning)
        scripted = torch.jit.script(ClipModel(model).eval())
        torch.jit.save(scripted, str(path))
    return path


def export_model(model: TimeSformer, format: str, path: str | os.PathLike) -> Path:  # noqa: A002 - Towhee's name
    """`format` is one of `SUPPORTED_FORMATS`; returns the path written."""
    if format == 'onnx':
        return export_onnx(model, path)
    if format == 'torchscript':
        return export_torchscript(model, path)
    raise ValueError(f'unsupported export format {format!r}; supported: {", ".join(SUPPORTED_FORMATS)}')
