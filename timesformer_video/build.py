"""From a model name or record to a ready model: weights loaded, on its device, at its precision. No Towhee.

    device = resolve_device('cuda')
    model = build_model('timesformer_k400_8x224', 'TimeSformer_divST_8x32_224_K400.pyth', device=device,
                        precision='bf16')
    with torch.inference_mode(), autocast(device, 'bf16'):
        logits = model(clips.to(device))            # clips (B, 3, T, S, S) -> logits (B, classes)

As torchvision's model builders: the record (`zoo.ModelCfg`) holds the architecture, the weights' location, the clip
transform and the labels; this module turns it into a module. The operator, the batch job, tests and benchmarks all
build through `build_model` (or `create_model` for an untrained model of a record's shape).
"""

from __future__ import annotations

import contextlib
import os

import torch

from .checkpoints import check_state_dict, load_checkpoint, resolve_weights
from .model import TimeSformer, quantize_int8
from .zoo import ModelCfg, get_cfg

PRECISIONS = ('fp32', 'bf16', 'fp16', 'int8')
_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def _known(precision) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(map(repr, PRECISIONS))}, got {precision!r}')


def _record(model: str | ModelCfg) -> ModelCfg:
    return model if isinstance(model, ModelCfg) else get_cfg(model)


def create_model(model: str | ModelCfg, meta: bool = False) -> TimeSformer:
    """An untrained `TimeSformer` of the record's shape (randomly initialised; on the meta device when `meta`)."""
    cfg = _record(model)
    with torch.device('meta') if meta else contextlib.nullcontext():
        return TimeSformer(num_classes=cfg.num_classes, num_frames=cfg.num_frames, img_size=cfg.image_size,
                           patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                           num_heads=cfg.num_heads)


def resolve_device(device=None, node_device: int = -1) -> torch.device:
    """`device` when given ('cpu', 'cuda', 'cuda:N', a CUDA index, -1 the CPU); else `node_device` when it is a CUDA
    index (Towhee's node `config={'device': N}`; -1 means not set); else CUDA when present, else the CPU.

    Raises ValueError for a device that is malformed or not present on this machine.
    """
    asked = ''
    if device is None:
        if not isinstance(node_device, int) or node_device < 0:
            return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        device, asked = node_device, f" by the Towhee node's config={{'device': {node_device}}}"
    try:
        if isinstance(device, bool):
            raise TypeError(device)
        if isinstance(device, int):
            if device < -1:
                raise TypeError(device)
            device = torch.device('cpu') if device == -1 else torch.device('cuda', device)
        else:
            device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a CUDA index, got {device!r}") from e
    if device.type not in ('cpu', 'cuda') or (device.type == 'cpu' and device.index not in (None, 0)):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a CUDA index, got {device!r}: the model runs "
                         f"on the CPU or on CUDA GPUs")
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {device} was asked for{asked} but CUDA is not available here; '
                             f'use device="cpu"')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f'device {device} was asked for{asked} but this machine has {torch.cuda.device_count()} '
                             f'CUDA device(s): cuda:0..cuda:{torch.cuda.device_count() - 1}')
    return device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matmuls are emulated and slower than fp32."""
    checks = (getattr(torch.cpu, '_is_avx512_bf16_supported', None), getattr(torch.cpu, '_is_amx_tile_supported', None))
    return any(check() for check in checks if check is not None)


def check_precision(precision, device: torch.device) -> str:
    """`precision` if it has fast kernels on `device`; a precision slower than fp32 there raises ValueError."""
    _known(precision)
    if precision == 'int8' and device.type != 'cpu':
        raise ValueError(f"precision='int8' is dynamic quantization for the CPU; on {device} use 'bf16' or 'fp16'")
    if device.type == 'cpu' and precision == 'fp16':
        raise ValueError("precision='fp16' is slower than fp32 on the CPU (no fp16 matmul kernels; measured 1.5x "
                         "slower); use 'bf16' on a CPU with AVX512-BF16/AMX, or 'int8'")
    if device.type == 'cpu' and precision == 'bf16' and not cpu_has_native_bf16():
        raise ValueError("precision='bf16' needs a CPU with AVX512-BF16 or AMX (this one has neither, and emulated "
                         "bf16 is slower than fp32); use 'int8' or 'fp32'")
    if device.type not in ('cpu', 'cuda') and precision != 'fp32':
        raise ValueError(f"precision={precision!r} is supported on 'cpu' and 'cuda'; on {device} use 'fp32'")
    return precision


def build_model(model: str | ModelCfg = 'timesformer_k400_8x224', weights: str | os.PathLike | None = None, *,
                device=None, precision: str = 'fp32', trust_checkpoint: bool = False,
                progress: bool = True) -> TimeSformer:
    """The model of a zoo name or record with its weights, ready for inference (eval, no grad).

    Args:
        model: a name from `zoo.supported_model_names()` or a `ModelCfg`.
        weights: a checkpoint file or HF directory (every format `checkpoints.load_checkpoint` reads); None: the
            released file from torch's hub cache, downloaded there if missing.
        device: as `resolve_device` (None: CUDA when present). The weights load straight onto it.
        precision: 'fp32'; 'bf16'/'fp16' (the weights stay float32, `autocast` runs the matmuls in half
            precision); 'int8' (CPU: the Linear layers dynamically quantized in place). See `check_precision`.
        trust_checkpoint: allow `torch.load(weights_only=False)` (unpickling runs code from the file).

    Returns the `TimeSformer` (temporal projections folded; int8: quantized). Run it under `autocast`.
    Raises ValueError (name, device, precision), FileNotFoundError (`weights` names nothing), `CheckpointError` (a
    file that is not a fitting checkpoint), `WeightsUnavailableError` (no weights given and the release cannot be
    downloaded).
    """
    cfg = _record(model)
    if not isinstance(trust_checkpoint, bool):  # a truthy string ('false') must not allow unpickling
        raise ValueError(f'trust_checkpoint must be True or False, got {trust_checkpoint!r}')
    device = resolve_device(device)
    check_precision(precision, device)
    source = resolve_weights(cfg, progress) if weights is None else weights
    state_dict, fmt = load_checkpoint(source, trust_checkpoint)
    net = create_model(cfg, meta=True)
    check_state_dict(state_dict, {k: v.shape for k, v in net.state_dict().items()}, fmt, source)
    state_dict = {k: v.to(device=device, dtype=torch.float32) for k, v in state_dict.items()}
    net.load_state_dict(state_dict, strict=True, assign=True)
    net = net.eval().requires_grad_(False)
    if precision == 'int8':
        net = quantize_int8(net)  # quantizes the two temporal Linears rather than their folded product
    else:
        net.fold_temporal_projections()  # one matmul where the original has two: model.py
    return net


def autocast(device: torch.device | str, precision: str):
    """The autocast context `precision` runs under on `device` (bf16/fp16); a no-op for fp32 and int8."""
    _known(precision)
    dtype = _AUTOCAST_DTYPES.get(precision)
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()
