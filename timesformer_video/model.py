"""TimeSformer with divided space-time attention (Bertasius et al., ICML 2021), ViT-B/16.

Parameter names follow the original release (facebookresearch/TimeSformer `vit.py`) so its checkpoints load with a
plain strict `load_state_dict`; `checkpoints.py` converts the other formats to these names.
Plain reshape/permute only (no einops in `forward`) so the model scripts and exports cleanly.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

# Set by `record_attention` (for explain.py); unset, every Attention runs the fused SDPA kernel, which never forms the
# probability matrix. A context variable, so a thread that explains does not slow down or record another's calls.
_ATTENTION_RECORDER: ContextVar[Callable[[nn.Module, torch.Tensor], None] | None] = ContextVar(
    'attention_recorder', default=None)


@contextlib.contextmanager
def record_attention(callback: Callable[[nn.Module, torch.Tensor], None]) -> Iterator[None]:
    """Within this context (this thread only), every `Attention` computes its probabilities explicitly,
    `softmax(Q K^T / sqrt(head_dim))` of shape `(N, heads, L, L)`, calls `callback(attention_module, probs)`, and
    multiplies them with V: the tensor given is the one the output depends on (gradients reach it). Outside, the
    fused SDPA path runs unchanged. The temporal projection's folding (`fold_temporal_projection`) acts after the
    attention and changes none of the probabilities."""
    token = _ATTENTION_RECORDER.set(callback)
    try:
        yield
    finally:
        _ATTENTION_RECORDER.reset(token)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Attention with the heads concatenated, before the output projection."""
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        if not torch.jit.is_scripting():
            record = _ATTENTION_RECORDER.get()
            if record is not None:  # inside `record_attention` only: the probabilities themselves, then their use
                probs = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (dim // self.num_heads) ** -0.5).softmax(dim=-1)
                record(self, probs)
                return (probs @ qkv[2]).transpose(1, 2).reshape(n, length, dim)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return x.transpose(1, 2).reshape(n, length, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Temporal attention (per patch position, over frames), then spatial attention (per frame, with the CLS)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.temporal_norm1 = nn.LayerNorm(dim, eps=eps)
        self.temporal_attn = Attention(dim, num_heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # `temporal_fc(temporal_attn.proj(.))` as one Linear, set by `fold_temporal_projection`; not saved.
        self.register_buffer('temporal_out_weight', None, persistent=False)
        self.register_buffer('temporal_out_bias', None, persistent=False)

    @torch.no_grad()
    def fold_temporal_projection(self) -> None:
        """Inference: fold the temporal attention's output projection and `temporal_fc` into one matrix.

        The original applies two Linear layers back to back with nothing between them: one product of their
        weights (computed in float64) saves a D x D matmul per token, ~6 % of the model's FLOPs. The parameters are
        untouched; fold again after changing them, or `unfold_temporal_projection()`.
        """
        fc, proj = self.temporal_fc, self.temporal_attn.proj
        weight = fc.weight.double() @ proj.weight.double()
        bias = fc.weight.double() @ proj.bias.double() + fc.bias.double()
        self.temporal_out_weight = weight.to(fc.weight.dtype)
        self.temporal_out_bias = bias.to(fc.bias.dtype)

    def unfold_temporal_projection(self) -> None:
        self.temporal_out_weight = None
        self.temporal_out_bias = None

    def _temporal_out(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal_out_weight is not None and not self.training:
            return F.linear(x, self.temporal_out_weight, self.temporal_out_bias)
        return self.temporal_fc(self.temporal_attn.proj(x))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        # x: (B, 1 + N*T, D); patch tokens ordered patch-major, frame-minor.
        b, length, d = x.shape
        t = num_frames
        n = (length - 1) // t
        cls, patches = x[:, :1], x[:, 1:]

        xt = patches.reshape(b * n, t, d)
        xt = patches + self._temporal_out(self.temporal_attn.attend(self.temporal_norm1(xt))).reshape(b, n * t, d)

        xs = xt.reshape(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)
        xs = torch.cat([cls.expand(b, t, d).reshape(b * t, 1, d), xs], dim=1)
        xs = self.attn(self.norm1(xs))
        cls_res = xs[:, 0].reshape(b, t, d).mean(dim=1, keepdim=True)  # one CLS residual: the mean over frames
        patch_res = xs[:, 1:].reshape(b, t, n, d).transpose(1, 2).reshape(b, n * t, d)

        x = torch.cat([cls, xt], dim=1) + torch.cat([cls_res, patch_res], dim=1)
        return x + self.mlp(self.norm2(x))


class TimeSformer(nn.Module):
    """Input `(B, 3, T, H, W)`; `forward_features` gives the 768-d CLS embedding, `forward` the logits.

    Other frame counts and sizes than trained on are accepted: `time_embed` and the `pos_embed` grid are resized with
    nearest interpolation, as the original `forward_features` does at inference.
    """

    def __init__(self, num_classes: int = 400, num_frames: int = 8, img_size: int = 224, patch_size: int = 16,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.img_size = img_size
        self.embed_dim = embed_dim
        grid = img_size // patch_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The original release's initialisation (`vit.py`), so an untrained model is a fair stand-in for a trained one.

        Every Linear: truncated normal weights (std 0.02, cut at +-2 std), zero bias; LayerNorm: weight 1, bias 0;
        `cls_token`, `pos_embed` and `time_embed`: truncated normal, std 0.02; `temporal_fc` of every block but the
        first: zero, so those blocks start as spatial-only ones. One deliberate difference: the original leaves
        `time_embed` at zero (training learns it), which makes an untrained model blind to frame order (reversed or
        shuffled frames would give the same feature); drawn here like `pos_embed`, the order shows in the output.
        """
        if self.cls_token.is_meta:  # to be filled with weights: nothing to draw (meta erfinv_ is slow: 0.15 s a call)
            return

        def trunc_normal(tensor: torch.Tensor, std: float = 0.02) -> None:
            # By the inverse CDF, as the original's `trunc_normal_` draws it: one pass. torch's own redraws the
            # values out of range in a loop, each time over the whole tensor: ViT-B took 20 CPU-s instead of 4.
            low = (1 + math.erf(-2 / math.sqrt(2))) / 2  # the normal CDF at -2 std
            tensor.uniform_(2 * low - 1, 1 - 2 * low).erfinv_().mul_(std * math.sqrt(2)).clamp_(-2 * std, 2 * std)

        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for parameter in (self.cls_token, self.pos_embed, self.time_embed):
            trunc_normal(parameter)
        for block in self.blocks[1:]:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        grid = int((self.pos_embed.shape[1] - 1) ** 0.5)
        if (gh, gw) == (grid, grid):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.transpose(1, 2).reshape(1, -1, grid, grid)
        patch_pos = F.interpolate(patch_pos, size=(gh, gw), mode='nearest').flatten(2).transpose(1, 2)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def _time_embed(self, t: int) -> torch.Tensor:
        if t == self.time_embed.shape[1]:
            return self.time_embed
        return F.interpolate(self.time_embed.transpose(1, 2), size=t, mode='nearest').transpose(1, 2)

    def fold_temporal_projections(self) -> TimeSformer:
        """Inference speed-up for every block (`Block.fold_temporal_projection`); returns the model."""
        for block in self.blocks:
            block.fold_temporal_projection()
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = self.patch_embed.proj(x.transpose(1, 2).reshape(b * t, c, h, w))
        gh, gw = x.shape[-2:]
        d = x.shape[1]
        pos = self._pos_embed(gh, gw)
        x = x.flatten(2).transpose(1, 2) + pos[:, 1:]  # (B*T, N, D)
        x = x.reshape(b, t, gh * gw, d).transpose(1, 2) + self._time_embed(t).unsqueeze(1)  # (B, N, T, D)
        cls = (self.cls_token + pos[:, :1]).expand(b, 1, d)
        x = torch.cat([cls, x.reshape(b, gh * gw * t, d)], dim=1)
        for block in self.blocks:
            x = block(x, t)
        return self.norm(x[:, 0])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def quantize_int8(model: TimeSformer) -> nn.Module:
    """`model` (on the CPU) with every `nn.Linear` dynamically quantized to int8, in place: no float copy is kept.

    Weights are int8 per output channel; activations are quantized per call from their own range, so no calibration
    data is needed. The Linear layers are ~97 % of the FLOPs; attention, LayerNorm and GELU stay float32. Weights are
    packed for oneDNN where this torch build has it: its int8 GEMM uses AVX512-VNNI/AMX and ran ~4x faster than
    fbgemm's on a ViT-B MLP on our Xeon (fbgemm ~1.7x over fp32). The engine is only switched while packing: the
    packed weights carry their kernel, so the process-wide setting is restored (under a lock: threads quantizing at
    once must not restore each other's setting).
    """
    for block in model.blocks:
        block.unfold_temporal_projection()  # quantize the two Linears rather than run their float product

    with _ENGINE_LOCK:
        return _quantize_linears(model)


_ENGINE_LOCK = threading.Lock()


def _quantize_linears(model: TimeSformer) -> nn.Module:
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    engines = torch.backends.quantized.supported_engines
    engine = 'onednn' if 'onednn' in engines else torch.backends.quantized.engine
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            # torch.ao's eager quantization warns that it moves to torchao (not a dependency here); it still works.
            warnings.filterwarnings('ignore', message='.*torch.ao.quantization is deprecated')
            warnings.filterwarnings('ignore', message='.*quantized tensor creation functions')
            return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                    inplace=True)
    finally:
        torch.backends.quantized.engine = previous
